"""Video decoding: exact frames against raw OpenCV, sizes, counts, and broken files."""

import cv2
import numpy as np
import pytest
from corrupt_inputs import TEST_AVI, TEST_MP4, make_corrupt_videos

from keras_twostream.data.video import (
    VideoDecodeError,
    VideoReader,
    probe_video,
    read_video,
    resized_size,
)


def _raw_bgr_frames(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory):
    return make_corrupt_videos(tmp_path_factory.mktemp("corrupt"))


def test_resized_size_exact_values():
    assert resized_size(320, 240, 256) == (341, 256)  # 320 * 256 / 240 = 341.33
    assert resized_size(240, 320, 256) == (256, 341)
    assert resized_size(340, 256, 256) == (340, 256)
    assert resized_size(640, 272, 256) == (602, 256)  # 602.35
    assert resized_size(341, 2, 1) == (171, 1)  # 170.5 rounds half up
    assert resized_size(100, 100, 64) == (64, 64)
    assert resized_size(320, 240, None) == (320, 240)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "256"])
def test_resized_size_rejects_bad_short_side(bad):
    with pytest.raises((ValueError, TypeError), match="short_side"):
        resized_size(320, 240, bad)


def test_read_video_matches_raw_opencv_decode():
    raw = _raw_bgr_frames(TEST_AVI)
    assert len(raw) == 164
    frames = read_video(TEST_AVI, short_side=256)
    assert frames.shape == (164, 256, 341, 3) and frames.dtype == np.uint8
    for i in (0, 81, 163):  # upscaling uses bilinear interpolation, then BGR -> RGB
        expected = cv2.resize(raw[i], (341, 256), interpolation=cv2.INTER_LINEAR)[..., ::-1]
        np.testing.assert_array_equal(frames[i], expected)
    original = read_video(TEST_AVI, short_side=None)
    assert original.shape == (164, 240, 320, 3)
    np.testing.assert_array_equal(original[10], raw[10][..., ::-1])


def test_shrinking_uses_area_interpolation_and_bgr_order():
    raw = _raw_bgr_frames(TEST_MP4)
    reader = VideoReader(TEST_MP4, short_side=128, channel_order="bgr")
    assert (reader.width, reader.height, reader.output_size) == (340, 256, (170, 128))
    frames = list(reader)
    assert len(frames) == reader.frames == len(raw) == 300
    expected = cv2.resize(raw[5], (170, 128), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(frames[5], expected)
    info = reader.info()
    assert (info.frames, info.reported_frames, info.fps) == (300, 300, 30.0)


def test_probe_video_counts_decoded_frames():
    info = probe_video(TEST_AVI)
    assert (info.frames, info.reported_frames, info.width, info.height, info.fps) == (
        164,
        164,
        320,
        240,
        25.0,
    )
    assert probe_video(TEST_AVI, decode=False).frames is None


def test_stopping_early_is_not_an_error():
    with VideoReader(TEST_AVI, short_side=64) as reader:
        for i, _ in enumerate(reader):
            if i == 9:
                break
    assert reader.frames == 10


def test_truncated_video_is_a_failure_with_its_reason(corrupt):
    path = corrupt["truncated_avi"]
    with pytest.raises(VideoDecodeError, match=r"stopped after 77 of the 164 frames") as error:
        read_video(path, short_side=64)
    assert error.value.path == str(path) and str(path) in str(error.value)
    with pytest.raises(VideoDecodeError, match="truncated"):
        probe_video(path)
    # Within a generous tolerance the same file reads, with its real (decoded) count.
    assert read_video(path, short_side=64, missing_tolerance=0.6).shape[0] == 77
    assert probe_video(path, missing_tolerance=0.6).frames == 77


@pytest.mark.parametrize(
    "kind, message",
    [
        ("truncated_mp4", "cannot open it"),
        ("empty", r"empty \(0 bytes\)"),
        ("text", "cannot open it"),
    ],
)
def test_undecodable_files_raise_with_path_and_reason(corrupt, kind, message):
    path = corrupt[kind]
    with pytest.raises(VideoDecodeError, match=message) as error:
        read_video(path)
    assert str(path) in str(error.value)
    with pytest.raises(VideoDecodeError, match=message):
        probe_video(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.avi"):
        read_video(tmp_path / "missing.avi")
    with pytest.raises(VideoDecodeError, match="is a folder"):
        VideoReader(tmp_path)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="channel_order"):
        VideoReader(TEST_AVI, channel_order="yuv")
    with pytest.raises(ValueError, match="missing_tolerance"):
        VideoReader(TEST_AVI, missing_tolerance=1.5)
