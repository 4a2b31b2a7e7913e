"""Video files as a pipeline source: the seek reader, verified counts, parity with frame folders, bad videos."""

import numpy as np
import pandas as pd
import pytest
from corrupt_inputs import TEST_AVI, TEST_MP4, copy_video, make_corrupt_videos

from keras_twostream.data.pipeline import make_dataset, make_test_dataset
from keras_twostream.data.video import VideoDecodeError, read_video
from keras_twostream.data.video_source import read_frames, verified_frame_count


@pytest.mark.parametrize("video", [TEST_AVI, TEST_MP4], ids=["mpeg4_avi", "h264_mp4"])
def test_seeked_frames_equal_sequentially_decoded_frames(video):
    every = read_video(video)  # sequential decoding, short side 256
    # Out of order, repeated, a long gap (seek), short gaps (decode through), the last frame.
    indices = [len(every) - 1, 0, 5, 6, 90, 3, 90, len(every) // 2]
    np.testing.assert_array_equal(read_frames(video, indices), every[indices])


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
