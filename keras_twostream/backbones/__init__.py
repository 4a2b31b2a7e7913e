"""Stream feature extractors exposing stage outputs, and RGB -> flow weight adaptation.

Imports `keras_twostream.layers` only, never models/ or data/.
"""

from keras_twostream.backbones.backbone import Backbone
from keras_twostream.backbones.builders import (
    BACKBONES,
    bn_inception,
    cnn_m_2048,
    get_backbone,
    resnet50,
    resnet101,
    tiny,
    vgg16,
)
from keras_twostream.backbones.weights import adapt_input_channels, load_imagenet_weights

__all__ = [
    "BACKBONES",
    "Backbone",
    "adapt_input_channels",
    "bn_inception",
    "cnn_m_2048",
    "get_backbone",
    "load_imagenet_weights",
    "resnet101",
    "resnet50",
    "tiny",
    "vgg16",
]
