"""Folding the segment axis into the batch and back."""

import keras
from keras import ops


def _trailing_shape(inputs, start):
    """Static sizes where known, dynamic ones where not (e.g. a tf.data pipeline's free H, W)."""
    static = tuple(inputs.shape[start:])
    if all(d is not None for d in static):
        return static
    dynamic = ops.shape(inputs)
    return tuple(d if d is not None else dynamic[start + i] for i, d in enumerate(static))


@keras.saving.register_keras_serializable(package="keras_twostream")
class FoldSegments(keras.layers.Layer):
    """Folds the segment axis into the batch: `(B, K, ...)` -> `(B * K, ...)`.

    Two-stream models run one image network over every segment (or frame) of
    a clip with shared weights. Folding the K segments into the batch lets the
    network see ordinary 4-D images; `UnfoldSegments` restores the segment
    axis afterwards, ready for `SegmentConsensus`.

    Args:
        **kwargs: base layer keyword arguments, such as `name`.

    Call arguments:
        inputs: a tensor of shape `(batch, segments, ...)` with a known
            number of segments.

    Returns:
        A tensor of shape `(batch * segments, ...)`.

    Example:

    >>> import numpy as np
    >>> import keras_twostream
    >>> clips = np.zeros((2, 3, 8, 8, 3), "float32")
    >>> tuple(keras_twostream.layers.FoldSegments()(clips).shape)
    (6, 8, 8, 3)
    """

    def call(self, inputs):
        return ops.reshape(inputs, (-1,) + _trailing_shape(inputs, 2))  # [B, K, ...] -> [B*K, ...]

    def compute_output_shape(self, input_shape):
        batch, segments = input_shape[0], input_shape[1]
        folded = None if batch is None or segments is None else batch * segments
        return (folded,) + tuple(input_shape[2:])


@keras.saving.register_keras_serializable(package="keras_twostream")
class UnfoldSegments(keras.layers.Layer):
    """Restores the segment axis: `(B * K, ...)` -> `(B, K, ...)`.

    The inverse of `FoldSegments`.

    Args:
        num_segments: K, the number of segments folded into the batch.
        **kwargs: base layer keyword arguments, such as `name`.

    Call arguments:
        inputs: a tensor of shape `(batch * num_segments, ...)`.

    Returns:
        A tensor of shape `(batch, num_segments, ...)`.

    Example:

    >>> import numpy as np
    >>> import keras_twostream
    >>> features = np.zeros((6, 512), "float32")
    >>> tuple(keras_twostream.layers.UnfoldSegments(3)(features).shape)
    (2, 3, 512)
    """

    def __init__(self, num_segments, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(num_segments, int) or num_segments < 1:
            raise ValueError(
                f"Expected num_segments to be a positive integer. Received: num_segments={num_segments!r}"
            )
        self.num_segments = num_segments

    def call(self, inputs):
        # [B*K, ...] -> [B, K, ...]
        return ops.reshape(inputs, (-1, self.num_segments) + _trailing_shape(inputs, 1))

    def compute_output_shape(self, input_shape):
        batch = input_shape[0]
        return (None if batch is None else batch // self.num_segments, self.num_segments) + tuple(
            input_shape[1:]
        )

    def get_config(self):
        return {**super().get_config(), "num_segments": self.num_segments}
