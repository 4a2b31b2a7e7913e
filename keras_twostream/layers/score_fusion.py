"""Late fusion of per-stream class scores."""

import keras
from keras import ops

from keras_twostream.layers.score_logits import score_logits


@keras.saving.register_keras_serializable(package="keras_twostream")
class ScoreFusion(keras.layers.Layer):
    """Weighted average of the class scores of several streams.

    Late fusion of the two-stream paper (Simonyan & Zisserman 2014, Sect. 2:
    "softmax scores of which are combined by late fusion", averaging being
    the default) and of TSN/CMA, where the weights lean toward one stream
    (CMA, Sect. 5.2: 5:1 toward the branch trained last). The weights are a
    non-trainable variable, so a training schedule can change them with
    `set_stream_weights` without retracing, and they are saved with the model.
    The output is `sum_i w_i * s_i / sum_i w_i`, so probabilities stay
    probabilities.

    Args:
        stream_weights: one non-negative weight per stream, not all zero.
            `None` (the default) averages two streams evenly; give a list of
            the right length for more streams.
        log_scores: return the logarithm of the fused scores instead: logits
            whose softmax is the fused probabilities (a model's
            `logits=True`; `keras_twostream.layers.score_logits`).
        **kwargs: base layer keyword arguments, such as `name`.

    Call arguments:
        inputs: a list of tensors of the same shape, one per stream.

    Returns:
        Their weighted average, of the same shape.

    Example:

    >>> import numpy as np
    >>> import keras_twostream
    >>> fuse = keras_twostream.layers.ScoreFusion(stream_weights=[5.0, 1.0])
    >>> a = np.array([[0.0, 1.0]], "float32"); b = np.array([[1.0, 0.0]], "float32")
    >>> np.round(np.asarray(fuse([a, b]), "float64"), 3).tolist()
    [[0.167, 0.833]]
    """

    def __init__(self, stream_weights=None, log_scores=False, **kwargs):
        super().__init__(**kwargs)
        self.log_scores = bool(log_scores)
        if stream_weights is not None:
            stream_weights = [float(w) for w in stream_weights]
            _check_weights(stream_weights, len(stream_weights))
        self.stream_weights = stream_weights

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) < 2:
            raise ValueError(
                f"ScoreFusion expects a list of at least 2 score tensors. Received input shape: {input_shape}"
            )
        num_streams = len(input_shape)
        initial = self.stream_weights or [1.0] * num_streams
        if len(initial) != num_streams:
            raise ValueError(
                f"Expected {num_streams} stream_weights, one per input stream. "
                f"Received: stream_weights={self.stream_weights}"
            )
        self.fusion_weights = self.add_weight(
            name="fusion_weights",
            shape=(num_streams,),
            initializer=keras.initializers.Constant(initial),
            trainable=False,
        )

    def call(self, inputs):
        weights = ops.cast(self.fusion_weights, inputs[0].dtype)
        total = weights[0] * inputs[0]
        for i in range(1, len(inputs)):
            total = total + weights[i] * inputs[i]
        fused = total / ops.sum(weights)
        return score_logits(fused) if self.log_scores else fused

    def set_stream_weights(self, stream_weights):
        """Sets the fusion weights, e.g. `[5, 1]` after training stream 0 last."""
        stream_weights = [float(w) for w in stream_weights]
        _check_weights(stream_weights, int(self.fusion_weights.shape[0]))
        self.fusion_weights.assign(stream_weights)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {
            **super().get_config(),
            "stream_weights": self.stream_weights,
            "log_scores": self.log_scores,
        }


def _check_weights(weights, expected):
    if len(weights) != expected or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(
            f"Expected {expected} non-negative stream weights with a positive sum. "
            f"Received: stream_weights={weights}"
        )
