"""Video decoding with OpenCV: RGB uint8 frames, short side resized, frame count verified.

`CAP_PROP_FRAME_COUNT` is read from the container and is often wrong (estimated from the
duration for some formats), so the count that matters is the number of frames actually
decoded. A video that cannot be opened, decodes no frame, or stops well before the count
its container announces (a truncated or corrupt file) raises `VideoDecodeError`, whose
message names the file and the reason.

The two-stream paper rescales videos "so that the smallest side of the frame equals 256"
(Simonyan & Zisserman 2014, Sect. 5); `short_side=256` is the default here.
"""

import os
from dataclasses import dataclass

import numpy as np

VIDEO_EXTENSIONS = (
    ".3gp",
    ".avi",
    ".flv",
    ".m4v",
    ".mkv",
    ".mov",
    ".mp4",
    ".mpeg",
    ".mpg",
    ".ogv",
    ".webm",
    ".wmv",
)


class VideoDecodeError(ValueError):
    """A video that cannot be decoded; `str(error)` is `"<path>: <reason>"`.

    Args:
        path: the video file.
        reason: why it failed, in words.
    """

    def __init__(self, path, reason):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


@dataclass
class VideoInfo:
    """What is known about a video.

    Attributes:
        path: the file.
        frames: frames actually decoded (`None` until the video has been read through).
        reported_frames: `CAP_PROP_FRAME_COUNT` of the container (may be wrong, or -1).
        fps: frames per second the container reports (0.0 when unknown).
        width: width of the decoded frames before resizing.
        height: height of the decoded frames before resizing.
    """

    path: str
    frames: int | None
    reported_frames: int
    fps: float
    width: int
    height: int


def resized_size(width, height, short_side):
    """Output `(width, height)` when the short side is scaled to `short_side`.

    The long side is rounded to the nearest integer (half up, like `mmcv.imrescale`), so a
    320x240 video becomes 341x256. `short_side=None` keeps the size.

    Args:
        width: input width in pixels.
        height: input height in pixels.
        short_side: wanted length of the shorter side, or `None`.

    Returns:
        A tuple `(new_width, new_height)`.

    Example:

    >>> from keras_twostream.data.video import resized_size
    >>> resized_size(320, 240, 256)
    (341, 256)
    """
    if short_side is None:
        return int(width), int(height)
    _check_short_side(short_side)
    if width <= 0 or height <= 0:
        raise ValueError(
            f"Expected a positive frame size. Received: width={width}, height={height}"
        )
    if width <= height:
        return int(short_side), max(1, int(height * short_side / width + 0.5))
    return max(1, int(width * short_side / height + 0.5)), int(short_side)


def _check_short_side(short_side):
    if short_side is not None and (
        isinstance(short_side, bool) or int(short_side) != short_side or short_side < 1
    ):
        raise ValueError(
            f"Expected short_side to be a positive integer or None. Received: short_side={short_side!r}"
        )


def _check_missing_tolerance(missing_tolerance):
    if not 0.0 <= missing_tolerance < 1.0:
        raise ValueError(
            "Expected 0 <= missing_tolerance < 1 (a fraction of the container's frame count). "
            f"Received: missing_tolerance={missing_tolerance!r}"
        )


def _open(path, threads=None):
    """Opens a video or raises FileNotFoundError / VideoDecodeError with the reason."""
    import cv2

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Video not found: {path}")
    if os.path.isdir(path):
        raise VideoDecodeError(path, "is a folder, not a video file")
    size = os.path.getsize(path)
    if size == 0:
        raise VideoDecodeError(path, "the file is empty (0 bytes)")
    params = [] if threads is None else [cv2.CAP_PROP_N_THREADS, int(threads)]
    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG, params)
    if not capture.isOpened():
        capture.release()
        raise VideoDecodeError(
            path,
            f"OpenCV (FFmpeg) cannot open it ({size} bytes): not a video, an unsupported codec, "
            "or a truncated file whose index is missing (an MP4 without its 'moov' atom)",
        )
    return capture


def _too_short(decoded, reported, missing_tolerance):
    """True when decoding stopped well before the container's frame count."""
    if reported <= 0:
        return False
    return reported - decoded > max(1, missing_tolerance * reported)


class VideoReader:
    """Iterates over the frames of a video as uint8 arrays, resized, with the count checked.

    After the last frame, `frames` holds the number decoded. If decoding ended more than
    `missing_tolerance` (a fraction) short of the container's `CAP_PROP_FRAME_COUNT`, or
    produced no frame at all, iteration raises `VideoDecodeError` instead of stopping:
    that is how a truncated or corrupt file shows up. A count that is off by at most the
    tolerance (containers estimate it from the duration) is not an error.

    Args:
        path: the video file.
        short_side: resize so the shorter side has this many pixels (area interpolation
            when shrinking, bilinear when enlarging); `None` keeps the size.
        channel_order: `"rgb"` (default) or `"bgr"` (OpenCV's order, for `cv2.imwrite`).
        missing_tolerance: fraction of the reported frame count that may fail to decode
            before the video counts as truncated.
        threads: FFmpeg decoding threads (`None`: OpenCV's default, one per core); 1 in
            extraction worker processes, which run in parallel already.

    Attributes:
        reported_frames: the container's frame count (-1 when it has none).
        fps: the container's frame rate (0.0 when unknown).
        width, height: size of the decoded frames before resizing.
        output_size: `(width, height)` of the frames yielded.
        frames: frames decoded so far.

    Raises:
        FileNotFoundError: the file does not exist.
        VideoDecodeError: the file is empty or OpenCV cannot open it.

    Example:

    >>> from keras_twostream.data.video import VideoReader
    >>> with VideoReader("v_ApplyEyeMakeup_g01_c01.avi") as reader:  # doctest: +SKIP
    ...     for frame in reader:
    ...         pass  # frame: uint8 [256, 341, 3], RGB
    >>> reader.frames  # doctest: +SKIP
    164
    """

    def __init__(
        self, path, short_side=256, channel_order="rgb", missing_tolerance=0.05, threads=None
    ):
        import cv2

        _check_short_side(short_side)
        _check_missing_tolerance(missing_tolerance)
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(
                f"Expected channel_order to be 'rgb' or 'bgr'. Received: channel_order={channel_order!r}"
            )
        self.path = os.fspath(path)
        self.short_side = short_side
        self.channel_order = channel_order
        self.missing_tolerance = missing_tolerance
        if threads is not None and (
            isinstance(threads, bool) or int(threads) != threads or threads < 1
        ):
            raise ValueError(
                f"Expected threads to be an integer >= 1 or None. Received: threads={threads!r}"
            )
        self.threads = threads
        self._capture = _open(self.path, threads)
        self.reported_frames = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.width = int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.output_size = None
        if self.width > 0 and self.height > 0:
            self.output_size = resized_size(self.width, self.height, short_side)
        self.frames = 0

    def __iter__(self):
        import cv2

        if self._capture is None:
            raise ValueError(f"{self.path}: the reader is closed (iterate over a VideoReader once)")
        try:
            while True:
                ok, frame = self._capture.read()
                if not ok:
                    break
                if frame is None or frame.ndim != 3 or frame.shape[2] != 3:
                    raise VideoDecodeError(
                        self.path, f"frame {self.frames + 1} decoded with an unexpected shape"
                    )
                height, width = frame.shape[:2]
                if (width, height) != (self.width, self.height) or self.output_size is None:
                    # The stream's size changed (or the container did not report it).
                    self.width, self.height = width, height
                    self.output_size = resized_size(width, height, self.short_side)
                if self.output_size != (width, height):
                    shrink = self.output_size[0] < width
                    frame = cv2.resize(
                        frame,
                        self.output_size,
                        interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
                    )
                if self.channel_order == "rgb":
                    frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                self.frames += 1
                yield frame
        finally:
            self.close()
        self._check_complete()

    def _check_complete(self):
        if self.frames == 0:
            raise VideoDecodeError(
                self.path,
                "decoded 0 frames although OpenCV opened it "
                f"(the container reports {self.reported_frames}): corrupt or unsupported stream",
            )
        if _too_short(self.frames, self.reported_frames, self.missing_tolerance):
            raise VideoDecodeError(
                self.path,
                f"decoding stopped after {self.frames} of the {self.reported_frames} frames the "
                f"container reports (more than {self.missing_tolerance:.0%} missing): the file is "
                "probably truncated or corrupt",
            )

    def info(self):
        """A `VideoInfo`; `frames` is the decoded count once the video was read through."""
        return VideoInfo(
            path=self.path,
            frames=self.frames if self._capture is None else None,
            reported_frames=self.reported_frames,
            fps=self.fps,
            width=self.width,
            height=self.height,
        )

    def close(self):
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_video(path, short_side=256, missing_tolerance=0.05):
    """Decodes a whole video into one uint8 array of RGB frames.

    The frame count is the number of frames decoded, checked against the container's
    count (see `VideoReader`). For long videos prefer iterating over a `VideoReader`,
    which holds one frame at a time.

    Args:
        path: the video file.
        short_side: resize so the shorter side has this many pixels; `None` keeps the size.
        missing_tolerance: fraction of the container's frame count that may fail to
            decode before the video counts as truncated.

    Returns:
        A uint8 array `[frames, height, width, 3]` in RGB order.

    Raises:
        FileNotFoundError: the file does not exist.
        VideoDecodeError: it is empty, cannot be opened, decodes no frame, or stops early.

    Example:

    >>> from keras_twostream.data.video import read_video
    >>> frames = read_video("v_ApplyEyeMakeup_g01_c01.avi")  # doctest: +SKIP
    >>> frames.shape, frames.dtype  # doctest: +SKIP
    ((164, 256, 341, 3), dtype('uint8'))
    """
    reader = VideoReader(path, short_side=short_side, missing_tolerance=missing_tolerance)
    frames = list(reader)
    return np.stack(frames)


def probe_video(path, decode=True, missing_tolerance=0.05):
    """Opens a video and counts its frames by decoding them (without resizing).

    Args:
        path: the video file.
        decode: decode every frame to count them and to detect truncation; with
            `decode=False` only the container's figures are read (`frames` is `None`).
        missing_tolerance: as in `VideoReader`.

    Returns:
        A `VideoInfo`.

    Raises:
        FileNotFoundError: the file does not exist.
        VideoDecodeError: it is empty, cannot be opened, decodes no frame, or stops early.

    Example:

    >>> from keras_twostream.data.video import probe_video
    >>> probe_video("test.avi").frames  # doctest: +SKIP
    164
    """
    import cv2

    _check_missing_tolerance(missing_tolerance)
    path = os.fspath(path)
    capture = _open(path)
    try:
        info = VideoInfo(
            path=path,
            frames=None,
            reported_frames=int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
            fps=float(capture.get(cv2.CAP_PROP_FPS) or 0.0),
            width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        if not decode:
            return info
        count = 0
        # grab() demuxes and decodes each frame but skips the colour conversion.
        while capture.grab():
            count += 1
    finally:
        capture.release()
    info.frames = count
    if count == 0:
        raise VideoDecodeError(
            path,
            "decoded 0 frames although OpenCV opened it "
            f"(the container reports {info.reported_frames}): corrupt or unsupported stream",
        )
    if _too_short(count, info.reported_frames, missing_tolerance):
        raise VideoDecodeError(
            path,
            f"decoding stopped after {count} of the {info.reported_frames} frames the container "
            f"reports (more than {missing_tolerance:.0%} missing): the file is probably truncated "
            "or corrupt",
        )
    return info
