"""Extraction speed: frames/s per flow algorithm against the bare OpenCV flow call, and 1 vs 2 workers.

Part 1 times `extract_video` (decode, resize to short side 256, grayscale, optical flow,
8-bit quantisation, three JPEG writes per frame, meta.json) on the real videos, next to its
floor: the same OpenCV flow call alone on the same frames, decoded beforehand. TV-L1 runs on
the first `--tvl1-frames` frames of each video, since it is slow. Part 2 times
`extract_videos` on copies of the videos with 1 and 2 worker processes (aim: >= 1.8x).

    python benchmarks/bench_extraction.py [--rounds 3] [--tvl1-frames 5] [--worker-algorithms dis farneback] [--no-write]
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

import cv2  # noqa: E402
from _report import markdown_table, write_section  # noqa: E402

from keras_twostream.data.extract import extract_video, extract_videos  # noqa: E402
from keras_twostream.data.flow import OpticalFlow  # noqa: E402
from keras_twostream.data.video import VideoReader  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
DEFAULT_VIDEOS = [
    SHARED / "bikes.mp4",
    SHARED / "mmaction2" / "demo" / "demo.mp4",
    SHARED / "mmaction2" / "tests" / "data" / "test.mp4",
    SHARED / "mmaction2" / "tests" / "data" / "test.avi",
]
FALLBACK_VIDEOS = [ROOT / "tests" / "data" / "mmaction2" / n for n in ("test.mp4", "test.avi")]


def gray_frames(path, short_side, limit):
    frames = []
    with VideoReader(path, short_side=short_side, channel_order="bgr") as reader:
        for frame in reader:
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
            if limit is not None and len(frames) == limit:
                break
    return frames


def time_ours(videos, algorithm, short_side, limit, scratch):
    """Seconds and RGB frames of extract_video over all videos."""
    frames, start = 0, time.perf_counter()
    for i, video in enumerate(videos):
        out = scratch / f"{algorithm}_{i}"
        meta = extract_video(video, out, flow=algorithm, short_side=short_side, max_frames=limit)
        frames += meta["rgb_frames"]
        shutil.rmtree(out)
    return time.perf_counter() - start, frames


def time_floor(decoded, algorithm):
    """Seconds and flow pairs of the bare OpenCV flow call on pre-decoded frames."""
    solver = OpticalFlow(algorithm)
    pairs, start = 0, time.perf_counter()
    for frames in decoded:
        for prev, nxt in zip(frames[:-1], frames[1:], strict=True):
            solver(prev, nxt)
            pairs += 1
    return time.perf_counter() - start, pairs


def time_workers(videos, copies, algorithm, short_side, workers, scratch, one_thread=False):
    source = scratch / "videos"
    if not source.exists():
        for c in range(copies):
            for i, video in enumerate(videos):
                target = source / f"copy{c}" / f"{i}_{Path(video).name}"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(video, target)
    out = scratch / f"out_{algorithm}_{workers}"
    threads = cv2.getNumThreads()
    if one_thread:  # OpenCV's own threads only; FFmpeg keeps its decoding threads
        cv2.setNumThreads(1)
    try:
        start = time.perf_counter()
        summary = extract_videos(
            source, out, flow=algorithm, workers=workers, short_side=short_side, progress=False
        )
        seconds = time.perf_counter() - start
    finally:
        cv2.setNumThreads(threads)
    assert not summary.failed, summary.failed
    shutil.rmtree(out)
    return seconds, summary.frames


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", nargs="+", default=None)
    parser.add_argument("--short-side", type=int, default=256)
    parser.add_argument("--tvl1-frames", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--copies", type=int, default=2, help="copies of each video in part 2")
    parser.add_argument("--worker-algorithms", nargs="+", default=["dis"])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    videos = (
        args.videos
        or [str(v) for v in DEFAULT_VIDEOS if v.exists()]
        or [str(v) for v in FALLBACK_VIDEOS]
    )
    load_before = os.getloadavg()[0]
    scratch = Path(tempfile.mkdtemp(prefix="bench_extraction_"))
    try:
        # === Part 1: extract_video vs the bare flow call ===
        rows1 = []
        for algorithm in ("dis", "farneback", "tvl1"):
            limit = args.tvl1_frames if algorithm == "tvl1" else None
            decoded = [gray_frames(v, args.short_side, limit) for v in videos]
            ours, floor = [], []
            for _ in range(args.rounds):  # interleaved rounds spread the machine's noise
                seconds, frames = time_ours(videos, algorithm, args.short_side, limit, scratch)
                ours.append(frames / seconds)
                seconds, pairs = time_floor(decoded, algorithm)
                floor.append(pairs / seconds)
            ours_fps, floor_pps = statistics.median(ours), statistics.median(floor)
            rows1.append(
                [
                    algorithm,
                    f"{frames} frames of {len(videos)} videos",
                    f"{ours_fps:.1f}",
                    f"{floor_pps:.1f}",
                    f"{floor_pps / ours_fps:.2f}x",
                ]
            )
            print(" | ".join(map(str, rows1[-1])), flush=True)
        table1 = markdown_table(
            [
                "flow",
                "work",
                "`extract_video` frames/s",
                "bare OpenCV flow pairs/s (floor)",
                "time per frame vs floor",
            ],
            rows1,
        )
        # === Part 2: 1 vs 2 worker processes ===
        configs = [("1", 1, False), ("1, OpenCV on 1 thread", 1, True), ("2", 2, False)]
        rows2 = []
        for algorithm in args.worker_algorithms:
            times = {name: [] for name, _, _ in configs}
            for _ in range(args.rounds):
                for name, workers, one_thread in configs:
                    seconds, frames = time_workers(
                        videos,
                        args.copies,
                        algorithm,
                        args.short_side,
                        workers,
                        scratch,
                        one_thread,
                    )
                    times[name].append(seconds)
            medians = {name: statistics.median(t) for name, t in times.items()}
            for name, _, _ in configs:
                seconds = medians[name]
                rows2.append(
                    [
                        algorithm,
                        name,
                        f"{len(videos) * args.copies} videos, {frames} frames",
                        f"{seconds:.1f} s",
                        f"{frames / seconds:.1f}",
                        f"{medians['1'] / seconds:.2f}x",
                        f"{medians['1, OpenCV on 1 thread'] / seconds:.2f}x",
                    ]
                )
                print(" | ".join(map(str, rows2[-1])), flush=True)
        table2 = markdown_table(
            [
                "flow",
                "workers",
                "work",
                "median time",
                "frames/s",
                "speed-up vs 1 worker",
                "vs 1 worker on 1 OpenCV thread",
            ],
            rows2,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(table1)
    print(table2)
    names = ", ".join(Path(v).name for v in videos)
    load = f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    body = (
        f"Videos: {names}; short side {args.short_side}; medians of {args.rounds} interleaved "
        f"rounds. TV-L1 on the first {args.tvl1_frames} frames of each video. Load average "
        f"of the machine (other jobs included): {load}; with {os.cpu_count()} cores, a load "
        "above that count means the cores were shared and the worker speed-up cannot show.\n\n"
        "**Per algorithm.** `extract_video` (decode, resize, grayscale, flow, quantise, three "
        "JPEG writes per frame) against its floor, the bare OpenCV flow call on frames decoded "
        "beforehand. One process; OpenCV uses its default threads.\n\n"
        f"{table1}\n\n"
        "**Workers.** `extract_videos` with 1 worker (in-process; OpenCV and FFmpeg use their "
        "default threads, so one worker already uses part of the second core), the same with "
        "OpenCV limited to 1 thread, and 2 worker processes (one OpenCV and one FFmpeg thread "
        "each; process start-up included). Aim: >= 1.8x with 2 workers on 2 cores.\n\n"
        f"{table2}"
    )
    if not args.no_write:
        write_section("extraction", "Frame and optical-flow extraction", body)


if __name__ == "__main__":
    main()
