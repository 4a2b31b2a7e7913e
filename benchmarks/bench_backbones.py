"""Backbone costs against their peers: block-split ResNet-50 and the LRN layer.

One run measures side by side, with interleaved repeats:

- ResNet-50 inference (`predict_on_batch`, compiled by Keras) at 224x224: our `Backbone`, a chain
  of 18 block sub-models returning every stage, against `keras.applications.ResNet50(
  include_top=False, pooling="avg")`, the flat model it mirrors. The aim is a ratio of ~1.0:
  splitting into blocks must cost nothing.
- LocalResponseNormalization forward+backward on a CNN-M-2048 conv1 map (8, 109, 109, 96): ours
  (keras.ops: a 0/1 band-matrix matmul and exp/log) against `tf.nn.local_response_normalization`
  on TensorFlow, and on JAX (which has no LRN op) against the direct keras.ops formulation
  (sum of shifted slices, general power).

    python benchmarks/bench_backbones.py [--repeats 5] [--batch 4]
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))


def _median_seconds(fn, calls):
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--batch", type=int, default=4, help="ResNet-50 batch size")
    parser.add_argument("--no-write", action="store_true", help="print, do not write docs/")
    args = parser.parse_args()

    import keras
    import numpy as np
    from _report import markdown_table, write_section
    from _timing import interleaved_medians

    from keras_twostream.backbones import get_backbone
    from keras_twostream.layers.local_response_normalization import LocalResponseNormalization

    backend = keras.backend.backend()
    rows = []

    # --- ResNet-50: blocks vs flat keras.applications ---
    x = np.random.default_rng(0).uniform(-1, 1, (args.batch, 224, 224, 3)).astype("float32")
    ours = get_backbone("resnet50", input_shape=(224, 224, 3))
    peer = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg")
    for model in (ours, peer):
        model.predict_on_batch(x)  # compile
    medians = interleaved_medians(
        [
            ("ours", lambda: _median_seconds(lambda: ours.predict_on_batch(x), 3)),
            ("peer", lambda: _median_seconds(lambda: peer.predict_on_batch(x), 3)),
        ],
        rounds=args.repeats,
    )
    rows.append(
        [
            f"ResNet-50 inference, batch {args.batch}, 224x224",
            f"{medians['ours'] * 1e3:.0f} ms",
            f"{medians['peer'] * 1e3:.0f} ms (keras.applications.ResNet50)",
            f"{medians['ours'] / medians['peer']:.2f}",
        ]
    )

    # --- LRN forward + backward ---
    a = np.random.default_rng(1).uniform(0, 30, (8, 109, 109, 96)).astype("float32")
    layer = LocalResponseNormalization()
    if backend == "tensorflow":
        import tensorflow as tf

        def grad_fn(fn):
            @tf.function
            def step(t):
                with tf.GradientTape() as tape:
                    tape.watch(t)
                    loss = tf.reduce_sum(fn(t))
                return loss, tape.gradient(loss, t)

            return step

        ours_step = grad_fn(layer)
        peer_step = grad_fn(
            lambda t: tf.nn.local_response_normalization(
                t, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75
            )
        )
        tensor = tf.constant(a)
        np.testing.assert_allclose(
            ours_step(tensor)[1].numpy(), peer_step(tensor)[1].numpy(), rtol=1e-4, atol=1e-6
        )
        runs = [
            ("ours", lambda: _median_seconds(lambda: ours_step(tensor)[1].numpy(), 5)),
            ("peer", lambda: _median_seconds(lambda: peer_step(tensor)[1].numpy(), 5)),
        ]
        peer_name = "tf.nn.local_response_normalization"
    else:
        import jax
        from keras import ops

        def direct(t):
            # The direct formulation: pad, sum 5 shifted slices, general power.
            padded = ops.pad(ops.square(t), [[0, 0]] * 3 + [[2, 2]])
            window = sum(padded[..., i : i + 96] for i in range(5))
            return t * ops.power(2.0 + 1e-4 * window, -0.75)

        ours_step = jax.jit(jax.value_and_grad(lambda t: layer(t).sum()))
        peer_step = jax.jit(jax.value_and_grad(lambda t: direct(t).sum()))
        tensor = jax.numpy.asarray(a)
        np.testing.assert_allclose(
            np.asarray(ours_step(tensor)[1]), np.asarray(peer_step(tensor)[1]), rtol=1e-4, atol=1e-6
        )
        runs = [
            ("ours", lambda: _median_seconds(lambda: ours_step(tensor)[1].block_until_ready(), 5)),
            ("peer", lambda: _median_seconds(lambda: peer_step(tensor)[1].block_until_ready(), 5)),
        ]
        peer_name = "slices + power in keras.ops"
    medians = interleaved_medians(runs, rounds=args.repeats)
    rows.append(
        [
            "LRN fwd+bwd, (8, 109, 109, 96)",
            f"{medians['ours'] * 1e3:.1f} ms",
            f"{medians['peer'] * 1e3:.1f} ms ({peer_name})",
            f"{medians['ours'] / medians['peer']:.2f}",
        ]
    )

    body = markdown_table(["workload", "ours", "peer", "ours / peer"], rows)
    body += (
        f"\n\nMedians over {args.repeats} interleaved rounds of 3-5 calls, backend `{backend}`. "
        "Our ResNet-50 is 18 block sub-models returning all four stages plus the pooled vector; "
        "the peer is the flat keras.applications model returning the pooled vector only."
    )
    print(body)
    if not args.no_write:
        write_section(
            f"backbones-{backend}",
            f"Backbones ({backend})",
            body,
            command=f"KERAS_BACKEND={backend} python benchmarks/bench_backbones.py",
        )


if __name__ == "__main__":
    main()
