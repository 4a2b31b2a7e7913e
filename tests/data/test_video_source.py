"""Video files as a pipeline source: the seek reader, verified counts, parity with frame folders, bad videos."""

import functools
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from corrupt_inputs import TEST_AVI, TEST_MP4, copy_video, make_corrupt_videos

from keras_twostream.data import sampling, video_source
from keras_twostream.data.pipeline import make_dataset, make_test_dataset
from keras_twostream.data.video import VideoDecodeError, read_video
from keras_twostream.data.video_source import close_videos, read_frames, verified_frame_count

# The real videos of ../shared/data where the checkout has them (H.264 at 25 and 28 fps).
_ROOT = Path(__file__).resolve().parents[2]
SHARED = next(
    (
        p
        for p in (_ROOT.parent / "shared" / "data", _ROOT.parent.parent / "shared" / "data")
        if p.is_dir()
    ),
    _ROOT.parent / "shared" / "data",
)
SHARED_VIDEOS = [SHARED / "bikes.mp4", SHARED / "mmaction2" / "demo" / "demo.mp4"]


@pytest.mark.parametrize("video", [TEST_AVI, TEST_MP4], ids=["mpeg4_avi", "h264_mp4"])
def test_seeked_frames_equal_sequentially_decoded_frames(video):
    every = _sequential(video)  # sequential decoding, short side 256
    # Out of order, repeated, a long gap (seek), short gaps (decode through), the last frame.
    indices = [len(every) - 1, 0, 5, 6, 90, 3, 90, len(every) // 2]
    np.testing.assert_array_equal(read_frames(video, indices), every[indices])


@functools.cache
def _sequential(video):
    """Every frame by sequential decoding (short side 256), decoded once in this module."""
    return read_video(video)


@pytest.fixture(autouse=True, scope="module")
def _release_frames():
    yield
    _sequential.cache_clear()
    close_videos()


def _draws(count, n, seed):
    rng = np.random.default_rng(seed)
    draws = [sampling.segment_starts(count, 3, training=True, rng=rng) for _ in range(n)]
    # Forward continuations, a repeat, steps back, adjacent frames, the end.
    return draws + [[count - 1], [count - 2, count - 1], [0, 1, 2], [5, 40, 41, count // 2]]


@pytest.mark.parametrize(
    "video",
    [TEST_AVI, TEST_MP4, *[v for v in SHARED_VIDEOS if v.exists()]],
    ids=lambda v: Path(v).name,
)
def test_reads_through_the_open_video_cache_equal_sequential_decoding(video):
    """Successive reads continue, seek across keyframes or back, and skip non-reference frames."""
    every = _sequential(video)
    close_videos()
    for indices in _draws(len(every), 6, seed=3):
        np.testing.assert_array_equal(read_frames(video, indices), every[indices])
    reader = video_source._pool.peek(str(video))
    # H.264 in MP4 goes to PyAV (timestamps), MPEG-4 in AVI (packed B-frames) to OpenCV.
    expected = "_OpenCVReader" if Path(video).suffix == ".avi" else "_PyAVReader"
    assert type(reader).__name__ == expected
    close_videos()
    assert not video_source._pool.idle


def test_pyav_reader_skips_non_reference_frames_and_seeks_to_the_keyframe_before():
    close_videos()
    read_frames(TEST_MP4, [299])  # test.mp4: keyframes at 0 and 235 only
    reader = video_source._pool.peek(str(TEST_MP4))
    assert reader.keyframes == [0, 235]
    # From the keyframe at 235 to 299: 65 frames, of which the B-frames are skipped.
    assert 10 < reader.frames_decoded < 65
    before = reader.frames_decoded
    read_frames(TEST_MP4, [120])  # back: a seek to 0, then forward through the references
    assert reader.frames_decoded - before < 121
    close_videos()


def test_an_intra_only_avi_is_read_by_timestamps_one_decode_per_frame(tmp_path):
    """MJPEG in AVI (the synthetic dataset's format): no reordering, so PyAV numbers its frames."""
    import cv2

    path = str(tmp_path / "mjpeg.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(30):
        frame = np.zeros((48, 64, 3), np.uint8)
        cv2.circle(frame, (4 + 2 * i, 24), 6, (40 + 7 * i, 100, 200), -1)
        writer.write(frame)
    writer.release()
    every = read_video(path, short_side=None)
    close_videos()
    for indices in ([29, 0, 5], [10, 11, 12], [3], [29]):
        np.testing.assert_array_equal(read_frames(path, indices, None), every[indices])
    reader = video_source._pool.peek(path)
    assert type(reader).__name__ == "_PyAVReader" and reader.frames_decoded == 8
    close_videos()


def test_threads_share_the_open_videos():
    every = _sequential(TEST_MP4)
    draws = _draws(len(every), 4, seed=5)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda idx: read_frames(TEST_MP4, idx), draws))
    for indices, frames in zip(draws, results, strict=True):
        np.testing.assert_array_equal(frames, every[indices])


def test_a_rewritten_video_is_reopened(tmp_path):
    path = tmp_path / "clip.mp4"
    shutil.copyfile(TEST_MP4, path)
    first = read_frames(path, [10])
    shutil.copyfile(SHARED_VIDEOS[1] if SHARED_VIDEOS[1].exists() else TEST_AVI, path)
    np.testing.assert_array_equal(read_frames(path, [10]), read_video(path)[[10]])
    assert not np.array_equal(read_frames(path, [10]), first)
    close_videos()


def test_previous_reader_still_selectable(monkeypatch):
    monkeypatch.setattr(video_source, "DECODER", "opencv-reopen")
    close_videos()
    indices = [250, 3, 120]
    np.testing.assert_array_equal(read_frames(TEST_MP4, indices), _sequential(TEST_MP4)[indices])
    assert not video_source._pool.idle  # nothing kept open
    monkeypatch.setattr(video_source, "DECODER", "ffmpeg")
    with pytest.raises(ValueError, match="KERAS_TWOSTREAM_VIDEO_DECODER.*Received: 'ffmpeg'"):
        read_frames(TEST_MP4, [0])


def test_reencoded_all_intra_copy_has_a_keyframe_per_frame_and_the_same_frames(tmp_path):
    import av

    from keras_twostream.cli import main

    out = tmp_path / "intra"
    assert main(["reencode", str(TEST_AVI), str(out), "--short-side", "120"]) == 0
    copy = out / "test.mp4"
    with av.open(str(copy)) as container:
        packets = [p for p in container.demux(container.streams.video[0]) if p.size]
    assert len(packets) == 164 and all(p.is_keyframe for p in packets)
    original, decoded = read_video(TEST_AVI, short_side=120), read_video(copy, short_side=None)
    assert decoded.shape == original.shape
    # CRF 18 and 4:2:0 chroma at 160x120: under 2% of the range on average.
    assert np.abs(decoded.astype(float) - original).mean() < 5
    close_videos()
    indices = [150, 2, 77, 78]
    np.testing.assert_array_equal(read_frames(copy, indices, None), decoded[indices])
    reader = video_source._pool.peek(str(copy))
    assert reader.frames_decoded == 4  # one decode per frame read
    close_videos()
    with pytest.raises(ValueError, match="gop"):
        from keras_twostream.data.reencode import reencode_video

        reencode_video(TEST_AVI, tmp_path / "x.mp4", gop=0)


def test_frame_counts_are_verified_not_read_from_the_header(tmp_path):
    assert verified_frame_count(TEST_AVI) == (164, 25.0)
    assert verified_frame_count(TEST_MP4) == (300, 30.0)
    bad = make_corrupt_videos(tmp_path)
    # Half an AVI: its header still says 164 frames; counting finds 77.
    with pytest.raises(
        VideoDecodeError, match=r"truncated\.avi: decoding stopped after 7\d of the 164"
    ):
        verified_frame_count(bad["truncated_avi"])
    for kind in ("truncated_mp4", "empty", "text"):
        with pytest.raises(VideoDecodeError, match=bad[kind].name):
            verified_frame_count(bad[kind])
    with pytest.raises(VideoDecodeError, match="frame 164 does not decode"):
        read_frames(TEST_AVI, [3, 164])


@pytest.fixture(scope="module")
def avi_and_folder(tmp_path_factory):
    from keras_twostream.data.extract import extract_video

    folder = tmp_path_factory.mktemp("frames") / "test"
    extract_video(TEST_AVI, folder, flow="none", short_side=256)
    return str(TEST_AVI), str(folder)


def test_video_source_samples_and_augments_like_its_frame_folder(avi_and_folder):
    video, folder = avi_and_folder
    kwargs = dict(
        modalities=("rgb", "rgb_diff"),
        num_segments=3,
        diff_length=2,
        image_size=48,
        batch_size=2,
        seed=7,
        color_jitter={"brightness": 0.2},
    )
    from_video = make_dataset(pd.DataFrame({"path": [video, video], "label": [1, 2]}), **kwargs)
    from_folder = make_dataset(pd.DataFrame({"path": [folder, folder], "label": [1, 2]}), **kwargs)
    a, b = from_video._draw_epoch(3), from_folder._draw_epoch(3)
    for key in ("rgb_index", "scale_h", "scale_w", "quarter_y", "quarter_x", "flip", "brightness"):
        np.testing.assert_array_equal(a[key], b[key])
    (xv, yv), (xf, yf) = next(iter(from_video)), next(iter(from_folder))
    np.testing.assert_array_equal(yv, yf)
    for m in ("rgb", "rgb_diff"):
        assert xv[m].shape == xf[m].shape
        # The folder's JPEGs (quality 95) are the only difference: about 1/255 on average.
        assert float(np.abs(np.asarray(xv[m]) - np.asarray(xf[m])).mean()) < 0.01
    test_v = make_test_dataset(
        pd.DataFrame({"path": [video]}), modalities=("rgb",), num_frames=2, crops=10, image_size=48
    )
    test_f = make_test_dataset(
        pd.DataFrame({"path": [folder]}), modalities=("rgb",), num_frames=2, crops=10, image_size=48
    )
    (tv, _), (tf_, _) = next(iter(test_v)), next(iter(test_f))
    assert tv["rgb"].shape == (20, 1, 48, 48, 3)
    assert float(np.abs(np.asarray(tv["rgb"]) - np.asarray(tf_["rgb"])).mean()) < 0.01


def test_bad_videos_follow_on_error_like_frame_folders(tmp_path):
    bad = make_corrupt_videos(tmp_path / "bad")
    good = copy_video(tmp_path, "good.avi")
    late = copy_video(tmp_path, "late.avi")  # breaks after the dataset is built
    paths = [good, *bad.values(), tmp_path / "missing.avi", late]
    table = pd.DataFrame({"path": [str(p) for p in paths], "label": list(range(len(paths)))})
    with pytest.raises(ValueError, match=r"truncated\.avi: decoding stopped"):
        make_dataset(table, modalities=("rgb",), image_size=32, batch_size=1)
    ds = make_dataset(
        table, modalities=("rgb",), image_size=32, batch_size=1, on_error="skip", shuffle=False
    )
    assert ds.dataset_errors.count == 5  # 4 corrupt + 1 missing, named up front
    named = {r["video"] for r in ds.dataset_errors.records}
    assert named == {str(p) for p in [*bad.values(), tmp_path / "missing.avi"]}
    late.write_bytes(TEST_AVI.read_bytes()[:2000])  # now unreadable at run time
    labels = [int(y[0]) for _, y in ds]
    assert labels == [0]
    last = ds.dataset_errors.records[-1]
    assert last["video"] == str(late) and last["row"] == len(paths) - 1
    # Flow still needs extracted frames: named, not silently read as RGB.
    with pytest.raises(ValueError, match="good.avi: is a video file: the 'flow' modality"):
        make_dataset(table.iloc[:1], modalities=("rgb", "flow"), image_size=32)
