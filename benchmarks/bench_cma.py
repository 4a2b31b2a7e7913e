"""Cost of cross-modality attention: the CMA model against its two bare backbones, and the CMA block
against a plain self-attention without the max-pooling, in one run each.

1. Model: `build_cma` (ResNet-50, 224x224, K=3 segments, 5 CMA blocks per branch) train step, jointly
   and in an alternating-schedule phase (RGB branch trained, Flow branch frozen and run in inference
   mode), against the floor: the two bare ResNet-50 backbones on the same K x batch images with a
   trivial loss. Parameters: the paper reports 1.8x a ResNet-50 for the RGB prediction path
   (Table 2, CMA_iter1-R), i.e. the RGB branch plus what its CMA blocks read from the Flow branch.
2. Block: one CMA block on a res4-sized map (14x14x1024, d_k = 512) for B*K images: train-step time
   and XLA's temporary buffers (compiled forward+backward, measured under the JAX backend in a
   subprocess), against the same block without the max-pooling (the plain non-local/self-attention
   block, 4x larger attention matrix) and Keras' MultiHeadAttention (1 head, key_dim 512) on the
   196 flattened positions.

    python benchmarks/bench_cma.py [--part all|model|block] [--batch 2] [--steps 3] [--rounds 3]
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _floors import bare_backbones  # noqa: E402
from _report import markdown_table, write_section  # noqa: E402
from _timing import interleaved_medians, median_fit_step, repeat_batch  # noqa: E402

from keras_twostream.backbones import get_backbone  # noqa: E402
from keras_twostream.layers.cross_modality_attention import CrossModalityAttention  # noqa: E402
from keras_twostream.models.cma import build_cma  # noqa: E402

MAP = (14, 14, 1024)  # res4 of ResNet-50 at 224x224


# --- 1. The model ----------------------------------------------------------------------------------
def parameter_rows(model, backbone, size, classes):
    reference = (
        get_backbone(backbone, (size, size, 3), name="reference").count_params()
        + 2048 * classes
        + classes
    )
    # The RGB branch's output, "spatial" (its probabilities; "rgb" before issue 19).
    rgb_path = keras.Model(model.input, model.get_layer("spatial").output).count_params()
    cma = sum(layer.count_params() for layer in model.layers if "_cma_" in layer.name)
    return [
        [
            f"{backbone} + {classes}-way classifier (1x, Table 2)",
            f"{reference / 1e6:.1f} M",
            "1.00x",
        ],
        [
            "CMA model, RGB prediction path (CMA_iter1-R)",
            f"{rgb_path / 1e6:.1f} M",
            f"{rgb_path / reference:.2f}x",
        ],
        [
            "CMA model, all (both branches, 10 CMA blocks)",
            f"{model.count_params() / 1e6:.1f} M",
            f"{model.count_params() / reference:.2f}x",
        ],
        ["of which the 10 CMA blocks", f"{cma / 1e6:.1f} M", f"{cma / reference:.2f}x"],
    ]


def bench_model(args):
    size, segments, flow_length, batch, classes = args.image_size, args.segments, 5, args.batch, 400
    rng = np.random.RandomState(0)
    x = {
        "rgb": rng.rand(batch, segments, size, size, 3).astype("float32"),
        "flow": rng.randn(batch, segments, size, size, 2 * flow_length).astype("float32"),
    }
    y = rng.randint(0, classes, batch)

    def cma(branch):
        model = build_cma(
            classes,
            backbone=args.backbone,
            image_size=size,
            num_segments=segments,
            flow_length=flow_length,
        )
        model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9))
        model.set_training_branch(branch)
        return model

    joint, phase = cma(None), cma("spatial")  # the RGB branch's phase
    floor, zeros = bare_backbones(
        args.backbone, size, flow_length, batch, rgb_segments=segments, flow_segments=segments
    )
    data = repeat_batch(x, y)
    floor_data = repeat_batch(x, zeros)
    medians = interleaved_medians(
        [
            ("joint", lambda: median_fit_step(joint, data, args.steps)),
            ("phase", lambda: median_fit_step(phase, data, args.steps)),
            ("floor", lambda: median_fit_step(floor, floor_data, args.steps)),
        ],
        rounds=args.rounds,
    )
    rows = [
        [
            "`build_cma` train step, both branches",
            f"{medians['joint'] * 1000:.0f} ms",
            f"{medians['joint'] / medians['floor']:.2f}x",
        ],
        [
            "`build_cma` train step, RGB phase (Flow frozen)",
            f"{medians['phase'] * 1000:.0f} ms",
            f"{medians['phase'] / medians['floor']:.2f}x",
        ],
        ["two bare backbones (floor)", f"{medians['floor'] * 1000:.0f} ms", "1.00x"],
    ]
    time_table = markdown_table(["what", "median step", "ratio to floor"], rows)
    params_table = markdown_table(
        ["parameters", "count", "ratio to ResNet-50"],
        parameter_rows(joint, args.backbone, size, classes),
    )
    print(time_table, params_table, sep="\n\n")
    body = (
        f"{args.backbone}, {size}x{size}, batch {batch} clips x K={segments} segments (so {batch * segments} images per "
        f"branch), RGB + {flow_length} flow fields, 5 CMA blocks per branch, {classes} classes, SGD with momentum; "
        f"medians of {args.steps} steps x {args.rounds} interleaved rounds. In an RGB phase the Flow branch runs forward "
        "in inference mode, its weights frozen (the RGB loss's gradient still flows through it).\n\n"
        f"{time_table}\n\n{params_table}"
    )
    return body


# --- 2. The block ----------------------------------------------------------------------------------
def _contenders():
    return {
        "cma": (
            "CMA block, max-pool 2 before k, v (paper)",
            lambda: CrossModalityAttention(name="cma"),
        ),
        "plain": (
            "same block without the max-pooling (non-local)",
            lambda: CrossModalityAttention(pool_size=None, name="plain"),
        ),
        "mha": (
            "keras MultiHeadAttention, 1 head, key_dim 512",
            lambda: keras.layers.MultiHeadAttention(1, 512, name="mha"),
        ),
    }


def _positions(name):
    h, w, _ = MAP
    return h * w, (h * w // 4 if name == "cma" else h * w)


def xla_temp_bytes(batch):
    """XLA's temporary buffers for a jitted forward+backward of each contender (JAX backend)."""
    import jax
    import jax.numpy as jnp

    rng = np.random.RandomState(0)
    x = jnp.asarray(rng.randn(batch, *MAP).astype("float32"))
    y = jnp.asarray(rng.randn(batch, *MAP).astype("float32"))
    flat = x.reshape(batch, -1, MAP[-1])
    results = {}
    for key, (_, make) in _contenders().items():
        layer = make()
        if key == "mha":
            layer(flat, flat)
            args = (flat, flat)
        else:
            layer(x, y if key == "cma" else None)
            args = (x, y) if key == "cma" else (x,)
        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]

        def loss(trainable, non_trainable, *inputs, layer=layer, key=key):
            kwargs = {} if key == "mha" else {"training": True}
            out, _ = layer.stateless_call(trainable, non_trainable, *inputs, **kwargs)
            return jnp.mean(out**2)

        compiled = jax.jit(jax.grad(loss)).lower(trainable, non_trainable, *args).compile()
        results[key] = int(compiled.memory_analysis().temp_size_in_bytes)
    return results


def bench_block(args):
    batch = args.batch * args.segments
    rng = np.random.RandomState(0)
    x = rng.randn(batch, *MAP).astype("float32")
    y = rng.randn(batch, *MAP).astype("float32")
    runs, labels = [], {}
    for key, (label, make) in _contenders().items():
        layer = make()
        labels[key] = label
        if key == "mha":
            inp = keras.Input(MAP)
            flat = keras.layers.Reshape((-1, MAP[-1]))(inp)
            model = keras.Model(inp, layer(flat, flat))
            data = repeat_batch(x, np.zeros((batch, MAP[0] * MAP[1], MAP[-1]), "float32"))
        elif key == "cma":
            x_in, y_in = keras.Input(MAP), keras.Input(MAP)
            model = keras.Model([x_in, y_in], layer(x_in, y_in))
            data = repeat_batch((x, y), np.zeros_like(x))
        else:
            x_in = keras.Input(MAP)
            model = keras.Model(x_in, layer(x_in))
            data = repeat_batch(x, np.zeros_like(x))
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
        runs.append(
            (key, lambda model=model, data=data: median_fit_step(model, data, args.steps * 3))
        )
    medians = interleaved_medians(runs, rounds=args.rounds)

    env = {**os.environ, "KERAS_BACKEND": "jax"}
    probe = subprocess.run(
        [sys.executable, __file__, "--xla-memory", str(batch)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        memory = json.loads(probe.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        print(probe.stderr[-2000:])
        memory = {}
    rows = []
    for key, label in labels.items():
        queries, keys = _positions(key)
        attention = batch * queries * keys * 4
        mem = memory.get(key)
        rows.append(
            [
                label,
                f"{medians[key] * 1000:.1f} ms",
                f"{medians[key] / medians['cma']:.2f}x",
                f"{queries} x {keys}",
                f"{attention / 2**20:.2f} MiB",
                "n/a" if mem is None else f"{mem / 2**20:.1f} MiB",
                "n/a" if mem is None or not memory.get("cma") else f"{mem / memory['cma']:.2f}x",
            ]
        )
    table = markdown_table(
        [
            "block",
            "median train step",
            "time ratio",
            "attention (queries x keys)",
            "attention matrix",
            "XLA temp buffers (fwd+bwd)",
            "memory ratio",
        ],
        rows,
    )
    print(table)
    return (
        f"One block on a res4 map {MAP[0]}x{MAP[1]}x{MAP[2]} (x and y of the same size), batch {batch} "
        f"(= {args.batch} clips x K={args.segments}), d_k = 512; train step = forward, backward and an SGD update "
        f"of a model holding just the block, medians of {3 * args.steps} steps x {args.rounds} interleaved rounds. "
        "Attention matrix: float32 softmax weights for the batch. XLA temp buffers: "
        "`jax.jit(jax.grad(loss)).lower(...).compile().memory_analysis().temp_size_in_bytes` under the JAX "
        "backend (a subprocess), i.e. every intermediate of forward and backward besides inputs and weights.\n\n"
        f"{table}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "model", "block"), default="all")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--segments", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--xla-memory", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.xla_memory is not None:
        print(json.dumps(xla_temp_bytes(args.xla_memory)))
        return
    backend = keras.backend.backend()
    if args.part in ("all", "model"):
        body = bench_model(args)
        if not args.no_write:
            write_section(
                f"cma_model_{backend}",
                f"CMA model train step and parameters vs. bare backbones ({backend})",
                body,
            )
    if args.part in ("all", "block"):
        body = bench_block(args)
        if not args.no_write:
            write_section(
                f"cma_block_{backend}",
                f"CMA block vs. attention without max-pooling ({backend})",
                body,
            )


if __name__ == "__main__":
    main()
