"""Train-step time of `build_stpn` against its bare backbones, in one run.

The floor is what any STPN must compute: the spatial backbone on the RGB frame and the temporal
backbone on the P flow chunks (folded into one batch), with a trivial loss on the pooled
features. Ours adds the pyramid: the temporal STCB over the P res5 maps (per location), the
STCB attention (64 x 7 x 7 and 1 x 7 x 7 convolutions, softmax, weighted pooling), the 4096-d
top STCB and the classifier. Aim: <= 1.25x the backbones' time.

    python benchmarks/bench_stpn.py [--backbone resnet50] [--image-size 224] [--batch 2]
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

from keras_twostream.models.stpn import build_stpn  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--paths", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    size, flow_length, batch, classes, paths = args.image_size, 10, args.batch, 101, args.paths

    rng = np.random.RandomState(0)
    x = {
        "rgb": rng.rand(batch, 1, size, size, 3).astype("float32"),
        "flow": rng.randn(batch, paths, size, size, 2 * flow_length).astype("float32"),
    }
    y = rng.randint(0, classes, batch)

    ours = build_stpn(
        classes,
        backbone=args.backbone,
        image_size=size,
        flow_length=flow_length,
        num_paths=paths,
        seed=0,
    )
    ours.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9))
    floor, zeros = bare_backbones(args.backbone, size, flow_length, batch, flow_segments=paths)
    ours_ds = repeat_batch(x, y)
    floor_ds = repeat_batch(x, zeros)

    medians = interleaved_medians(
        [
            ("stpn", lambda: median_fit_step(ours, ours_ds, args.steps)),
            ("backbones", lambda: median_fit_step(floor, floor_ds, args.steps)),
        ],
        rounds=args.rounds,
    )
    ratio = medians["stpn"] / medians["backbones"]
    extra = ours.count_params() - floor.count_params()
    rows = [
        [
            "`build_stpn` train step (Table 6 D)",
            f"{medians['stpn'] * 1000:.0f} ms",
            f"{ratio:.3f}x",
        ],
        ["bare backbones (floor)", f"{medians['backbones'] * 1000:.0f} ms", "1.000x"],
    ]
    table = markdown_table(["what", "median step", "ratio to floor"], rows)
    print(table)
    body = (
        f"{args.backbone}, {size}x{size}, batch {batch}: 1 RGB frame and {paths} chunks of {flow_length} flow "
        f"fields per sample, {classes} classes, SGD with momentum, medians of {args.steps} steps x "
        f"{args.rounds} interleaved rounds. The floor runs the spatial backbone on the RGB frames and the "
        f"temporal backbone on the {paths} chunks folded into its batch, with an MSE loss on the pooled "
        f"features; ours adds the temporal STCB over the {paths} res5 maps, the STCB attention "
        f"(64 x 7 x 7 and 1 x 7 x 7 convolutions), the 4096-d top STCB and the classifier "
        f"({extra / 1e6:.1f}M more parameters, mostly the attention's first convolution and the "
        f"classifier). Aim: <= 1.25x.\n\n{table}"
    )
    if not args.no_write:
        backend = keras.backend.backend()
        write_section(f"stpn_{backend}", f"STPN train step vs. bare backbones ({backend})", body)


if __name__ == "__main__":
    main()
