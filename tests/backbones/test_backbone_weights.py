"""adapt_input_channels and load_imagenet_weights, offline (no download is ever made here)."""

import keras
import numpy as np
import pytest
from backbone_test_utils import randomize_weights, weights_by_layer

from keras_twostream.backbones import adapt_input_channels, get_backbone, load_imagenet_weights
from keras_twostream.backbones.cnn_m import MIN_INPUT_SIZE


# --- adapt_input_channels ---
@pytest.mark.parametrize("channels", [1, 2, 3, 10, 20])
def test_adapt_input_channels_replicates_the_rgb_mean(channels):
    kernel = np.random.default_rng(0).normal(size=(7, 7, 3, 64)).astype("float32")
    adapted = adapt_input_channels(kernel, channels)
    assert adapted.shape == (7, 7, channels, 64) and adapted.dtype == np.float32
    mean = (kernel[:, :, 0].astype("float64") + kernel[:, :, 1] + kernel[:, :, 2]) / 3
    for c in range(channels):
        np.testing.assert_allclose(adapted[:, :, c], mean, rtol=1e-6, atol=1e-7)


def test_adapt_input_channels_rescale_keeps_the_grey_response():
    kernel = np.random.default_rng(1).normal(size=(3, 3, 3, 8))
    rescaled = adapt_input_channels(kernel, 20, rescale=True)
    np.testing.assert_allclose(rescaled, adapt_input_channels(kernel, 20) * 3 / 20)
    # A constant input v on all channels gets the RGB kernel's response to v.
    np.testing.assert_allclose(rescaled.sum(axis=2), kernel.sum(axis=2), rtol=1e-12)
    assert adapt_input_channels(kernel.astype("float16"), 4).dtype == np.float16


def test_adapt_input_channels_accepts_tensors_and_validates():
    kernel = keras.ops.ones((3, 3, 3, 2))
    np.testing.assert_array_equal(adapt_input_channels(kernel, 5), np.ones((3, 3, 5, 2)))
    with pytest.raises(ValueError, match="kernel"):
        adapt_input_channels(np.ones((3, 3, 3)), 5)
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="channels"):
            adapt_input_channels(np.ones((3, 3, 3, 2)), bad)


# --- load_imagenet_weights ---
@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory):
    """A keras.applications ResNet50 body with random weights, saved like its notop file."""
    reference = keras.applications.ResNet50(weights=None, include_top=False)
    randomize_weights(reference, seed=7)
    path = tmp_path_factory.mktemp("resnet") / "resnet50_notop.weights.h5"
    reference.save_weights(path)
    return weights_by_layer(reference), str(path)


def assert_every_layer_loaded(backbone, expected, adapted_first_conv=None):
    got = weights_by_layer(backbone)
    assert got.keys() <= expected.keys() and len(got) > 0
    for name, values in got.items():
        reference = expected[name]
        if name == adapted_first_conv:
            # The kernel is adapted; a bias, when there is one, is copied.
            reference = [adapt_input_channels(reference[0], values[0].shape[2]), *reference[1:]]
        assert len(values) == len(reference), name
        for value, ref in zip(values, reference, strict=True):
            np.testing.assert_array_equal(value, ref, err_msg=name)


def test_resnet50_loads_every_layer_by_name(resnet50_file):
    expected, path = resnet50_file
    rgb = get_backbone("resnet50", input_shape=(64, 64, 3), weights=path)
    assert_every_layer_loaded(rgb, expected)
    assert len(weights_by_layer(rgb)) == len(expected)

    flow = get_backbone("resnet50", input_shape=(64, 64, 20), weights=path)
    assert_every_layer_loaded(flow, expected, adapted_first_conv="conv1_conv")
    assert flow.blocks[0][1].get_layer("conv1_conv").kernel.shape == (7, 7, 20, 64)


def test_resnet50_file_with_top_in_legacy_h5(tmp_path):
    """keras.applications' own files are legacy .h5; a file with its classifier top loads too."""
    full = keras.applications.ResNet50(weights=None, include_top=True, input_shape=(64, 64, 3))
    randomize_weights(full, seed=8)
    path = tmp_path / "resnet50_full.h5"
    keras.saving.save_model(full, path)  # legacy HDF5 format
    backbone = get_backbone("resnet50", input_shape=(64, 64, 3))
    assert load_imagenet_weights(backbone, str(path)) is backbone
    expected = weights_by_layer(full)
    assert_every_layer_loaded(backbone, expected)
    assert "predictions" in expected


def test_own_format_for_architectures_without_keras_applications(tmp_path):
    for architecture, shape in (("tiny", (64, 64)), ("cnn_m_2048", (MIN_INPUT_SIZE,) * 2)):
        rgb = get_backbone(architecture, input_shape=(*shape, 3))
        randomize_weights(rgb, seed=9)
        path = tmp_path / f"{architecture}_rgb.weights.h5"
        rgb.save_weights(path)
        first_conv = "conv1_conv" if architecture == "tiny" else "conv1"

        flow = get_backbone(
            architecture, input_shape=(*shape, 6), weights=str(path), stream="temporal"
        )
        assert_every_layer_loaded(flow, weights_by_layer(rgb), adapted_first_conv=first_conv)

        # A file of the backbone's own channel count is copied as is.
        flow_path = tmp_path / f"{architecture}_flow.weights.h5"
        flow.save_weights(flow_path)
        again = get_backbone(architecture, input_shape=(*shape, 6), weights=str(flow_path))
        assert_every_layer_loaded(again, weights_by_layer(flow))


def test_weight_errors_name_the_file(tmp_path, resnet50_file):
    _, resnet_path = resnet50_file
    with pytest.raises(FileNotFoundError, match="missing.weights.h5"):
        get_backbone("tiny", input_shape=(64, 64, 3), weights=str(tmp_path / "missing.weights.h5"))
    with pytest.raises(ValueError, match=r"resnet50\.ckpt"):
        get_backbone("resnet50", input_shape=(64, 64, 3), weights=str(tmp_path / "resnet50.ckpt"))
    # A ResNet-50 file is no tiny file (every attempt is reported).
    with pytest.raises(ValueError, match="resnet50_notop.weights.h5"):
        get_backbone("tiny", input_shape=(64, 64, 3), weights=resnet_path)
    with pytest.raises(ValueError, match="no keras.applications ImageNet weights"):
        get_backbone("tiny", input_shape=(64, 64, 3), weights="imagenet")
    with pytest.raises(ValueError, match="Backbone"):
        load_imagenet_weights(keras.Sequential([keras.layers.Dense(2)]), resnet_path)


def test_weights_none_is_a_no_op():
    backbone = get_backbone("tiny", input_shape=(64, 64, 3))
    before = weights_by_layer(backbone)
    assert load_imagenet_weights(backbone, None) is backbone
    after = weights_by_layer(backbone)
    assert all(
        np.array_equal(a, b) for k in before for a, b in zip(before[k], after[k], strict=True)
    )
