"""Re-encoding videos for fast random access: short GOPs (all-intra by default), H.264 in MP4.

A training clip from a video decodes every reference frame from the keyframe before each
sampled frame (`keras_twostream.data.video_source`); with the long GOPs of ordinary H.264
files (a keyframe every 30 to 235 frames in the real test videos) that is tens of frames
per sampled frame, where a frame folder decodes one JPEG. `reencode_video` writes a copy
whose every `gop`-th frame is a keyframe and which has no B-frames, so a sampled frame
costs at most `gop` frame decodes; frames are resized as `keras-twostream extract` resizes
them (short side 256, area interpolation), so the copy decodes to (nearly, the encoding is
lossy) the frames of the frame folder. Measured in `docs/benchmarks.md`
(`benchmarks/bench_video_pipeline.py`).
"""

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from keras_twostream.data.video import VideoReader, _check_short_side

__all__ = ["reencode_video"]


def reencode_video(src, dst, gop=1, short_side=256, crf=18, preset="veryfast"):
    """Writes `src` as H.264 (yuv420p, no B-frames, a keyframe every `gop` frames) to `dst`.

    Args:
        src: the video to re-encode (anything OpenCV decodes).
        dst: the output file; its extension chooses the container (`.mp4`, `.mkv`).
            Written atomically (a temporary name, then renamed).
        gop: frames per group of pictures (1: every frame a keyframe, all-intra).
        short_side: resize so the short side has this size (`None`: keep the size).
        crf: x264's constant rate factor (0 lossless, 18 visually lossless, 23 default).
        preset: x264's speed/size preset.

    Returns:
        The number of frames written.

    Raises:
        ValueError: a bad argument, or `src` does not decode (`VideoDecodeError`).

    Example:

    >>> from keras_twostream.data.reencode import reencode_video
    >>> reencode_video("tests/data/mmaction2/test.mp4", "/tmp/test_intra.mp4")  # doctest: +SKIP
    300
    """
    import av

    if not (isinstance(gop, int) and gop >= 1):
        raise ValueError(f"Expected gop to be an integer >= 1. Received: gop={gop!r}")
    if not 0 <= crf <= 51:
        raise ValueError(f"Expected crf between 0 and 51. Received: crf={crf!r}")
    if short_side is not None:
        _check_short_side(short_side)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    temp = dst.with_name(f".{dst.stem}.tmp-{os.getpid()}{dst.suffix}")
    written = 0
    try:
        with VideoReader(src, short_side=short_side) as reader:
            fps = Fraction(reader.fps or 25.0).limit_denominator(1001)
            with av.open(str(temp), "w") as container:
                stream = None
                for frame in reader:  # RGB uint8, resized
                    if stream is None:
                        height, width = frame.shape[:2]
                        stream = container.add_stream("libx264", rate=fps)
                        # yuv420p needs even sizes: crop the odd row/column.
                        stream.width, stream.height = width - width % 2, height - height % 2
                        stream.pix_fmt = "yuv420p"
                        stream.options = {
                            "crf": str(crf),
                            "preset": preset,
                            "g": str(gop),
                            "keyint_min": str(gop),
                            "bf": "0",
                            "sc_threshold": "0",  # keyframes exactly every gop frames
                        }
                    image = np.ascontiguousarray(frame[: stream.height, : stream.width])
                    video_frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                    video_frame.pts = written
                    for packet in stream.encode(video_frame):
                        container.mux(packet)
                    written += 1
                if stream is not None:
                    for packet in stream.encode():
                        container.mux(packet)
        if written == 0:
            raise ValueError(f"{src}: decoded no frame; nothing to re-encode")
        os.replace(temp, dst)
    finally:
        if temp.exists():
            temp.unlink()
    return written
