"""TV-L1 in the graph (`keras_twostream.flow.tvl1`) against OpenCV's DualTVL1OpticalFlow.

One run, OpenCV's default parameters for both, real 340x256 frame pairs:

- speed: pairs/s of OpenCV (one pair at a time, its threads over all cores) and of ours
  (XLA-compiled, `--batch` pairs per call), interleaved over `--rounds` rounds; medians and
  their ratio. Compilation (once per shape) is reported apart.
- accuracy against OpenCV on the real pairs: end-point difference (median, mean, 95th
  percentile), and the fraction of flow values whose TSN 8-bit quantisation
  (`quantize_flow`, bound 20) differs by more than one level;
- accuracy against ground truth: a real frame moved by a known translation, rotation and
  zoom; mean end-point error of ours and of OpenCV.

    python benchmarks/bench_tvl1.py [--pairs 8] [--batch 4] [--rounds 3] [--no-write]
    KERAS_BACKEND=jax python benchmarks/bench_tvl1.py ...
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from _report import markdown_table, write_section  # noqa: E402

from keras_twostream.data.flow import quantize_flow  # noqa: E402
from keras_twostream.flow import tvl1  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
VIDEOS = [
    SHARED / "bikes.mp4",
    SHARED / "mmaction2" / "demo" / "demo.mp4",
    SHARED / "mmaction2" / "tests" / "data" / "test.mp4",
    ROOT / "tests" / "data" / "mmaction2" / "test.mp4",
]
SIZE = (340, 256)  # width, height


def real_pairs(n):
    """`n` consecutive-frame pairs (uint8 gray, 340x256), taken from the available videos."""
    videos = [v for v in VIDEOS if v.exists()]
    per_video = max(1, -(-n // max(1, min(len(videos), 2))))
    a, b = [], []
    for video in videos:
        cap = cv2.VideoCapture(str(video))
        frames = []
        cap.set(cv2.CAP_PROP_POS_FRAMES, 10)
        while len(frames) < per_video + 1:
            ok, frame = cap.read()
            if not ok:
                break
            frame = cv2.resize(frame, SIZE, interpolation=cv2.INTER_AREA)
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        cap.release()
        a += frames[:-1]
        b += frames[1:]
        if len(a) >= n:
            break
    return np.stack(a[:n]), np.stack(b[:n])


def moved(frame, kind):
    """`(frame0, frame1, flow)` with frame0(x) = frame1(x + flow(x))."""
    h, w = frame.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    if kind == "translate (2.5, -1.25) px":
        mx, my = xs + 2.5, ys - 1.25
    elif kind == "rotate 2 degrees":
        a = np.deg2rad(2.0)
        mx = cx + np.cos(a) * (xs - cx) - np.sin(a) * (ys - cy)
        my = cy + np.sin(a) * (xs - cx) + np.cos(a) * (ys - cy)
    else:  # zoom
        mx, my = cx + 1.03 * (xs - cx), cy + 1.03 * (ys - cy)
    flow = np.stack([mx - xs, my - ys], axis=-1).astype(np.float32)
    frame0 = cv2.remap(
        frame.astype(np.float32),
        mx.astype(np.float32),
        my.astype(np.float32),
        cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT,
    )
    return np.clip(np.rint(frame0), 0, 255).astype(np.uint8), frame, flow


def epe(a, b):
    return np.hypot(a[..., 0] - b[..., 0], a[..., 1] - b[..., 1])


def ours_all(a, b, batch):
    """Flow of every pair, `batch` pairs per call (the last batch padded by repetition)."""
    out = []
    for start in range(0, len(a), batch):
        x, y = a[start : start + batch], b[start : start + batch]
        pad = batch - len(x)
        if pad:
            x = np.concatenate([x, np.repeat(x[-1:], pad, 0)])
            y = np.concatenate([y, np.repeat(y[-1:], pad, 0)])
        out.append(np.asarray(tvl1(x, y))[: batch - pad])
    return np.concatenate(out)


def main(argv=None):
    import keras

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    backend = keras.backend.backend()
    a, b = real_pairs(args.pairs)
    n = len(a)
    solver = cv2.optflow.DualTVL1OpticalFlow_create()

    start = time.perf_counter()
    ours_all(a[: args.batch], b[: args.batch], args.batch)
    compile_s = time.perf_counter() - start
    print(f"compiled for batch {args.batch} in {compile_s:.1f} s ({backend})", flush=True)

    times = {"opencv": [], "ours": []}
    reference = ours = None
    for r in range(args.rounds):
        start = time.perf_counter()
        reference = np.stack([solver.calc(x, y, None) for x, y in zip(a, b, strict=True)])
        times["opencv"].append(time.perf_counter() - start)
        start = time.perf_counter()
        ours = ours_all(a, b, args.batch)
        times["ours"].append(time.perf_counter() - start)
        print(f"round {r}: opencv {times['opencv'][-1]:.2f} s, ours {times['ours'][-1]:.2f} s")
    rate = {k: n / statistics.median(v) for k, v in times.items()}
    ratios = [o / t for o, t in zip(times["opencv"], times["ours"], strict=True)]

    d = epe(ours, reference)
    q_diff = np.abs(
        quantize_flow(ours).astype(np.int16) - quantize_flow(reference).astype(np.int16)
    )
    print(f"EPD median {np.median(d):.4f}, >1 level {np.mean(q_diff > 1):.2e}")

    kinds = ["translate (2.5, -1.25) px", "rotate 2 degrees", "zoom 3 %"]
    moves = [moved(a[0], k) for k in kinds]
    m0 = np.stack([m[0] for m in moves])
    m1 = np.stack([m[1] for m in moves])
    known = ours_all(m0, m1, args.batch)
    truth_rows = []
    for kind, (f0, f1, truth), mine in zip(kinds, moves, known, strict=True):
        theirs = solver.calc(f0, f1, None)
        e_ours, e_cv = epe(mine, truth).mean(), epe(theirs, truth).mean()
        truth_rows.append(
            [kind, f"{np.hypot(truth[..., 0], truth[..., 1]).mean():.2f}", f"{e_cv:.4f}",
             f"{e_ours:.4f}", f"{e_ours - e_cv:+.4f}", f"{np.median(epe(mine, theirs)):.2e}"]
        )  # fmt: skip
        print(truth_rows[-1])

    speed = markdown_table(
        ["", "OpenCV TV-L1 (1 pair/call)", f"keras_twostream.flow.tvl1 (batch {args.batch})"],
        [
            ["pairs/s (median)", f"{rate['opencv']:.2f}", f"{rate['ours']:.2f}"],
            ["ratio ours/OpenCV (median of rounds)", "1.00x", f"{statistics.median(ratios):.2f}x"],
        ],
    )
    agree = markdown_table(
        ["measure (ours vs OpenCV, real pairs)", "value"],
        [
            ["end-point difference, median (px)", f"{np.median(d):.4f}"],
            ["end-point difference, mean (px)", f"{d.mean():.4f}"],
            ["end-point difference, 95th percentile (px)", f"{np.percentile(d, 95):.4f}"],
            ["end-point difference, max (px)", f"{d.max():.3f}"],
            ["mean flow magnitude of OpenCV's flow (px)", f"{np.hypot(*reference.transpose(3, 0, 1, 2)).mean():.3f}"],
            ["quantised values (bound 20) differing by > 1 level", f"{np.mean(q_diff > 1):.2e}"],
            ["quantised values differing at all", f"{np.mean(q_diff > 0):.2e}"],
        ],
    )  # fmt: skip
    truth = markdown_table(
        ["known motion", "mean flow magnitude (px)", "OpenCV EPE", "ours EPE", "ours - OpenCV", "median EPD ours vs OpenCV"],
        truth_rows,
    )  # fmt: skip
    body = f"""
Our TV-L1 (`keras_twostream.flow.tvl1`, a port of OpenCV's `DualTVL1OpticalFlow`, XLA-compiled)
and OpenCV's, both at OpenCV's defaults (tau 0.25, lambda 0.15, theta 0.3, 5 scales with step 0.8,
5 warps, epsilon 0.01, 30 x 10 iterations, 5x5 median), on {n} real 340x256 frame pairs, timed
in {args.rounds} interleaved rounds. Compilation for one batch shape took {compile_s:.1f} s (once per
shape, not in the times). The machine is shared with other engineers' jobs: read the ratio.
No GPU was available for this run; on a GPU the same code runs with `KERAS_BACKEND=jax`
(or TensorFlow), where the batch is the lever (on CPU the time per pair does not fall with
the batch: XLA's CPU loops already use the cores).

{speed}

Agreement with OpenCV on the same real pairs:

{agree}

Against ground truth (the first real frame moved by a known field, bicubic, reflected border;
mean end-point error over all pixels):

{truth}
"""
    print(body)
    if not args.no_write:
        command = "python " + " ".join(sys.argv)
        if backend != "tensorflow":
            command = f"KERAS_BACKEND={backend} {command}"
        write_section(
            f"tvl1-{backend}",
            f"TV-L1 optical flow in the graph ({backend} backend)",
            body,
            command=command,
        )


if __name__ == "__main__":
    main()
