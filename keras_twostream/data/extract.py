"""Extraction of RGB frames and quantised optical flow from a folder of videos.

`keras-twostream extract VIDEOS_DIR OUT_DIR` writes, for every video
`VIDEOS_DIR/<video>.<ext>`, the frame folder `OUT_DIR/<video>/` in the TSN/MMAction2
layout (`img_00001.jpg ...`, `x_00001.jpg ...`, `y_00001.jpg ...`, `meta.json`; see
`keras_twostream.data.frames`), with frames resized so the short side is 256 pixels and
flow quantised to 8 bits (Simonyan & Zisserman 2014, Sect. 5; see
`keras_twostream.data.flow`).

A video's files are written into a hidden temporary sibling folder
(`.<name>.tmp-<pid>`) which is renamed to its final name only after the last file is
written, so a complete-looking folder is always complete: an interrupted run is resumed by
running the same command again (complete folders are skipped, stale temporary folders
removed). Videos are processed in parallel by worker processes started with "spawn" (safe
when TensorFlow is loaded in the parent); a video that fails is recorded with its reason
and never stops the others. Each run ends by (re)writing in `OUT_DIR`:

- `rawframes.txt`: MMAction2 rawframe list `frame_dir total_frames label` of every complete
  folder, the label being the index of the video's class folder in the sorted class names
  (or -1 when a video is not in a class folder);
- `classes.txt`: `index class_name` per line, 0-based, the indices used in `rawframes.txt`;
- `failures.txt`: `video<TAB>reason` per failed video (removed when nothing failed).
"""

import contextlib
import json
import os
import queue as queue_module
import re
import shutil
import signal
import time
from dataclasses import dataclass, field

from keras_twostream.data.frames import (
    FRAME_SUFFIX,
    META_FILE,
    flow_frame_paths,
    rgb_frame_path,
    write_flow_means,
    write_meta,
)
from keras_twostream.data.video import VIDEO_EXTENSIONS, VideoDecodeError, VideoReader

FLOW_CHOICES = ("tvl1", "tvl1-xla", "dis", "farneback", "none")
LIST_FILE = "rawframes.txt"
CLASSES_FILE = "classes.txt"
FAILURES_FILE = "failures.txt"
_TMP_RE = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)$")


@dataclass
class ExtractionSummary:
    """What an extraction run did.

    Attributes:
        out_dir: the output folder.
        done: videos extracted by this run (paths relative to the videos folder).
        skipped: videos whose frame folder was already complete.
        failed: `(video, reason)` pairs for the videos that could not be extracted.
        frames: RGB frames written by this run.
        seconds: wall-clock duration of the run.

    Example:

    >>> from keras_twostream.data import ExtractionSummary
    >>> summary = ExtractionSummary(out_dir="frames", done=["a.avi"],
    ...                             failed=[("b.avi", "no frame decoded")])
    >>> len(summary.done), summary.failed[0][1]
    (1, 'no frame decoded')
    """

    out_dir: str
    done: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0

    def __str__(self):
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"Extraction into {self.out_dir}: {len(self.done)} done, "
            f"{len(self.skipped)} skipped (already complete), {len(self.failed)} failed; "
            f"{self.frames} frames in {self.seconds:.1f} s ({rate:.1f} frames/s)."
        ]
        for video, reason in self.failed:
            lines.append(f"  FAILED {video}: {reason}")
        return "\n".join(lines)


class _ParentDied(Exception):
    pass


def find_videos(videos_dir, extensions=VIDEO_EXTENSIONS):
    """Video files under a folder, searched recursively, as sorted relative paths.

    Hidden files and folders (names starting with ".") are ignored.

    Args:
        videos_dir: the folder.
        extensions: file name endings counted as videos (case-insensitive).

    Returns:
        A sorted list of paths relative to `videos_dir`, with "/" separators.

    Raises:
        FileNotFoundError: `videos_dir` is not a folder.
    """
    videos_dir = os.fspath(videos_dir)
    if not os.path.isdir(videos_dir):
        raise FileNotFoundError(f"Videos folder not found: {videos_dir}")
    extensions = tuple(e.lower() for e in extensions)
    found = []
    for parent, dirs, files in os.walk(videos_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and name.lower().endswith(extensions):
                rel = os.path.relpath(os.path.join(parent, name), videos_dir)
                found.append(rel.replace(os.sep, "/"))
    return sorted(found)


def extract_video(
    video_path,
    out_dir,
    flow="tvl1",
    short_side=256,
    bound=20.0,
    jpeg_quality=95,
    source=None,
    progress=None,
    max_frames=None,
    decode_threads=None,
):
    """Writes one video's RGB frames and quantised flow into a folder.

    This is the per-video step of `extract_videos`; it writes in place (no temporary
    folder) and writes `meta.json` last. Flow pair `i` (`x_i`, `y_i`) is the flow from
    frame `i` to frame `i + 1`, computed on the grayscale frames at the resized size.
    With flow it also writes `flow_means.npy`, the mean of each dequantised field as a
    reader decodes the JPEG (`keras_twostream.data.frames.write_flow_means`), before
    `meta.json`.

    Args:
        video_path: the video file.
        out_dir: the frame folder to write (created if needed).
        flow: `"tvl1"`, `"dis"`, `"farneback"` or `"none"` (RGB frames only).
        short_side: resize so the short side has this many pixels; `None` keeps the size.
        bound: flow is clipped to `[-bound, bound]` pixels before quantisation.
        jpeg_quality: JPEG quality of the written frames (OpenCV's default, 95).
        source: the `source` recorded in `meta.json` (default: `video_path`).
        progress: optional callable, called with `1` after each frame.
        max_frames: stop after this many frames (previews, benchmarks); the frame count
            is then not checked against the container's.
        decode_threads: FFmpeg decoding threads (`None`: OpenCV's default).

    Returns:
        The `meta.json` contents (a dict).

    Raises:
        FileNotFoundError: the video does not exist.
        VideoDecodeError: the video cannot be decoded, stops early, or is too short for
            flow (fewer than 2 frames).
        OSError: a frame cannot be written.

    Example:

    >>> from keras_twostream.data.extract import extract_video
    >>> meta = extract_video("test.avi", "frames/test", flow="dis")  # doctest: +SKIP
    >>> meta["rgb_frames"], meta["flow_frames"]  # doctest: +SKIP
    (164, 163)
    """
    import cv2
    import numpy as np

    from keras_twostream.data.flow import OpticalFlow, quantize_flow
    from keras_twostream.version import __version__

    _check_flow(flow)
    if flow == "tvl1-xla":
        raise ValueError(
            "flow='tvl1-xla' batches frame pairs across videos: use extract_videos "
            "(keras-twostream extract --flow tvl1-xla), or flow='tvl1' for one video"
        )
    if max_frames is not None and (isinstance(max_frames, bool) or int(max_frames) < 1):
        raise ValueError(f"Expected max_frames >= 1 or None. Received: max_frames={max_frames!r}")
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    solver = None if flow == "none" else OpticalFlow(flow)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]

    def write(path, image):
        if not cv2.imwrite(path, image, params):
            raise OSError(f"cannot write {path}")

    def write_field(path, plane):
        """Writes one quantised flow plane; returns the mean of its decoded JPEG."""
        ok, encoded = cv2.imencode(FRAME_SUFFIX, plane, params)
        if not ok:
            raise OSError(f"cannot encode {path}")
        with open(path, "wb") as f:
            f.write(memoryview(encoded))
        # The mean a reader sees is that of the decoded JPEG, not of `plane`: JPEG moves
        # it by up to ~0.5 levels. OpenCV decodes with libjpeg's accurate integer IDCT,
        # as the pipeline does (tf.io.decode_jpeg(dct_method="INTEGER_ACCURATE")).
        return float(cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE).mean(dtype=np.float64))

    means_q = []  # [mean q_x, mean q_y] of each flow pair, 0..255

    reader = VideoReader(
        video_path, short_side=short_side, channel_order="bgr", threads=decode_threads
    )
    previous = None
    count = 0
    for frame in reader:
        if max_frames is not None and count == max_frames:
            reader.close()
            break
        count += 1
        write(rgb_frame_path(out_dir, count), frame)
        if solver is not None:
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            if previous is not None:
                # Flow pair count-1: from frame count-1 to frame count (Sect. 3, Eq. (1)).
                quantized = quantize_flow(solver(previous, gray), bound)
                x_path, y_path = flow_frame_paths(out_dir, count - 1)
                means_q.append(
                    (
                        write_field(x_path, np.ascontiguousarray(quantized[..., 0])),
                        write_field(y_path, np.ascontiguousarray(quantized[..., 1])),
                    )
                )
            previous = gray
        if progress is not None:
            progress(1)
    if solver is not None and count < 2:
        raise VideoDecodeError(
            video_path, f"decoded {count} frame; optical flow needs at least 2 frames"
        )
    if solver is not None:
        # Mean displacement in pixels: d = q * 2b/255 - b is affine, so mean(d) = this.
        means = np.asarray(means_q, np.float64).reshape(-1, 2) * (2.0 * bound / 255.0) - bound
        write_flow_means(out_dir, means)
    width, height = reader.output_size
    meta = {
        "algorithm": flow,
        "bound": float(bound),
        "short_side": short_side,
        "width": int(width),
        "height": int(height),
        "rgb_frames": count,
        "flow_frames": count - 1 if solver is not None else 0,
        "fps": reader.fps,
        "source": os.fspath(source if source is not None else video_path),
        "keras_twostream_version": __version__,
        "reported_frames": reader.reported_frames,
        "jpeg_quality": int(jpeg_quality),
    }
    write_meta(out_dir, meta)
    return meta


def _check_flow(flow):
    if flow not in FLOW_CHOICES:
        raise ValueError(
            f"Expected flow to be one of {list(FLOW_CHOICES)}. Received: flow={flow!r}"
        )


def _reason(error, video=None):
    if isinstance(error, VideoDecodeError):
        return error.reason
    if isinstance(error, FileNotFoundError):
        missing = getattr(error, "filename", None)
        if missing is None or (video is not None and os.fspath(missing) == os.fspath(video)):
            return "file not found"
        # Not the video: name the path, so an output-side problem is not read as one.
        return f"file not found: {missing}"
    return f"{type(error).__name__}: {error}"


def _make_temp(temp, attempts=5):
    """Creates a video's temporary folder and the class folders above it.

    A concurrent run (another `extract` on the same output folder) removes an empty
    class folder when its own video there fails; if that happens between creating the
    class folder and creating `temp` inside it, `mkdir` raises FileNotFoundError: create
    the chain again. Once `temp` exists the class folder is not empty, so it stays.
    """
    for attempt in range(attempts):
        try:
            os.makedirs(temp, exist_ok=True)
            return
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise


def _pid_alive(pid):
    if pid == os.getpid():
        return False  # a former run that had our pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _remove_stale_temp(folders):
    """Removes temporary folders of runs that are no longer alive, in the given folders."""
    removed = []
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        for entry in entries:
            match = _TMP_RE.match(entry.name)
            if match and entry.is_dir(follow_symlinks=False) and not _pid_alive(int(match["pid"])):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(entry.path)
    return removed


def _run_job(job, progress, check_parent=None):
    """Extracts one video into a temporary folder and renames it; returns an outcome tuple."""
    index, video, final, temp, settings = job
    if os.path.exists(os.path.join(final, META_FILE)):
        return ("skipped", index, 0)
    shutil.rmtree(temp, ignore_errors=True)
    counted = [0]

    def on_frame(n):
        counted[0] += n
        progress(n)
        if check_parent is not None:
            check_parent()

    try:
        _make_temp(temp)
        meta = extract_video(video, temp, progress=on_frame, **settings)
        os.rename(temp, final)
    except _ParentDied:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    except Exception as error:  # recorded as this video's failure; the run goes on
        shutil.rmtree(temp, ignore_errors=True)
        if os.path.exists(os.path.join(final, META_FILE)):
            return ("skipped", index, 0)  # completed meanwhile by a concurrent run
        # The class folder, if now empty, is removed by the parent once every worker
        # is done (`_remove_empty_class_folders`). Removing it here raced with a sibling
        # worker between its creating that folder and its temporary folder inside, so
        # the sibling's video failed with "file not found" instead of its own reason.
        return ("failed", index, _reason(error, video))
    return ("done", index, meta["rgb_frames"])


def _remove_empty_class_folders(out_dir, finals):
    """Removes the (now empty) class folders of videos that failed; run after all jobs."""
    out_dir = os.path.normpath(out_dir)
    for final in sorted(set(finals), key=len, reverse=True):
        folder = os.path.dirname(os.path.normpath(final))
        while folder != out_dir and folder.startswith(out_dir + os.sep):
            try:
                os.rmdir(folder)  # only when empty
            except OSError:
                break  # not empty (or gone): its parents are not empty either
            folder = os.path.dirname(folder)


def _worker_main(tasks, results, threads):
    """Loop of a worker process: take a job, report frames and the outcome."""
    import cv2

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops workers itself
    cv2.setNumThreads(threads)
    parent = os.getppid()
    pending = [0]
    last = [time.monotonic()]

    def check_parent():
        if os.getppid() != parent:  # the parent was killed: stop, leave no orphan work
            raise _ParentDied()

    def progress(n):
        pending[0] += n
        now = time.monotonic()
        if now - last[0] > 0.2:
            results.put(("frames", pending[0]))
            pending[0] = 0
            last[0] = now

    while True:
        try:
            job = tasks.get(timeout=1.0)
        except queue_module.Empty:
            if os.getppid() != parent:
                return
            continue
        if job is None:
            return
        try:
            outcome = _run_job(job, progress, check_parent)
        except _ParentDied:
            return
        if pending[0]:
            results.put(("frames", pending[0]))
            pending[0] = 0
        results.put(outcome)


class _Pool:
    """Worker processes, each fed one job at a time, replaced when one dies."""

    def __init__(self, workers, threads):
        import multiprocessing

        self._ctx = multiprocessing.get_context("spawn")
        self._threads = threads
        self.results = self._ctx.Queue()
        self.workers = [self._start() for _ in range(workers)]

    def _start(self):
        tasks = self._ctx.Queue()
        process = self._ctx.Process(
            target=_worker_main, args=(tasks, self.results, self._threads), daemon=True
        )
        process.start()
        return {"process": process, "tasks": tasks, "job": None}

    def replace(self, worker):
        worker["process"].join(timeout=1)
        self.workers[self.workers.index(worker)] = self._start()

    def close(self):
        for worker in self.workers:
            if worker["process"].is_alive():
                try:
                    worker["tasks"].put(None)
                except (OSError, ValueError):
                    pass
        deadline = time.monotonic() + 5
        for worker in self.workers:
            worker["process"].join(timeout=max(0.0, deadline - time.monotonic()))
            if worker["process"].is_alive():
                worker["process"].terminate()
                worker["process"].join(timeout=5)


class _Progress:
    """One tqdm bar over videos, with the frame rate as its postfix."""

    def __init__(self, enabled, total):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc="extract", unit="video", disable=not enabled)
        self.frames = 0
        self.start = time.monotonic()
        self.shown = self.start

    def add_frames(self, n):
        self.frames += n
        if time.monotonic() - self.shown > 0.5:
            self._show(refresh=True)

    def _show(self, refresh=False):
        self.shown = time.monotonic()
        rate = self.frames / max(self.shown - self.start, 1e-9)
        self.bar.set_postfix_str(f"{self.frames} frames, {rate:.1f} frames/s", refresh=refresh)

    def add_video(self):
        self._show()
        self.bar.update(1)

    def close(self):
        self._show()
        self.bar.close()


def _output_name(rel):
    return os.path.splitext(rel)[0]


def extract_videos(
    videos_dir,
    out_dir,
    flow="tvl1",
    workers=1,
    short_side=256,
    bound=20.0,
    progress=True,
    jpeg_quality=95,
    extensions=VIDEO_EXTENSIONS,
    threads=None,
    backward_flow=False,
    batch_size=None,
    flow_params=None,
):
    """Extracts RGB frames and quantised optical flow for every video in a folder.

    Resumable: complete frame folders (those with `meta.json`; a folder gets its final
    name only once complete) are skipped, temporary folders left by a killed run are
    removed, and the rest is (re)done. A video that fails (missing, empty, truncated,
    undecodable, fewer than 2 frames for flow, a worker crash) is recorded with its
    reason and the others go on. See the module docstring for the files written.

    Args:
        videos_dir: folder of videos, searched recursively; class subfolders are kept in
            the output (`ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi` ->
            `OUT_DIR/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01/`).
        out_dir: output folder (created if needed).
        flow: `"tvl1"` (default), `"tvl1-xla"` (the same TV-L1, `keras_twostream.flow.tvl1`
            compiled by XLA and batched over frame pairs across videos, in this process:
            `workers` is ignored; see `keras_twostream.data.extract_xla`), `"dis"`,
            `"farneback"`, or `"none"` for RGB only.
        workers: worker processes. With 1, videos are processed in this process and
            OpenCV uses its own threads; with more, each worker runs OpenCV on one thread
            and the largest videos are handed out first. OpenCV's DIS and Farneback
            already spread one video over the cores (measured on 2 cores: one process
            on its default threads keeps 1.7 cores busy), so `workers` = the number of
            cores is the fastest setting but beats `workers=1` by less than that
            number (1.16x on 2 cores with DIS; see docs/benchmarks.md).
        short_side: resize so the short side has this many pixels (`None`: keep size).
        bound: flow is clipped to `[-bound, bound]` pixels before 8-bit quantisation.
        progress: show progress bars (videos; frames per second) and print the summary.
        jpeg_quality: JPEG quality of the written frames.
        extensions: file name endings counted as videos.
        threads: OpenCV and FFmpeg threads per worker; `None` means OpenCV's default
            (one per core) with `workers=1` and 1 with more workers.
        backward_flow: also store the backward flow (`bx_`/`by_` files, from frame `i+1`
            to frame `i`; see `keras_twostream.data.frames.backward_flow_frame_paths`),
            for the bi-directional input of the two-stream paper. Only with `"tvl1-xla"`.
        batch_size: frame pairs per TV-L1 call with `"tvl1-xla"` (default 4).
        flow_params: with `"tvl1-xla"`, overrides of OpenCV's TV-L1 defaults
            (`keras_twostream.flow.TVL1_DEFAULTS`, e.g. `{"warps": 3}`), recorded in
            `meta.json` as `flow_params`.

    Returns:
        An `ExtractionSummary` with `.done`, `.skipped`, `.failed` (list of
        `(video, reason)`), `.frames` and `.seconds`.

    Raises:
        FileNotFoundError: `videos_dir` is not a folder.
        ValueError: an argument is out of range.

    Example:

    >>> from keras_twostream.data.extract import extract_videos
    >>> summary = extract_videos("UCF-101", "ucf101_frames", flow="tvl1", workers=2)  # doctest: +SKIP
    >>> len(summary.failed)  # doctest: +SKIP
    0
    """
    start_time = time.monotonic()
    _check_flow(flow)
    if isinstance(workers, bool) or int(workers) != workers or workers < 1:
        raise ValueError(f"Expected workers to be an integer >= 1. Received: workers={workers!r}")
    if threads is not None and (
        isinstance(threads, bool) or int(threads) != threads or threads < 1
    ):
        raise ValueError(
            f"Expected threads to be an integer >= 1 or None. Received: threads={threads!r}"
        )
    if short_side is not None and (
        isinstance(short_side, bool) or int(short_side) != short_side or short_side < 1
    ):
        raise ValueError(
            f"Expected short_side to be a positive integer or None. Received: short_side={short_side!r}"
        )
    if isinstance(bound, bool) or not bound > 0 or bound == float("inf"):
        raise ValueError(f"Expected bound to be a finite number > 0. Received: bound={bound!r}")
    if not 0 <= jpeg_quality <= 100:
        raise ValueError(
            f"Expected 0 <= jpeg_quality <= 100. Received: jpeg_quality={jpeg_quality!r}"
        )
    if backward_flow and flow != "tvl1-xla":
        raise ValueError(f"backward_flow=True needs flow='tvl1-xla'. Received: flow={flow!r}")
    if (batch_size is not None or flow_params) and flow != "tvl1-xla":
        raise ValueError(
            f"batch_size and flow_params are for flow='tvl1-xla'. Received: flow={flow!r}"
        )
    videos_dir = os.fspath(videos_dir)
    out_dir = os.fspath(out_dir)
    videos = find_videos(videos_dir, extensions)
    os.makedirs(out_dir, exist_ok=True)
    summary = ExtractionSummary(out_dir=out_dir)
    settings = {
        "flow": flow,
        "short_side": None if short_side is None else int(short_side),
        "bound": float(bound),
        "jpeg_quality": int(jpeg_quality),
    }
    if flow == "tvl1-xla":
        settings["backward_flow"] = bool(backward_flow)
        settings["flow_params"] = dict(flow_params or {})
    run_id = os.getpid()

    # === Plan: skip complete folders, refuse collisions and foreign folders ===
    _remove_stale_temp({os.path.dirname(os.path.join(out_dir, _output_name(v))) for v in videos})
    jobs = []
    owners = {}
    for index, rel in enumerate(videos):
        name = _output_name(rel)
        final = os.path.join(out_dir, *name.split("/"))
        if name in owners:
            summary.failed.append(
                (
                    rel,
                    f"its output folder {name}/ is also that of {owners[name]}; rename one of them",
                )
            )
            continue
        owners[name] = rel
        meta_path = os.path.join(final, META_FILE)
        if os.path.exists(meta_path):
            problem = _settings_mismatch(meta_path, settings)
            if problem:
                summary.failed.append((rel, problem))
            else:
                summary.skipped.append(rel)
            continue
        if os.path.exists(final):
            summary.failed.append(
                (
                    rel,
                    f"{final} exists without {META_FILE} (not written by keras-twostream extract); "
                    "remove it to extract this video",
                )
            )
            continue
        temp = os.path.join(os.path.dirname(final), f".{os.path.basename(final)}.tmp-{run_id}")
        source = os.path.join(videos_dir, *rel.split("/"))
        jobs.append((index, source, final, temp, {**settings, "source": rel}))

    # === Run ===
    bar = _Progress(progress, len(jobs))
    outcomes = {}

    def record(outcome):
        kind, index, value = outcome
        outcomes[index] = (kind, value)
        bar.add_video()

    try:
        if flow == "tvl1-xla":
            from keras_twostream.data import extract_xla

            with _opencv_threads(threads):
                extract_xla.run_jobs(
                    [job[:4] + ({**job[4], "decode_threads": threads},) for job in jobs],
                    record,
                    bar.add_frames,
                    batch_size=extract_xla.DEFAULT_BATCH_SIZE if batch_size is None else batch_size,
                    backward=bool(backward_flow),
                    params=settings["flow_params"],
                )
        elif workers == 1 or len(jobs) <= 1:
            with _opencv_threads(threads):
                for job in jobs:
                    job = job[:4] + ({**job[4], "decode_threads": threads},)
                    record(_run_job(job, bar.add_frames))
        else:
            per_worker = 1 if threads is None else int(threads)
            jobs = [job[:4] + ({**job[4], "decode_threads": per_worker},) for job in jobs]
            _run_pool(jobs, min(int(workers), len(jobs)), record, bar.add_frames, per_worker)
    finally:
        bar.close()
        # Our own temporary folders, if we were interrupted.
        for job in jobs:
            if job[0] not in outcomes:
                shutil.rmtree(job[3], ignore_errors=True)

    failed_finals = []
    for index, (kind, value) in sorted(outcomes.items()):
        rel = videos[index]
        if kind == "done":
            summary.done.append(rel)
            summary.frames += value
        elif kind == "skipped":
            summary.skipped.append(rel)
        else:
            summary.failed.append((rel, value))
            failed_finals.append(os.path.join(out_dir, *_output_name(rel).split("/")))
    _remove_empty_class_folders(out_dir, failed_finals)
    summary.failed.sort()
    _write_lists(out_dir, videos, summary)
    summary.seconds = time.monotonic() - start_time
    if progress:
        print(summary)
    return summary


def _settings_mismatch(meta_path, settings):
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        return f"{meta_path} is unreadable ({error}); remove the folder to extract again"
    differ = [
        f"{key}={meta.get(key)!r}"
        for key in ("algorithm", "short_side", "bound")
        if meta.get(key) != settings["flow" if key == "algorithm" else key]
    ]
    for key, default in (("backward_flow", False), ("flow_params", {})):
        if meta.get(key, default) != settings.get(key, default):
            differ.append(f"{key}={meta.get(key, default)!r}")
    if differ:
        return (
            f"already extracted with other settings ({', '.join(differ)}); remove its folder "
            "or choose another output folder"
        )
    return None


@contextlib.contextmanager
def _opencv_threads(threads):
    """Sets `cv2.setNumThreads` for a block (`None`: leave it), then restores it."""
    if threads is None:
        yield
        return
    import cv2

    previous = cv2.getNumThreads()
    cv2.setNumThreads(int(threads))
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def _file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _run_pool(jobs, workers, record, add_frames, threads=1):
    pool = _Pool(workers, threads=threads)
    # Largest videos first (file size as the measure of work), so that the run does not
    # end with one worker busy on a long video while the others idle.
    pending = sorted(jobs, key=lambda job: _file_size(job[1]))  # pop() takes the largest
    by_index = {job[0]: job for job in jobs}
    running = {}  # job index -> worker

    def handle(message):
        if message[0] == "frames":
            add_frames(message[1])
            return
        worker = running.pop(message[1], None)
        if worker is not None:
            worker["job"] = None
            record(message)

    def drain():
        while True:
            try:
                handle(pool.results.get_nowait())
            except queue_module.Empty:
                return

    try:
        while pending or running:
            for worker in pool.workers:
                if worker["job"] is None and pending:
                    job = pending.pop()
                    worker["job"] = job[0]
                    running[job[0]] = worker
                    worker["tasks"].put(job)
            try:
                handle(pool.results.get(timeout=0.2))
            except queue_module.Empty:
                pass
            drain()
            for worker in list(pool.workers):
                if worker["job"] is None or worker["process"].is_alive():
                    continue
                drain()  # its last messages, if it managed to send them
                index = worker["job"]
                if index is not None:
                    code = worker["process"].exitcode
                    running.pop(index, None)
                    worker["job"] = None
                    final, temp = by_index[index][2], by_index[index][3]
                    shutil.rmtree(temp, ignore_errors=True)
                    if os.path.exists(os.path.join(final, META_FILE)):
                        record(("done", index, 0))
                    else:
                        how = (
                            f"signal {-code}" if code is not None and code < 0 else f"status {code}"
                        )
                        record(
                            (
                                "failed",
                                index,
                                f"the worker process died ({how}) while extracting it",
                            )
                        )
                pool.replace(worker)
    finally:
        pool.close()


def _write_lists(out_dir, videos, summary):
    """Rewrites rawframes.txt, classes.txt and failures.txt from the complete folders.

    The list holds every complete folder on disk (also those this run skipped or refused
    for other settings), each output name once.
    """
    classes = sorted({rel.split("/")[-2] for rel in videos if "/" in rel})
    class_index = {name: i for i, name in enumerate(classes)}
    listed = set()
    lines = []
    for rel in videos:
        name = _output_name(rel)
        if name in listed:
            continue  # a second video with the same output folder
        listed.add(name)
        meta_path = os.path.join(out_dir, *name.split("/"), META_FILE)
        try:
            with open(meta_path, encoding="utf-8") as f:
                frames = int(json.load(f)["rgb_frames"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        label = class_index[rel.split("/")[-2]] if "/" in rel else -1
        lines.append(f"{name} {frames} {label}\n")
    _write_text(os.path.join(out_dir, LIST_FILE), "".join(lines))
    _write_text(
        os.path.join(out_dir, CLASSES_FILE), "".join(f"{i} {c}\n" for i, c in enumerate(classes))
    )
    failures = os.path.join(out_dir, FAILURES_FILE)
    if summary.failed:
        _write_text(failures, "".join(f"{rel}\t{reason}\n" for rel, reason in summary.failed))
    elif os.path.exists(failures):
        os.remove(failures)


def _write_text(path, text):
    temp = f"{path}.tmp-{os.getpid()}"
    with open(temp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(temp, path)
