"""Extraction: file naming and contents, resume after a kill, failures that do not stop the run."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from corrupt_inputs import TEST_AVI, TEST_MP4, copy_video, make_corrupt_videos

from keras_twostream.data import extract as extract_module
from keras_twostream.data.annotations import load_annotations
from keras_twostream.data.extract import extract_video, extract_videos
from keras_twostream.data.flow import OpticalFlow, dequantize_flow, quantize_flow
from keras_twostream.data.frames import META_KEYS, read_flow_means, read_meta
from keras_twostream.data.scan import scan_dataset
from keras_twostream.data.video import read_video

FAST = {"flow": "dis", "short_side": 64, "progress": False}


def _names(folder):
    return sorted(p.name for p in Path(folder).iterdir())


def _expected_names(rgb, flow):
    names = [f"img_{i:05d}.jpg" for i in range(1, rgb + 1)]
    names += [f"x_{i:05d}.jpg" for i in range(1, flow + 1)]
    names += [f"y_{i:05d}.jpg" for i in range(1, flow + 1)]
    return sorted(names + ["meta.json"] + (["flow_means.npy"] if flow else []))


def _assert_complete(folder):
    meta = read_meta(folder)
    assert meta["has_meta"]
    assert _names(folder) == _expected_names(meta["rgb_frames"], meta["flow_frames"])
    return meta


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """Two real videos in class folders and one at the top, extracted once with DIS."""
    videos = tmp_path_factory.mktemp("videos")
    copy_video(videos, "Walk/v_walk_01.avi")
    copy_video(videos, "Jump/v_jump_01.mp4", TEST_MP4)
    copy_video(videos, "loose.avi")
    out = tmp_path_factory.mktemp("frames")
    summary = extract_videos(videos, out, workers=1, **FAST)
    return videos, out, summary


def test_one_flow_pair_fewer_than_rgb_frames_and_names(extracted):
    _videos, out, summary = extracted
    assert sorted(summary.done) == ["Jump/v_jump_01.mp4", "Walk/v_walk_01.avi", "loose.avi"]
    assert summary.skipped == [] and summary.failed == []
    assert summary.frames == 164 + 300 + 164
    meta = _assert_complete(out / "Walk" / "v_walk_01")
    assert set(META_KEYS) <= set(meta)
    assert (meta["rgb_frames"], meta["flow_frames"]) == (164, 163)
    assert (meta["width"], meta["height"], meta["short_side"]) == (85, 64, 64)
    assert (meta["algorithm"], meta["bound"], meta["fps"]) == ("dis", 20.0, 25.0)
    assert meta["source"] == "Walk/v_walk_01.avi"
    jump = _assert_complete(out / "Jump" / "v_jump_01")
    assert (jump["rgb_frames"], jump["flow_frames"], jump["width"]) == (300, 299, 85)
    _assert_complete(out / "loose")


def test_frames_and_flow_match_direct_computation(extracted):
    _videos, out, _summary = extracted
    frames = read_video(TEST_AVI, short_side=64)
    folder = out / "Walk" / "v_walk_01"
    for i in (1, 100, 164):
        written = cv2.imread(str(folder / f"img_{i:05d}.jpg"))[..., ::-1]
        assert written.shape == frames[i - 1].shape
        assert np.abs(written.astype(int) - frames[i - 1]).mean() < 3  # JPEG q95 slack
    # Flow pair 91 is the flow from frame 91 to frame 92, on the grayscale resized frames.
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames[90:92]]
    expected = quantize_flow(OpticalFlow("dis")(*gray), 20.0)
    for channel, prefix in ((0, "x"), (1, "y")):
        written = cv2.imread(str(folder / f"{prefix}_00091.jpg"), cv2.IMREAD_GRAYSCALE)
        assert written.shape == (64, 85)
        difference = np.abs(written.astype(int) - expected[..., channel])
        assert difference.mean() < 1.0 and difference.max() <= 8
        back = dequantize_flow(written, 20.0)
        flow = np.clip(OpticalFlow("dis")(*gray)[..., channel], -20, 20)
        assert np.abs(back - flow).mean() <= 20 / 255 + 0.5 * 40 / 255
    # The flow is not trivially zero: there is motion at frame 91.
    assert np.abs(dequantize_flow(expected, 20.0)).max() > 1.0


def test_stored_flow_means_are_those_of_the_written_jpegs(extracted):
    _videos, out, _summary = extracted
    folder = out / "Walk" / "v_walk_01"
    means = read_flow_means(folder, 163)
    assert means.shape == (163, 2) and means.dtype == np.float64
    for i in (1, 91, 163):
        for channel, prefix in ((0, "x"), (1, "y")):
            # What a reader decodes from the file on disk (OpenCV: libjpeg's accurate
            # IDCT, the pixels tf.io.decode_jpeg(dct_method="INTEGER_ACCURATE") gives).
            q = cv2.imread(str(folder / f"{prefix}_{i:05d}.jpg"), cv2.IMREAD_GRAYSCALE)
            expected = q.mean(dtype=np.float64) * 40 / 255 - 20
            assert means[i - 1, channel] == pytest.approx(expected, abs=1e-9)
    assert np.abs(means).max() > 0.01  # there is mean motion to subtract
    with pytest.raises(ValueError, match=r"flow_means\.npy.*164"):
        read_flow_means(folder, 164)


def test_annotation_list_and_classes(extracted):
    _videos, out, _summary = extracted
    assert (out / "classes.txt").read_text() == "0 Jump\n1 Walk\n"
    lines = (out / "rawframes.txt").read_text().splitlines()
    assert lines == ["Jump/v_jump_01 300 0", "Walk/v_walk_01 164 1", "loose 164 -1"]
    assert not (out / "failures.txt").exists()
    table = load_annotations(out / "rawframes.txt", root=out)
    assert list(table["label"]) == [0, 1, -1]
    assert scan_dataset(table, progress=False).empty


def test_rerun_skips_complete_folders(extracted):
    videos, out, _summary = extracted
    stamp = os.stat(out / "Walk" / "v_walk_01" / "meta.json").st_mtime_ns
    summary = extract_videos(videos, out, workers=1, **FAST)
    assert summary.done == [] and summary.failed == [] and len(summary.skipped) == 3
    assert os.stat(out / "Walk" / "v_walk_01" / "meta.json").st_mtime_ns == stamp
    # Other settings than those on disk are refused rather than silently mixed.
    other = extract_videos(videos, out, flow="farneback", short_side=64, progress=False)
    assert len(other.failed) == 3 and "already extracted with other settings" in other.failed[0][1]
    # The list still describes the complete folders on disk.
    assert len((out / "rawframes.txt").read_text().splitlines()) == 3
    assert (out / "failures.txt").exists()


def test_rgb_only(tmp_path):
    copy_video(tmp_path / "videos", "a.avi")
    summary = extract_videos(
        tmp_path / "videos", tmp_path / "out", flow="none", short_side=32, progress=False
    )
    assert summary.done == ["a.avi"]
    meta = _assert_complete(tmp_path / "out" / "a")
    assert (meta["rgb_frames"], meta["flow_frames"], meta["algorithm"]) == (164, 0, "none")
    assert (meta["width"], meta["height"]) == (43, 32)


def test_max_frames_and_single_decoding_thread(tmp_path):
    meta = extract_video(
        TEST_AVI, tmp_path / "out", flow="farneback", short_side=32, max_frames=5, decode_threads=1
    )
    assert (meta["rgb_frames"], meta["flow_frames"]) == (5, 4)
    assert _names(tmp_path / "out") == _expected_names(5, 4)
    with pytest.raises(ValueError, match="max_frames"):
        extract_video(TEST_AVI, tmp_path / "other", max_frames=0)


def test_tvl1_on_a_few_frames(tmp_path):
    # A 6-frame real clip keeps TV-L1 fast.
    frames = read_video(TEST_AVI, short_side=None)[40:46]
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 240))
    for frame in frames:
        writer.write(frame[..., ::-1])
    writer.release()
    meta = extract_video(clip, tmp_path / "out", flow="tvl1", short_side=48)
    assert (meta["rgb_frames"], meta["flow_frames"], meta["algorithm"]) == (6, 5, "tvl1")
    assert _names(tmp_path / "out") == _expected_names(6, 5)
    x = dequantize_flow(cv2.imread(str(tmp_path / "out" / "x_00001.jpg"), cv2.IMREAD_GRAYSCALE), 20)
    assert np.abs(x).max() > 0.5  # real motion was found


def test_resume_after_simulated_kill(tmp_path):
    videos = tmp_path / "videos"
    copy_video(videos, "c/done.avi")
    copy_video(videos, "c/partial.avi")
    out = tmp_path / "out"
    extract_videos(videos, out, **FAST)
    # Simulate a kill: "partial" was being written by a run that no longer exists.
    complete = out / "c" / "done"
    os.rename(out / "c" / "partial", out / "c" / ".partial.tmp-99999999")
    os.remove(out / "c" / ".partial.tmp-99999999" / "meta.json")
    stamp = os.stat(complete / "img_00001.jpg").st_mtime_ns
    summary = extract_videos(videos, out, **FAST)
    assert summary.skipped == ["c/done.avi"] and summary.done == ["c/partial.avi"]
    assert os.stat(complete / "img_00001.jpg").st_mtime_ns == stamp
    assert _names(out / "c") == ["done", "partial"]  # the stale temporary folder is gone
    _assert_complete(out / "c" / "partial")


def test_foreign_folder_without_meta_is_not_touched(tmp_path):
    copy_video(tmp_path / "videos", "a.avi")
    (tmp_path / "out" / "a").mkdir(parents=True)
    (tmp_path / "out" / "a" / "img_00001.jpg").write_bytes(b"x")
    summary = extract_videos(tmp_path / "videos", tmp_path / "out", **FAST)
    assert summary.failed and "without meta.json" in summary.failed[0][1]
    assert _names(tmp_path / "out" / "a") == ["img_00001.jpg"]


def test_corrupt_files_are_reported_and_the_rest_finish(tmp_path):
    videos = tmp_path / "videos"
    broken = make_corrupt_videos(videos / "Broken")
    copy_video(videos, "Good/one.avi")
    copy_video(videos, "Good/two.avi")
    out = tmp_path / "out"
    summary = extract_videos(videos, out, workers=2, **FAST)
    assert summary.done == ["Good/one.avi", "Good/two.avi"]
    reasons = dict(summary.failed)
    assert set(reasons) == {f"Broken/{p.name}" for p in broken.values()}
    assert "stopped after 77 of the 164" in reasons["Broken/truncated.avi"]
    assert "empty (0 bytes)" in reasons["Broken/empty.avi"]
    assert "cannot open it" in reasons["Broken/text.avi"]
    assert "cannot open it" in reasons["Broken/truncated_h264.mp4"]
    assert _names(out) == ["Good", "classes.txt", "failures.txt", "rawframes.txt"]
    assert _names(out / "Good") == ["one", "two"]  # no trace of the failed videos
    for name in ("one", "two"):
        _assert_complete(out / "Good" / name)
    failures = dict(line.split("\t") for line in (out / "failures.txt").read_text().splitlines())
    assert failures == reasons
    assert (out / "rawframes.txt").read_text() == "Good/one 164 1\nGood/two 164 1\n"
    assert "4 failed" in str(summary) and "FAILED Broken/empty.avi" in str(summary)


def test_a_class_folder_removed_meanwhile_does_not_fail_the_video(tmp_path, monkeypatch):
    """The race behind "file not found" for text.avi, made deterministic.

    A sibling job whose video failed used to remove the (then empty) class folder
    between this job's creating it and creating its temporary folder inside.
    Workers no longer remove class folders (the parent does, after all jobs), and
    a class folder removed meanwhile by another run is created again.
    """
    video = copy_video(tmp_path / "videos", "c/a.avi")
    final = tmp_path / "out" / "c" / "a"
    temp = tmp_path / "out" / "c" / ".a.tmp-1"
    real_mkdir = os.mkdir
    removed = []

    def mkdir(path, *args, **kwargs):
        if os.fspath(path) == str(temp) and not removed:
            os.rmdir(os.path.dirname(path))  # the other job's clean-up, at the worst moment
            removed.append(path)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    settings = {"flow": "dis", "short_side": 32, "max_frames": 3}
    job = (0, str(video), str(final), str(temp), settings)
    assert extract_module._run_job(job, lambda n: None) == ("done", 0, 3)
    assert removed == [str(temp)]
    _assert_complete(final)
    # A failed job leaves its class folder to the parent's clean-up after the run.
    job = (
        1,
        str(tmp_path / "videos" / "d" / "missing.avi"),
        str(tmp_path / "out" / "d" / "m"),
        str(tmp_path / "out" / "d" / ".m.tmp-1"),
        settings,
    )
    assert extract_module._run_job(job, lambda n: None) == ("failed", 1, "file not found")
    assert _names(tmp_path / "out" / "d") == []


def test_two_videos_with_one_output_name(tmp_path):
    copy_video(tmp_path / "videos", "a.avi")
    copy_video(tmp_path / "videos", "a.mp4", TEST_MP4)
    summary = extract_videos(tmp_path / "videos", tmp_path / "out", **FAST)
    assert summary.done == ["a.avi"]
    assert summary.failed == [
        ("a.mp4", "its output folder a/ is also that of a.avi; rename one of them")
    ]


def test_bad_arguments_name_the_argument(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        extract_videos(tmp_path / "nowhere", tmp_path / "out")
    for kwargs, name in (
        ({"flow": "brox"}, "flow"),
        ({"workers": 0}, "workers"),
        ({"short_side": -1}, "short_side"),
        ({"bound": 0}, "bound"),
        ({"threads": 0}, "threads"),
    ):
        with pytest.raises(ValueError, match=name):
            extract_videos(tmp_path, tmp_path / "out", **kwargs)


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    from keras_twostream.data.extract import extract_videos
    extract_videos(sys.argv[1], sys.argv[2], flow="farneback", workers=2, short_side=96,
                   progress=False)
    """
)


def _state_and_parent(pid):
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None, None
    return fields[0], int(fields[1])


def _alive(pid):
    state, _ = _state_and_parent(pid)
    return state is not None and state != "Z"


def _children(pid):
    """Live child processes of `pid`, from /proc (Linux)."""
    pids = [int(e) for e in os.listdir("/proc") if e.isdigit()]
    return [p for p in pids if _state_and_parent(p)[1] == pid and _alive(p)]


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads worker processes from /proc")
def test_sigkill_mid_run_then_rerun_completes(tmp_path):
    videos = tmp_path / "videos"
    names = [f"v{i}" for i in range(5)]
    for name in names:
        copy_video(videos, f"{name}.avi")
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(videos), str(out)])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if any((out / name / "meta.json").exists() for name in names):
                break
            time.sleep(0.01)
        workers = _children(process.pid)
        assert process.poll() is None, "the extraction ended before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    # Right after the kill: every visible folder is complete, some videos are not done.
    visible = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    for folder in visible:
        _assert_complete(folder)
    assert 1 <= len(visible) < len(names)
    # Orphaned workers notice their parent is gone and stop (removing their temp folders).
    assert len(workers) >= 2
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.05)
    assert not [w for w in workers if _alive(w)], "orphaned workers kept running"
    summary = extract_videos(
        videos, out, flow="farneback", workers=1, short_side=96, progress=False
    )
    assert summary.failed == []
    assert len(summary.skipped) >= len(visible) and len(summary.done) + len(summary.skipped) == 5
    assert sorted(_names(out)) == sorted(names + ["classes.txt", "rawframes.txt"])
    for name in names:
        meta = _assert_complete(out / name)
        assert (meta["rgb_frames"], meta["flow_frames"]) == (164, 163)
    assert json.loads((out / "v0" / "meta.json").read_text())["algorithm"] == "farneback"
