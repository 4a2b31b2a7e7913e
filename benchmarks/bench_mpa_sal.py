"""Cost of semantic adversarial learning, and RGB differences against optical flow, in one run each.

1. Step: the MPA+SAL train step (Algorithm 1: a discriminator step on `S = encoder(y)` and V̄,
   then the network step on cross-entropy + adversarial loss, two optimizers, gradient clipping
   after the cross-replica sum) against the plain classification step of the same network
   (`use_sal=False`: no encoder, no discriminator, same optimizer and clipping), and Keras' own
   `train_step` on the same inference graph (SGD with Keras' `global_clipnorm`) as the peer.
   Spatial network, MPA on, interleaved rounds, medians of per-step times.
2. Temporal input: the temporal network's input through the real `make_dataset` pipeline on
   frame folders of the synthetic dataset: `"rgb_diff"` (D = 5 differences of 6 consecutive RGB
   frames per segment, the paper's input) against `"flow"` (L = 5 stacked flow fields, 10
   grayscale JPEGs, per segment, the two-stream input), both covering the same 6 frames, K = 3
   segments; clips per second, interleaved rounds, medians. Plus what the paper saves: the flow
   extraction time (RGB-only extraction against RGB + DIS flow, and TV-L1, the usual two-stream
   flow, on fewer videos) and the bytes on disk of the RGB frames and of the flow files.

    python benchmarks/bench_mpa_sal.py [--part all|step|input] [--backbone resnet50]
                                       [--image-size 112] [--batch 4] [--rounds 3]
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _report import markdown_table, write_section  # noqa: E402
from _timing import repeat_batch  # noqa: E402

from keras_twostream.models.mpa_sal import build_mpa_sal  # noqa: E402

CLASSES = 101


class _StepClock(keras.callbacks.Callback):
    """Wall time and this process's CPU time of every training batch."""

    def __init__(self):
        super().__init__()
        self.wall, self.cpu = [], []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = (time.perf_counter(), sum(os.times()[:2]))

    def on_train_batch_end(self, batch, logs=None):
        self.wall.append(time.perf_counter() - self._start[0])
        self.cpu.append(sum(os.times()[:2]) - self._start[1])


def median_step(model, dataset, steps, warmup=2):
    """Median (wall seconds, CPU seconds) per `fit` step after `warmup` steps.

    CPU time counts this process only, so it is less disturbed than wall time by other
    processes on a shared machine.
    """
    clock = _StepClock()
    model.fit(dataset, epochs=1, steps_per_epoch=steps + warmup, verbose=0, callbacks=[clock])
    return statistics.median(clock.wall[warmup:]), statistics.median(clock.cpu[warmup:])


# --- 1. The train step -----------------------------------------------------------------------------
def bench_step(args):
    size, segments, batch = args.image_size, args.segments, args.batch
    rng = np.random.RandomState(0)
    x = {"rgb": rng.rand(batch, segments, size, size, 3).astype("float32")}
    y = rng.randint(0, CLASSES, batch)

    def ours(use_sal):
        keras.utils.set_random_seed(0)
        model = build_mpa_sal(  # the Spatial Network alone (the default builds both streams)
            CLASSES,
            streams=("spatial",),
            backbone=args.backbone,
            image_size=size,
            num_segments=segments,
            use_sal=use_sal,
        )
        model.compile()  # the paper's optimizers and clipping (20, spatial)
        return model

    adversarial, plain = ours(True), ours(False)
    peer = plain.inference_model()
    peer.compile(
        optimizer=keras.optimizers.SGD(1e-3, momentum=0.9, global_clipnorm=20.0),
        loss={"spatial": keras.losses.SparseCategoricalCrossentropy()},
    )
    data = repeat_batch(x, y)
    peer_data = repeat_batch(x, {"spatial": y})
    runs = [
        ("adversarial", lambda: median_step(adversarial, data, args.steps)),
        ("plain", lambda: median_step(plain, data, args.steps)),
        ("keras", lambda: median_step(peer, peer_data, args.steps)),
    ]
    for _, fn in runs:  # warm-up: tracing, first allocations
        fn()
    times = {name: [] for name, _ in runs}
    for r in range(args.rounds):  # interleaved, the order rotating every round
        for name, fn in runs[r % len(runs) :] + runs[: r % len(runs)]:
            times[name].append(fn())
        print({k: [round(t * 1000) for t in v[-1]] for k, v in times.items()}, flush=True)
    medians = {name: statistics.median(w for w, _ in v) for name, v in times.items()}
    cpu = {name: statistics.median(c for _, c in v) for name, v in times.items()}
    d_params = sum(adversarial.discriminators[s].count_params() for s in adversarial.streams)
    labels = {
        "adversarial": "MPA+SAL step (D step + network step, Algorithm 1)",
        "plain": "same network, plain classification step (`use_sal=False`)",
        "keras": "same graph, Keras' own `train_step` (peer)",
    }
    rows = [
        [
            label,
            f"{medians[key] * 1000:.0f} ms",
            f"{medians[key] / medians['plain']:.3f}x",
            f"{cpu[key] * 1000:.0f} ms",
            f"{cpu[key] / cpu['plain']:.3f}x",
        ]
        for key, label in labels.items()
    ]
    table = markdown_table(
        ["train step", "median wall", "wall ratio to plain", "median CPU", "CPU ratio to plain"],
        rows,
    )
    print(table)
    return (
        f"Spatial network, {args.backbone} at {size}x{size}, MPA after the 4 stages, batch {batch} videos x "
        f"K={segments} segments ({batch * segments} images), {CLASSES} classes, semantic_dim 256, D = MLP "
        f"256-256-1 ({d_params / 1e3:.0f} k parameters); `compile()` defaults (SGD momentum 0.9 at 1e-3 "
        "with the network's gradient clipped to a global norm of 20, Adam 1e-4 for D). Medians of "
        f"{args.steps} steps x {args.rounds} interleaved rounds in rotating order (after a warm-up "
        "round; 2 warm-up steps per measurement). "
        "CPU: this process's user + system time per step, which the other processes on a shared "
        "machine disturb far less than wall time (wall times swing by tens of percent between "
        "rounds here). Target: the adversarial step within 1.15x of the plain step.\n\n"
        f"{table}"
    )


# --- 2. RGB differences against optical flow -------------------------------------------------------
def _subset(videos_root, count, workdir):
    """A folder of symlinks to `count` videos, spread over the classes, in class subfolders."""
    videos = sorted(Path(videos_root).rglob("*.avi"))
    classes = sorted({v.parent.name for v in videos})
    chosen = []
    for i in range(count):
        in_class = [v for v in videos if v.parent.name == classes[i % len(classes)]]
        chosen.append(in_class[(i // len(classes)) % len(in_class)])
    folder = workdir / f"videos-{count}"
    if folder.exists():
        shutil.rmtree(folder)
    for video in chosen:
        link = folder / video.parent.name / video.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(video.resolve())
    return folder


def _extract_seconds(videos, out, flow, size):
    from keras_twostream.data.extract import extract_videos

    if out.exists():
        shutil.rmtree(out)
    start = time.perf_counter()
    summary = extract_videos(videos, out, flow=flow, workers=1, short_side=size, progress=False)
    seconds = time.perf_counter() - start
    if summary.failed:
        raise RuntimeError(f"extraction failed for {summary.failed}")
    return seconds


def _bytes(folder, prefixes):
    return sum(p.stat().st_size for p in Path(folder).rglob("*.jpg") if p.name.startswith(prefixes))


def _frame_pairs(folder):
    return sum(1 for _ in Path(folder).rglob("x_*.jpg"))


def bench_input(args):
    import pandas as pd

    from keras_twostream.data.pipeline import make_dataset
    from keras_twostream.datasets import generate_synthetic_dataset, synthetic_dataset_path

    root = generate_synthetic_dataset(synthetic_dataset_path(args.cache), progress=False)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    size, K, L = args.input_size, 3, 5

    # Extraction: RGB only (this paper) against RGB + flow (two-stream), same videos.
    videos = _subset(root / "videos", args.videos, work)
    seconds = {}
    for flow in ("none", "dis"):
        seconds[flow] = _extract_seconds(videos, work / f"frames-{flow}", flow, size)
    tvl1_videos = _subset(root / "videos", args.tvl1_videos, work)
    seconds["tvl1"] = _extract_seconds(tvl1_videos, work / "frames-tvl1", "tvl1", size)
    frames = work / "frames-dis"
    pairs = {"dis": _frame_pairs(frames), "tvl1": _frame_pairs(work / "frames-tvl1")}
    rgb_bytes = _bytes(frames, ("img_",))
    flow_bytes = _bytes(frames, ("x_", "y_"))

    # Pipeline throughput on the same folders.
    dirs = sorted(str(p.parent) for p in frames.rglob("meta.json"))
    paths = [dirs[i % len(dirs)] for i in range(args.samples)]
    table = pd.DataFrame({"path": paths, "label": [i % 9 for i in range(args.samples)]})
    common = dict(num_segments=K, image_size=size, batch_size=8, seed=0)
    pipelines = {
        "rgb_diff": make_dataset(table, modalities=("rgb_diff",), diff_length=L, **common),
        "flow": make_dataset(table, modalities=("flow",), flow_length=L, **common),
    }

    def consume(ds):
        cpu = sum(os.times()[:2])
        start = time.perf_counter()
        n = 0
        for inputs, _ in ds:
            n += int(next(iter(inputs.values())).shape[0])
        wall = time.perf_counter() - start
        return n / wall, (sum(os.times()[:2]) - cpu) / n * 1000

    for ds in pipelines.values():  # warm-up: tracing, page cache
        consume(ds)
    rates = {name: [] for name in pipelines}
    cpu = {name: [] for name in pipelines}
    for r in range(args.rounds):
        order = list(pipelines) if r % 2 == 0 else list(pipelines)[::-1]
        for name in order:
            rate, cost = consume(pipelines[name])
            rates[name].append(rate)
            cpu[name].append(cost)
    rate = {k: statistics.median(v) for k, v in rates.items()}
    cost = {k: statistics.median(v) for k, v in cpu.items()}
    shape = {name: tuple(next(iter(ds))[0][name].shape[1:]) for name, ds in pipelines.items()}
    throughput = markdown_table(
        [
            "temporal input",
            "JPEGs decoded per clip",
            "tensor per clip",
            "clips/s",
            "ratio",
            "CPU ms/clip",
        ],
        [
            [
                "`rgb_diff` (D=5, this paper)",
                f"{K} x 6 RGB",
                str(shape["rgb_diff"]),
                f"{rate['rgb_diff']:.1f}",
                f"{rate['rgb_diff'] / rate['flow']:.2f}x",
                f"{cost['rgb_diff']:.1f}",
            ],
            [
                "`flow` (L=5, two-stream)",
                f"{K} x 10 grayscale",
                str(shape["flow"]),
                f"{rate['flow']:.1f}",
                "1.00x",
                f"{cost['flow']:.1f}",
            ],
        ],
    )
    per_video = {k: v / args.videos for k, v in seconds.items() if k != "tvl1"}
    per_video["tvl1"] = seconds["tvl1"] / args.tvl1_videos
    storage = markdown_table(
        [
            "what the temporal stream needs",
            "extraction s/video",
            "extra s/video vs RGB only",
            "extra bytes on disk",
        ],
        [
            [
                "RGB differences (RGB frames, which the spatial stream reads anyway)",
                f"{per_video['none']:.2f}",
                "0",
                "0",
            ],
            [
                "DIS optical flow + RGB frames",
                f"{per_video['dis']:.2f}",
                f"{per_video['dis'] - per_video['none']:.2f} ({pairs['dis'] / args.videos:.0f} pairs)",
                f"{flow_bytes / 2**20:.1f} MiB for {args.videos} videos ({flow_bytes / rgb_bytes:.2f}x the RGB frames' "
                f"{rgb_bytes / 2**20:.1f} MiB)",
            ],
            [
                f"TV-L1 optical flow + RGB frames ({args.tvl1_videos} videos)",
                f"{per_video['tvl1']:.2f}",
                f"{per_video['tvl1'] - per_video['none']:.2f}",
                "as DIS (same format)",
            ],
        ],
    )
    print(throughput, storage, sep="\n\n")
    return (
        f"Synthetic dataset frame folders (short side {size}, {args.videos} videos of 40 frames, extracted with "
        f"`extract_videos(workers=1)`), `make_dataset(training=True)`: K={K} segments, {size}x{size} crops, "
        f"batch 8, {args.samples} clips per epoch, medians of {args.rounds} interleaved epochs. Both inputs cover "
        "the same 6 consecutive frames per segment (TSN's RGB-difference and flow settings). The "
        "RGB-difference input decodes 3-channel JPEGs and yields 15 channels against 10, so the "
        "loader itself is not faster; what it saves is the flow: its extraction and its files.\n\n"
        f"{throughput}\n\n{storage}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "step", "input"), default="all")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--segments", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--input-size", type=int, default=112, help="frame size for the input part")
    parser.add_argument("--samples", type=int, default=96, help="clips per epoch (input part)")
    parser.add_argument("--videos", type=int, default=18, help="videos extracted (input part)")
    parser.add_argument("--tvl1-videos", type=int, default=2)
    parser.add_argument(
        "--cache", default=None, help="synthetic dataset cache (default: the library's)"
    )
    parser.add_argument(
        "--workdir", default=os.path.join(tempfile.gettempdir(), "keras_twostream_bench_mpa_sal")
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    backend = keras.backend.backend()
    if args.part in ("all", "step"):
        body = bench_step(args)
        if not args.no_write:
            write_section(
                f"mpa_sal_step_{backend}",
                f"MPA+SAL: adversarial train step vs. the plain classification step ({backend})",
                body,
            )
    if args.part in ("all", "input"):
        body = bench_input(args)
        if not args.no_write:
            write_section(
                "mpa_sal_input",
                "MPA+SAL: RGB differences vs. optical flow for the temporal stream",
                body,
            )


if __name__ == "__main__":
    main()
