"""Model builders, one module per paper. `MODELS` maps names to builders (no string registry)."""

from keras_twostream.models.base import MaskedSparseCategoricalAccuracy, VideoClassifier
from keras_twostream.models.two_stream import TwoStream, build_two_stream

MODELS = {
    "two_stream": build_two_stream,
}

__all__ = ["MODELS", "MaskedSparseCategoricalAccuracy", "TwoStream", "VideoClassifier", "build_two_stream"]
