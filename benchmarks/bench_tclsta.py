"""Inference frames per second of TCLSTA against the plain two-stream model on the same backbone.

The paper's Table IX: 89.6 fps for TCLSTA against 99.7 for two-stream ConvNets (0.90x). Here both
models get the same clips, T frames and T flow stacks of L fields each, on the same backbone; a
"frame" is one RGB frame with its flow stack, as in the paper's per-frame test. The two-stream model
runs its T frames as T segments; TCLSTA adds the CAM branch with its 3x3x1024 convolution
(Table III), the weighted pooling, the LSTM and the collaborative learning layer. Also measured:
TCLSTA without spatial attention, which isolates the CAM convolution's cost.

    python benchmarks/bench_tclsta.py [--backbone resnet50] [--image-size 224] [--frames 8] [--batch 1]
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _report import markdown_table, write_section  # noqa: E402
from _timing import interleaved_medians  # noqa: E402

from keras_twostream import build_two_stream  # noqa: E402
from keras_twostream.layers.class_activation_attention import ClassActivationAttention  # noqa: E402
from keras_twostream.models.tclsta import build_tclsta  # noqa: E402


def median_call_seconds(model, x, calls):
    """Median wall time of `model.predict_on_batch(x)` over `calls` calls (after a warm-up)."""
    model.predict_on_batch(x)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        out = model.predict_on_batch(x)
        np.asarray(next(iter(out.values())))  # wait for the device
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def per_frame_macs(model):
    """Multiply-accumulates of every convolution and dense layer, per frame (batch element)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += per_frame_macs(layer)
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, out = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * kh * kw * layer.kernel.shape[2] * out
        elif isinstance(layer, keras.layers.Dense):
            total += int(layer.kernel.shape[0]) * int(layer.kernel.shape[1])
        elif isinstance(layer, ClassActivationAttention):  # its "same" 3x3 conv and classifier
            _, h, w, _ = layer.input.shape
            total += h * w * int(np.prod(layer.cam_conv.kernel.shape)) + int(
                np.prod(layer.classifier.kernel.shape)
            )
    return total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--frames", type=int, default=8, help="T, frames per clip")
    parser.add_argument("--batch", type=int, default=1, help="clips per call")
    parser.add_argument("--classes", type=int, default=51, help="51: HMDB51, as Table IX")
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    size, frames, batch, flow_length = args.image_size, args.frames, args.batch, 10

    rng = np.random.RandomState(0)
    x = {
        "rgb": rng.rand(batch, frames, size, size, 3).astype("float32"),
        "flow": rng.randn(batch, frames, size, size, 2 * flow_length).astype("float32"),
    }
    common = dict(backbone=args.backbone, image_size=size, flow_length=flow_length)
    models = {
        "tclsta": build_tclsta(args.classes, num_segments=frames, **common),
        "tclsta_no_sa": build_tclsta(
            args.classes, num_segments=frames, spatial_attention=False, **common
        ),
        "two_stream": build_two_stream(args.classes, num_segments=frames, **common),
    }
    medians = interleaved_medians(
        [(name, lambda m=m: median_call_seconds(m, x, args.calls)) for name, m in models.items()],
        rounds=args.rounds,
    )
    fps = {name: batch * frames / seconds for name, seconds in medians.items()}
    floor = fps["two_stream"]
    labels = {
        "tclsta": "`build_tclsta` (STA + CLN, late fusion)",
        "tclsta_no_sa": "`build_tclsta(spatial_attention=False)` (TA + CLN)",
        "two_stream": "`build_two_stream` (peer)",
    }
    # Convolutions and dense layers run once per frame and stream; the LSTM and the attention
    # arithmetic are left out (under 0.1% here).
    macs = {name: per_frame_macs(m) for name, m in models.items()}
    rows = [
        [
            labels[name],
            f"{medians[name] * 1000:.0f} ms",
            f"{fps[name]:.1f}",
            f"{fps[name] / floor:.3f}x",
            f"{macs[name] / 1e9:.2f}",
            f"{macs['two_stream'] / macs[name]:.3f}x",
        ]
        for name in models
    ]
    table = markdown_table(
        [
            "model",
            "median call",
            "frames / s",
            "fps ratio to two-stream",
            "GMAC per frame (both streams)",
            "MAC-bound ratio",
        ],
        rows,
    )
    print(table)
    body = (
        f"{args.backbone}, {size}x{size}, {args.classes} classes, batch of {batch} clip(s) of T = {frames} "
        f"frames + {flow_length}-field flow stacks, `predict_on_batch`, medians of {args.calls} calls x "
        f"{args.rounds} interleaved rounds. Paper (Table IX): 89.6 vs 99.7 fps, 0.90x; aim >= 0.90x.\n\n"
        f"{table}\n\n"
        "The MAC-bound ratio is the fps ratio a machine limited by arithmetic alone would give. "
        "The CAM convolution of Table III (3x3, 1024 filters on the last feature map) is the cost of "
        "spatial attention, and at ResNet-50's 7x7x2048 res5 map it is about a fifth of a ResNet-50 "
        "forward pass per stream, so no faithful implementation reaches 0.90x where arithmetic is "
        "the limit (a 2-core CPU); the LSTM, weighted pooling and collaborative layer cost little "
        "(the row without spatial attention). `cam_filters` trades that cost for attention capacity."
    )
    if not args.no_write:
        write_section(
            f"tclsta_{keras.backend.backend()}",
            f"TCLSTA inference fps vs. two-stream ({keras.backend.backend()})",
            body,
        )


if __name__ == "__main__":
    main()
