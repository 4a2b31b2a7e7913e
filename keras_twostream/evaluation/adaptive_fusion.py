"""Adaptively weighted learning of per-class stream fusion weights (TCLSTA, Eqs. 10-14).

Peng, Zhao and Zhang, "Two-Stream Collaborative Learning with Spatial-Temporal
Attention for Video Classification", IEEE TCSVT 2018, Sect. III-B-2.

For every class `j`, the stream weights `W_j` (summing to 1) maximise the
scores that the training videos of class `j` get for class `j`, minus `lambda`
times the scores that videos of the other classes get for class `j`
(Eqs. 10-13), a linear program; a test video is given the class `j` that
maximises `W_j S_t J_j` (Eq. 14).

A linear objective over the simplex `{w : sum w = 1, w >= 0}` reaches its
maximum at a vertex, so Eq. (13) as printed gives every class a single
stream: weight 1 on the stream with the larger objective coefficient and 0 on
the others (the paper's strict `w > 0` has no maximiser; its closure does).
`AdaptiveFusion` solves the paper's program by default (`min_weight=0`) and
offers `min_weight > 0`, a lower bound on every weight, so that each stream
keeps at least that share; the solution is then the vertex of the smaller
simplex: `1 - (M - 1) * min_weight` on the best stream, `min_weight` on the
others. `examples/train_tclsta.py` compares the three on the synthetic dataset.
"""

import numbers

import numpy as np


def _as_streams(scores_by_stream, name="scores_by_stream"):
    """Returns (stream names, list of float64 arrays (n, C)), validated."""
    if isinstance(scores_by_stream, dict):
        names = list(scores_by_stream)
        arrays = [scores_by_stream[k] for k in names]
    elif isinstance(scores_by_stream, (list, tuple)):
        names = list(range(len(scores_by_stream)))
        arrays = list(scores_by_stream)
    else:
        raise ValueError(
            f"Expected {name} to be a dict of stream name -> scores (n, classes) or a list of such "
            f"arrays. Received: {type(scores_by_stream).__name__}"
        )
    if len(arrays) < 2:
        raise ValueError(f"Expected {name} to hold at least 2 streams. Received: {len(arrays)}")
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    for stream, array in zip(names, arrays, strict=True):
        if array.ndim != 2 or array.shape[1] < 2:
            raise ValueError(
                f"Expected {name}[{stream!r}] to be scores of shape (n, classes) with at least 2 "
                f"classes. Received: shape {array.shape}"
            )
        if array.shape != arrays[0].shape:
            raise ValueError(
                f"Expected every stream of {name} to have the same shape. Received: "
                f"{name}[{names[0]!r}] {arrays[0].shape} and {name}[{stream!r}] {array.shape}"
            )
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name}[{stream!r}] contains NaN or infinite scores.")
    return names, arrays


class AdaptiveFusion:
    """Per-class fusion weights of several streams by linear programming (TCLSTA Eqs. 10-14).

    Usable with the outputs of any two-stream model: fit it on the class
    scores (softmax probabilities) each stream gives the training videos, then
    fuse or predict the test videos' scores. Solved with
    `scipy.optimize.linprog` (HiGHS), one program per class:

        maximise_{W_j}  W_j (sum_{i in j} S_i J_j - lambda sum_{i not in j} S_i J_j)   (Eq. 13)
        subject to      sum_m w_jm = 1,  w_jm >= min_weight

    Args:
        negative_weight: `lambda` of Eqs. (10) and (13), the weight of the
            other classes' videos (5e-3 in the paper, Sect. IV-B-2).
        min_weight: lower bound on every weight. `0` (the default) is the
            paper's program, whose optimum gives each class a single stream
            (see the module docstring); a positive value keeps every stream
            in every class. At most `1 / num_streams`.

    Attributes (after `fit`):
        weights_: float array `(num_classes, num_streams)`; row `j` is `W_j`.
        objective_: float array `(num_classes, num_streams)`, the linear
            objective coefficients of Eq. (13) for each class and stream.
        streams_: the stream names (dict keys) or positions, in order.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.evaluation.adaptive_fusion import AdaptiveFusion
    >>> rgb = np.array([[0.9, 0.1], [0.6, 0.4], [0.5, 0.5]])
    >>> flow = np.array([[0.5, 0.5], [0.2, 0.8], [0.3, 0.7]])
    >>> awl = AdaptiveFusion().fit({"spatial": rgb, "temporal": flow}, labels=[0, 1, 1])
    >>> awl.weights_.tolist()  # class 0 from the frames, class 1 from the flow
    [[1.0, 0.0], [0.0, 1.0]]
    >>> awl.predict({"spatial": rgb, "temporal": flow}).tolist()
    [0, 1, 1]
    """

    def __init__(self, negative_weight=5e-3, min_weight=0.0):
        if (
            isinstance(negative_weight, bool)
            or not isinstance(negative_weight, numbers.Real)
            or negative_weight < 0
        ):
            raise ValueError(
                f"Expected negative_weight (lambda) to be a non-negative number. "
                f"Received: negative_weight={negative_weight!r}"
            )
        if (
            isinstance(min_weight, bool)
            or not isinstance(min_weight, numbers.Real)
            or not 0 <= min_weight <= 0.5
        ):
            raise ValueError(
                f"Expected 0 <= min_weight <= 1 / num_streams (0.5 for two streams). "
                f"Received: min_weight={min_weight!r}"
            )
        self.negative_weight = float(negative_weight)
        self.min_weight = float(min_weight)

    def objective(self, scores_by_stream, labels):
        """The objective coefficients of Eq. (13), `(num_classes, num_streams)`.

        Entry `(j, m)` is `sum_{i in j} s_imj - lambda sum_{i not in j} s_imj`:
        the first sum is `P_j` (Eq. 11) and the second `N_j` (Eq. 12) for a
        weight vector that is 1 on stream `m`.
        """
        _, arrays = _as_streams(scores_by_stream)
        n, num_classes = arrays[0].shape
        labels = np.asarray(labels)
        if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"Expected labels to be {n} integer class indices, one per row of the scores. "
                f"Received: an array of shape {labels.shape} and dtype {labels.dtype}"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"Expected labels in [0, {num_classes}). Received values from {labels.min()} to {labels.max()}"
            )
        one_hot = np.eye(num_classes)[labels]  # [n, C]: J_{y_i}
        coefficients = []
        for scores in arrays:
            positive = (scores * one_hot).sum(axis=0)  # sum_{i in j} S_i J_j, for every j
            negative = (scores * (1.0 - one_hot)).sum(axis=0)  # sum_{k != j} sum_{i in k} S_i J_j
            coefficients.append(positive - self.negative_weight * negative)
        return np.stack(coefficients, axis=1)  # [C, M]

    def fit(self, scores_by_stream, labels):
        """Learns `weights_` from the training scores of every stream and their labels.

        Args:
            scores_by_stream: a dict stream name -> scores `(n, num_classes)`
                (or a list of such arrays), e.g. `{"spatial": ..., "temporal": ...}`.
            labels: `(n,)` integer class indices.

        Returns:
            `self`.
        """
        from scipy.optimize import linprog

        names, arrays = _as_streams(scores_by_stream)
        num_streams = len(arrays)
        if self.min_weight * num_streams > 1 + 1e-12:
            raise ValueError(
                f"min_weight={self.min_weight} is infeasible for {num_streams} streams: "
                f"expected at most 1 / {num_streams}."
            )
        objective = self.objective(scores_by_stream, labels)
        weights = np.empty_like(objective)
        for j, coefficients in enumerate(objective):
            # Eq. (13): linprog minimises, so the objective is negated.
            result = linprog(
                -coefficients,
                A_eq=np.ones((1, num_streams)),
                b_eq=[1.0],
                bounds=[(self.min_weight, 1.0)] * num_streams,
                method="highs",
            )
            if result.status != 0:  # pragma: no cover - a bounded feasible LP always solves
                raise RuntimeError(f"linprog failed for class {j}: {result.message}")
            weights[j] = (
                np.clip(result.x, self.min_weight, 1.0) + 0.0
            )  # + 0.0: no -0.0 from the solver
        self.weights_ = weights
        self.objective_ = objective
        self.streams_ = names
        return self

    def _check_fitted(self, scores_by_stream):
        if not hasattr(self, "weights_"):
            raise ValueError(
                "This AdaptiveFusion is not fitted yet: call fit(scores_by_stream, labels) first."
            )
        names, arrays = _as_streams(scores_by_stream)
        if names != self.streams_ or arrays[0].shape[1] != self.weights_.shape[0]:
            raise ValueError(
                f"Expected scores of the streams {self.streams_} with {self.weights_.shape[0]} classes, "
                f"as in fit. Received: streams {names} with {arrays[0].shape[1]} classes"
            )
        return arrays

    def fuse(self, scores_by_stream):
        """The fused scores `W_j S_t J_j` of Eq. (14), `(n, num_classes)`."""
        arrays = self._check_fitted(scores_by_stream)
        stacked = np.stack(arrays, axis=-1)  # [n, C, M]
        return (stacked * self.weights_[None]).sum(axis=-1)

    def predict(self, scores_by_stream):
        """The predicted classes `argmax_j W_j S_t J_j` (Eq. 14), `(n,)` integers."""
        return self.fuse(scores_by_stream).argmax(axis=-1)
