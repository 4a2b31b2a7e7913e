"""Train-step time of `build_two_stream` against its two bare backbones, in one run.

The heads (dropout, a linear classifier per stream, consensus, softmax) and the late fusion should
cost little next to the two ConvNets: the aim is <= 1.10x the backbones' time.

    python benchmarks/bench_two_stream.py [--backbone resnet50] [--image-size 224] [--batch 8]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _floors import bare_backbones  # noqa: E402
from _report import markdown_table, write_section  # noqa: E402
from _timing import interleaved_medians, median_fit_step, repeat_batch  # noqa: E402

from keras_twostream import build_two_stream  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    size, flow_length, batch, classes = args.image_size, 10, args.batch, 101

    rng = np.random.RandomState(0)
    x = {
        "rgb": rng.rand(batch, 1, size, size, 3).astype("float32"),
        "flow": rng.randn(batch, 1, size, size, 2 * flow_length).astype("float32"),
    }
    y = rng.randint(0, classes, batch)

    ours = build_two_stream(
        classes, backbone=args.backbone, image_size=size, flow_length=flow_length
    )
    ours.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9))
    floor, zeros = bare_backbones(args.backbone, size, flow_length, batch)
    ours_ds = repeat_batch(x, y)
    floor_ds = repeat_batch(x, zeros)

    medians = interleaved_medians(
        [
            ("two_stream", lambda: median_fit_step(ours, ours_ds, args.steps)),
            ("backbones", lambda: median_fit_step(floor, floor_ds, args.steps)),
        ],
        rounds=args.rounds,
    )
    ratio = medians["two_stream"] / medians["backbones"]
    rows = [
        [
            "`build_two_stream` train step",
            f"{medians['two_stream'] * 1000:.0f} ms",
            f"{ratio:.3f}x",
        ],
        ["two bare backbones (floor)", f"{medians['backbones'] * 1000:.0f} ms", "1.000x"],
    ]
    table = markdown_table(["what", "median step", "ratio to floor"], rows)
    print(table)
    body = (
        f"{args.backbone}, {size}x{size}, batch {batch}, RGB + {flow_length} flow fields, SGD with momentum, "
        f"medians of {args.steps} steps x {args.rounds} interleaved rounds. Aim: <= 1.10x.\n\n{table}"
    )
    if not args.no_write:
        write_section(
            f"two_stream_{keras.backend.backend()}",
            f"Two-stream train step vs. bare backbones ({keras.backend.backend()})",
            body,
        )


if __name__ == "__main__":
    main()
