"""Logits whose softmax is a given score vector: the `logits=True` form of a fused output."""

import numpy as np
from keras import ops

# The smallest normal float32: log(TINY) = -87.3, far below any logit a classifier reaches,
# so a zero score stays a zero probability after the softmax (exp(-87) < 1e-37).
TINY = float(np.finfo("float32").tiny)


def score_logits(scores):
    """`log(max(scores, TINY))`: logits whose softmax gives back `scores / sum(scores)`.

    Every model of the library has a `logits` option (issue 19: one contract): with
    `logits=True` each class-score output is a logit vector whose softmax is the output of
    `logits=False`. A stream's classifier gives logits directly; a late fusion
    (`ScoreFusion`, `ClassWiseFusion` with `log_scores=True`) averages probabilities and
    returns their logarithm: `softmax(log s) = s / sum(s)`, which is `s` itself for
    probabilities. A zero score gives a finite logit of about -87.3.

    Example:

    >>> import numpy as np
    >>> import keras
    >>> from keras_twostream.layers.score_logits import score_logits
    >>> p = np.array([[0.2, 0.3, 0.5]], "float32")
    >>> np.round(np.asarray(keras.ops.softmax(score_logits(p)), "float64"), 6).tolist()
    [[0.2, 0.3, 0.5]]
    """
    return ops.log(ops.maximum(scores, TINY))
