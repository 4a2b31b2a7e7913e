"""The semantic discriminator D of semantic adversarial learning (Eqs. 9-11 of the RGB-only two-stream paper)."""

import numbers

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_twostream")
class SemanticDiscriminator(keras.layers.Layer):
    """An MLP that scores a semantic vector as real (`S`) or generated (`V̄`).

    The discriminator D of semantic adversarial learning in the RGB-only
    two-stream paper (MPA+SAL), Eqs. (9)-(11) and Algorithm 1: D outputs the
    probability that its input is a "real" label semantic
    `S = encoder(y)` (Eq. 8) rather than the video representation `V̄`
    (Eq. 2). D maximises `E_S log D(S) + E_V̄ log(1 - D(V̄))` (Eq. 9);
    the generator uses the non-saturating loss `-log D(V̄)` (Eq. 11).

    The paper does not give D's architecture: this is a GAN-style MLP of
    `Dense(units) -> LeakyReLU(negative_slope)` blocks (leaky, so the
    generator receives gradients where D is confident) and a final
    `Dense(1)`. It returns the logit by default, so the losses can use
    `keras.losses.BinaryCrossentropy(from_logits=True)`, which is
    numerically stable where `log(1 - sigmoid(x))` of a probability is not;
    `sigmoid(logit)` is the probability `D(x)` of Eq. (9).

    Args:
        hidden_units: widths of the hidden layers, a list of positive
            integers (may be empty: a logistic regression). Defaults to
            `(256, 256)`.
        negative_slope: slope of the LeakyReLU for negative inputs, in
            `[0, 1)`. Defaults to `0.2`.
        dropout: dropout rate after each hidden layer, in `[0, 1)`.
            Defaults to `0.0`.
        output_probability: return `D(x) = sigmoid(logit)` instead of the
            logit. Defaults to `False`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: semantic vectors `(batch, semantic_dim)`.
        training: enables dropout.

    Returns:
        A `(batch, 1)` tensor: the logit of "real" (or its probability with
        `output_probability=True`), in float32 under any mixed-precision
        policy.

    Example:

    >>> import numpy as np
    >>> import keras_twostream
    >>> discriminator = keras_twostream.layers.SemanticDiscriminator(hidden_units=(32,))
    >>> tuple(discriminator(np.random.rand(4, 16).astype("float32")).shape)
    (4, 1)
    """

    def __init__(
        self,
        hidden_units=(256, 256),
        negative_slope=0.2,
        dropout=0.0,
        output_probability=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(hidden_units, numbers.Integral) or not hasattr(hidden_units, "__iter__"):
            raise ValueError(
                "Expected hidden_units to be a list of positive integers. "
                f"Received: hidden_units={hidden_units!r}"
            )
        hidden_units = tuple(hidden_units)
        if any(
            not isinstance(u, numbers.Integral) or isinstance(u, bool) or u < 1
            for u in hidden_units
        ):
            raise ValueError(
                f"Expected hidden_units to be a list of positive integers. Received: hidden_units={hidden_units!r}"
            )
        if not isinstance(negative_slope, numbers.Real) or not 0 <= negative_slope < 1:
            raise ValueError(
                f"Expected negative_slope to be in [0, 1). Received: negative_slope={negative_slope!r}"
            )
        if not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
            raise ValueError(f"Expected dropout to be in [0, 1). Received: dropout={dropout!r}")
        if not isinstance(output_probability, bool):
            raise ValueError(
                f"Expected output_probability to be True or False. Received: output_probability={output_probability!r}"
            )
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.negative_slope = float(negative_slope)
        self.dropout = float(dropout)
        self.output_probability = output_probability

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                "SemanticDiscriminator expects semantic vectors (batch, semantic_dim) with known "
                f"semantic_dim. Received input shape: {tuple(input_shape)}"
            )
        self.hidden_layers = []
        self.dropout_layers = []
        shape = tuple(input_shape)
        for i, units in enumerate(self.hidden_units):
            dense = keras.layers.Dense(units, dtype=self.dtype_policy, name=f"hidden_{i}")
            dense.build(shape)
            shape = (shape[0], units)
            self.hidden_layers.append(dense)
            self.dropout_layers.append(
                keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name=f"dropout_{i}")
            )
        # The logit layer runs in float32 so the adversarial losses are stable under mixed precision.
        self.logit = keras.layers.Dense(1, dtype="float32", name="logit")
        self.logit.build(shape)

    def call(self, inputs, training=None):
        x = inputs
        for dense, dropout in zip(self.hidden_layers, self.dropout_layers, strict=True):
            x = ops.leaky_relu(dense(x), negative_slope=self.negative_slope)
            x = dropout(x, training=training)
        logit = self.logit(ops.cast(x, "float32"))  # [B, 1]
        return ops.sigmoid(logit) if self.output_probability else logit

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

    def compute_output_spec(self, inputs, training=None):
        return keras.KerasTensor((inputs.shape[0], 1), dtype="float32")

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_units": list(self.hidden_units),
            "negative_slope": self.negative_slope,
            "dropout": self.dropout,
            "output_probability": self.output_probability,
        }
