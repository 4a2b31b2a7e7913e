"""The segmental consensus of Temporal Segment Networks."""

import keras
from keras import ops

_MODES = ("avg", "max")


@keras.saving.register_keras_serializable(package="keras_twostream")
class SegmentConsensus(keras.layers.Layer):
    """Reduces the segment axis of `(batch, segments, ...)` by average or max.

    This is the segmental consensus function G of Temporal Segment Networks
    (Wang et al., ECCV 2016), used by the cross-modality attention paper
    (Eq. 6 of Chi et al.) and by the RGB-only two-stream paper (Eq. 2 of the
    MPA+SAL paper) to turn K per-segment predictions or features into one
    video-level result.

    Args:
        mode: `"avg"` (the default, TSN's evenly weighted average) or `"max"`.
        axis: the segment axis. Defaults to `1`, the axis right after the batch.
        keepdims: keep the reduced axis with length 1. Defaults to `False`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a tensor of shape `(batch, segments, ...)`.

    Returns:
        The input reduced over `axis`.

    Example:

    >>> import numpy as np
    >>> import keras_twostream
    >>> scores = np.array([[[0.2, 0.8], [0.6, 0.4], [0.4, 0.6]]], "float32")
    >>> layer = keras_twostream.layers.SegmentConsensus(mode="avg")
    >>> np.round(np.asarray(layer(scores)), 3).tolist()
    [[0.4, 0.6]]
    """

    def __init__(self, mode="avg", axis=1, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        if mode not in _MODES:
            raise ValueError(f"Expected mode to be one of {_MODES}. Received: mode={mode!r}")
        if not isinstance(axis, int) or axis == 0:
            raise ValueError(
                "Expected axis to be a non-zero integer (axis 0 is the batch). "
                f"Received: axis={axis!r}"
            )
        self.mode = mode
        self.axis = axis
        self.keepdims = keepdims

    def call(self, inputs):
        if self.mode == "avg":
            return ops.mean(inputs, axis=self.axis, keepdims=self.keepdims)
        return ops.max(inputs, axis=self.axis, keepdims=self.keepdims)

    def compute_output_shape(self, input_shape):
        axis = self.axis % len(input_shape)
        if axis == 0:
            raise ValueError(f"axis={self.axis} points at the batch axis of {input_shape}.")
        if self.keepdims:
            return tuple(input_shape[:axis]) + (1,) + tuple(input_shape[axis + 1 :])
        return tuple(input_shape[:axis]) + tuple(input_shape[axis + 1 :])

    def get_config(self):
        return {
            **super().get_config(),
            "mode": self.mode,
            "axis": self.axis,
            "keepdims": self.keepdims,
        }
