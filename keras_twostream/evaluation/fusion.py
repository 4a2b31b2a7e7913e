"""Late fusion of per-stream class scores: averaging, weighted averaging, SVM, adaptive.

The two-stream paper fuses the softmax scores of its spatial and temporal
ConvNets "using either averaging or a linear SVM" (Simonyan & Zisserman 2014,
Sect. 2 and Sect. 6, Table 3): "training a multi-class linear SVM [6] on stacked
L2-normalised softmax scores as features". Reference [6] of the paper is
Crammer & Singer's multi-class SVM, which `SVMFusion` uses by default
(`sklearn.svm.LinearSVC(multi_class="crammer_singer")`).

Every function takes the scores of several streams as a dict `stream name ->
(num_videos, num_classes)` array (or a list of such arrays), the per-video
outputs of `keras_twostream.data.predict_video_scores` or of a score file
written by `keras-twostream evaluate` (`keras_twostream.evaluation.scores`).
The adaptively weighted per-class fusion of TCLSTA lives in
`keras_twostream.evaluation.adaptive_fusion` (`AdaptiveFusion`); `fuse_scores`
dispatches to all four.
"""

import itertools
import numbers

import numpy as np

from keras_twostream.evaluation.adaptive_fusion import AdaptiveFusion, _as_streams

FUSION_METHODS = ("average", "weighted", "svm", "adaptive")


def _check_labels(labels, n, num_classes, name="labels"):
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"Expected {name} to be {n} integer class indices, one per row of the scores. "
            f"Received: an array of shape {labels.shape} and dtype {labels.dtype}"
        )
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"Expected {name} in [0, {num_classes}). "
            f"Received values from {labels.min()} to {labels.max()}"
        )
    return labels.astype(np.int64)


def _check_weights(weights, num_streams):
    if weights is None:
        raise ValueError("Expected weights, one per stream. Received: weights=None")
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if weights.shape != (num_streams,):
        raise ValueError(
            f"Expected {num_streams} weights, one per stream. Received: {weights.tolist()}"
        )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(
            "Expected non-negative finite weights with a positive sum. "
            f"Received: {weights.tolist()}"
        )
    return weights


def average_fusion(scores_by_stream):
    """The mean of the streams' scores, the two-stream paper's fusion by averaging.

    Args:
        scores_by_stream: a dict stream name -> scores `(n, num_classes)`, or a
            list of such arrays (at least two, all of one shape).

    Returns:
        float64 array `(n, num_classes)`.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.evaluation.fusion import average_fusion
    >>> average_fusion({"spatial": np.array([[0.8, 0.2]]), "temporal": np.array([[0.2, 0.8]])})
    array([[0.5, 0.5]])
    """
    _, arrays = _as_streams(scores_by_stream)
    return np.mean(np.stack(arrays), axis=0)


def weighted_fusion(scores_by_stream, weights):
    """The weighted mean `sum_m w_m S_m / sum_m w_m` of the streams' scores.

    The weights are normalised to sum to 1, so fused softmax scores stay
    probabilities; `weights=(1, 1)` is `average_fusion`, and `(5, 1)` the CMA
    paper's fusion toward the branch trained last (Sect. 5.2).

    Args:
        scores_by_stream: a dict stream name -> scores `(n, num_classes)`, or a
            list of such arrays.
        weights: one non-negative weight per stream, in the order of the dict
            (or list).

    Returns:
        float64 array `(n, num_classes)`.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.evaluation.fusion import weighted_fusion
    >>> weighted_fusion([np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])], weights=[3, 1])
    array([[0.75, 0.25]])
    """
    _, arrays = _as_streams(scores_by_stream)
    weights = _check_weights(weights, len(arrays))
    weights = weights / weights.sum()
    return np.tensordot(weights, np.stack(arrays), axes=1)


def simplex_grid(num_streams, step=0.05):
    """Every weight vector on the simplex whose entries are multiples of `step`.

    Args:
        num_streams: number of weights, >= 2.
        step: grid step; `1 / step` must be (close to) an integer.

    Returns:
        float64 array `(num_points, num_streams)`, rows summing to 1, in
        lexicographic order of the first weights.

    Example:

    >>> from keras_twostream.evaluation.fusion import simplex_grid
    >>> simplex_grid(2, step=0.5).tolist()
    [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]
    """
    if (
        isinstance(num_streams, bool)
        or not isinstance(num_streams, numbers.Integral)
        or num_streams < 2
    ):
        raise ValueError(f"Expected num_streams >= 2. Received: num_streams={num_streams!r}")
    if isinstance(step, bool) or not isinstance(step, numbers.Real) or not 0 < step <= 1:
        raise ValueError(f"Expected 0 < step <= 1. Received: step={step!r}")
    parts = round(1.0 / step)
    if abs(parts * step - 1.0) > 1e-6:
        raise ValueError(f"Expected 1 / step to be an integer. Received: step={step!r}")
    points = []
    # Compositions of `parts` into `num_streams` non-negative integers ("stars and bars").
    for bars in itertools.combinations(range(parts + num_streams - 1), num_streams - 1):
        edges = (-1, *bars, parts + num_streams - 1)
        points.append([edges[i + 1] - edges[i] - 1 for i in range(num_streams)])
    return np.asarray(points, np.float64) / parts


def search_fusion_weights(scores_by_stream, labels, step=0.05):
    """Grid-searches the stream weights that maximise top-1 accuracy on validation scores.

    The weights are searched on the simplex (`simplex_grid`); among equally
    accurate weight vectors the one closest to equal weights (plain averaging)
    is chosen, so a search that finds nothing better returns averaging. Search
    on a validation split, not on the test videos you report.

    Args:
        scores_by_stream: validation scores, a dict stream name -> `(n, C)`.
        labels: `(n,)` integer labels of the validation videos.
        step: grid step of the weights (0.05: 21 points for two streams).

    Returns:
        A pair `(weights, accuracy)`: float64 array `(num_streams,)` summing to
        1, and the validation top-1 accuracy it reaches.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.evaluation.fusion import search_fusion_weights
    >>> good = np.array([[0.9, 0.1], [0.2, 0.8]])
    >>> bad = np.array([[0.1, 0.9], [0.8, 0.2]])
    >>> weights, accuracy = search_fusion_weights({"a": good, "b": bad}, [0, 1], step=0.25)
    >>> accuracy
    1.0
    """
    _, arrays = _as_streams(scores_by_stream)
    stacked = np.stack(arrays)  # [M, n, C]
    labels = _check_labels(labels, stacked.shape[1], stacked.shape[2])
    grid = simplex_grid(len(arrays), step)
    fused = np.einsum("gm,mnc->gnc", grid, stacked)  # [G, n, C]
    accuracy = (fused.argmax(axis=-1) == labels[None]).mean(axis=1)  # [G]
    best = accuracy.max()
    candidates = np.flatnonzero(np.isclose(accuracy, best))
    uniform = np.full(len(arrays), 1.0 / len(arrays))
    distances = np.linalg.norm(grid[candidates] - uniform, axis=1)
    choice = candidates[np.argmin(distances)]
    return grid[choice], float(accuracy[choice])


def l2_normalize_rows(scores, epsilon=1e-12):
    """Each row divided by its L2 norm (rows of zeros stay zero).

    Example:

    >>> import numpy as np
    >>> from keras_twostream.evaluation.fusion import l2_normalize_rows
    >>> l2_normalize_rows(np.array([[3.0, 4.0]])).tolist()
    [[0.6, 0.8]]
    """
    scores = np.asarray(scores, np.float64)
    norms = np.linalg.norm(scores, axis=-1, keepdims=True)
    return scores / np.maximum(norms, epsilon)


class SVMFusion:
    """The two-stream paper's SVM fusion: a linear multi-class SVM on stacked L2-normalised scores.

    Sect. 2 of Simonyan & Zisserman (2014): "training a multi-class linear SVM
    [6] on stacked L2-normalised softmax scores as features". Each video's
    feature is the concatenation, over the streams, of its L2-normalised
    softmax score vector (`2C` values for two streams); the SVM is
    `sklearn.svm.LinearSVC`, by default with Crammer & Singer's multi-class
    formulation (the paper's reference [6]; `multi_class="ovr"` is
    one-vs-rest). The paper does not give `C`; 1.0 by default. Fit on the
    scores of training (or validation) videos, never on the test videos.

    Args:
        C: the SVM's regularisation parameter.
        multi_class: `"crammer_singer"` or `"ovr"`.
        max_iter: iterations of liblinear.

    Attributes (after `fit`):
        svm_: the fitted `LinearSVC`.
        streams_: the stream names (dict keys) or positions.
        num_classes_: the number of score columns.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.evaluation.fusion import SVMFusion
    >>> rgb = np.array([[0.9, 0.1], [0.6, 0.4], [0.4, 0.6], [0.2, 0.8]])
    >>> flow = np.array([[0.7, 0.3], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]])
    >>> svm = SVMFusion().fit({"spatial": rgb, "temporal": flow}, labels=[0, 0, 1, 1])
    >>> svm.predict({"spatial": rgb, "temporal": flow}).tolist()
    [0, 0, 1, 1]
    """

    def __init__(self, C=1.0, multi_class="crammer_singer", max_iter=10000):
        if isinstance(C, bool) or not isinstance(C, numbers.Real) or not C > 0:
            raise ValueError(f"Expected C > 0. Received: C={C!r}")
        if multi_class not in ("crammer_singer", "ovr"):
            raise ValueError(
                "Expected multi_class to be 'crammer_singer' or 'ovr'. "
                f"Received: multi_class={multi_class!r}"
            )
        self.C = float(C)
        self.multi_class = multi_class
        self.max_iter = int(max_iter)

    @staticmethod
    def features(scores_by_stream):
        """The SVM's input: every stream's scores L2-normalised per video, concatenated.

        Returns:
            float64 array `(n, num_streams * num_classes)`.
        """
        _, arrays = _as_streams(scores_by_stream)
        return np.concatenate([l2_normalize_rows(a) for a in arrays], axis=1)

    def fit(self, scores_by_stream, labels):
        """Fits the SVM on the scores of labelled videos (at least two classes present).

        Returns:
            `self`.
        """
        from sklearn.svm import LinearSVC

        names, arrays = _as_streams(scores_by_stream)
        n, num_classes = arrays[0].shape
        labels = _check_labels(labels, n, num_classes)
        if len(np.unique(labels)) < 2:
            raise ValueError("SVM fusion needs labelled videos of at least two classes to fit.")
        self.svm_ = LinearSVC(
            C=self.C, multi_class=self.multi_class, max_iter=self.max_iter, random_state=0
        )
        self.svm_.fit(self.features(scores_by_stream), labels)
        self.streams_ = names
        self.num_classes_ = num_classes
        return self

    def fuse(self, scores_by_stream):
        """The SVM's decision values `(n, num_classes)`; classes absent from `fit` get `-inf`."""
        if not hasattr(self, "svm_"):
            raise ValueError(
                "This SVMFusion is not fitted yet: call fit(scores_by_stream, labels) first."
            )
        names, arrays = _as_streams(scores_by_stream)
        if names != self.streams_ or arrays[0].shape[1] != self.num_classes_:
            raise ValueError(
                f"Expected scores of the streams {self.streams_} with {self.num_classes_} classes, "
                f"as in fit. Received: streams {names} with {arrays[0].shape[1]} classes"
            )
        decision = self.svm_.decision_function(self.features(scores_by_stream))
        if decision.ndim == 1:  # two classes seen in fit: one decision value
            decision = np.stack([-decision, decision], axis=1)
        fused = np.full((len(decision), self.num_classes_), -np.inf)
        fused[:, self.svm_.classes_] = decision
        return fused

    def predict(self, scores_by_stream):
        """The predicted classes, `(n,)` integers."""
        return self.fuse(scores_by_stream).argmax(axis=-1)


def fuse_scores(
    method,
    scores_by_stream,
    weights=None,
    fit_scores=None,
    fit_labels=None,
    step=0.05,
    svm_c=1.0,
    negative_weight=5e-3,
    min_weight=0.0,
):
    """Fuses streams with one of `FUSION_METHODS`, fitting on other videos where needed.

    - `"average"`: `average_fusion`;
    - `"weighted"`: `weighted_fusion` with `weights`, or with the weights
      `search_fusion_weights` finds on `fit_scores` / `fit_labels`;
    - `"svm"`: `SVMFusion` fitted on `fit_scores` / `fit_labels`;
    - `"adaptive"`: TCLSTA's per-class weights (`AdaptiveFusion`, Eqs. 10-14)
      fitted on `fit_scores` / `fit_labels`.

    Args:
        method: one of `FUSION_METHODS`.
        scores_by_stream: the scores to fuse, a dict stream name -> `(n, C)`.
        weights: stream weights for `"weighted"` (searched when `None`).
        fit_scores: scores of other, labelled videos (training or validation),
            with the same streams and classes.
        fit_labels: their labels.
        step: grid step of the weight search.
        svm_c: `C` of the SVM.
        negative_weight: `lambda` of `AdaptiveFusion`.
        min_weight: `min_weight` of `AdaptiveFusion`.

    Returns:
        A pair `(fused, info)`: float64 array `(n, C)` and a dict describing
        the fusion (`"method"`, and `"weights"` where there are weights).

    Example:

    >>> import numpy as np
    >>> from keras_twostream.evaluation.fusion import fuse_scores
    >>> fused, info = fuse_scores("weighted", {"a": np.eye(2), "b": np.eye(2)[::-1]}, weights=[2, 1])
    >>> fused.argmax(-1).tolist(), info["weights"]
    ([0, 1], [0.6666666666666666, 0.3333333333333333])
    """
    if method not in FUSION_METHODS:
        raise ValueError(
            f"Expected method to be one of {FUSION_METHODS}. Received: method={method!r}"
        )
    names, arrays = _as_streams(scores_by_stream)
    info = {"method": method, "streams": [str(n) for n in names]}
    needs_fit = method in ("svm", "adaptive") or (method == "weighted" and weights is None)
    if needs_fit:
        if fit_scores is None or fit_labels is None:
            raise ValueError(
                f"Fusion method {method!r} needs scores and labels of other videos to fit on "
                "(training or validation videos)"
                + ("; or give the weights" if method == "weighted" else "")
                + "."
            )
        fit_names, fit_arrays = _as_streams(fit_scores, "fit_scores")
        if fit_names != names or fit_arrays[0].shape[1] != arrays[0].shape[1]:
            raise ValueError(
                f"Expected fit_scores with the streams {names} and {arrays[0].shape[1]} classes. "
                f"Received: streams {fit_names} with {fit_arrays[0].shape[1]} classes"
            )
    if method == "average":
        fused = average_fusion(scores_by_stream)
        info["weights"] = [1.0 / len(arrays)] * len(arrays)
    elif method == "weighted":
        if weights is None:
            weights, accuracy = search_fusion_weights(fit_scores, fit_labels, step=step)
            info["searched_accuracy"] = accuracy
        weights = _check_weights(weights, len(arrays))
        weights = weights / weights.sum()
        fused = weighted_fusion(scores_by_stream, weights)
        info["weights"] = weights.tolist()
    elif method == "svm":
        svm = SVMFusion(C=svm_c).fit(fit_scores, fit_labels)
        fused = svm.fuse(scores_by_stream)
    else:
        adaptive = AdaptiveFusion(negative_weight=negative_weight, min_weight=min_weight)
        adaptive.fit(
            fit_scores,
            _check_labels(fit_labels, len(fit_arrays[0]), fit_arrays[0].shape[1], "fit_labels"),
        )
        fused = adaptive.fuse(scores_by_stream)
        info["class_weights"] = adaptive.weights_.tolist()
    return fused, info
