"""The torchvision-layout ResNets: structure, names, sizes, and their place among the backbones."""

import keras
import numpy as np
import pytest

from keras_twostream.backbones import get_backbone, resnet50
from keras_twostream.backbones.weights import leaf_layers
from keras_twostream.models.cma import default_cma_blocks


def trainable_count(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def test_resnet50_torch_shapes_names_and_size():
    backbone = resnet50(input_shape=(64, 64, 10), style="pytorch")
    assert backbone.architecture == "resnet50_torch"
    shapes = {name: tuple(t.shape) for name, t in backbone.output.items()}
    assert shapes == {
        "res2": (None, 16, 16, 256),
        "res3": (None, 8, 8, 512),
        "res4": (None, 4, 4, 1024),
        "res5": (None, 2, 2, 2048),
        "features": (None, 2048),
    }
    names = [name for name, _ in backbone.blocks]
    assert names[:3] == ["stem", "layer1.0", "layer1.1"] and names[-2:] == ["layer4.2", "head"]
    assert backbone.stage_ends == {
        "res2": "layer1.2",
        "res3": "layer2.3",
        "res4": "layer3.5",
        "res5": "layer4.2",
    }
    # torchvision.models.resnet50() has 25,557,032 parameters, 2,049,000 of them in fc;
    # conv1 here takes 10 channels instead of 3.
    assert trainable_count(backbone) == 25_557_032 - 2_049_000 + 7 * 7 * 7 * 64
    layers = {layer.name: layer for layer in leaf_layers(backbone)}
    assert layers["layer2.0.conv2"].strides == (2, 2)  # the stride is on the 3x3 conv
    assert layers["layer2.0.conv1"].strides == (1, 1)
    assert layers["layer1.0.downsample.1"].epsilon == 1e-5
    assert not any(
        layer.use_bias for layer in layers.values() if isinstance(layer, keras.layers.Conv2D)
    )
    # CMA's default positions: every other block of res3 and res4, from the stage ends.
    assert default_cma_blocks(names, backbone.stage_ends) == [
        "layer2.1",
        "layer2.3",
        "layer3.1",
        "layer3.3",
        "layer3.5",
    ]


def test_resnet101_torch_blocks_and_style_argument():
    from keras_twostream.backbones.builders import _torch_architecture
    from keras_twostream.backbones.resnet_torch import torch_resnet_block_specs

    specs, stage_ends = torch_resnet_block_specs("resnet101_torch")
    assert len([n for n, _ in specs if n.startswith("layer3.")]) == 23
    assert stage_ends["res4"] == "layer3.22"
    assert _torch_architecture("resnet101", "pytorch") == "resnet101_torch"
    assert _torch_architecture("resnet101", "keras") == "resnet101"
    with pytest.raises(ValueError, match="style"):
        resnet50(style="caffe")


def test_padding_is_symmetric_like_pytorch():
    """A single 3x3/2 conv on an even input: PyTorch's pad=1 on both sides, not TF's SAME."""
    backbone = get_backbone("tiny_torch", input_shape=(8, 8, 3))
    for layer in leaf_layers(backbone):
        if isinstance(layer, keras.layers.ZeroPadding2D):
            (top, bottom), (left, right) = layer.padding
            assert top == bottom and left == right, layer.name
        if isinstance(layer, keras.layers.Conv2D):
            assert layer.padding == "valid", layer.name
