"""The learned level weighting of the MPA + SAL network's multi-level representation (Eq. 2)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_twostream")
class LevelWeightedSum(keras.layers.Layer):
    """The learned weighted sum of the levels' representations, Eq. (2): `sum_i alpha_i x_i`.

    `alpha = softmax(a)` over learned logits `a` (initialised to zero, i.e.
    equal weights `1/L`): the weights are positive and sum to one, so a sum of
    vectors in (-1, 1) stays in (-1, 1) (the range of the semantic code S).

    Args:
        **kwargs: base layer keyword arguments, such as `name`.

    Call arguments:
        inputs: a list of L tensors `(batch, dim)`.

    Returns:
        `(batch, dim)`, their alpha-weighted sum.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.layers import LevelWeightedSum
    >>> layer = LevelWeightedSum()
    >>> out = layer([np.ones((1, 2), "float32"), np.zeros((1, 2), "float32")])
    >>> np.asarray(out).tolist(), layer.level_weights().tolist()
    ([[0.5, 0.5]], [0.5, 0.5])
    """

    def build(self, input_shape):
        if (
            not isinstance(input_shape, (list, tuple))
            or not input_shape
            or not all(isinstance(s, (list, tuple)) for s in input_shape)
        ):
            raise ValueError(
                f"LevelWeightedSum expects a list of (batch, dim) tensors. Received input shape: {input_shape}"
            )
        dims = {tuple(s[1:]) for s in input_shape}
        if len(dims) != 1:
            raise ValueError(
                f"LevelWeightedSum expects levels of one size. Received input shapes: {input_shape}"
            )
        self.level_logits = self.add_weight(
            name="level_logits", shape=(len(input_shape),), initializer="zeros"
        )  # a of alpha = softmax(a)

    def alpha(self):
        """The level weights `alpha = softmax(a)`, a tensor that sums to one."""
        return ops.softmax(self.level_logits)

    def level_weights(self):
        """The level weights as a NumPy array."""
        return ops.convert_to_numpy(self.alpha())

    def call(self, inputs):
        alpha = ops.cast(self.alpha(), self.compute_dtype)
        stacked = ops.stack(inputs, axis=1)  # L x [B, D] -> [B, L, D]
        return ops.sum(stacked * alpha[None, :, None], axis=1)  # Eq. (2) -> [B, D]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])
