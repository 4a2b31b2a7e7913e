"""Video files as a pipeline source: frame counts that are verified, and frames read by seeking.

`make_dataset` / `make_test_dataset` serve `"rgb"` and `"rgb_diff"` straight from
video files when the annotation table names video files instead of frame folders
(decided per table: all rows videos, or none). The sampling, augmentation and test
views are the frame folders' own; only the reading of the sampled frames differs:
frame index `i` of a folder (`img_{i:05d}.jpg`, 1-based) is frame `i - 1` of the video.

Readers (`read_frames`), chosen by measurement (`benchmarks/bench_video_pipeline.py`,
`docs/benchmarks.md`; profile of the previous reader: every clip opened a capture, and
each sampled frame more than 24 frames on was an OpenCV seek, which lands up to 16 frames
before the target and decodes from the keyframe before that, so a K = 3 clip of test.mp4,
keyframes at 0 and 235 only, decoded frames 0..t up to three times):

- the sampled frames of a clip are read in one forward pass in sorted order, through a
  video kept open between calls (`_OpenVideos`, a pool shared by the threads);
- `_PyAVReader` (PyAV, for containers with stored timestamps: MP4, MOV, MKV, WebM; and
  intra-only codecs anywhere): a keyframe index from one demuxing pass, seeks only when
  a keyframe lies between the decoder's position and the target, and non-reference
  frames skipped while decoding forward (`skip_frame = "NONREF"`). PyAV plain seeking
  alone was measured no faster than OpenCV's in the previous session; what it adds is
  the keyframe index and the frame skipping OpenCV does not expose;
- `_OpenCVReader` for the rest (AVI: FFmpeg's guessed timestamps of MPEG-4 packed
  B-frames come out of order, so they cannot number frames): `CAP_PROP_POS_FRAMES`
  seeking, only across a keyframe of the PyAV index (or after a gap of `SEEK_GAP`
  without one), checked by reading the position back, decoding forward from the start
  when a container reports another position.

PyAV releases the GIL while decoding (`avcodec_send_packet` / `avcodec_receive_frame`), so
tf.data's parallel `numpy_function` calls decode concurrently; each decoder runs on one
thread (tf.data's calls are the parallelism; more decoder threads would contend for the
same cores), as the OpenCV captures do (`CAP_PROP_N_THREADS` 1).

Both return exactly the frames sequential OpenCV decoding returns (PyAV's `bgr24`
conversion matched OpenCV's bit for bit on the three H.264 test videos): tested on the
four real videos, in any order and across successive reads.
`DECODER = "opencv-reopen"` selects the previous reader for comparisons.

Frame counts: the container's count is not trusted blindly (`verified_frame_count`):
the last frame it announces must decode and the one after must not; otherwise the
frames are counted by decoding, and a video that stops more than 5% short of its
header (truncated) or decodes nothing is an error naming the file.
"""

import atexit
import bisect
import collections
import os
import threading

import numpy as np

from keras_twostream.data.video import (
    VIDEO_EXTENSIONS,
    VideoDecodeError,
    _open,
    _too_short,
    resized_size,
)

__all__ = ["is_video_file", "read_frames", "close_videos", "verified_frame_count", "SHORT_SIDE"]

# The short side frames are resized to, as `keras-twostream extract` writes frame folders
# (Sect. 5 of the two-stream paper), so crops of a video and of its frame folder match.
SHORT_SIDE = 256
# Frames decoded forward (grab) instead of seeking: a seek restarts at the previous keyframe,
# so a short gap is cheaper to decode through (TSN snippets of D + 1 frames, nearby segments).
SEEK_GAP = 24
# Idle videos kept open between `read_frames` calls, all threads together (least recently
# used closed first); a few MB each (demuxer buffers, decoder state).
OPEN_VIDEOS = 16
# Keyframe indexes kept (one demuxing pass each, shared by all threads; a few kB per video).
INDEXED_VIDEOS = 100_000
# Which reader `read_frames` uses: "auto" (PyAV where the container has timestamps, OpenCV
# otherwise, both kept open per thread), "opencv" (OpenCV kept open), "opencv-reopen" (the
# reader before the cache: a new OpenCV capture per call; for benchmarks). Read at each call;
# the environment variable KERAS_TWOSTREAM_VIDEO_DECODER sets the initial value.
DECODERS = ("auto", "opencv", "opencv-reopen")
DECODER = os.environ.get("KERAS_TWOSTREAM_VIDEO_DECODER", "auto")


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

    The sorted unique indices are read in one forward pass through a video kept open
    between calls (`close_videos`; see the module docstring: PyAV with a keyframe index and
    non-reference frames skipped where the container has timestamps, else OpenCV).
    Frames are resized like `keras-twostream extract` writes them (short side
    `short_side`, area interpolation when shrinking) and returned in RGB; they are the
    frames sequential decoding returns (tested on the four real videos).

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
    wanted = [int(i) for i in np.unique(indices)]
    if DECODER not in DECODERS:
        raise ValueError(
            f"Expected keras_twostream.data.video_source.DECODER (or the environment variable "
            f"KERAS_TWOSTREAM_VIDEO_DECODER) to be one of {', '.join(DECODERS)}. "
            f"Received: {DECODER!r}"
        )
    if DECODER == "opencv-reopen":
        decoded = _read_opencv_reopen(path, wanted)
    else:
        decoded = _pool.read(path, wanted)
    first = decoded[wanted[0]]
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


def close_videos():
    """Closes the videos `read_frames` keeps open between calls.

    `read_frames` keeps up to `OPEN_VIDEOS` idle readers open (a pool shared by all
    threads: each call takes an idle reader of its video, or opens one, and gives it
    back; the least recently used are closed first), and closes them at interpreter
    exit. Call this to release them earlier (e.g. before deleting or rewriting the
    files on a platform that locks open files; a rewritten file is reopened anyway).

    Example:

    >>> from keras_twostream.data.video_source import close_videos, read_frames
    >>> _ = read_frames("tests/data/mmaction2/test.mp4", [0])
    >>> close_videos()
    """
    _pool.close()


def _not_decoded(path, index, decoded, wanted, extra=""):
    return VideoDecodeError(
        path,
        f"frame {index} does not decode (the video ends or is corrupt there{extra}; "
        f"{decoded} of the {wanted} frames wanted were read)",
    )


def _signature(path):
    """What identifies one version of a file: a rewritten file gets a new open video."""
    stat = os.stat(path)
    return (path, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


class _OpenVideos:
    """Idle open readers, shared by threads: signature -> [reader, ...], least recently used first.

    Not a `threading.local`: `tf.numpy_function` runs Python on TensorFlow's own threads
    under a thread state made for each call, so thread-local values vanish after every call
    (measured: a new value on 40 of 40 calls). A reader is used by one call at a time: it
    leaves the pool while it reads and goes back after.
    """

    def __init__(self):
        self.idle = collections.OrderedDict()
        self.lock = threading.Lock()

    def _take(self, signature):
        with self.lock:
            readers = self.idle.get(signature)
            if readers:
                reader = readers.pop()
                if not readers:
                    del self.idle[signature]
                return reader
        return None

    def _give_back(self, signature, reader):
        evicted = []
        with self.lock:
            self.idle.setdefault(signature, []).append(reader)
            self.idle.move_to_end(signature)
            total = sum(len(r) for r in self.idle.values())
            while total > OPEN_VIDEOS:
                oldest = next(iter(self.idle))
                evicted.append(self.idle[oldest].pop(0))
                if not self.idle[oldest]:
                    del self.idle[oldest]
                total -= 1
        for old in evicted:
            old.close()

    def read(self, path, wanted):
        if not os.path.exists(path):
            raise FileNotFoundError(f"Video not found: {path}")
        signature = _signature(path)
        reader = self._take(signature) or _open_reader(path, signature)
        try:
            try:
                decoded = reader.read(wanted)
            except _Untimed:
                # Timestamps that do not number the frames: OpenCV reads this video from now on.
                reader.close()
                _untimed.add(signature)
                reader = _OpenCVReader(path)
                decoded = reader.read(wanted)
        except BaseException:
            reader.close()  # a failed read leaves the decoder anywhere: not reused
            raise
        self._give_back(signature, reader)
        return decoded

    def peek(self, path):
        """The most recently returned idle reader of `path` (tests, benchmarks), or None."""
        with self.lock:
            for signature in reversed(self.idle):
                if signature[0] == path:
                    return self.idle[signature][-1]
        return None

    def close(self):
        with self.lock:
            readers = [r for rs in self.idle.values() for r in rs]
            self.idle.clear()
        for reader in readers:
            reader.close()


_pool = _OpenVideos()
_untimed = set()  # signatures of videos whose timestamps failed to number the frames
_indexes = {}  # signature -> `_PyAVReader._index()`, shared by all threads, oldest first
_indexes_lock = threading.Lock()
atexit.register(close_videos)


def _open_reader(path, signature):
    if DECODER == "opencv" or signature in _untimed:
        return _OpenCVReader(path)
    try:
        import av  # noqa: F401
    except ImportError:
        return _OpenCVReader(path)
    reader = _PyAVReader(path, signature)
    if reader.timed:
        return reader
    reader.close()
    return _OpenCVReader(path, keyframes=reader.packet_keyframes)


class _Untimed(Exception):
    """A decoded frame whose timestamp is not the one the packet index gave its position."""


class _PyAVReader:
    """Frames by timestamp: a keyframe index, seeks only across keyframes, NONREF skipping.

    The index is one demuxing pass per video and process (no decoding; 3-5 ms for the
    10 s test videos; shared by the threads): the
    presentation timestamps of all packets, sorted, number the frames (frame `i` has the
    `i`-th smallest timestamp), and the keyframe packets give the positions a seek can
    land on. Reading frame `t` seeks to the last keyframe at or before `t` unless the
    decoder is already between that keyframe and `t`; while decoding forward, packets of
    frames that are not wanted are decoded with `skip_frame = "NONREF"` (FFmpeg drops the
    frames no other frame references: the B-frames of these H.264 files, about half of
    all frames), and the packet of a wanted frame with `"DEFAULT"`. Skipping a non-reference
    frame cannot change any other frame, so the frames read are the frames sequential
    decoding returns; each decoded frame's timestamp is checked against the index, and a
    mismatch (`_Untimed`) hands the video to OpenCV.

    Containers without stored timestamps (AVI: FFmpeg guesses them, and for the packed
    B-frames of test.avi the guessed timestamps of decoded frames go 1, 2, 4, 3, ...; an
    intra-only codec in AVI, such as MJPEG, has no reordering and stays here) and packets
    with missing or repeated timestamps are left to `_OpenCVReader` (`timed`).
    """

    def __init__(self, path, signature):
        import av

        self.path = path
        self.container = None
        try:
            self.container = av.open(path)
            if not self.container.streams.video:
                raise VideoDecodeError(path, "has no video stream")
            self.stream = self.container.streams.video[0]
            self.stream.thread_type = "NONE"  # one thread per read: tf.data runs reads in parallel
            self.stream.codec_context.thread_count = 1
            index = _indexes.get(signature)
            if index is None:
                index = self._index()
                with _indexes_lock:
                    _indexes[signature] = index
                    while len(_indexes) > INDEXED_VIDEOS:
                        _indexes.pop(next(iter(_indexes)))
        except av.FFmpegError as error:
            self.close()
            raise VideoDecodeError(path, f"FFmpeg (PyAV) cannot read it: {error}") from None
        except BaseException:
            self.close()
            raise
        self.timed, self.timestamps, self.keyframes, self.packet_keyframes = index
        self.packets = None  # the demuxer after the last seek (None: seek first)
        self.sent = -1  # the largest frame whose packet the decoder has been given
        self.pending = set()  # wanted frames sent with DEFAULT, not yet out of the decoder
        self.last = -1  # the last frame out of the decoder
        self.frames_decoded = 0  # frames out of the decoder since opening (benchmarks)

    def _index(self):
        """One demuxing pass: (timed, sorted timestamps, keyframe frames, keyframe packet positions)."""
        timestamps, keys, packet_keyframes = [], [], []
        timed = (
            "avi" not in self.container.format.name.split(",")
            or self.stream.codec_context.codec.intra_only  # MJPEG or all-intra AVI: no reorder
        )
        for packet in self.container.demux(self.stream):
            if packet.size == 0 or packet.is_discard:  # the flush packet; MP4 edit lists
                continue
            if packet.is_keyframe:
                packet_keyframes.append(len(timestamps))
                keys.append(packet.pts)
            timed = timed and packet.pts is not None
            timestamps.append(packet.pts)
        self.container.seek(0)
        if not timed:
            return False, None, None, packet_keyframes
        ordered = sorted(timestamps)
        # int64 arrays, not dicts: 8 bytes a frame, so 10k indexed videos take megabytes.
        ordered = np.asarray(ordered, np.int64)
        keyframes = np.searchsorted(ordered, np.asarray(sorted(keys), np.int64)).tolist()
        unique = len(ordered) > 0 and bool(np.all(np.diff(ordered) > 0))
        timed = unique and bool(keyframes) and keyframes[0] == 0
        return timed, ordered, keyframes, packet_keyframes

    def _rank(self, pts):
        """The frame number of timestamp `pts`, or None when no packet had it."""
        i = int(np.searchsorted(self.timestamps, pts))
        if i < len(self.timestamps) and self.timestamps[i] == pts:
            return i
        return None

    def close(self):
        if self.container is not None:
            self.container.close()
            self.container = None
        self.packets = None

    def _seek(self, key):
        self.container.seek(
            int(self.timestamps[key]), stream=self.stream, backward=True, any_frame=False
        )
        self.packets = self.container.demux(self.stream)
        self.sent, self.pending, self.last = key - 1, set(), key - 1

    def read(self, wanted):
        import av

        count = len(self.timestamps)
        if wanted[-1] >= count:
            raise _not_decoded(self.path, wanted[-1], 0, len(wanted), f", after {count} frames")
        wanted_pts = {int(self.timestamps[i]): i for i in wanted}
        context = self.stream.codec_context
        out = {}
        try:
            for target in wanted:
                if target in out:
                    continue
                key = self.keyframes[bisect.bisect_right(self.keyframes, target) - 1]
                ahead = target > self.sent and key <= self.sent
                if self.packets is None or not (ahead or target in self.pending):
                    self._seek(key)
                while target not in out:
                    packet = next(self.packets, None)
                    if packet is None:  # past the flush packet: the demuxer is spent
                        self.packets = None
                        raise _not_decoded(self.path, target, len(out), len(wanted))
                    if packet.pts is not None:
                        index = wanted_pts.get(packet.pts)
                        if index is not None:
                            self.pending.add(index)
                        rank = self._rank(packet.pts)
                        if rank is not None:
                            self.sent = max(self.sent, rank)
                        skip = "DEFAULT" if index is not None else "NONREF"
                        if context.skip_frame != skip:
                            context.skip_frame = skip
                    for frame in packet.decode():
                        index = None if frame.pts is None else self._rank(frame.pts)
                        if index is None or index <= self.last:
                            raise _Untimed()
                        self.last = index
                        self.frames_decoded += 1
                        if index in self.pending:
                            self.pending.discard(index)
                            out[index] = frame.to_ndarray(format="bgr24")
                    if self.last > target and target not in out:
                        raise _Untimed()  # the decoder passed the target without it
        except av.FFmpegError as error:
            raise VideoDecodeError(
                self.path, f"decoding failed near frame {self.last + 1}: {error}"
            ) from None
        return {i: out[i] for i in wanted}


class _OpenCVReader:
    """Frames by position with OpenCV (`CAP_PROP_POS_FRAMES`), the capture kept open.

    With `keyframes` (the positions of the keyframe packets, from PyAV's demuxer), a
    target ahead of the capture's position is decoded through (`grab`) unless a keyframe
    lies between them and the gap exceeds `SEEK_GAP` (an OpenCV seek lands up to 16
    frames before the target and decodes from the keyframe before that); without them,
    any gap over `SEEK_GAP` is a seek. The index only chooses between the two: a seek is
    checked by reading the position back, and a container that reports another position
    is decoded forward from the start.
    """

    def __init__(self, path, keyframes=None):
        self.path = path
        self.keyframes = None if keyframes is None else list(keyframes)
        self.capture = _open(path, threads=1)
        self.position = 0  # index of the frame the next read() returns

    def _seek_to(self, index):
        gap = index - self.position
        if gap < 0:
            return True
        if gap <= SEEK_GAP:
            return False
        if self.keyframes is None:
            return True
        # A keyframe in (position, index]: seeking skips the frames before it.
        return bisect.bisect_right(self.keyframes, index) > bisect.bisect_right(
            self.keyframes, self.position
        )

    def close(self):
        if self.capture is not None:
            self.capture.release()
            self.capture = None

    def read(self, wanted):
        import cv2

        decoded = {}
        for index in wanted:
            gap = index - self.position
            if self._seek_to(index):
                self.capture.set(cv2.CAP_PROP_POS_FRAMES, index)
                if int(self.capture.get(cv2.CAP_PROP_POS_FRAMES)) != index:
                    # Keyframe-inexact container: decode forward from the start instead.
                    self.capture.release()
                    self.capture = _open(self.path, threads=1)
                    gap = index
                else:
                    gap = 0
            for _ in range(gap):
                if not self.capture.grab():
                    break
            ok, frame = self.capture.read()
            if not ok or frame is None:
                self.position = -1  # unknown: the next read seeks
                raise _not_decoded(self.path, index, len(decoded), len(wanted))
            decoded[index] = frame
            self.position = index + 1
        return decoded


def _read_opencv_reopen(path, wanted):
    """The reader before the open-video cache (`DECODER = "opencv-reopen"`, for benchmarks)."""
    reader = _OpenCVReader(path)
    try:
        return reader.read(wanted)
    finally:
        reader.close()


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
