"""keras_twostream: two-stream video classification architectures for Keras 3.

Model builders are imported lazily, so `import keras_twostream.data` (used by
extraction worker processes) does not pay for TensorFlow's start-up.

Example:

>>> from keras_twostream import build_two_stream  # doctest: +SKIP
>>> model = build_two_stream(num_classes=101, backbone="resnet50")  # doctest: +SKIP
"""

import importlib

from keras_twostream.version import __version__

# Names served from keras_twostream.models (builders, model classes, MODELS, load_model).
_MODEL_NAMES = (
    "MODELS",
    "load_model",
    "build_two_stream",
    "build_stpn",
    "build_cma",
    "build_tclsta",
    "build_mpa_sal",
    "TwoStream",
    "STPN",
    "CMA",
    "TCLSTA",
    "MPASAL",
)
_SUBMODULES = (
    "layers",
    "backbones",
    "models",
    "training",
    "data",
    "flow",
    "datasets",
    "evaluation",
    "visualization",
)

# Names served from keras_twostream.inference (video file or stream -> classes).
_INFERENCE_NAMES = ("predict_video", "predict_stream", "VideoPrediction")

__all__ = ["__version__", *_MODEL_NAMES, *_INFERENCE_NAMES, *_SUBMODULES]


def __getattr__(name):
    if name in _INFERENCE_NAMES:
        return getattr(importlib.import_module("keras_twostream.inference"), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"keras_twostream.{name}")
    models = importlib.import_module("keras_twostream.models")
    if hasattr(models, name):
        return getattr(models, name)
    raise AttributeError(f"module 'keras_twostream' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
