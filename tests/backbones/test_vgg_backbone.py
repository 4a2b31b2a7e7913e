"""VGG-16 backbone against keras.applications.VGG16 (structure, names, numerics)."""

import keras
import numpy as np
import pytest
from backbone_test_utils import assert_close_to_scale, randomize_weights, to_numpy

from keras_twostream.backbones import get_backbone
from keras_twostream.backbones.weights import leaf_layers

VGG16_CONV_PARAMS = 14_714_688  # keras.applications.VGG16(include_top=False)


@pytest.fixture(scope="module")
def reference_and_weights(tmp_path_factory):
    """keras.applications.VGG16 with its top at 32x32, random weights, saved to a file."""
    reference = keras.applications.VGG16(weights=None, include_top=True, input_shape=(32, 32, 3))
    randomize_weights(reference, seed=5)
    path = tmp_path_factory.mktemp("vgg") / "vgg16.weights.h5"
    reference.save_weights(path)
    return reference, str(path)


def test_vgg16_structure_and_names(reference_and_weights):
    reference, _ = reference_and_weights
    backbone = get_backbone("vgg16", input_shape=(32, 32, 20), dropout=0.5)
    shapes = {name: tuple(t.shape) for name, t in backbone.output.items()}
    assert shapes == {
        "block1": (None, 16, 16, 64),
        "block2": (None, 8, 8, 128),
        "block3": (None, 4, 4, 256),
        "block4": (None, 2, 2, 512),
        "block5": (None, 1, 1, 512),
        "features": (None, 4096),
    }
    assert [name for name, _ in backbone.blocks] == [f"block{i}" for i in range(1, 6)] + ["head"]
    ours = {layer.name for layer in leaf_layers(backbone) if layer.weights}
    theirs = {layer.name for layer in reference.layers if layer.weights} - {"predictions"}
    assert ours == theirs
    head = dict(backbone.blocks)["head"]
    assert [layer.name for layer in head.layers[1:]] == [
        "flatten",
        "fc1",
        "fc1_dropout",
        "fc2",
        "fc2_dropout",
    ]
    assert head.get_layer("fc1_dropout").rate == 0.5
    predictions = reference.get_layer("predictions").count_params()
    first_conv_extra = 3 * 3 * (20 - 3) * 64
    assert backbone.count_params() == reference.count_params() - predictions + first_conv_extra
    assert backbone.count_params() - first_conv_extra == (
        VGG16_CONV_PARAMS + (512 * 4096 + 4096) + (4096 * 4096 + 4096)
    )


def test_vgg16_matches_keras_applications_numerically(reference_and_weights):
    reference, path = reference_and_weights
    backbone = get_backbone("vgg16", input_shape=(32, 32, 3), weights=path, dropout=0.9)
    probe = keras.Model(
        reference.input,
        {
            **{f"block{i}": reference.get_layer(f"block{i}_pool").output for i in range(1, 6)},
            "features": reference.get_layer("fc2").output,
        },
    )
    x = np.random.default_rng(0).uniform(-1, 1, size=(2, 32, 32, 3)).astype("float32")
    expected = to_numpy(probe(x))
    got = to_numpy(backbone(x, training=False))
    for key in expected:
        assert_close_to_scale(got[key], expected[key])
    assert np.count_nonzero(got["features"]) > 100
    # Dropout 0.9 after fc1 and fc2 acts in training mode only.
    dropped = keras.ops.convert_to_numpy(backbone(x, training=True)["features"])
    assert np.mean(dropped == 0) > 0.85


def test_vgg16_needs_fixed_size_and_imagenet_head_at_224(tmp_path):
    with pytest.raises(ValueError, match="fixed height and width"):
        get_backbone("vgg16", input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="at least 32"):
        get_backbone("vgg16", input_shape=(16, 16, 3))
    # The ImageNet fc1 was trained on 7x7x512 maps; refused before any download.
    with pytest.raises(ValueError, match="224x224"):
        get_backbone("vgg16", input_shape=(64, 64, 3), weights="imagenet")


def test_vgg16_file_without_top_is_refused(tmp_path):
    notop = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16_notop.weights.h5"
    notop.save_weights(path)
    with pytest.raises(ValueError, match=r"\['fc1', 'fc2'\]"):
        get_backbone("vgg16", input_shape=(32, 32, 3), weights=str(path))
