"""Video-level classification metrics: top-k accuracy, mean class accuracy, confusion matrix.

The papers report top-1 accuracy averaged over test videos (UCF101, HMDB51), top-5
accuracy (Kinetics, CMA paper Table 1) and, with the confusion matrix, the per-class
recall (two-stream paper, Figs. 5-6). Mean class accuracy is the mean of the
per-class recalls over the classes that have test videos.
"""

import numpy as np


def _check(scores, labels):
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.ndim != 2:
        raise ValueError(
            f"Expected scores of shape (videos, classes). Received: shape {scores.shape}"
        )
    if labels.shape != (len(scores),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"Expected {len(scores)} integer labels, one per row of the scores. "
            f"Received: an array of shape {labels.shape} and dtype {labels.dtype}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(
            f"Expected labels in [0, {scores.shape[1]}). "
            f"Received values from {labels.min()} to {labels.max()}"
        )
    return scores, labels.astype(np.int64)


def top_k_accuracy(scores, labels, k=1):
    """The fraction of videos whose label is among their `k` highest scores.

    Ties are broken toward the lower class index (a stable sort), as `argmax`
    does for `k=1`.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.evaluation.metrics import top_k_accuracy
    >>> scores = np.array([[0.5, 0.3, 0.2], [0.1, 0.3, 0.6]])
    >>> top_k_accuracy(scores, [1, 1], k=1), top_k_accuracy(scores, [1, 1], k=2)
    (0.0, 1.0)
    """
    scores, labels = _check(scores, labels)
    if len(scores) == 0:
        return float("nan")
    k = min(int(k), scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def confusion_matrix(labels, predictions, num_classes):
    """Counts `(num_classes, num_classes)`: row = true class, column = predicted class.

    Example:

    >>> from keras_twostream.evaluation.metrics import confusion_matrix
    >>> confusion_matrix([0, 0, 1], [0, 1, 1], num_classes=2).tolist()
    [[1, 1], [0, 1]]
    """
    labels = np.asarray(labels, np.int64)
    predictions = np.asarray(predictions, np.int64)
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def per_class_recall(matrix):
    """Recall of every class from a confusion matrix; NaN for classes without videos.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.evaluation.metrics import per_class_recall
    >>> per_class_recall(np.array([[1, 1], [0, 0]])).tolist()
    [0.5, nan]
    """
    matrix = np.asarray(matrix, np.float64)
    support = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(matrix) / support, np.nan)


def mean_class_accuracy(scores, labels):
    """The mean over classes (those with at least one video) of the per-class top-1 recall.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.evaluation.metrics import mean_class_accuracy
    >>> scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.2, 0.8]])
    >>> mean_class_accuracy(scores, [0, 0, 0, 1])  # class 0: 3/3, class 1: 1/1
    1.0
    """
    scores, labels = _check(scores, labels)
    if len(scores) == 0:
        return float("nan")
    recall = per_class_recall(confusion_matrix(labels, scores.argmax(axis=1), scores.shape[1]))
    return float(np.nanmean(recall))


def classification_summary(scores, labels):
    """Top-1, top-5 and mean class accuracy of video-level scores, and the confusion matrix.

    Returns:
        A dict `{"top1", "top5", "mean_class_accuracy", "videos",
        "confusion_matrix"}` (the matrix an int array `(C, C)`).

    Example:

    >>> import numpy as np
    >>> from keras_twostream.evaluation.metrics import classification_summary
    >>> summary = classification_summary(np.eye(3), [0, 1, 1])
    >>> summary["top1"], summary["videos"]
    (0.6666666666666666, 3)
    """
    scores, labels = _check(scores, labels)
    return {
        "top1": top_k_accuracy(scores, labels, 1),
        "top5": top_k_accuracy(scores, labels, 5),
        "mean_class_accuracy": mean_class_accuracy(scores, labels),
        "videos": int(len(scores)),
        "confusion_matrix": confusion_matrix(labels, scores.argmax(axis=1), scores.shape[1]),
    }
