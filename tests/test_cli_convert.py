"""`keras-twostream convert` on the committed PyTorch checkpoints, in-process; its model card in use."""

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from keras_twostream.backbones import read_torch_checkpoint
from keras_twostream.cli import main
from keras_twostream.commands import common

TORCH = Path(__file__).resolve().parent / "data" / "torch_checkpoints"
RGB = TORCH / "tiny_rgb_mmaction2.pth"
FLOW = TORCH / "tiny_flow_mmaction2.pth"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("convert") / "tsn.keras"
    status = main(
        ["convert", str(RGB), str(out), "--other-stream", str(FLOW), "--image-size", "64"]
    )
    assert status == 0
    return out


def test_convert_writes_the_model_and_its_card(converted):
    model = keras.saving.load_model(converted)
    info = common.read_sidecar(converted)
    assert info["model"] == "two_stream"
    assert info["classes"] == ["archery", "bowling", "diving", "fencing", "juggling"]  # meta
    assert info["data"]["rgb_normalization"] == "torch"
    assert info["data"]["flow_normalization"] == "mmaction"
    assert info["data"]["mean_subtract_flow"] is False
    assert info["data"]["flow_length"] == 5  # from the flow conv1's 10 channels
    assert info["test"] == {"frames": 25, "crops": 10, "views": "frame"}
    assert model.get_config()["backbone"] == "tiny_torch"
    assert info["converted"]["spatial"]["mapped"] == 87  # 85 backbone tensors + fc

    # The weights are the checkpoints', in Keras layout.
    rgb = read_torch_checkpoint(RGB)["state_dict"]
    flow = read_torch_checkpoint(FLOW)["state_dict"]
    conv1 = model.spatial_backbone.blocks[0][1].get_layer("conv1").kernel
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(conv1),
        rgb["backbone.conv1.conv.weight"].transpose(2, 3, 1, 0),
    )
    conv1 = model.temporal_backbone.blocks[0][1].get_layer("conv1").kernel
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(conv1),
        flow["backbone.conv1.conv.weight"].transpose(2, 3, 1, 0),
    )
    kernel = model.get_layer("temporal_classifier").kernel
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(kernel), flow["cls_head.fc_cls.weight"].T
    )


def test_scoring_takes_the_normalisation_from_the_card(converted, tests_data):
    """`evaluate` and `predict` score with the card's settings, not the library defaults."""
    from keras_twostream.commands.evaluate import score_videos
    from keras_twostream.data import make_test_dataset, predict_video_scores

    model = keras.saving.load_model(converted)
    info = common.read_sidecar(converted)
    folder = str(tests_data / "mmaction2" / "imgs")  # a real MMAction2 frame folder
    table = pd.DataFrame({"path": [folder], "label": [1], "frames": [10]})
    scores, _ = score_videos(model, info, table, frames=1, crops=1, views="frame", desc=None)

    from keras_twostream.commands.evaluate import scoring_model

    scorer = scoring_model(model, common.model_spec(model), "frame")

    def scores_with(**normalization):
        dataset = make_test_dataset(
            table,
            modalities=("rgb", "flow"),
            num_frames=1,
            crops=1,
            flow_length=5,
            image_size=64,
            **normalization,
        )
        return predict_video_scores(scorer, dataset)

    expected = scores_with(
        rgb_normalization="torch", flow_normalization="mmaction", mean_subtract_flow=False
    )
    defaults = scores_with()  # x / 255, flow in pixels minus its mean
    for name in ("spatial", "temporal"):
        np.testing.assert_allclose(scores[name], expected[name], rtol=1e-5, atol=1e-6)
        assert not np.allclose(scores[name], defaults[name], atol=1e-4)


def test_single_stream_conversion_fuses_that_stream_alone(tmp_path, capsys):
    path = tmp_path / "flow.keras"
    assert main(["convert", str(FLOW), str(path), "--image-size", "32", "--segments", "1"]) == 0
    printed = capsys.readouterr().out
    assert "[convert] temporal:" in printed and "87 tensors mapped" in printed
    assert "0 missing" in printed and "0 unexpected" in printed
    model = keras.saving.load_model(path)
    assert model.get_config()["fusion_weights"] == [0.0, 1.0]
    card = json.loads(common.sidecar_path(path).read_text())
    assert list(card["converted"]) == ["temporal"]
    assert card["classes"] == [f"class_{i}" for i in range(5)]  # 0.x metadata names none
    x = {
        "rgb": np.zeros((1, 1, 32, 32, 3), "float32"),
        "flow": np.ones((1, 1, 32, 32, 10), "float32"),
    }
    out = model.predict(x, verbose=0)
    np.testing.assert_allclose(out["fused"], out["temporal"], rtol=1e-6)

    # Its layer names have dots ("layer1.0.conv1"): the converted backbone exports as a
    # SavedModel (the whole model's export is the builder contract's, tested for two_stream).
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        backbone = model.temporal_backbone
        backbone.export(str(tmp_path / "savedmodel"), verbose=False)
        restored = tf.saved_model.load(str(tmp_path / "savedmodel"))  # keeps its variables alive
        flow = x["flow"][:, 0]
        served = restored.serve(flow)
        expected = keras.ops.convert_to_numpy(backbone(flow, training=False)["features"])
        np.testing.assert_allclose(np.asarray(served["features"]), expected, atol=1e-5)


def test_convert_errors_are_one_line(tmp_path, capsys):
    out = tmp_path / "x.keras"
    assert main(["convert", str(FLOW), str(out), "--stream", "spatial"]) == 2
    assert (
        "takes 10 channels (a flow model); convert it with --stream temporal"
        in capsys.readouterr().err
    )
    assert main(["convert", str(tmp_path / "none.pth"), str(out)]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    out.write_text("")
    assert main(["convert", str(RGB), str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    classes = tmp_path / "classes.txt"
    classes.write_text("a\nb\n")
    assert main(["convert", str(RGB), str(tmp_path / "y.keras"), "--classes", str(classes)]) == 2
    assert "names 2 classes; the model has 5" in capsys.readouterr().err
