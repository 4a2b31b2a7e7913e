"""Forward+backward time of CompactBilinear against its FFT floor and a dense-matrix Count Sketch.

For m = 2 inputs of shape (32, 7, 7, p) (a batch of 32 BN-Inception-sized 7x7 maps), p = 1024/2048,
d = 4096/8192, one run measures side by side, compiled (`tf.function(jit_compile=False)` on
TensorFlow, `jax.jit` on JAX), gradients with respect to both inputs:

- ours: `keras_twostream.layers.CompactBilinear` (scatter-add Count Sketch + rfft/irfft);
- floor: rfft of two (32, 7, 7, d) tensors, their complex product and irfft, nothing else;
- dense: the common implementation, a Count Sketch as `x @ S` with a dense p x d sign matrix S,
  followed by the same FFTs;
- three formulations of the sketch, to justify the one the layer uses on each backend.

It reports medians over interleaved repeats, ratios, and the memory of the sketch parameters next to
what an explicit bilinear layer (a p^2 x d weight matrix) would need. The aim is ours <= 1.5x floor.

    python benchmarks/bench_compact_bilinear.py [--backends tensorflow,jax] [--repeats 7]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

SIZES = [(1024, 4096), (1024, 8192), (2048, 4096), (2048, 8192)]
BATCH = (32, 7, 7)
FORMS = ("transposed", "flat segment ids", "fused + batched rfft")


def _fft_product(x, y, d):
    from keras import ops

    xr, xi = ops.rfft(x, fft_length=d)
    yr, yi = ops.rfft(y, fft_length=d)
    return ops.irfft((xr * yr - xi * yi, xr * yi + xi * yr), fft_length=d)


def _compiled_value_and_grad(fn):
    """A compiled function (x, y) -> (loss, dx, dy) with loss = sum(fn(x, y) ** 2) / 2."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=False)
        def step(x, y):
            with tf.GradientTape() as tape:
                tape.watch([x, y])
                z = fn(x, y)
                loss = 0.5 * tf.reduce_sum(z * z)
            return (loss, *tape.gradient(loss, [x, y]))

        return step
    if keras.backend.backend() == "jax":
        import jax
        import jax.numpy as jnp

        grad = jax.jit(
            jax.value_and_grad(lambda x, y: 0.5 * jnp.sum(fn(x, y) ** 2), argnums=(0, 1))
        )
        return lambda x, y: jax.block_until_ready(grad(x, y))
    raise ValueError(f"Unsupported backend {keras.backend.backend()!r}: use tensorflow or jax.")


def _contenders(p, d):
    """name -> (fn(x, y) -> z, input feature size) for one (p, d)."""
    import keras
    import numpy as np
    from keras import ops

    from keras_twostream.layers.compact_bilinear import CompactBilinear

    layer = CompactBilinear(output_dim=d, seed=0)
    layer.build([BATCH + (p,), BATCH + (p,)])
    if keras.backend.backend() == "jax":
        state = [v.value for v in layer.non_trainable_variables]

        def ours(x, y):
            return layer.stateless_call([], state, [x, y])[0]
    else:

        def ours(x, y):
            return layer([x, y])

    hashes = [ops.convert_to_numpy(h) for h in layer.hashes]
    signs = [ops.convert_to_numpy(s) for s in layer.signs]
    dense = []
    for h, s in zip(hashes, signs, strict=True):
        matrix = np.zeros((p, d), np.float32)
        matrix[np.arange(p), h] = s
        dense.append(ops.convert_to_tensor(matrix))

    def dense_sketch(x, y):
        return _fft_product(ops.matmul(x, dense[0]), ops.matmul(y, dense[1]), d)

    runs = {
        "ours": (ours, p),
        "floor": (lambda x, y: _fft_product(x, y, d), d),
        "dense": (dense_sketch, p),
    }
    h = [ops.convert_to_tensor(v) for v in hashes]
    s = [ops.convert_to_tensor(v) for v in signs]

    def transposed(x, y):
        # The feature axis first, segment_sum with num_segments=d, and back.
        def sketch(v, i):
            v = ops.transpose(ops.reshape(v * s[i], (-1, p)))  # [p, N]
            return ops.reshape(
                ops.transpose(ops.segment_sum(v, h[i], num_segments=d)), BATCH + (d,)
            )

        return _fft_product(sketch(x, 0), sketch(y, 1), d)

    def flat_ids(x, y):
        # segment_sum over the flattened tensor with ids n * d + h(j): no transposes.
        def sketch(v, i):
            n = BATCH[0] * BATCH[1] * BATCH[2]
            ids = ops.arange(n, dtype="int32")[:, None] * d + h[i][None, :]
            flat = ops.segment_sum(
                ops.reshape(v * s[i], (-1,)), ops.reshape(ids, (-1,)), num_segments=n * d
            )
            return ops.reshape(flat, BATCH + (d,))

        return _fft_product(sketch(x, 0), sketch(y, 1), d)

    def fused(x, y):
        # Both sketches in one segment_sum (ids offset by d) and one batched rfft.
        ids = ops.concatenate([h[0], h[1] + d])
        v = ops.reshape(ops.concatenate([x * s[0], y * s[1]], axis=-1), (-1, 2 * p))
        sk = ops.segment_sum(ops.transpose(v), ids, num_segments=2 * d)  # [2d, N]
        sk = ops.transpose(ops.reshape(sk, (2, d, -1)), (0, 2, 1))  # [2, N, d]
        r, i = ops.rfft(sk, fft_length=d)
        z = ops.irfft((r[0] * r[1] - i[0] * i[1], r[0] * i[1] + i[0] * r[1]), fft_length=d)
        return ops.reshape(z, BATCH + (d,))

    runs["form: transposed"] = (transposed, p)
    runs["form: flat segment ids"] = (flat_ids, p)
    runs["form: fused + batched rfft"] = (fused, p)
    return runs


def measure(repeats, warmup=2):
    """Runs every contender for every size on the current backend; returns a list of row dicts."""
    import keras
    import numpy as np
    from keras import ops

    rng = np.random.default_rng(0)
    rows = []
    for p, d in SIZES:
        runs = _contenders(p, d)
        data = {
            size: [
                ops.convert_to_tensor(rng.standard_normal(BATCH + (size,)).astype("float32"))
                for _ in range(2)
            ]
            for size in {p, d}
        }
        steps = {name: _compiled_value_and_grad(fn) for name, (fn, _) in runs.items()}
        # Sanity check, not a timing: the dense-matrix sketch computes the same function.
        x, y = data[p]
        ours, dense = runs["ours"][0](x, y), runs["dense"][0](x, y)
        max_error = float(np.max(np.abs(ops.convert_to_numpy(ours) - ops.convert_to_numpy(dense))))
        times = {name: [] for name in steps}
        for name, step in steps.items():
            for _ in range(warmup):
                step(*data[runs[name][1]])
        for _ in range(repeats):  # interleaved, so that machine noise hits every contender
            for name, step in steps.items():
                start = time.perf_counter()
                out = step(*data[runs[name][1]])
                if keras.backend.backend() == "tensorflow":
                    out[0].numpy()
                times[name].append(time.perf_counter() - start)
        for name in steps:
            rows.append(
                {
                    "backend": keras.backend.backend(),
                    "p": p,
                    "d": d,
                    "name": name,
                    "median_ms": 1000 * statistics.median(times[name]),
                    "min_ms": 1000 * min(times[name]),
                    "max_error_vs_dense": max_error,
                }
            )
        print(f"[{keras.backend.backend()}] p={p} d={d} done", file=sys.stderr, flush=True)
    return rows


def _mib(n_bytes):
    return f"{n_bytes / 2**20:,.3f} MiB" if n_bytes < 2**30 else f"{n_bytes / 2**30:,.0f} GiB"


def report(rows, repeats):
    from _report import markdown_table

    by_key = {(r["backend"], r["p"], r["d"], r["name"]): r["median_ms"] for r in rows}
    mins = {(r["backend"], r["p"], r["d"], r["name"]): r["min_ms"] for r in rows}
    backends = sorted({r["backend"] for r in rows})
    time_rows = []
    for backend in backends:
        for p, d in SIZES:
            ours, floor, dense = (by_key[(backend, p, d, n)] for n in ("ours", "floor", "dense"))
            time_rows.append(
                [
                    backend,
                    p,
                    d,
                    f"{ours:.1f}",
                    f"{floor:.1f}",
                    f"**{ours / floor:.2f}x**",
                    f"{mins[(backend, p, d, 'ours')] / mins[(backend, p, d, 'floor')]:.2f}x",
                    f"{dense:.1f}",
                    f"{dense / ours:.1f}x",
                ]
            )
    alt_rows = []
    for backend in backends:
        for p, d in SIZES:
            floor = by_key[(backend, p, d, "floor")]
            row = [backend, p, d]
            for name in FORMS:
                ms = by_key[(backend, p, d, "form: " + name)]
                row += [f"{ms:.1f} ({ms / floor:.2f}x)"]
            alt_rows.append(row)
    memory_rows = []
    for p, d in SIZES:
        ours = 2 * p * (4 + 4)  # per input: int32 hash + float32 sign
        dense = 2 * p * d * 4  # per input: a float32 p x d sign matrix
        bilinear = p * p * d * 4  # one float32 p^2 x d projection of vec(x (x) y)
        memory_rows.append(
            [p, d, f"{ours / 1024:.0f} KiB", _mib(dense), f"{dense / ours:,.0f}x", _mib(bilinear)]
        )
    errors = max(r["max_error_vs_dense"] for r in rows)
    compiled = " / ".join(
        {"tensorflow": "`tf.function(jit_compile=False)`", "jax": "`jax.jit`"}[b] for b in backends
    )
    time_headers = ["backend", "p", "d", "ours ms", "floor ms", "ours / floor"]
    time_headers += ["ours / floor (min)", "dense ms", "dense / ours"]
    time_table = markdown_table(time_headers, time_rows)
    memory_headers = ["p", "d", "ours (hash + sign)", "dense sign matrices", "dense / ours"]
    memory_table = markdown_table(memory_headers + ["explicit bilinear p^2 x d"], memory_rows)
    alt_table = markdown_table(["backend", "p", "d"] + [f"{f} (/ floor)" for f in FORMS], alt_rows)
    return f"""
Forward + backward (gradients with respect to both inputs) of `CompactBilinear` with m = 2 inputs
of shape (32, 7, 7, p), i.e. 1568 vectors, compiled with {compiled}.
Medians over {repeats} interleaved repeats after 2 warm-up calls, in ms. The **floor** is the rfft
of two (32, 7, 7, d) tensors, their complex product and the irfft, nothing else; **dense** is the
usual Count Sketch as `x @ S` with a dense p x d sign matrix, followed by the same FFTs. Aim: ours
<= 1.5x the floor. The ratio of the fastest runs ("min") is given too, as the shared cores' load
varies. Largest |ours - dense| over all runs: {errors:.2e} (same hashes and signs).

{time_table}

Memory of the sketch parameters for m = 2 inputs (float32), against an explicit bilinear layer
that projects the p^2-dimensional `vec(x ⊗ y)` to d with a p^2 x d weight matrix:

{memory_table}

The Count Sketch formulations measured to choose ours (ms and ratio to the floor, medians).
"transposed" moves the feature axis first, runs `segment_sum` with `num_segments=d` and
transposes back (ours on TensorFlow); "flat segment ids" sums the flattened tensor into N * d
segments with ids n * d + h(j), no transposes (ours on JAX, where XLA's CPU transposes are slow);
"fused" sketches both inputs in one `segment_sum` and transforms them in one batched rfft:

{alt_table}
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backends",
        default="tensorflow,jax",
        help="comma-separated Keras backends, each run in its own process",
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="print the report only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.repeats)))
        return
    rows = []
    for backend in args.backends.split(","):
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        result = subprocess.run(
            [sys.executable, __file__, "--child", "--repeats", str(args.repeats)],
            env=env,
            stdout=subprocess.PIPE,
            check=True,
            text=True,
        )
        rows += json.loads(result.stdout.strip().splitlines()[-1])
    body = report(rows, args.repeats)
    print(body)
    if not args.no_write:
        from _report import write_section

        write_section(
            "compact_bilinear",
            "CompactBilinear (STCB) against its FFT floor and a dense Count Sketch",
            body,
            command="python benchmarks/bench_compact_bilinear.py",
        )


if __name__ == "__main__":
    main()
