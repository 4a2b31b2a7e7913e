"""Late fusion of per-stream class scores with one weight per stream and class (TCLSTA Eq. 14)."""

import keras
import numpy as np
from keras import ops

from keras_twostream.layers.score_logits import score_logits


@keras.saving.register_keras_serializable(package="keras_twostream")
class ClassWiseFusion(keras.layers.Layer):
    """Per-class weighted sum of the class scores of several streams.

    TCLSTA's adaptively weighted learning (Peng et al., IEEE TCSVT 2018,
    Sect. III-B-2) gives every class `j` its own stream weights
    `W_j = [w_j1, w_j2]` and predicts `argmax_j W_j S_t J_j` (Eq. 14): the
    score of class `j` is `sum_m w_jm s_mj`. This layer returns exactly those
    scores, unnormalised. Being linear in the stream scores, the average of
    its outputs over a video's test views is Eq. (14) applied to the video's
    averaged softmax scores `S_t`, which is how the paper scores a test video
    ("we first calculate and stack the softmax score of each stream"). (An
    earlier version divided every view's scores by their sum; that per-view
    factor differs between views, so the view average then no longer
    followed Eq. (14): 293 of the 2000 random videos of the layer's test changed class.) The scores
    sum to 1 when every class has the same weights, as with the default
    averaging; with per-class weights they are Eq. (14)'s scores, not
    probabilities. The weights are a non-trainable variable
    `(num_classes, num_streams)`, initialised to `1 / num_streams`
    (late fusion by averaging); set them after training with
    `set_class_weights`, e.g. to the `weights_` of
    `keras_twostream.evaluation.AdaptiveFusion`. They are saved with the model.

    Args:
        log_scores: return the logarithm of the fused scores (a model's
            `logits=True`): their softmax is the scores divided by their
            sum, which is the scores themselves with uniform weights
            (`keras_twostream.layers.score_logits`). With per-class weights,
            average views on the scores (`exp` of these logits), not on the
            logits, to keep Eq. (14) at video level.
        **kwargs: base layer keyword arguments, such as `name`.

    Call arguments:
        inputs: a list of non-negative score tensors `(batch, num_classes)`,
            one per stream.

    Returns:
        The fused scores `(batch, num_classes)` of Eq. (14).

    Example:

    >>> import numpy as np
    >>> import keras_twostream
    >>> fuse = keras_twostream.layers.ClassWiseFusion()
    >>> a = np.array([[0.6, 0.4]], "float32"); b = np.array([[0.2, 0.8]], "float32")
    >>> np.round(np.asarray(fuse([a, b]), "float64"), 3).tolist()  # averaging
    [[0.4, 0.6]]
    >>> fuse.set_class_weights([[1.0, 0.0], [0.0, 1.0]])  # class 0 from stream 0, class 1 from 1
    >>> np.round(np.asarray(fuse([a, b]), "float64"), 3).tolist()
    [[0.6, 0.8]]
    """

    def __init__(self, log_scores=False, **kwargs):
        super().__init__(**kwargs)
        self.log_scores = bool(log_scores)

    def build(self, input_shape):
        if (
            not isinstance(input_shape, (list, tuple))
            or len(input_shape) < 2
            or any(len(s) != 2 or s[-1] is None or s[-1] != input_shape[0][-1] for s in input_shape)
        ):
            raise ValueError(
                "ClassWiseFusion expects a list of at least 2 score tensors (batch, num_classes) "
                f"with the same known number of classes. Received input shapes: {input_shape}"
            )
        num_classes, num_streams = int(input_shape[0][-1]), len(input_shape)
        self.class_weights = self.add_weight(
            name="class_weights",
            shape=(num_classes, num_streams),
            initializer=keras.initializers.Constant(1.0 / num_streams),
            trainable=False,
        )

    def call(self, inputs):
        scores = ops.stack(inputs, axis=-1)  # [B, C, M]
        # Eq. (14): W_j S J_j for every class j.
        fused = ops.sum(scores * ops.cast(self.class_weights, scores.dtype), axis=-1)
        return score_logits(fused) if self.log_scores else fused

    def set_class_weights(self, class_weights):
        """Sets the weights `(num_classes, num_streams)`: row `j` is `W_j` of Eq. (14)."""
        expected = tuple(self.class_weights.shape)
        weights = np.asarray(class_weights, dtype="float32")
        if weights.shape != expected or not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError(
                f"Expected class_weights of shape {expected} (classes, streams), non-negative and "
                f"finite. Received: an array of shape {weights.shape}"
            )
        if np.any(weights.sum(axis=1) <= 0):
            rows = np.flatnonzero(weights.sum(axis=1) <= 0).tolist()
            raise ValueError(
                f"Every class needs a positive total weight. Received all-zero rows {rows}"
            )
        self.class_weights.assign(weights)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "log_scores": self.log_scores}
