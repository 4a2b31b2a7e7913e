"""`keras-twostream train --extra-task`: multi-task learning (two-stream paper, Sect. 4) from the
command line, then `evaluate` on the primary task, and `train --config` on the run's train.json."""

import csv
import json

import pytest

from keras_twostream.cli import main

TINY = [
    "--model",
    "two_stream",
    "--backbone",
    "tiny",
    "--image-size",
    "32",
    "--segments",
    "1",
    "--flow-length",
    "2",
    "--batch-size",
    "8",
    "--lr",
    "0.01",
    "--weights",
    "none",
    "--verbose",
    "0",
]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from conftest import synthetic_frames

    base = tmp_path_factory.mktemp("multitask_cli")
    data, frames = synthetic_frames(base, num_frames=8, seed=1)
    return base, data, frames


def test_train_with_an_extra_task_then_evaluate_the_primary_task(synthetic, capsys):
    base, data, frames = synthetic
    run = base / "run"
    # Primary task "synth": the UCF101-style split files (9 training videos). Extra task "aux":
    # every video of the folder's rawframes.txt (18), the same classes under another head.
    args = [
        "train",
        str(frames),
        "--annotations",
        str(data),
        "--task",
        "synth",
        "--extra-task",
        "aux",
        str(frames),
        "--video-sampling",
        "class_uniform",
        "--epochs",
        "1",
        "--output",
        str(run),
        *TINY,
    ]
    assert main(args) == 0
    with open(run / "history.csv") as f:
        row = next(csv.DictReader(f))
    assert {"spatial_loss", "temporal_aux_loss", "spatial_aux_loss", "val_fused_accuracy"} <= set(
        row
    )
    info = json.loads((run / "train.json").read_text())
    assert info["arguments"]["extra_task"] == [["aux", str(frames)]]
    assert info["arguments"]["task"] == "synth"
    assert info["arguments"]["video_sampling"] == "class_uniform"
    assert info["extra_tasks"][0]["task"] == "aux" and info["extra_tasks"][0]["train_videos"] == 18
    card = json.loads((run / "best.json").read_text())
    assert list(card["tasks"]) == ["synth", "aux"] and card["outputs"] == [
        "spatial",
        "temporal",
        "fused",
    ]
    from keras_twostream.models import load_model

    model = load_model(run / "best.keras")
    assert model.num_classes == {"synth": 9, "aux": 9}
    assert {"temporal_aux", "fused_aux", "fused"} <= set(model.output)
    assert list(model.data_config()["class_names"]) == ["synth", "aux"]

    # evaluate scores the primary task's outputs with its classes.
    out = base / "eval"
    status = main(
        [
            "evaluate",
            str(run),
            str(frames),
            "--annotations",
            str(data),
            "--frames",
            "1",
            "--crops",
            "1",
            "--output",
            str(out),
        ]
    )
    assert status == 0
    names = [r["output"] for r in json.loads((out / "results.json").read_text())["metrics"]]
    assert names == ["spatial", "temporal", "fused"]

    # train --config: the recorded arguments (the extra task included) are this run's, so the
    # finished run is recognised as it is (another extra task would be refused as a change).
    capsys.readouterr()
    again = ["train", "--config", str(run / "train.json"), "--output", str(run)]
    assert main(again) == 0
    assert "nothing trained" in capsys.readouterr().out
    assert main([*again, "--extra-task", "other", str(frames)]) == 2
    assert "--extra-task" in capsys.readouterr().err


def test_extra_task_is_refused_by_other_models_and_checked(synthetic, capsys):
    base, data, frames = synthetic
    common = ["train", str(frames), "--annotations", str(data), "--output", str(base / "refused")]
    assert main([*common, "--model", "cma", "--extra-task", "aux", str(frames)]) == 2
    err = capsys.readouterr().err
    assert "--extra-task: applies to --model two_stream only" in err
    assert main([*common, *TINY, "--task", "synth"]) == 2
    assert "argument --task" in capsys.readouterr().err
    assert main([*common, *TINY, "--extra-task", "aux"]) == 2
    assert "expected NAME FRAMES [ANNOTATIONS]" in capsys.readouterr().err
    assert main([*common, *TINY, "--task", "aux", "--extra-task", "aux", str(frames)]) == 2
    assert "task 'aux' is given twice" in capsys.readouterr().err
