"""Model builders, one module per paper. `MODELS` maps names to builders (no string registry)."""

from keras_twostream.models.base import MaskedSparseCategoricalAccuracy, VideoClassifier
from keras_twostream.models.cma import CMA, CMA3D, build_cma, build_cma_3d, build_non_local
from keras_twostream.models.mpa_sal import ABLATIONS as MPA_SAL_ABLATIONS
from keras_twostream.models.mpa_sal import MPASAL, build_mpa_sal
from keras_twostream.models.semantic_autoencoder import SemanticAutoencoder, train_semantic_encoder
from keras_twostream.models.stpn import ABLATIONS as STPN_ABLATIONS
from keras_twostream.models.stpn import STPN, build_stpn
from keras_twostream.models.tclsta import TCLSTA, build_tclsta
from keras_twostream.models.two_stream import TwoStream, build_two_stream


def load_model(filepath, **kwargs):
    """`keras.saving.load_model` with every keras_twostream class registered.

    Importing this module registers the library's layers, backbones and models,
    which a `.keras` file refers to by name.

    Example:

    >>> import keras_twostream
    >>> model = keras_twostream.load_model("two_stream.keras")  # doctest: +SKIP
    """
    import keras

    return keras.saving.load_model(filepath, **kwargs)


# Issue 19, one vocabulary: builder -> {former argument name: its current name}. The former
# names still work (each with a DeprecationWarning); configs saved under them still load.
RENAMED_ARGUMENTS = {
    "build_two_stream": {"spatial_dropout": "dropout", "temporal_dropout": "dropout"},
    "build_cma": {"rgb_weights": "spatial_weights", "flow_weights": "temporal_weights"},
    "build_non_local": {"rgb_weights": "spatial_weights", "flow_weights": "temporal_weights"},
    "build_cma_3d": {"num_frames": "num_segments", "flow_channels": "flow_length"},
    "build_tclsta": {"num_frames": "num_segments"},
    "build_stpn": {"temporal_paths": "num_paths"},
    "build_mpa_sal": {
        "stream": "streams",
        "spatial_dropout": "dropout",
        "temporal_dropout": "dropout",
        "weights": "spatial_weights",
    },
}

MODELS = {
    "two_stream": build_two_stream,
    "cma": build_cma,
    "cma_3d": build_cma_3d,
    "tclsta": build_tclsta,
    "stpn": build_stpn,
    "mpa_sal": build_mpa_sal,
}

__all__ = [
    "SemanticAutoencoder",
    "train_semantic_encoder",
    "CMA",
    "CMA3D",
    "MODELS",
    "MPASAL",
    "MPA_SAL_ABLATIONS",
    "MaskedSparseCategoricalAccuracy",
    "RENAMED_ARGUMENTS",
    "STPN",
    "STPN_ABLATIONS",
    "TCLSTA",
    "TwoStream",
    "VideoClassifier",
    "build_cma",
    "build_cma_3d",
    "build_non_local",
    "build_mpa_sal",
    "build_stpn",
    "build_tclsta",
    "build_two_stream",
]
