"""ResNet-50/101 backbones against keras.applications (structure, names, numerics)."""

import keras
import numpy as np
import pytest
from backbone_test_utils import assert_close_to_scale, randomize_weights, to_numpy

from keras_twostream.backbones import get_backbone, load_imagenet_weights
from keras_twostream.backbones.weights import leaf_layers


@pytest.mark.parametrize("channels", [3, 20])
def test_resnet50_stage_shapes(channels):
    backbone = get_backbone("resnet50", input_shape=(64, 64, channels))
    shapes = {name: tuple(t.shape) for name, t in backbone.output.items()}
    assert shapes == {
        "res2": (None, 16, 16, 256),
        "res3": (None, 8, 8, 512),
        "res4": (None, 4, 4, 1024),
        "res5": (None, 2, 2, 2048),
        "features": (None, 2048),
    }
    assert backbone.stage_ends == {
        "res2": "conv2_block3",
        "res3": "conv3_block4",
        "res4": "conv4_block6",
        "res5": "conv5_block3",
    }
    # The first convolution takes all input channels; nothing else depends on them.
    assert backbone.get_layer(backbone.blocks[0][1].name).get_layer("conv1_conv").kernel.shape == (
        7,
        7,
        channels,
        64,
    )
    assert backbone.count_params() == 23_587_712 + 7 * 7 * (channels - 3) * 64


def test_resnet50_params_and_layer_names_match_keras_applications():
    backbone = get_backbone("resnet50", input_shape=(224, 224, 3))
    reference = keras.applications.ResNet50(weights=None, include_top=False)
    assert reference.count_params() == 23_587_712
    assert backbone.count_params() == 23_587_712
    ours = {layer.name for layer in leaf_layers(backbone) if layer.weights}
    theirs = {layer.name for layer in reference.layers if layer.weights}
    assert ours == theirs
    # Every layer, weightless ones included, carries keras.applications' name;
    # the backbone only adds the global average pool of its head.
    ours_all = {
        layer.name
        for layer in leaf_layers(backbone)
        if not isinstance(layer, keras.layers.InputLayer)
    }
    theirs_all = {
        layer.name for layer in reference.layers if not isinstance(layer, keras.layers.InputLayer)
    }
    assert ours_all == theirs_all | {"avg_pool"}
    # BatchNormalization exactly as keras.applications (epsilon 1.001e-5).
    for layer in leaf_layers(backbone):
        if isinstance(layer, keras.layers.BatchNormalization):
            assert layer.epsilon == pytest.approx(1.001e-5)
            assert not layer.synchronized


def test_resnet101_structure():
    backbone = get_backbone("resnet101", input_shape=(64, 64, 3))
    names = [name for name, _ in backbone.blocks]
    assert names[0] == "stem" and names[-1] == "head"
    assert names[1:-1] == (
        [f"conv2_block{i}" for i in range(1, 4)]
        + [f"conv3_block{i}" for i in range(1, 5)]
        + [f"conv4_block{i}" for i in range(1, 24)]
        + [f"conv5_block{i}" for i in range(1, 4)]
    )
    assert backbone.stage_ends["res4"] == "conv4_block23"
    assert tuple(backbone.output["res4"].shape) == (None, 4, 4, 1024)
    # keras.applications.ResNet101(include_top=False) has 42,658,176 parameters.
    assert backbone.count_params() == 42_658_176


def test_resnet50_matches_keras_applications_numerically(tmp_path):
    """With the same (random) weights, ours computes what keras.applications computes."""
    reference = keras.applications.ResNet50(
        weights=None, include_top=False, input_shape=(64, 64, 3), pooling="avg"
    )
    randomize_weights(reference, seed=3)
    path = tmp_path / "resnet50_notop.weights.h5"
    reference.save_weights(path)
    backbone = get_backbone("resnet50", input_shape=(64, 64, 3), weights=str(path))

    probe = keras.Model(
        reference.input,
        {
            "res2": reference.get_layer("conv2_block3_out").output,
            "res3": reference.get_layer("conv3_block4_out").output,
            "res4": reference.get_layer("conv4_block6_out").output,
            "res5": reference.get_layer("conv5_block3_out").output,
            "features": reference.output,
        },
    )
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
    expected = to_numpy(probe(x, training=False))
    got = to_numpy(backbone(x, training=False))
    for key in expected:
        assert_close_to_scale(got[key], expected[key])
    assert np.std(got["features"]) > 1e-3  # not a degenerate all-zero comparison

    # The cross-modality variant: 20 channels, first convolution adapted.
    flow = load_imagenet_weights(get_backbone("resnet50", input_shape=(64, 64, 20)), str(path))
    flow_kernel = np.asarray(flow.blocks[0][1].get_layer("conv1_conv").kernel)
    rgb_kernel = np.asarray(reference.get_layer("conv1_conv").kernel)
    np.testing.assert_allclose(
        flow_kernel,
        np.repeat(rgb_kernel.astype("float64").mean(axis=2, keepdims=True), 20, axis=2),
        rtol=1e-6,
        atol=1e-9,
    )
    # A flow stack whose 20 channels all equal the grey image v gives the RGB
    # network's response to v scaled by 20/3 before the first BN (no rescaling).
    grey = x.mean(axis=-1, keepdims=True)
    stem_rgb = keras.Model(reference.input, reference.get_layer("conv1_conv").output)
    stem_flow = flow.blocks[0][1].get_layer("conv1_conv")
    bias = np.asarray(reference.get_layer("conv1_conv").bias)
    padded = keras.layers.ZeroPadding2D(3)(np.repeat(grey, 20, axis=-1))
    response_flow = keras.ops.convert_to_numpy(stem_flow(padded)) - bias
    response_rgb = keras.ops.convert_to_numpy(stem_rgb(np.repeat(grey, 3, axis=-1))) - bias
    assert_close_to_scale(response_flow, response_rgb * 20 / 3)
