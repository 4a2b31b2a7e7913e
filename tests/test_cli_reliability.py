"""Issue 15 items 1-4 and issue 20 from the command line: a data error ends the run at once with
the file named (a real subprocess, with a timeout), `--on-error skip` records what it left out,
a used output folder refuses other arguments, and `evaluate` scores the held-out videos.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "data"))
from corrupt_inputs import corrupt_frame  # noqa: E402

from keras_twostream.cli import main  # noqa: E402


def _printed(capsys):
    captured = capsys.readouterr()
    return captured.out + captured.err


TRAIN = [
    "--model", "two_stream", "--backbone", "tiny", "--image-size", "32", "--segments", "2",
    "--flow-length", "3", "--epochs", "1", "--batch-size", "4", "--weights", "none",
    "--verbose", "0", "--val", "0.25",
]  # fmt: skip
BAD = "RedStripes_Rotating/v_RedStripes_Rotating_g02_c01"


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory):
    from keras_twostream.datasets import extract_synthetic_frames, generate_synthetic_dataset

    base = tmp_path_factory.mktemp("reliability")
    root = generate_synthetic_dataset(
        base / "synthetic", videos_per_class=(1, 1), size=32, num_frames=8, progress=False
    )
    data = extract_synthetic_frames(root, short_side=32, progress=False, workers=1)
    frames = base / "frames"
    shutil.copytree(data.frames, frames)
    for path in sorted((frames / BAD).glob("img_*.jpg")):  # as in the issue: every RGB frame
        corrupt_frame(path, "random")
    return frames


def test_a_data_error_ends_the_run_at_once_with_the_file_named(corrupt, tmp_path):
    # Seed 2 draws the corrupt video mid-epoch: before the fix this exact command printed the
    # traceback and then hung (main thread in ~PrefetchDatasetOp::Iterator holding the GIL,
    # a tf.data thread in the guard's EagerPyFunc waiting for it).
    command = [sys.executable, "-m", "keras_twostream.cli", "train", str(corrupt), *TRAIN,
               "--seed", "2", "--output", str(tmp_path / "run")]  # fmt: skip
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    elapsed = time.monotonic() - start
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("keras-twostream train: error: "), result.stderr[-3000:]
    assert f"{BAD}/img_0000" in last and "is not a valid JPEG" in last
    assert "--on-error skip" in last and "Traceback" not in result.stderr
    assert elapsed < 170


def test_skip_rerun_and_heldout_evaluation(corrupt, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", str(corrupt), *TRAIN, "--on-error", "skip", "--output", str(run)]
    assert main(args) == 0
    info = json.loads((run / "train.json").read_text())
    skipped = info["skipped"]
    assert skipped["count"] == 1
    assert skipped["records"][0]["file"].startswith(os.path.join(str(corrupt), BAD, "img_"))
    videos = info["videos"]
    assert videos["val_source"] == "held-out" and len(videos["val"]) == 4
    assert len(videos["train"]) == 14 and not set(videos["train"]) & set(videos["val"])
    assert "skipped 1 bad sample" in _printed(capsys)

    # Issue 15 item 3: other arguments in the finished folder are refused, naming all three.
    capsys.readouterr()
    assert main([*args, "--lr", "0.5"]) == 2
    err = _printed(capsys)
    assert str(run) in err and "epoch 1" in err and "--restart" in err and "--lr" in err
    # The same arguments: the run is complete, nothing to train, no failure on the empty history.
    assert main(args) == 0
    assert "nothing trained" in _printed(capsys)

    # Issue 15 item 4: the held-out videos by default, and it says none was seen in training.
    evaluate = ["evaluate", str(run), str(corrupt), "--frames", "2", "--crops", "1"]
    assert main([*evaluate, "--output", str(tmp_path / "heldout")]) == 0
    results = json.loads((tmp_path / "heldout" / "results.json").read_text())
    assert results["subset"] == "heldout"
    assert sorted(results["videos_scored"]) == sorted(videos["val"])
    assert results["seen_in_training"] == []
    assert "seen in training: none" in (tmp_path / "heldout" / "report.md").read_text()
    # All videos: the corrupt one skipped and named, the training videos flagged.
    capsys.readouterr()
    out = tmp_path / "all"
    assert main([*evaluate, "--subset", "all", "--on-error", "skip", "--output", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results["videos_scored"]) == 17 and BAD not in results["videos_scored"]
    assert results["skipped"]["count"] == 1
    assert sorted(results["seen_in_training"]) == sorted(set(videos["train"]) - {BAD})
    assert "were training videos" in _printed(capsys)
