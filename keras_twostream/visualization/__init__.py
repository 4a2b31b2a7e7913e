"""Plots of what the models attend to. Matplotlib is imported lazily, with the "Agg" backend."""

import importlib

# Public name -> module that defines it.
_LAZY = {
    "cma_attention_map": "keras_twostream.visualization.cma",
    "plot_cma_attention": "keras_twostream.visualization.cma",
    "CMAAttentionMap": "keras_twostream.visualization.cma",
    "spatial_attention_maps": "keras_twostream.visualization.tclsta",
    "temporal_attention_curves": "keras_twostream.visualization.tclsta",
    "plot_attention": "keras_twostream.visualization.tclsta",
    "plot_timeline": "keras_twostream.visualization.timeline",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_twostream.visualization' has no attribute {name!r}")


def __dir__():
    return __all__
