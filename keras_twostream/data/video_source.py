"""Video files as a pipeline source: frame counts that are verified, and frames read by seeking.

`make_dataset` / `make_test_dataset` serve `"rgb"` and `"rgb_diff"` straight from
video files when the annotation table names video files instead of frame folders
(decided per table: all rows videos, or none). The sampling, augmentation and test
views are the frame folders' own; only the reading of the sampled frames differs:
frame index `i` of a folder (`img_{i:05d}.jpg`, 1-based) is frame `i - 1` of the video.

Decoder: OpenCV (FFmpeg), already a dependency, chosen by measurement
(`benchmarks/bench_video_pipeline.py`, `docs/benchmarks.md`): `CAP_PROP_POS_FRAMES`
seeking returned exactly the frame sequential decoding returns, for every 7th and the
last frame of the four real test videos (H.264 MP4 at 25, 28 and 30 fps, MPEG-4 AVI).
PyAV 18.1 (tried in a separate venv, seeking by timestamp to the keyframe before and
decoding forward) took about as long per K = 3 clip (98, 87, 242, 38 ms against OpenCV's
78, 133, 230, 19 ms on bikes, demo, test.mp4, test.avi; a loaded 2-core machine) and its
timestamp-to-frame mapping missed on the AVI (24 of 25 probes), so it brings a dependency
and a frame-numbering problem for no speed.
The reader still checks the position after each seek and falls back to decoding
forward from the start when a container reports a position other than the one asked for.

Frame counts: the container's count is not trusted blindly (`verified_frame_count`):
the last frame it announces must decode and the one after must not; otherwise the
frames are counted by decoding, and a video that stops more than 5% short of its
header (truncated) or decodes nothing is an error naming the file.
"""

import os

import numpy as np

from keras_twostream.data.video import (
    VIDEO_EXTENSIONS,
    VideoDecodeError,
    _open,
    _too_short,
    resized_size,
)

__all__ = ["is_video_file", "read_frames", "verified_frame_count", "SHORT_SIDE"]

# The short side frames are resized to, as `keras-twostream extract` writes frame folders
# (Sect. 5 of the two-stream paper), so crops of a video and of its frame folder match.
SHORT_SIDE = 256
# Frames decoded forward (grab) instead of seeking: a seek restarts at the previous keyframe,
# so a short gap is cheaper to decode through (TSN snippets of D + 1 frames, nearby segments).
SEEK_GAP = 24


def is_video_file(path):
    """True when `path` is an existing file whose extension is a video extension.

    Example:

    >>> from keras_twostream.data.video_source import is_video_file
    >>> is_video_file("tests/data/mmaction2/test.avi"), is_video_file("tests/data/mmaction2/imgs")
    (True, False)
    """
    path = os.fspath(path)
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS and not os.path.isdir(path)


def verified_frame_count(path, missing_tolerance=0.05):
    """The number of frames of a video, checked against what decodes.

    The container's `CAP_PROP_FRAME_COUNT` `n` is accepted when frame `n - 1` decodes
    after a seek and no frame follows it (two frame decodes); otherwise every frame is
    counted by decoding (`grab`), and the count must be within `missing_tolerance` of `n`.

    Args:
        path: the video file.
        missing_tolerance: fraction of the header's count that may fail to decode
            before the file counts as truncated.

    Returns:
        A tuple `(frames, fps)`.

    Raises:
        FileNotFoundError: no such file.
        VideoDecodeError: it is empty, does not open, decodes no frame, or stops early.

    Example:

    >>> from keras_twostream.data.video_source import verified_frame_count
    >>> verified_frame_count("tests/data/mmaction2/test.avi")
    (164, 25.0)
    """
    import cv2

    path = os.fspath(path)
    capture = _open(path, threads=1)
    try:
        reported = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        if reported > 0 and capture.set(cv2.CAP_PROP_POS_FRAMES, reported - 1):
            if (
                int(capture.get(cv2.CAP_PROP_POS_FRAMES)) == reported - 1
                and capture.grab()
                and not capture.grab()
            ):
                return reported, fps
        # The header lies (or seeking fails): count from the start.
        capture.release()
        capture = _open(path, threads=1)
        count = 0
        while capture.grab():
            count += 1
    finally:
        capture.release()
    if count == 0:
        raise VideoDecodeError(
            path,
            f"decoded 0 frames although OpenCV opened it (the container reports {reported}): "
            "corrupt or unsupported stream",
        )
    if _too_short(count, reported, missing_tolerance):
        raise VideoDecodeError(
            path,
            f"decoding stopped after {count} of the {reported} frames the container reports "
            f"(over {missing_tolerance:.0%} lost): the file is probably truncated or corrupt",
        )
    return count, fps


def read_frames(path, indices, short_side=SHORT_SIDE):
    """Decodes the frames `indices` (0-based, any order, repeats allowed) of a video.

    Sorted unique indices are visited once: a gap of at most `SEEK_GAP` frames is
    decoded through, a longer one is a seek (`CAP_PROP_POS_FRAMES`), checked by reading
    the position back. Frames are resized like `keras-twostream extract` writes them
    (short side `short_side`, area interpolation when shrinking) and returned in RGB.

    Args:
        path: the video file.
        indices: integer frame indices.
        short_side: the short side of the output, or `None` to keep the size.

    Returns:
        uint8 `[len(indices), H, W, 3]`, RGB.

    Raises:
        FileNotFoundError: no such file.
        VideoDecodeError: it does not open or a requested frame does not decode.

    Example:

    >>> from keras_twostream.data.video_source import read_frames
    >>> read_frames("tests/data/mmaction2/test.avi", [0, 163, 0]).shape
    (3, 256, 341, 3)
    """
    import cv2

    path = os.fsdecode(path) if isinstance(path, bytes) else os.fspath(path)
    indices = np.asarray(indices, np.int64).reshape(-1)
    if len(indices) == 0:
        raise ValueError(f"{path}: read_frames needs at least one frame index")
    if indices.min() < 0:
        raise VideoDecodeError(path, f"negative frame index {int(indices.min())} requested")
    wanted = np.unique(indices)
    capture = _open(path, threads=1)
    decoded = {}
    try:
        position = 0  # index of the frame the next read() returns
        for index in wanted.tolist():
            gap = index - position
            if gap < 0 or gap > SEEK_GAP:
                capture.set(cv2.CAP_PROP_POS_FRAMES, index)
                if int(capture.get(cv2.CAP_PROP_POS_FRAMES)) != index:
                    # Keyframe-inexact container: decode forward from the start instead.
                    capture.release()
                    capture = _open(path, threads=1)
                    gap = index
                else:
                    gap = 0
            for _ in range(gap):
                if not capture.grab():
                    break
            ok, frame = capture.read()
            if not ok or frame is None:
                raise VideoDecodeError(
                    path,
                    f"frame {index} does not decode (the video ends or is corrupt there; "
                    f"{len(decoded)} of the {len(wanted)} frames wanted were read)",
                )
            decoded[index] = frame
            position = index + 1
    finally:
        capture.release()
    first = decoded[int(wanted[0])]
    height, width = first.shape[:2]
    size = resized_size(width, height, short_side)
    out = {}
    for index, frame in decoded.items():
        if frame.shape[:2] != (height, width) or size != (width, height):
            shrink = size[0] < frame.shape[1]
            frame = cv2.resize(
                frame, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            )
        out[index] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    return np.stack([out[int(i)] for i in indices])


def frames_op(path, indices, short_side=SHORT_SIDE):
    """`read_frames` as a TensorFlow op: scalar string path, int32 indices -> uint8 `[N, H, W, 3]`.

    A decoding failure raises inside the op, so `tf.data`'s `ignore_errors` drops the
    sample and the pipeline's guard names the video (as for a corrupt JPEG).
    """
    import tensorflow as tf

    def read(p, i):
        return read_frames(p, i, short_side)

    frames = tf.numpy_function(read, [path, indices], tf.uint8, stateful=False)
    return tf.ensure_shape(frames, [indices.shape[0], None, None, 3])
