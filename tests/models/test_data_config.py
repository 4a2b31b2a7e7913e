"""The model owns its data contract: `data_config()`, `set_data_config`, `make_dataset(data_config=)`."""

import warnings

import numpy as np
import pandas as pd
import pytest

import keras_twostream
from keras_twostream.commands.defaults import PAPER_DEFAULTS
from keras_twostream.data import augment, make_dataset, make_test_dataset, pipeline
from keras_twostream.models import MODELS, data_config
from keras_twostream.models.data_config import default_rgb_normalization

FRAMES = "tests/data/mmaction2/imgs"  # a real MMAction2 frame folder: img_, x_, y_ JPEGs

# Small versions of every builder: the derived contract must describe their inputs exactly.
SMALL = {
    "two_stream": dict(backbone="tiny", image_size=32, num_segments=2, flow_length=3),
    "cma": dict(backbone="tiny", image_size=32, num_segments=2, flow_length=3),
    "cma_3d": dict(image_size=32, num_segments=4),
    "tclsta": dict(backbone="tiny", image_size=32, num_segments=2, flow_length=3),
    "stpn": dict(backbone="tiny", image_size=32, flow_length=3, num_paths=2, fusion_dim=64),
    "mpa_sal": dict(backbone="tiny", image_size=32, num_segments=2),
}


def _build(name, num_classes=3, **overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return MODELS[name](num_classes, **{**SMALL[name], **overrides})


def test_every_builder_is_covered():
    assert set(SMALL) == set(MODELS)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_data_config_describes_the_inputs_and_feeds_the_model(name):
    model = _build(name)
    config = model.data_config()
    assert set(config) == set(data_config.KEYS)
    table = pd.DataFrame({"path": [FRAMES, FRAMES], "label": [0, 2]})
    dataset = make_dataset(table, data_config=model, batch_size=2, seed=0, training=False)
    inputs, labels = next(iter(dataset))
    assert sorted(inputs) == sorted(config["modalities"])
    for key, shape in model._input_shapes.items():
        assert tuple(inputs[key].shape[1:]) == shape, key
    assert labels.numpy().tolist() == [0, 2]
    outputs = model.predict(inputs, verbose=0)
    assert all(np.all(np.isfinite(v)) for v in outputs.values())


def test_the_test_protocol_takes_the_same_contract():
    model = _build("stpn")
    table = pd.DataFrame({"path": [FRAMES], "label": [1]})
    views, label = next(iter(make_test_dataset(table, data_config=model, num_frames=2, crops=1)))
    # One snippet per view: P chunks of L fields (STPN, Sect. 3.2).
    assert tuple(views["flow"].shape) == (2, 2, 32, 32, 6)
    assert tuple(views["rgb"].shape) == (2, 1, 32, 32, 3)


def test_inputs_are_normalised_as_the_backbone_weights_expect():
    # The failure: ImageNet-Caffe weights silently fed [0, 1] inputs.
    model = _build("two_stream")
    model.set_data_config(rgb_normalization="caffe")
    table = pd.DataFrame({"path": [FRAMES], "label": [0]})
    ours = next(iter(make_dataset(table, data_config=model, batch_size=1, training=False)))[0]
    explicit = next(
        iter(
            make_dataset(
                table,
                modalities=("rgb", "flow"),
                num_segments=2,
                flow_length=3,
                image_size=32,
                rgb_normalization="caffe",
                batch_size=1,
                training=False,
            )
        )
    )[0]
    np.testing.assert_array_equal(ours["rgb"].numpy(), explicit["rgb"].numpy())
    assert float(ours["rgb"].numpy().min()) < -50  # BGR minus the ImageNet means, not [0, 1]
    np.testing.assert_array_equal(ours["flow"].numpy(), explicit["flow"].numpy())


def test_a_contradicting_argument_names_both_values():
    model = _build("two_stream")
    table = pd.DataFrame({"path": [FRAMES], "label": [0]})
    with pytest.raises(
        ValueError, match=r"image_size=64 contradicts the model's data config \(image_size=32\)"
    ):
        make_dataset(table, data_config=model, image_size=64)
    # The same value is no contradiction, and (height, width) equals a square int.
    make_dataset(table, data_config=model, image_size=(32, 32), batch_size=1)


def test_class_names_must_match_the_table():
    model = _build("two_stream")
    model.set_data_config(class_names=["run", "jump", "sit"])
    table = pd.DataFrame({"path": [FRAMES], "label": [0]})
    table.attrs["classes"] = ["run", "sit", "jump"]
    with pytest.raises(ValueError, match="label 1 is 'sit' in the table, 'jump' for the model"):
        make_dataset(table, data_config=model)
    table.attrs["classes"] = ["run", "jump", "sit"]
    make_dataset(table, data_config=model, batch_size=1)
    bad = pd.DataFrame({"path": [FRAMES], "label": [3]})  # 3 classes: labels 0..2
    with pytest.raises(ValueError, match="label"):
        next(iter(make_dataset(bad, data_config=model, batch_size=1)))


def test_set_entries_are_saved_and_survive_rebuild(tmp_path):
    model = _build("cma")
    assert model.data_config()["flow_normalization"] == "bound"  # CMA paper, Sect. 4.1
    model.set_data_config(
        class_names=["a", "b", "c"],
        rgb_normalization="torch",
        flow_bound=15,
        mean_subtract_flow=True,
    )
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras_twostream.load_model(path)
    assert loaded.data_config() == model.data_config()
    assert loaded.data_config()["flow_bound"] == 15.0
    assert model.rebuild(num_segments=1).data_config()["class_names"] == ["a", "b", "c"]
    model.set_data_config(rgb_normalization=None)  # back to the weights' default
    assert model.data_config()["rgb_normalization"] == "unit"


def test_an_old_config_without_data_config_loads_with_defaults():
    model = _build("two_stream")
    config = model.get_config()
    assert "data_config" not in config  # nothing set: nothing stored
    clone = type(model).from_config(config)
    assert clone.data_config() == model.data_config()


@pytest.mark.parametrize(
    "entries, message",
    [
        ({"image_size": 64}, "image_size follow from the network"),
        ({"rgb_normalization": "bgr"}, "expected rgb_normalization in"),
        ({"class_names": ["a", "b"]}, "expected 3 names in class_names"),
        ({"flow_bound": 0}, "expected flow_bound > 0"),
        ({"mean_subtract_flow": "yes"}, "True or False"),
    ],
)
def test_bad_entries_are_refused_by_name(entries, message):
    with pytest.raises(ValueError, match=message):
        _build("two_stream").set_data_config(**entries)


def test_multi_task_class_names_are_per_task():
    model = keras_twostream.build_two_stream(
        {"ucf": 3, "hmdb": 2}, backbone="tiny", image_size=32, flow_length=2
    )
    model.set_data_config(class_names={"ucf": ["a", "b", "c"], "hmdb": ["x", "y"]})
    assert model.data_config()["class_names"]["hmdb"] == ["x", "y"]
    with pytest.raises(ValueError, match="dict with the tasks"):
        model.set_data_config(class_names=["a", "b", "c"])


def test_default_rgb_normalization_follows_the_weights():
    assert default_rgb_normalization("resnet50", "imagenet") == "caffe"  # keras.applications
    assert default_rgb_normalization("vgg16", "imagenet") == "caffe"
    assert default_rgb_normalization("resnet50_torch", "imagenet") == "torch"
    assert default_rgb_normalization("resnet50", "tsn_rgb.pth") == "torch"  # PyTorch checkpoints
    assert default_rgb_normalization("resnet50", None) == "unit"  # from scratch
    assert default_rgb_normalization("cnn_m_2048", "imagenet") == "unit"  # no Caffe-mean weights
    model = _build("two_stream", spatial_weights=None)
    assert model.data_config()["rgb_normalization"] == "unit"


def test_the_vocabularies_agree_with_the_data_side():
    assert set(data_config.RGB_NORMALIZATIONS) == set(augment.RGB_PRESETS)
    assert set(data_config.FLOW_NORMALIZATIONS) == set(pipeline.FLOW_NORMALIZATIONS)


@pytest.mark.parametrize("name", ["two_stream", "stpn", "cma", "tclsta"])
def test_flow_defaults_are_the_papers(name):
    paper = PAPER_DEFAULTS[name]
    config = _build(name).data_config()
    assert config["flow_normalization"] == paper["flow_normalization"].value
    assert config["mean_subtract_flow"] == paper["mean_subtract_flow"].value


def test_a_plain_dict_works_as_data_config():
    # A plain dict works as data_config too (what a server reads back from an export).
    config = {k: v for k, v in _build("two_stream").data_config().items()}
    config["modalities"] = list(config["modalities"])
    table = pd.DataFrame({"path": [FRAMES], "label": [0]})
    inputs, _ = next(iter(make_dataset(table, data_config=config, batch_size=1)))
    assert tuple(inputs["flow"].shape) == (1, 2, 32, 32, 6)
    with pytest.raises(TypeError, match="data_config"):
        make_dataset(table, data_config=42)
