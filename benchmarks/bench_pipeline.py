"""Training-pipeline throughput: `make_dataset` against its floor and a plain Python loop.

Frame folders are extracted once from the real videos in ../shared/data (short side 256,
DIS flow, TSN layout; cached in the temp dir). All three contenders produce the same
training clips (K = 3 segments, one RGB frame and L = 5 flow fields each, 224x224) from
the same JPEG files, drawn by the same sampler:

- floor: a bare parallel `tf.data` map that reads and decodes exactly those JPEGs
  (`tf.io.decode_jpeg`) and does nothing else;
- ours: `keras_twostream.data.pipeline.make_dataset` (decode, TSN multi-scale corner crop,
  flip, resize, normalisation, flow dequantisation and mean subtraction, batching);
- Python loop: `cv2.imread` per frame, NumPy crops, `cv2.resize`, the same arithmetic.

They run interleaved for several rounds; the table reports median clips/second and ratios.

    python benchmarks/bench_pipeline.py [--rounds 5] [--samples 96]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402
from _report import markdown_table, write_section  # noqa: E402

from keras_twostream.data.pipeline import make_dataset  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
VIDEOS = [
    "bikes.mp4",
    "mmaction2/demo/demo.mp4",
    "mmaction2/tests/data/test.mp4",
    "mmaction2/tests/data/test.avi",
]
K, L, SIZE, BATCH = 3, 5, 224, 8


def extract(cache):
    """Frame folders for the shared videos (extracted once, reused)."""
    from keras_twostream.data.extract import extract_video

    folders = []
    for rel in VIDEOS:
        out = cache / Path(rel).name.replace(".", "_")  # test.mp4 and test.avi differ
        if not (out / "meta.json").exists():
            print(f"extracting {rel} -> {out}", flush=True)
            extract_video(SHARED / rel, out, flow="dis", short_side=256)
        folders.append(str(out))
    return folders


def sample_files(dataset_kwargs, table):
    """The JPEG paths of one epoch as drawn by our sampler, plus the crop draws."""
    ds = make_dataset(table, **dataset_kwargs)
    arrays = ds._draw_epoch(0)  # the seeded first epoch, exactly what `ours` yields
    rows = []
    for i in range(len(arrays["dir"])):
        d = arrays["dir"][i]
        rgb = [f"{d}/img_{j:05d}.jpg" for j in arrays["rgb_index"][i].reshape(-1)]
        flow = arrays["flow_index"][i].reshape(-1)
        rows.append(
            (rgb, [f"{d}/x_{j:05d}.jpg" for j in flow], [f"{d}/y_{j:05d}.jpg" for j in flow])
        )
    return rows, arrays


def floor_dataset(rows):
    rgb = tf.constant([r[0] for r in rows])
    fx = tf.constant([r[1] for r in rows])
    fy = tf.constant([r[2] for r in rows])

    def decode(rgb_files, x_files, y_files):
        images = [tf.io.decode_jpeg(tf.io.read_file(rgb_files[i]), channels=3) for i in range(K)]
        xs = [tf.io.decode_jpeg(tf.io.read_file(x_files[i]), channels=1) for i in range(K * L)]
        ys = [tf.io.decode_jpeg(tf.io.read_file(y_files[i]), channels=1) for i in range(K * L)]
        return tf.stack(images), tf.stack(xs), tf.stack(ys)

    ds = tf.data.Dataset.from_tensor_slices((rgb, fx, fy))
    return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def python_loop(rows, arrays):
    """A straightforward loop: cv2.imread per frame, NumPy crops, the same arithmetic."""
    batch_rgb, batch_flow = [], []
    for i, (rgb_files, x_files, y_files) in enumerate(rows):
        bound = float(arrays["bound"][i])
        frames = [cv2.imread(f, cv2.IMREAD_COLOR)[..., ::-1] for f in rgb_files]
        h, w = frames[0].shape[:2]
        short = min(h, w)
        ch, cw = int(short * arrays["scale_h"][i]), int(short * arrays["scale_w"][i])
        y0 = int(arrays["quarter_y"][i]) * ((h - ch) // 4)
        x0 = int(arrays["quarter_x"][i]) * ((w - cw) // 4)
        flip = bool(arrays["flip"][i])
        clip = []
        for f in frames:
            c = cv2.resize(np.ascontiguousarray(f[y0 : y0 + ch, x0 : x0 + cw]), (SIZE, SIZE))
            clip.append((c[:, ::-1] if flip else c).astype(np.float32) / 255.0)
        fields = []
        for fx, fy in zip(x_files, y_files, strict=True):
            field = []
            for path, sign in ((fx, -1.0 if flip else 1.0), (fy, 1.0)):
                q = cv2.imread(path, cv2.IMREAD_GRAYSCALE).astype(np.float32)
                mean = q.mean()
                c = cv2.resize(q[y0 : y0 + ch, x0 : x0 + cw], (SIZE, SIZE))
                c = (c - mean) * (2 * bound / 255)
                field.append(sign * (c[:, ::-1] if flip else c))
            fields.append(np.stack(field, axis=-1))
        flow = np.stack(fields).reshape(K, L, SIZE, SIZE, 2).transpose(0, 2, 3, 1, 4)
        batch_rgb.append(np.stack(clip))
        batch_flow.append(flow.reshape(K, SIZE, SIZE, 2 * L))
        if len(batch_rgb) == BATCH:
            np.stack(batch_rgb), np.stack(batch_flow)
            batch_rgb, batch_flow = [], []


def measure(fn, n):
    """(clips per second of wall time, CPU milliseconds of this process per clip)."""
    cpu = sum(os.times()[:2])
    start = time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    return n / wall, (sum(os.times()[:2]) - cpu) / n * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=96, help="clips per epoch")
    parser.add_argument(
        "--cache", default=os.path.join(tempfile.gettempdir(), "keras_twostream_bench_frames")
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave docs/benchmarks.md"
    )
    args = parser.parse_args()

    folders = extract(Path(args.cache))
    paths = [folders[i % len(folders)] for i in range(args.samples)]
    table = pd.DataFrame({"path": paths, "label": [i % len(folders) for i in range(args.samples)]})
    kwargs = dict(num_segments=K, flow_length=L, image_size=SIZE, batch_size=BATCH, seed=0)
    ours = make_dataset(table, **kwargs)
    ours_nomean = make_dataset(table, mean_subtract_flow=False, **kwargs)
    rows, arrays = sample_files(kwargs, table)
    floor = floor_dataset(rows)
    n = len(rows)

    def run_ours():
        for _ in ours:
            pass

    def run_ours_nomean():
        for _ in ours_nomean:
            pass

    def run_floor():
        for _ in floor:
            pass

    contenders = [
        ("floor", run_floor),
        ("ours", run_ours),
        ("ours_nomean", run_ours_nomean),
        ("loop", lambda: python_loop(rows, arrays)),
    ]
    for _, fn in contenders:  # warm-up: tracing, page cache
        fn()
    results = {name: [] for name, _ in contenders}
    cpu = {name: [] for name, _ in contenders}
    for r in range(args.rounds):
        for name, fn in contenders[r % len(contenders) :] + contenders[: r % len(contenders)]:
            rate, cost = measure(fn, n)
            results[name].append(rate)
            cpu[name].append(cost)
        print({k: (round(v[-1], 1), round(cpu[k][-1], 1)) for k, v in results.items()}, flush=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    labels = {
        "floor": "bare tf.data decode (floor)",
        "ours": "`make_dataset` (ours)",
        "ours_nomean": "`make_dataset(mean_subtract_flow=False)`",
        "loop": "Python loop (cv2.imread + NumPy)",
    }
    table_rows = [
        [
            labels[k],
            f"{med[k]:.1f}",
            f"{med[k] / med['floor']:.2f}",
            f"{med_cpu[k]:.1f}",
            f"{med_cpu['floor'] / med_cpu[k]:.2f}",
        ]
        for k in ("floor", "ours", "ours_nomean", "loop")
    ]
    sizes = ", ".join(
        f"{Path(f).name} {cv2.imread(f + '/img_00001.jpg').shape[1]}x{cv2.imread(f + '/img_00001.jpg').shape[0]}"
        for f in folders
    )
    body = (
        f"Training clips per second (median of {args.rounds} interleaved rounds of {n} clips), "
        f"K={K} segments x (1 RGB frame + {L} flow fields), {SIZE}x{SIZE}, batch {BATCH}; "
        f"{K * (1 + 2 * L)} JPEGs per clip from frame folders of the shared videos ({sizes}; DIS flow).\n\n"
        + markdown_table(
            ["pipeline", "clips/s (wall)", "vs floor", "CPU ms/clip", "floor CPU / CPU"], table_rows
        )
        + f"\n\nWall clock: `make_dataset` reaches **{med['ours'] / med['floor']:.2f}x** the bare "
        f"decoding floor (aim >= 0.7) and **{med['ours'] / med['loop']:.1f}x** the plain Python loop "
        f"(aim >= 3). CPU time per clip (this process, all threads), which other jobs on a shared "
        f"machine disturb less: ours costs {med_cpu['ours'] / med_cpu['floor']:.2f}x the floor and "
        f"{med_cpu['ours'] / med_cpu['loop']:.2f}x the loop. "
        "The floor decodes whole frames and stops. Ours decodes only the crop window of RGB frames "
        "(`tf.io.decode_and_crop_jpeg`) but whole flow frames, because the two-stream paper's mean "
        "subtraction uses each whole displacement field (without it, flow is window-decoded too: "
        "third row). Measured and rejected: window-decoding flow and taking the field mean from a "
        "`ratio=8` (DC-only) decode costs more than one full decode (Huffman decoding of every "
        "block dominates; on a 340x256 field: full 0.10 ms, window 0.08 ms, ratio-8 0.07 ms), and "
        "it is not exact. After decoding, ours stacks the 2L flow planes, moves them to "
        "channels-last (one 3-D uint8 transpose), resizes, mirrors and applies "
        "`(q - mean) * scale` with the per-channel constants tiled along whole rows (a [.., 2L] "
        "broadcast runs ~3x slower in Eigen), then batches: each about one pass over 6 MB of "
        "float32 output per clip, which on 2 cores costs about as much again as the JPEG decoding "
        "itself. Wall-clock figures on this shared 2-core machine swing with the other jobs "
        "running; the CPU columns are steadier."
    )
    print(body)
    if not args.no_write:
        write_section(
            "pipeline", "tf.data training pipeline", body, "python benchmarks/bench_pipeline.py"
        )


if __name__ == "__main__":
    main()
