"""Extraction with TV-L1 in XLA (`keras-twostream extract --flow tvl1-xla`), pairs batched across videos.

`keras_twostream.data.extract.extract_videos(..., flow="tvl1-xla")` plans the run as for the
other algorithms (complete folders skipped, stale temporary folders removed, collisions
refused) and hands the jobs to `run_jobs` here, which runs in the calling process:

- a decoding thread reads the videos in order, writes each RGB frame into the video's
  temporary folder and queues the grayscale frame pairs;
- the main thread gathers pairs of the same frame size, from one video or several, into
  batches of `batch_size` (the last one padded, so every call has the same shape and one
  compiled program serves the run), computes their TV-L1 flow with
  `keras_twostream.flow.tvl1` (and, with `backward=True`, the backward flow in the same
  call), quantises and writes the flow JPEGs;
- a video whose last pair is written gets `flow_means.npy` (and `flow_means_backward.npy`),
  then `meta.json`, and its temporary folder is renamed to its final name: a folder that
  looks complete is complete, and an interrupted run resumes as with the CPU algorithms.

A video that fails (decoding error, too short, a write error) loses its pending pairs and
its temporary folder and is recorded with its reason; the others go on.
"""

import os
import queue as queue_module
import shutil
import threading

from keras_twostream.data.frames import (
    FLOW_BACKWARD_MEANS_FILE,
    FRAME_SUFFIX,
    META_FILE,
    backward_flow_frame_paths,
    flow_frame_paths,
    rgb_frame_path,
    write_flow_means,
    write_meta,
)

XLA_ALGORITHM = "tvl1-xla"
DEFAULT_BATCH_SIZE = 4


class _Video:
    """State of one video being extracted."""

    def __init__(self, job):
        self.index, self.source, self.final, self.temp, self.settings = job
        self.pending = 0  # pairs queued and not yet written
        self.ended = False  # every frame decoded
        self.failed = False
        self.frames = 0
        self.means = []  # [mean q_x, mean q_y] per forward pair
        self.backward_means = []
        self.info = None


def _write_field(path, plane, params):
    """Writes one quantised flow plane; returns the mean of its decoded JPEG.

    As `extract_video` does: the mean a reader sees is that of the decoded JPEG.
    """
    import cv2
    import numpy as np

    ok, encoded = cv2.imencode(FRAME_SUFFIX, plane, params)
    if not ok:
        raise OSError(f"cannot encode {path}")
    with open(path, "wb") as f:
        f.write(memoryview(encoded))
    return float(cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE).mean(dtype=np.float64))


def _decode_all(videos, out, stop):
    """Decoding thread: RGB frames to disk, gray pairs to `out` (bounded queue)."""
    import cv2

    from keras_twostream.data.extract import _make_temp
    from keras_twostream.data.video import VideoReader

    def put(item):
        while not stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return
            except queue_module.Full:
                continue

    for video in videos:
        if stop.is_set():
            return
        if os.path.exists(os.path.join(video.final, META_FILE)):
            put(("skipped", video, None))
            continue
        try:
            shutil.rmtree(video.temp, ignore_errors=True)
            _make_temp(video.temp)
            s = video.settings
            params = [cv2.IMWRITE_JPEG_QUALITY, int(s["jpeg_quality"])]
            reader = VideoReader(
                video.source,
                short_side=s["short_side"],
                channel_order="bgr",
                threads=s.get("decode_threads"),
            )
            previous = None
            count = 0
            for frame in reader:
                if stop.is_set():
                    reader.close()
                    return
                count += 1
                path = rgb_frame_path(video.temp, count)
                if not cv2.imwrite(path, frame, params):
                    raise OSError(f"cannot write {path}")
                gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
                if previous is not None:
                    put(("pair", video, (count - 1, previous, gray)))
                previous = gray
            width, height = reader.output_size
            info = {
                "count": count,
                "width": int(width),
                "height": int(height),
                "fps": reader.fps,
                "reported_frames": reader.reported_frames,
            }
            put(("end", video, info))
        except Exception as error:  # this video's failure; the run goes on
            put(("error", video, error))
    put(("done", None, None))


def run_jobs(jobs, record, add_frames, batch_size=DEFAULT_BATCH_SIZE, backward=False, params=None):
    """Extracts planned jobs with TV-L1 in XLA; calls `record(outcome)` once per job.

    Args:
        jobs: `(index, source, final, temp, settings)` tuples as planned by
            `extract_videos` (`settings`: `short_side`, `bound`, `jpeg_quality`, `source`,
            `decode_threads`).
        record: called with `("done", index, rgb_frames)`, `("skipped", index, 0)` or
            `("failed", index, reason)`.
        add_frames: called with a number of RGB frames done (progress).
        batch_size: frame pairs per TV-L1 call (fixed, so one program is compiled per
            frame size).
        backward: also compute and store the backward flow (`bx_`, `by_` files).
        params: overrides of the TV-L1 parameters (`keras_twostream.flow.TVL1_DEFAULTS`);
            recorded in `meta.json` as `flow_params`.
    """
    import numpy as np

    from keras_twostream.data.extract import _reason
    from keras_twostream.data.flow import quantize_flow
    from keras_twostream.data.video import VideoDecodeError
    from keras_twostream.version import __version__

    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"Expected batch_size >= 1. Received: batch_size={batch_size!r}")
    batch_size = int(batch_size)
    params = dict(params or {})
    from keras_twostream.flow.tvl1 import _check_params

    _check_params(params)  # a bad parameter fails the run before any video
    videos = [_Video(job) for job in jobs]
    pairs = queue_module.Queue(maxsize=4 * batch_size)
    stop = threading.Event()
    thread = threading.Thread(target=_decode_all, args=(videos, pairs, stop), daemon=True)
    buffers = {}  # (height, width) -> [(video, index, a, b)]

    def fail(video, error):
        if video.failed:
            return
        video.failed = True
        shutil.rmtree(video.temp, ignore_errors=True)
        if os.path.exists(os.path.join(video.final, META_FILE)):
            record(("skipped", video.index, 0))  # completed meanwhile by a concurrent run
        else:
            record(("failed", video.index, _reason(error, video.source)))

    def finish(video):
        s = video.settings
        bound = float(s["bound"])
        count = video.info["count"]
        if count < 2:
            raise VideoDecodeError(
                video.source, f"decoded {count} frame; optical flow needs at least 2 frames"
            )
        scale = 2.0 * bound / 255.0
        means = np.asarray(video.means, np.float64).reshape(-1, 2) * scale - bound
        write_flow_means(video.temp, means)
        if backward:
            means = np.asarray(video.backward_means, np.float64).reshape(-1, 2) * scale - bound
            path = os.path.join(video.temp, FLOW_BACKWARD_MEANS_FILE)
            with open(path, "wb") as f:
                np.save(f, means, allow_pickle=False)
        meta = {
            "algorithm": XLA_ALGORITHM,
            "bound": bound,
            "short_side": s["short_side"],
            "width": video.info["width"],
            "height": video.info["height"],
            "rgb_frames": count,
            "flow_frames": count - 1,
            "fps": video.info["fps"],
            "source": os.fspath(s.get("source", video.source)),
            "keras_twostream_version": __version__,
            "reported_frames": video.info["reported_frames"],
            "jpeg_quality": int(s["jpeg_quality"]),
            "backward_flow": bool(backward),
            "flow_params": params,
        }
        write_meta(video.temp, meta)
        os.rename(video.temp, video.final)
        record(("done", video.index, count))

    def maybe_finish(video):
        if video.ended and video.pending == 0 and not video.failed:
            try:
                finish(video)
            except Exception as error:
                fail(video, error)

    def flush(shape, force=False):
        import cv2

        from keras_twostream.flow import tvl1

        items = [item for item in buffers.get(shape, []) if not item[0].failed]
        while len(items) >= batch_size or (force and items):
            chunk, items = items[:batch_size], items[batch_size:]
            a = np.stack([item[2] for item in chunk])
            b = np.stack([item[3] for item in chunk])
            pad = batch_size - len(chunk)
            if pad:  # keep one shape: one compiled program for the whole run
                a = np.concatenate([a, np.repeat(a[-1:], pad, axis=0)])
                b = np.concatenate([b, np.repeat(b[-1:], pad, axis=0)])
            if backward:  # forward and backward pairs in one call
                a, b = np.concatenate([a, b]), np.concatenate([b, a])
            flow = np.asarray(tvl1(a, b, **params))
            for k, (video, index, _, _) in enumerate(chunk):
                if video.failed:
                    continue
                jpeg = [cv2.IMWRITE_JPEG_QUALITY, int(video.settings["jpeg_quality"])]
                bound = float(video.settings["bound"])
                try:
                    q = quantize_flow(flow[k], bound)
                    x_path, y_path = flow_frame_paths(video.temp, index)
                    video.means.append(
                        (
                            _write_field(x_path, np.ascontiguousarray(q[..., 0]), jpeg),
                            _write_field(y_path, np.ascontiguousarray(q[..., 1]), jpeg),
                        )
                    )
                    if backward:
                        q = quantize_flow(flow[batch_size + k], bound)
                        x_path, y_path = backward_flow_frame_paths(video.temp, index)
                        video.backward_means.append(
                            (
                                _write_field(x_path, np.ascontiguousarray(q[..., 0]), jpeg),
                                _write_field(y_path, np.ascontiguousarray(q[..., 1]), jpeg),
                            )
                        )
                except Exception as error:
                    fail(video, error)
                    continue
                video.pending -= 1
                add_frames(1)
                maybe_finish(video)
        buffers[shape] = items

    thread.start()
    try:
        while True:
            kind, video, value = pairs.get()
            if kind == "done":
                break
            if kind == "skipped":
                record(("skipped", video.index, 0))
            elif kind == "error":
                fail(video, value)
            elif kind == "pair":
                if video.failed:
                    continue
                index, a, b = value
                if index == 1:
                    add_frames(1)  # the first RGB frame has no pair of its own
                video.pending += 1
                shape = a.shape
                buffers.setdefault(shape, []).append((video, index, a, b))
                flush(shape)
            elif kind == "end":
                video.info = value
                video.ended = True
                if value["count"] < 2:
                    add_frames(value["count"])
                maybe_finish(video)
        for shape in list(buffers):
            flush(shape, force=True)
    finally:
        stop.set()
        thread.join(timeout=10)
