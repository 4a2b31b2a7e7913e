"""Temporal-level attention by LSTM frame affinities (TCLSTA, Peng et al. 2018, Eqs. 4-6)."""

import numbers

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_twostream")
class TemporalAttention(keras.layers.Layer):
    """LSTM temporal attention over the per-frame features of a clip.

    The temporal-level attention network of Peng et al., "Two-Stream
    Collaborative Learning with Spatial-Temporal Attention for Video
    Classification" (IEEE TCSVT 2018), Sect. III-A-3 and Table IV. An LSTM
    (512 units in the paper) reads the frame features `alpha_1 .. alpha_T`;
    its hidden states, stacked as the columns of `H` (n x T), give

        C = tanh(H^T H)                                         (Eq. 4)
        (gamma_1, ..., gamma_T) = 1^T C                         (Eq. 5)
        beta_i = alpha_i * exp(gamma_i) / sum_j exp(gamma_j)    (Eq. 6)

    so `sum_i beta_i` is a convex combination of the frame features, weighted
    towards frames with a high affinity to the whole clip. The hidden states
    are returned too: the model puts the LSTM's softmax classifier on them.

    Args:
        units: LSTM units, `n` (512 in the paper).
        unroll: unroll the LSTM over the time steps instead of looping, as
            `keras.layers.LSTM(unroll=True)`: faster to trace and to run for
            the short clips of video models, at some memory cost.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: the frame features `(batch, T, channels)`.
        training: passed to the LSTM.

    Returns:
        A tuple `(attended, hidden_states, weights)`: the features `beta`
        of Eq. (6), `(batch, T, channels)`; the LSTM hidden states
        `(batch, T, units)` (the columns of `H`); and the temporal attention
        `exp(gamma_i) / sum_j exp(gamma_j)`, `(batch, T)`, which sums to 1.

    Example:

    >>> import numpy as np
    >>> import keras_twostream
    >>> layer = keras_twostream.layers.TemporalAttention(units=8)
    >>> attended, hidden, weights = layer(np.random.rand(2, 5, 16).astype("float32"))
    >>> tuple(attended.shape), tuple(hidden.shape), tuple(weights.shape)
    ((2, 5, 16), (2, 5, 8), (2, 5))
    """

    def __init__(self, units=512, unroll=False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, numbers.Integral) or isinstance(units, bool) or units < 1:
            raise ValueError(f"Expected units to be a positive integer. Received: units={units!r}")
        if not isinstance(unroll, bool):
            raise ValueError(f"Expected unroll to be True or False. Received: unroll={unroll!r}")
        self.units = int(units)
        self.unroll = unroll

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                "TemporalAttention expects frame features (batch, T, channels). "
                f"Received input shape: {tuple(input_shape)}"
            )
        self.lstm = keras.layers.LSTM(
            self.units,
            return_sequences=True,
            unroll=self.unroll,
            dtype=self.dtype_policy,
            name="lstm",
        )
        self.lstm.build(input_shape)

    def call(self, inputs, training=None):
        hidden = self.lstm(inputs, training=training)  # H^T: [B, T, n]
        affinity = ops.tanh(
            ops.matmul(hidden, ops.transpose(hidden, (0, 2, 1)))
        )  # Eq. (4): [B, T, T]
        gamma = ops.sum(affinity, axis=1)  # Eq. (5): column sums 1^T C, [B, T]
        weights = ops.softmax(gamma, axis=-1)  # exp(gamma_i) / sum_j exp(gamma_j)
        attended = inputs * ops.cast(weights, inputs.dtype)[..., None]  # Eq. (6): beta_i
        return attended, hidden, weights

    def compute_output_shape(self, input_shape):
        batch, steps = input_shape[0], input_shape[1]
        return tuple(input_shape), (batch, steps, self.units), (batch, steps)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "unroll": self.unroll}
