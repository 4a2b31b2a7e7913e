"""keras_twostream: two-stream video classification architectures for Keras 3.

Model builders are imported lazily, so `import keras_twostream.data` (used by
extraction worker processes) does not pay for TensorFlow's start-up.

Example:

>>> from keras_twostream import build_two_stream  # doctest: +SKIP
>>> model = build_two_stream(num_classes=101, backbone="resnet50")  # doctest: +SKIP
"""

import importlib

from keras_twostream.version import __version__

# Public name -> module that defines it.
_LAZY = {
    "build_two_stream": "keras_twostream.models.two_stream",
    "TwoStream": "keras_twostream.models.two_stream",
    "MODELS": "keras_twostream.models",
}
_SUBMODULES = ("layers", "backbones", "models", "training", "data", "datasets", "evaluation")

__all__ = ["__version__", *_LAZY, *_SUBMODULES]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"keras_twostream.{name}")
    raise AttributeError(f"module 'keras_twostream' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
