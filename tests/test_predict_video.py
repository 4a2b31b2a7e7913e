"""predict_video, sliding windows, streams and training from videos with no frame folder written."""

import csv
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
        3, stream="two_stream", backbone="tiny", image_size=32, num_segments=2
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
