"""predict_video, sliding windows, streams and training from videos with no frame folder written."""

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import keras_twostream
from keras_twostream.cli import main

DATA = Path(__file__).resolve().parent / "data" / "mmaction2"
TEST_MP4 = DATA / "test.mp4"  # H.264, 340x256, 300 frames, 30 fps: a 10 s video


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    model = keras_twostream.build_mpa_sal(
        3, backbone="tiny", image_size=32, num_segments=2
    )
    path = tmp_path_factory.mktemp("model") / "mpa_sal.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def model(model_path):
    return keras_twostream.load_model(model_path)


def test_predict_video_is_the_test_protocol_on_the_video_file(model):
    from keras_twostream.commands.common import model_spec
    from keras_twostream.commands.evaluate import scoring_model
    from keras_twostream.data import make_test_dataset, predict_video_scores

    result = keras_twostream.predict_video(model, TEST_MP4, top_k=2, num_frames=3, crops=3)
    views = make_test_dataset(
        pd.DataFrame({"path": [str(TEST_MP4)]}),
        modalities=("rgb", "rgb_diff"),
        num_frames=3,
        crops=3,
        image_size=32,
        diff_length=model_spec(model).diff_length,
    )
    scorer = scoring_model(model, model_spec(model), "frame")
    expected = predict_video_scores(scorer, views)["fused"][0]
    np.testing.assert_allclose(result.probabilities, expected, rtol=1e-5, atol=1e-6)
    assert result.output_name == "fused" and len(result.top) == 2
    best = int(np.argmax(expected))
    assert result.top[0] == (f"class_{best}", pytest.approx(float(expected[best])))
    assert result.windows is None


def test_windows_cover_the_video_and_a_file_stream_gives_the_same_scores(model):
    result = keras_twostream.predict_video(
        model, TEST_MP4, window=2, stride=1, num_frames=3, crops=1
    )
    # 300 frames at 30 fps: windows of 60 frames every 30 frames, starting 0..240.
    np.testing.assert_allclose(result.windows["start"], np.arange(9.0))
    np.testing.assert_allclose(result.windows["end"], np.arange(9.0) + 2)
    assert result.window_probabilities.shape == (9, 3)
    np.testing.assert_allclose(result.window_probabilities.sum(axis=1), 1.0, rtol=1e-5)
    # The stream's rolling window over the same file sees the same frames and crop.
    steps = list(
        keras_twostream.predict_stream(model, str(TEST_MP4), window=2, stride=1, num_frames=3)
    )
    assert [s["frame"] for s in steps] == list(range(60, 301, 30))
    stream = np.stack([s["probabilities"] for s in steps])
    np.testing.assert_allclose(stream, result.window_probabilities, atol=2e-5)
    with pytest.raises(ValueError, match="stride=1 needs a window"):
        keras_twostream.predict_video(model, TEST_MP4, stride=1)


def test_cli_predict_windows_writes_csv_and_png_and_stream_ends_cleanly(
    model_path, tmp_path, capsys
):
    out = tmp_path / "timeline"
    args = ["predict", str(model_path), str(TEST_MP4), "--window", "4", "--stride", "3"]
    assert main([*args, "--frames", "2", "--crops", "1", "--timeline-dir", str(out)]) == 0
    with open(out / "test_timeline.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["start"]) for r in rows] == [0.0, 3.0, 6.0]
    for r in rows:
        probs = [float(r[f"class_{i}"]) for i in range(3)]
        assert r["top_class"] == f"class_{int(np.argmax(probs))}"
        assert float(r["top_score"]) == pytest.approx(max(probs), abs=1e-6)
    from PIL import Image

    with Image.open(out / "test_timeline.png") as image:
        assert image.format == "PNG" and image.size[0] > 100
    capsys.readouterr()
    stream = [
        "predict",
        str(model_path),
        "--stream",
        str(TEST_MP4),
        "--window",
        "5",
        "--stride",
        "5",
    ]
    assert main([*stream, "--frames", "2"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split()[0] for line in lines[:2]] == ["5.00", "10.00"]
    assert lines[2:] == ["[predict] end of stream after 2 predictions"]


def test_train_from_videos_writes_no_frames_and_skips_a_corrupt_video(tmp_path):
    from keras_twostream.datasets import generate_synthetic_dataset

    data = generate_synthetic_dataset(
        tmp_path / "synthetic",
        videos_per_class=(1, 1),
        size=32,
        num_frames=10,
        seed=0,
        progress=False,
    )
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    run = tmp_path / "run"
    args = ["train", str(data / "videos"), "--annotations", str(data), "--model", "mpa_sal"]
    args += ["--backbone", "tiny", "--image-size", "32", "--segments", "2", "--batch-size", "6"]
    args += ["--weights", "none", "--epochs", "1", "--verbose", "0", "--output", str(run)]
    assert main(args) == 0
    assert (run / "best.keras").is_file()
    written = sorted(
        p.relative_to(tmp_path) for p in tmp_path.rglob("*") if run not in p.parents and p != run
    )
    assert written == before  # no frame folder, nothing beside the run folder
    assert not list(tmp_path.rglob("img_00001.jpg"))
    # The Python API on real and synthetic videos with a corrupt one among them.
    from keras_twostream.data import load_annotations, make_dataset

    table = load_annotations(data, split=1, root=data / "videos", layout="videos")
    train = table[table.split == "train"]
    broken = tmp_path / "broken.avi"
    broken.write_bytes((DATA / "test.avi").read_bytes()[:20000])
    real = tmp_path / "real.mp4"
    shutil.copyfile(TEST_MP4, real)
    extra = pd.DataFrame({"path": [str(broken), str(real)], "label": [0, 1], "split": "train"})
    train = pd.concat([train, extra], ignore_index=True)
    ds = make_dataset(
        train,
        modalities=("rgb", "rgb_diff"),
        num_segments=2,
        image_size=32,
        batch_size=4,
        diff_length=5,
        seed=0,
        on_error="skip",
    )
    assert [r["video"] for r in ds.dataset_errors.records] == [str(broken)]
    batches = [(x, y) for x, y in ds]
    assert sum(len(y) for _, y in batches) == len(train) - 1  # every video but the broken one
    assert batches[0][0]["rgb_diff"].shape[1:] == (2, 32, 32, 15)


def _open_files(path):
    """Paths this process has open that are `path` (Linux: /proc/self/fd)."""
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        pytest.skip("needs /proc/self/fd")
    found = []
    for fd in fds.iterdir():
        try:
            if Path(os.readlink(fd)) == Path(path).resolve():
                found.append(fd)
        except OSError:
            continue
    return found


def test_stream_stop_releases_the_capture_and_finishes_the_overlay(model, tmp_path):
    import threading

    from keras_twostream.data.video import read_video

    stop, overlay = threading.Event(), tmp_path / "overlay.mp4"
    stream = keras_twostream.predict_stream(
        model, str(TEST_MP4), window=1, stride=0.5, num_frames=2, overlay=overlay, stop=stop
    )
    first = next(stream)
    assert _open_files(TEST_MP4), "the capture should be open while streaming"
    assert not overlay.exists()  # written under a temporary name until the stream stops
    stop.set()
    assert list(stream) == []  # ends before reading another frame
    assert not _open_files(TEST_MP4)
    assert first["frame"] == 30  # a 1 s window at 30 fps
    written = read_video(overlay)
    assert len(written) == 30  # every frame read, up to the stop
    source = read_video(TEST_MP4)[:30]
    band = slice(0, 12)  # the label's dark band at the top of the labelled frame
    # Unlabelled frames are the source (mp4v is lossy); the last frame carries the label.
    assert np.abs(written[:29].astype(float) - source[:29]).mean() < 8
    assert written[29, band].mean() < 0.6 * source[29, band].mean()
    assert [p.name for p in tmp_path.iterdir()] == ["overlay.mp4"]  # no temporary file left


def test_cli_stream_ends_cleanly_on_sigint_with_complete_csv_and_overlay(model_path, tmp_path):
    import signal
    import subprocess
    import sys

    from keras_twostream.data.video import read_video

    csv_path, overlay = tmp_path / "stream.csv", tmp_path / "stream.mp4"
    command = [sys.executable, "-m", "keras_twostream.cli", "predict", str(model_path)]
    command += ["--stream", str(TEST_MP4), "--window", "1", "--stride", "0.5", "--frames", "2"]
    command += ["--realtime", "--csv", str(csv_path), "--overlay", str(overlay)]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        first = process.stdout.readline()  # the first prediction, at 1 s of a 10 s replay
        assert first.split()[:2] == ["1.00", "s"], first + process.stderr.read()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err[-2000:]
    # Promptly: the replay stops well before its end (steps < 19 below), not after it.
    lines = [first.rstrip("\n"), *out.splitlines()]
    steps = len(lines) - 1
    assert lines[-1] == (
        f"[predict] stopped (Ctrl-C) after {steps} predictions; "
        f"wrote CSV {csv_path}, overlay {overlay}"
    )
    assert "Traceback" not in err
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == steps and steps < 19  # 19 windows in the whole video
    for row, line in zip(rows, lines[:-1], strict=True):
        assert float(row["time"]) == pytest.approx(float(line.split()[0]))
        probs = [float(row[f"class_{i}"]) for i in range(3)]
        assert row["top_class"] == f"class_{int(np.argmax(probs))}" == line.split()[2]
    frames = len(read_video(overlay))
    assert int(rows[-1]["frame"]) <= frames < 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stream.csv", "stream.mp4"]


def test_cli_stream_that_does_not_open_leaves_no_csv_or_overlay(model_path, tmp_path, capsys):
    missing = tmp_path / "nothing.mp4"
    args = ["predict", str(model_path), "--stream", str(missing)]
    args += ["--csv", str(tmp_path / "s.csv"), "--overlay", str(tmp_path / "o.mp4")]
    assert main(args) == 2
    assert "the capture does not open" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
