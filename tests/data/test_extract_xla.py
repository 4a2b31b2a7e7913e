"""`extract --flow tvl1-xla`: pairs batched across videos, backward flow, failures, resuming."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from corrupt_inputs import TEST_MP4

from keras_twostream.data.extract import extract_videos
from keras_twostream.data.flow import dequantize_flow
from keras_twostream.data.frames import (
    backward_flow_frame_paths,
    flow_frame_paths,
    read_flow_means,
    rgb_frame_path,
)
from keras_twostream.data.video import VideoReader
from keras_twostream.flow import tvl1

# Few iterations (OpenCV's defaults are for the benchmark); recorded in meta.json.
PARAMS = dict(nscales=2, warps=2, outer_iterations=3, inner_iterations=10)


def _write_clip(path, frames):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for frame in frames:
        writer.write(frame)
    writer.release()


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    root = tmp_path_factory.mktemp("xla")
    videos = root / "videos"
    (videos / "walk").mkdir(parents=True)
    cap = cv2.VideoCapture(str(TEST_MP4))
    frames = []
    for _ in range(40):
        ok, frame = cap.read()
        frames.append(cv2.resize(frame, (64, 48), interpolation=cv2.INTER_AREA))
    cap.release()
    # 3 and 4 flow pairs with a batch of 3: batches hold pairs of both videos.
    _write_clip(videos / "walk" / "a.avi", frames[0:8:2])
    _write_clip(videos / "walk" / "b.avi", frames[20:25])
    (videos / "walk" / "broken.avi").write_text("not a video\n")
    out = root / "frames"
    summary = extract_videos(
        videos,
        out,
        flow="tvl1-xla",
        backward_flow=True,
        batch_size=3,
        short_side=48,
        flow_params=PARAMS,
        progress=False,
    )
    return videos, out, summary


def test_folders_are_complete_with_forward_and_backward_flow(extracted):
    videos, out, summary = extracted
    assert sorted(summary.done) == ["walk/a.avi", "walk/b.avi"]
    assert [v for v, _ in summary.failed] == ["walk/broken.avi"]
    assert "broken.avi" in (out / "failures.txt").read_text()
    assert not (out / "walk" / "broken").exists()
    assert not [p for p in (out / "walk").iterdir() if p.name.startswith(".")]
    for name, count in (("a", 4), ("b", 5)):
        folder = out / "walk" / name
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["algorithm"] == "tvl1-xla" and meta["backward_flow"] is True
        assert meta["flow_params"] == PARAMS
        assert (meta["rgb_frames"], meta["flow_frames"]) == (count, count - 1)
        names = sorted(p.name for p in folder.iterdir())
        for prefix in ("x_", "y_", "bx_", "by_"):
            assert [n for n in names if n.startswith(prefix)] == [
                f"{prefix}{i:05d}.jpg" for i in range(1, count)
            ]
        assert read_flow_means(folder).shape == (count - 1, 2)
        assert np.load(folder / "flow_means_backward.npy").shape == (count - 1, 2)


def test_stored_flow_is_tvl1_of_the_decoded_frames(extracted):
    videos, out, _ = extracted
    folder = out / "walk" / "a"
    with VideoReader(videos / "walk" / "a.avi", short_side=48, channel_order="bgr") as reader:
        frames = list(reader)
    np.testing.assert_array_equal(cv2.imread(rgb_frame_path(folder, 1)).shape, frames[0].shape)
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames])
    # Both directions in one call of the extraction's shape (2 x 3 pairs): no new compile.
    both = np.asarray(
        tvl1(np.concatenate([gray[:-1], gray[1:]]), np.concatenate([gray[1:], gray[:-1]]), **PARAMS)
    )
    forward, backward = both[:3], both[3:]
    cases = ((flow_frame_paths, forward, backward), (backward_flow_frame_paths, backward, forward))
    for paths, expected, other in cases:
        for i in range(1, len(frames)):
            planes = [cv2.imread(p, cv2.IMREAD_GRAYSCALE) for p in paths(folder, i)]
            stored = dequantize_flow(np.stack(planes, axis=-1))
            # Quantisation (20/255 px per level) and JPEG leave a few levels at most.
            # (measured ~0.04 px; against the other direction's flow 0.8-1.7 px).
            assert np.median(np.abs(stored - expected[i - 1])) < 0.1
            assert np.median(np.abs(stored - other[i - 1])) > 0.3


def test_rerun_skips_and_other_settings_are_refused(extracted, tmp_path):
    videos, out, _ = extracted
    again = extract_videos(
        videos,
        out,
        flow="tvl1-xla",
        backward_flow=True,
        batch_size=3,
        short_side=48,
        flow_params=PARAMS,
        progress=False,
    )
    assert sorted(again.skipped) == ["walk/a.avi", "walk/b.avi"] and not again.done
    other = extract_videos(
        videos, out, flow="tvl1-xla", short_side=48, flow_params=PARAMS, progress=False
    )
    reasons = dict(other.failed)
    assert "backward_flow=True" in reasons["walk/a.avi"]
    with pytest.raises(ValueError, match="backward_flow=True needs flow='tvl1-xla'"):
        extract_videos(videos, tmp_path / "x", flow="dis", backward_flow=True, progress=False)


def test_cli_passes_the_tvl1_xla_options(tmp_path):
    # Real subprocesses; a folder whose only video is broken needs no compilation.
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "broken.avi").write_text("not a video\n")

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "keras_twostream.cli", "extract", str(videos), *args],
            capture_output=True,
            text=True,
            timeout=300,
        )

    out = tmp_path / "frames"
    result = cli(str(out), "--flow", "tvl1-xla", "--backward-flow", "--batch-size", "2")
    assert result.returncode == 1, result.stderr[-2000:]
    assert "broken.avi" in (out / "failures.txt").read_text()
    result = cli(str(tmp_path / "other"), "--flow", "dis", "--backward-flow")
    assert result.returncode == 2
    assert "backward_flow=True needs flow='tvl1-xla'" in result.stderr + result.stdout
