"""train -> evaluate -> fuse -> predict -> export, as a user runs them, on the generated synthetic dataset.

The commands run in this process through `keras_twostream.cli.main` (one TensorFlow start for all);
the exported SavedModel is loaded in a fresh Python process that imports TensorFlow alone.
"""

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from keras_twostream.cli import main

TRAIN = [
    "--model",
    "two_stream",
    "--backbone",
    "tiny",
    "--image-size",
    "32",
    "--segments",
    "2",
    "--flow-length",
    "2",
    "--batch-size",
    "9",
    "--lr",
    "0.01",
    "--weights",
    "none",
    "--verbose",
    "0",
]


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    from conftest import synthetic_frames

    base = tmp_path_factory.mktemp("cli")
    data, frames = synthetic_frames(base, num_frames=10, seed=0)
    run = base / "run"
    status = main(
        [
            "train",
            str(frames),
            "--annotations",
            str(data),
            "--epochs",
            "2",
            "--output",
            str(run),
            *TRAIN,
        ]
    )
    assert status == 0
    classes = [line.split()[1] for line in (data / "classInd.txt").read_text().splitlines()]
    return SimpleNamespace(base=base, data=data, frames=frames, run=run, classes=classes)


@pytest.fixture(scope="module")
def evaluated(workflow):
    out = workflow.base / "eval"
    status = main(
        [
            "evaluate",
            str(workflow.run),
            str(workflow.frames),
            "--annotations",
            str(workflow.data),
            "--frames",
            "1",
            "--crops",
            "1",
            "--output",
            str(out),
        ]
    )
    assert status == 0
    return out


def _stderr_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_train_writes_checkpoints_history_and_model_card(workflow):
    run = workflow.run
    for name in (
        "best.keras",
        "last.keras",
        "best.json",
        "last.json",
        "training_curves.png",
        "train.json",
    ):
        assert (run / name).is_file(), name
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert {"spatial_loss", "temporal_loss", "val_fused_accuracy"} <= set(rows[0])
    card = json.loads((run / "best.json").read_text())
    assert card["model"] == "two_stream" and card["classes"] == workflow.classes
    assert card["data"]["flow"] == "dis" and card["data"]["short_side"] == 32
    assert card["data"]["flow_length"] == 2 and card["data"]["segments"] == 2
    assert not list(run.glob(".*tmp*"))
    # The model file itself carries its data contract (issue 19 item 3), card or no card.
    from keras_twostream.models import load_model

    config = load_model(run / "best.keras").data_config()
    assert config["class_names"] == workflow.classes
    assert (config["num_segments"], config["flow_length"], config["image_size"]) == (2, 2, 32)
    assert config["rgb_normalization"] == card["data"]["rgb_normalization"]


def test_evaluate_reports_every_output_with_the_test_protocol(workflow, evaluated):
    import keras

    from keras_twostream.data import load_annotations, make_test_dataset
    from keras_twostream.evaluation.scores import load_scores
    from keras_twostream.models import load_model

    out = evaluated
    report = (out / "report.md").read_text()
    for name in ("spatial", "temporal", "fused"):
        assert f"| {name} |" in report
        for suffix in ("png", "csv"):
            assert (out / f"confusion_{name}.{suffix}").is_file()
        assert (out / f"recall_{name}.png").is_file()
    assert "![confusion matrix of fused](confusion_fused.png)" in report

    scores = load_scores(out / "scores.npz")
    table = load_annotations(workflow.data, split=1)
    test = table[table.split == "test"]
    assert scores.videos.tolist() == [p[: -len(".avi")] for p in test["path"]]
    assert scores.labels.tolist() == test["label"].tolist()
    assert scores.classes == workflow.classes
    # The fused output is the average of the two streams' probabilities, view by view and per video.
    np.testing.assert_allclose(
        scores.scores["fused"],
        (scores.scores["spatial"] + scores.scores["temporal"]) / 2,
        atol=1e-6,
    )
    results = json.loads((out / "results.json").read_text())
    for row in results["metrics"]:
        assert row["top1"] == pytest.approx(
            (scores.scores[row["output"]].argmax(1) == scores.labels).mean()
        )
    with open(out / "confusion_fused.csv") as f:
        counts = [list(map(int, r[1:])) for r in list(csv.reader(f))[1:]]
    assert np.trace(counts) == round(results["metrics"][-1]["top1"] * 9) and np.sum(counts) == 9

    # One view of one segment scored by the K=1 model equals the trained K=2 model on that view
    # repeated in both segments (the consensus averages weights-free): the protocol scores the
    # trained network.
    model = load_model(workflow.run / "best.keras")
    views = make_test_dataset(
        test.assign(path=[str(workflow.frames / p[: -len(".avi")]) for p in test["path"]]),
        num_frames=1,
        crops=1,
        flow_length=2,
        image_size=32,
    )
    for (inputs, _), expected in zip(views.take(3), scores.scores["temporal"], strict=False):
        doubled = {k: np.repeat(np.asarray(v), 2, axis=1) for k, v in inputs.items()}
        np.testing.assert_allclose(
            model.predict(doubled, verbose=0)["temporal"][0], expected, atol=1e-5
        )
    keras.backend.clear_session()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fuse_recomputes_the_average_and_fits_an_svm(workflow, evaluated, capsys):
    from keras_twostream.evaluation.fusion import SVMFusion
    from keras_twostream.evaluation.scores import load_scores

    scores_path = evaluated / "scores.npz"
    scores = load_scores(scores_path)
    out = workflow.base / "fused.npz"
    assert main(["fuse", str(scores_path), "--method", "average", "--output", str(out)]) == 0
    assert "| fused (average) |" in capsys.readouterr().out
    np.testing.assert_allclose(
        load_scores(out).scores["fused_average"], scores.scores["fused"], atol=1e-6
    )

    spec = [f"{scores_path}:spatial", f"{scores_path}:temporal"]
    assert main(["fuse", *spec, "--method", "svm", "--fit", *spec, "--output", str(out)]) == 0
    streams = {"spatial": scores.scores["spatial"], "temporal": scores.scores["temporal"]}
    expected = SVMFusion().fit(streams, scores.labels).predict(streams)
    np.testing.assert_array_equal(load_scores(out).scores["fused_svm"].argmax(1), expected)


def test_fuse_names_what_differs(workflow, tmp_path, capsys):
    from keras_twostream.evaluation.scores import save_scores

    a = save_scores(
        tmp_path / "a.npz", {"spatial": np.eye(3)}, ["v1", "v2", "v3"], [0, 1, 2], ["x", "y", "z"]
    )
    b = save_scores(
        tmp_path / "b.npz", {"temporal": np.eye(3)}, ["v1", "v2", "v4"], [0, 1, 2], ["x", "y", "z"]
    )
    c = save_scores(
        tmp_path / "c.npz", {"temporal": np.eye(3)}, ["v1", "v2", "v3"], [0, 1, 2], ["x", "q", "z"]
    )
    assert main(["fuse", str(a), str(b)]) == 2
    line = _stderr_line(capsys)
    assert "different videos" in line and "v3" in line and "v4" in line
    assert main(["fuse", str(a), str(c)]) == 2
    assert "class 1 is 'y'" in _stderr_line(capsys)
    assert main(["fuse", str(a), str(a).replace("a.npz", "a.npz:temporal")]) == 2
    assert "no output 'temporal'" in _stderr_line(capsys)


def test_predict_prints_the_top_five_and_writes_a_preview(workflow, capsys):
    video = next((workflow.data / "videos").rglob("*.avi"))
    preview = workflow.base / "preview.gif"
    status = main(
        [
            "predict",
            str(workflow.run),
            str(video),
            "--frames",
            "3",
            "--crops",
            "1",
            "--preview",
            str(preview),
        ]
    )
    assert status == 0
    lines = capsys.readouterr().out.splitlines()
    ranked = [line.split() for line in lines if line.strip()[:2] in {f"{i}." for i in range(1, 10)}]
    assert [r[0] for r in ranked] == ["1.", "2.", "3.", "4.", "5."]
    assert all(r[1] in workflow.classes for r in ranked)
    values = [float(r[2]) for r in ranked]
    assert values == sorted(values, reverse=True) and sum(values) <= 1.0 + 1e-6
    from PIL import Image

    with Image.open(preview) as image:
        assert image.n_frames > 1


def test_export_savedmodel_matches_keras_in_a_fresh_process(workflow, tmp_path):
    from keras_twostream.models import load_model

    out = tmp_path / "savedmodel"
    assert main(["export", str(workflow.run / "best.keras"), str(out)]) == 0
    card = json.loads((out / "assets.extra" / "keras_twostream.json").read_text())
    assert card["classes"] == workflow.classes
    assert card["data_config"]["class_names"] == workflow.classes
    assert card["data_config"]["modalities"] == ["rgb", "flow"]
    model = load_model(workflow.run / "best.keras")
    rng = np.random.default_rng(0)
    inputs = {
        "rgb": rng.random((3, 2, 32, 32, 3), np.float32),
        "flow": rng.normal(size=(3, 2, 32, 32, 4)).astype(np.float32),
    }
    expected = model.predict(inputs, verbose=0)
    np.savez(tmp_path / "inputs.npz", **inputs)
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        import tensorflow as tf
        data = np.load(sys.argv[2])
        serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
        out = serve(rgb=tf.constant(data["rgb"]), flow=tf.constant(data["flow"]))
        np.savez(sys.argv[3], **{k: v.numpy() for k, v in out.items()})
        assert not [m for m in sys.modules if m.startswith("keras_twostream")]
        """
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(out),
            str(tmp_path / "inputs.npz"),
            str(tmp_path / "served.npz"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    served = np.load(tmp_path / "served.npz")
    assert sorted(served.files) == ["fused", "spatial", "temporal"]
    for name in served.files:
        np.testing.assert_allclose(served[name], expected[name], rtol=0, atol=1e-5)


def test_export_onnx_where_the_converter_is_installed(workflow, tmp_path, capsys):
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    out = tmp_path / "model.onnx"
    assert main(["export", str(workflow.run / "best.keras"), str(out), "--format", "onnx"]) == 0
    printed = capsys.readouterr().out
    difference = float(printed.split("max |onnxruntime - Keras| = ")[1].split(")")[0])
    assert out.is_file() and difference < 1e-5


# --- Bad input: exit status 2 and one line, before any training ------------------------------


def test_unknown_model_lists_the_valid_ones(workflow, capsys):
    assert main(["train", str(workflow.frames), "--model", "resnet_lstm"]) == 2
    line = _stderr_line(capsys)
    assert "invalid choice: 'resnet_lstm'" in line and "two_stream" in line and "stpn" in line


def test_missing_videos_are_counted_and_named_before_training(workflow, tmp_path, capsys):
    listing = tmp_path / "list.txt"
    present = sorted(p for p in workflow.frames.glob("*/*") if p.is_dir())[:2]
    names = [p.relative_to(workflow.frames).as_posix() for p in present] + [
        "Gone/v_a",
        "Gone/v_b",
        "Gone/v_c",
    ]
    listing.write_text("".join(f"{n} 10 {i % 2}\n" for i, n in enumerate(names)))
    out = tmp_path / "never"
    assert (
        main(
            [
                "train",
                str(workflow.frames),
                "--annotations",
                str(listing),
                "--output",
                str(out),
                *TRAIN,
            ]
        )
        == 2
    )
    line = _stderr_line(capsys)
    assert "3 of the 5 videos" in line and "Gone/v_a" in line and "Gone/v_c" in line
    assert not out.exists()


def _two_class_root(workflow, tmp_path):
    root = tmp_path / "two_classes"
    root.mkdir()
    lines = []
    for label, folder in enumerate(
        sorted(p for p in workflow.frames.glob("*/*") if p.is_dir())[:2]
    ):
        (root / folder.name).symlink_to(folder, target_is_directory=True)
        lines.append(f"{folder.name} 10 {label}\n")
    (root / "rawframes.txt").write_text("".join(lines))
    (root / "classes.txt").write_text("0 first\n1 second\n")
    return root


def test_class_count_mismatch_is_refused_with_both_numbers(workflow, tmp_path, capsys):
    root = _two_class_root(workflow, tmp_path)
    assert main(["evaluate", str(workflow.run), str(root), "--frames", "1", "--crops", "1"]) == 2
    line = _stderr_line(capsys)
    assert "predicts 9 classes but the data has 2" in line
    out = tmp_path / "never"
    args = [
        "train",
        str(root),
        "--output",
        str(out),
        *TRAIN,
        "--weights",
        str(workflow.run / "best.keras"),
    ]
    assert main(args) == 2
    assert "predicts 9 classes but the data has 2" in _stderr_line(capsys)


def test_splits_are_averaged_and_need_a_model_path_per_split(workflow, tmp_path, capsys):
    assert main(["evaluate", str(workflow.run), str(workflow.frames), "--splits", "1", "2"]) == 2
    assert "{split}" in _stderr_line(capsys)
    # The synthetic dataset has one split; two runs of split 1 average to split 1's accuracy.
    for index in (1, 2):
        (tmp_path / f"run{index}").symlink_to(workflow.run, target_is_directory=True)
    out = tmp_path / "eval"
    args = [
        "evaluate",
        str(tmp_path / "run{split}"),
        str(workflow.frames),
        "--annotations",
        str(workflow.data),
    ]
    with pytest.raises(SystemExit):  # argparse: --split and --splits exclude each other
        main([*args, "--split", "2", "--splits", "1"])
    capsys.readouterr()
    assert (
        main(
            [*args, "--splits", "1", "1", "--frames", "1", "--crops", "1", "--output", str(out)]
            + ["--snippets", "random"]  # STPN's protocol, recorded with the results
        )
        == 0
    )
    mean = (out / "report_mean.md").read_text()
    results = json.loads((out / "split1" / "results.json").read_text())
    assert results["snippets"] == "random"
    assert "randomly sampled" in (out / "split1" / "report.md").read_text()
    single = results["metrics"]
    for row in single:
        assert f"| {row['output']} | {100 * row['top1']:.1f}% |" in mean


def test_evaluate_scores_clips_for_models_that_need_them(workflow, tmp_path):
    """TCLSTA scores clips of T frames: 4 frames, T = 2 -> clips (f0, f2) and (f1, f3)."""
    from keras_twostream import build_tclsta
    from keras_twostream.data import load_annotations, make_test_dataset
    from keras_twostream.evaluation.scores import load_scores

    model = build_tclsta(
        9,
        backbone="tiny",
        image_size=32,
        num_segments=2,
        flow_length=2,
        cam_filters=8,
        lstm_units=4,
        collaborative_units=4,
    )
    path = tmp_path / "tclsta.keras"
    model.save(path)
    out = tmp_path / "eval"
    args = ["evaluate", str(path), str(workflow.frames), "--annotations", str(workflow.data)]
    assert main([*args, "--frames", "4", "--crops", "1", "--output", str(out)]) == 0
    scores = load_scores(out / "scores.npz")
    assert {"spatial", "temporal", "spatial_lstm", "fused"} <= set(scores.scores)
    table = load_annotations(workflow.data, split=1, root=workflow.frames, layout="frames")
    test = table[table.split == "test"].iloc[:2]
    views = make_test_dataset(test, num_frames=4, crops=1, flow_length=2, image_size=32)
    for (inputs, _), index in zip(views, range(2), strict=True):
        clips = {k: np.asarray(v)[:, 0] for k, v in inputs.items()}  # [4, H, W, C]
        batch = {k: np.stack([v[[0, 2]], v[[1, 3]]]) for k, v in clips.items()}  # two clips of T=2
        expected = model.predict(batch, verbose=0)["fused"].mean(axis=0)
        np.testing.assert_allclose(scores.scores["fused"][index], expected, atol=1e-5)


def test_help_lists_the_new_commands():
    from keras_twostream.cli import build_parser

    text = build_parser().format_help()
    for command in ("train", "evaluate", "fuse", "predict", "export"):
        assert command in text
    assert Path(__file__).exists()


def test_a_restarted_run_resumes_from_its_checkpoint(workflow, tmp_path):
    import shutil

    # The fixture's run ended after 2 epochs; the same command with --epochs 3 trains one more.
    run = tmp_path / "run"
    shutil.copytree(workflow.run, run)
    before = (run / "history.csv").read_text().splitlines()
    args = [
        "train",
        str(workflow.frames),
        "--annotations",
        str(workflow.data),
        "--output",
        str(run),
    ]
    assert main([*args, "--epochs", "3", *TRAIN]) == 0
    after = (run / "history.csv").read_text().splitlines()
    assert len(before) == 3 and len(after) == 4  # header + epochs 1-2, then epoch 3 appended
    assert after[:3] == before
    assert [row.split(",")[0] for row in after[1:]] == ["0", "1", "2"]


def test_mirrored_mixed_precision_training_from_the_shell(workflow, tmp_path):
    # A separate process: its MirroredStrategy must not share this process's collectives.
    out = tmp_path / "mirrored"
    command = [
        sys.executable, "-m", "keras_twostream.cli", "train", str(workflow.frames),
        "--annotations", str(workflow.data), "--output", str(out), "--epochs", "1",
        "--strategy", "mirrored", "--mixed-precision", *TRAIN,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "last.keras").is_file()
    assert any((out / "checkpoints").iterdir())
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert len(rows) == 1 and np.isfinite(float(rows[0]["loss"]))


def test_cma_trains_the_flow_branch_first_by_default(workflow, tmp_path):
    """Issue 15 item 8, CMA Sect. 4.3: the Flow branch is trained first, alone (its CMA blocks
    stay identities), then the iterations alternate from RGB. Epoch 1 (pre-training) leaves the
    RGB branch and the Flow CMA blocks bit-for-bit as initialised and moves the Flow backbone;
    epoch 2 (iteration 1) trains RGB with Flow frozen."""
    import keras

    from keras_twostream.models import build_cma, load_model

    init = tmp_path / "init.keras"
    build_cma(9, backbone="tiny", image_size=32, num_segments=2, flow_length=2).save(init)
    run = tmp_path / "cma"
    args = [
        "train", str(workflow.frames), "--annotations", str(workflow.data), "--output", str(run),
        "--model", "cma", "--backbone", "tiny", "--image-size", "32", "--segments", "2",
        "--flow-length", "2", "--batch-size", "9", "--weights", str(init), "--val", "none",
        "--alternate-every", "1", "--verbose", "0",
    ]  # fmt: skip

    def branch_values(path):
        model = load_model(path)
        values = {
            branch: {
                (i, v.path): keras.ops.convert_to_numpy(v)
                for i, v in enumerate(model.branch_variables(branch, trainable_only=False))
                if "seed_generator" not in v.path
            }
            for branch in model.branches
        }
        cma = {id(v) for layer in model.cross_layers("temporal") for v in layer.variables}
        keys = {
            (i, v.path)
            for i, v in enumerate(model.branch_variables("temporal", trainable_only=False))
            if id(v) in cma
        }
        return values, keys

    initial, flow_cma = branch_values(init)
    assert flow_cma
    assert main([*args, "--epochs", "1"]) == 0
    info = json.loads((run / "train.json").read_text())
    assert info["training"]["pretrain_flow_epochs"] == 1 and "pretrain_flow" in info["arguments"]
    trained, _ = branch_values(run / "last.keras")
    changed = {
        branch: {k for k, v in values.items() if not np.array_equal(v, initial[branch][k])}
        for branch, values in trained.items()
    }
    assert not changed["spatial"] and not changed["temporal"] & flow_cma
    assert any(
        "flow_backbone" in path or "flow_classifier" in path for _, path in changed["temporal"]
    )
    # The first alternating iteration then trains RGB (tested in tests/training).


def test_streams_trained_separately_then_fused(workflow, tmp_path):
    """Issue 15 item 9, the two-stream paper's procedure (Sects. 5-6): the spatial and the
    temporal nets are trained as separate runs, each evaluated on the test videos, and their
    per-video scores fused: train --stream spatial -> evaluate -> train --stream temporal ->
    evaluate -> fuse."""
    from keras_twostream.evaluation.scores import load_scores
    from keras_twostream.models import load_model

    data = ["--annotations", str(workflow.data)]
    tiny = [
        "--model", "two_stream", "--backbone", "tiny", "--image-size", "32", "--segments", "2",
        "--flow-length", "2", "--batch-size", "9", "--epochs", "1", "--val", "none", "--verbose", "0",
    ]  # fmt: skip
    scores = {}
    for stream, modality in (("spatial", "rgb"), ("temporal", "flow")):
        run, out = tmp_path / stream, tmp_path / f"eval_{stream}"
        train = ["train", str(workflow.frames), *data, "--output", str(run), "--stream", stream]
        assert main([*train, *tiny]) == 0
        model = load_model(run / "best.keras")
        assert list(model.input) == [modality] and list(model.output) == [stream]
        info = json.loads((run / "train.json").read_text())
        assert info["training"]["stream"] == stream and info["arguments"]["stream"] == stream
        # No ImageNet weights for the tiny backbone: the spatial net starts from scratch too.
        assert info["training"]["weights"] == "none"
        evaluate = ["evaluate", str(run), str(workflow.frames), *data, "--output", str(out)]
        assert main([*evaluate, "--frames", "1", "--crops", "1"]) == 0
        scores[stream] = load_scores(out / "scores.npz")
        assert list(scores[stream].scores) == [stream]
    fused = tmp_path / "fused.npz"
    spec = [
        f"{tmp_path}/eval_spatial/scores.npz:spatial",
        f"{tmp_path}/eval_temporal/scores.npz:temporal",
    ]
    assert main(["fuse", *spec, "--method", "average", "--output", str(fused)]) == 0
    result = load_scores(fused)
    assert result.videos.tolist() == scores["spatial"].videos.tolist()
    order = [scores["temporal"].videos.tolist().index(v) for v in result.videos]
    np.testing.assert_allclose(
        result.scores["fused_average"],
        (scores["spatial"].scores["spatial"] + scores["temporal"].scores["temporal"][order]) / 2,
        atol=1e-6,
    )
