"""Stream feature extractors exposing stage outputs, RGB -> flow weight adaptation, and
loading of PyTorch (torchvision / MMAction2) checkpoints.

Imports `keras_twostream.layers` only, never models/ or data/.
"""

from keras_twostream.backbones.backbone import Backbone
from keras_twostream.backbones.builders import (
    BACKBONES,
    bn_inception,
    cnn_m_2048,
    get_backbone,
    resnet50,
    resnet50_torch,
    resnet101,
    resnet101_torch,
    tiny,
    tiny_torch,
    vgg16,
)
from keras_twostream.backbones.torch_checkpoint import UnsafeCheckpointError, read_torch_checkpoint
from keras_twostream.backbones.torch_weights import TorchWeightsReport, load_torch_weights
from keras_twostream.backbones.weights import adapt_input_channels, load_imagenet_weights

__all__ = [
    "BACKBONES",
    "Backbone",
    "adapt_input_channels",
    "bn_inception",
    "cnn_m_2048",
    "get_backbone",
    "TorchWeightsReport",
    "UnsafeCheckpointError",
    "load_imagenet_weights",
    "load_torch_weights",
    "read_torch_checkpoint",
    "resnet101",
    "resnet101_torch",
    "resnet50",
    "resnet50_torch",
    "tiny",
    "tiny_torch",
    "vgg16",
]
