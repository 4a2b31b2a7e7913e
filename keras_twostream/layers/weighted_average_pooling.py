"""Attention-weighted global average pooling (TCLSTA's weighted pooling layer)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_twostream")
class WeightedAveragePooling2D(keras.layers.Layer):
    """Global average pooling of a feature map weighted by a spatial map.

    The weighted pooling layer of TCLSTA's connection network (Peng et al.,
    IEEE TCSVT 2018, Sect. III-A-1 and Table II): it "first multiplies the
    spatial-level attention with the corresponding output of convolutional
    layer in the same region, then conducts the pooling operation", replacing
    the final 7x7 average pooling of ResNet-50:

        alpha = (1 / g) * sum_xy m~(x, y) * A(x, y)

    over the `g` locations. With the attention of Eq. (3), which sums to `g`,
    this is a convex combination of the location features, and a uniform map
    (all ones) gives plain global average pooling.

    Args:
        **kwargs: base layer keyword arguments, such as `name`.

    Call arguments:
        inputs: a list `[features, weights]`: the feature map
            `(batch, height, width, channels)` and the spatial weights
            `(batch, height, width)`.

    Returns:
        The pooled features, `(batch, channels)`.

    Example:

    >>> import numpy as np
    >>> import keras_twostream
    >>> pool = keras_twostream.layers.WeightedAveragePooling2D()
    >>> features = np.random.rand(2, 7, 7, 16).astype("float32")
    >>> pooled = pool([features, np.ones((2, 7, 7), "float32")])
    >>> bool(np.allclose(pooled, features.mean(axis=(1, 2)), atol=1e-6))
    True
    """

    def build(self, input_shape):
        if (
            not isinstance(input_shape, (list, tuple))
            or len(input_shape) != 2
            or len(input_shape[0]) != 4
            or len(input_shape[1]) != 3
        ):
            raise ValueError(
                "WeightedAveragePooling2D expects [features (batch, height, width, channels), "
                f"weights (batch, height, width)]. Received input shapes: {input_shape}"
            )

    def call(self, inputs):
        features, weights = inputs
        weights = ops.cast(weights, features.dtype)
        return ops.mean(features * weights[..., None], axis=(1, 2))  # [B, h, w, D] -> [B, D]

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], input_shape[0][-1])
