"""Optical flow computed in the graph: TV-L1 in `keras.ops`, compiled by XLA.

`keras_twostream.data.flow` wraps OpenCV's CPU solvers (one pair at a time);
this package holds solvers written as backend ops, batched over frame pairs, that XLA
compiles for the CPU or a GPU (TensorFlow or JAX backend).

Example:

>>> import numpy as np
>>> from keras_twostream.flow import tvl1
>>> a = np.zeros((1, 32, 32), "uint8")
>>> tuple(tvl1(a, a, warps=1, outer_iterations=1).shape)
(1, 32, 32, 2)
"""

from keras_twostream.flow.median import median5x5
from keras_twostream.flow.tvl1 import TVL1_DEFAULTS, pyramid_sizes, tvl1, tvl1_graph

__all__ = ["TVL1_DEFAULTS", "median5x5", "pyramid_sizes", "tvl1", "tvl1_graph"]
