"""Adaptively weighted learning (TCLSTA Eqs. 10-14) against explicit references."""

import itertools

import numpy as np
import pytest
from scipy.optimize import linprog

from keras_twostream.evaluation.adaptive_fusion import AdaptiveFusion

LAMBDA = 5e-3


def random_scores(n=60, classes=5, streams=2, seed=0):
    rng = np.random.RandomState(seed)
    scores = []
    for _ in range(streams):
        logits = rng.randn(n, classes) * 2
        e = np.exp(logits)
        scores.append(e / e.sum(-1, keepdims=True))
    return scores, rng.randint(0, classes, n)


def eq13_coefficients(scores, labels, j, lam):
    """Eqs. (11)-(13) written sample by sample: S_i is the (streams x classes) stack of scores."""
    positive = np.zeros(len(scores))
    negative = np.zeros(len(scores))
    for i, label in enumerate(labels):
        S_i = np.stack([s[i] for s in scores])  # [M, C]
        J_j = np.eye(S_i.shape[1])[j]
        if label == j:
            positive += S_i @ J_j  # P_j (Eq. 11)
        else:
            negative += S_i @ J_j  # N_j (Eq. 12)
    return positive - lam * negative


def test_weights_match_linprog_on_eq13_and_a_grid_search():
    scores, labels = random_scores()
    awl = AdaptiveFusion(negative_weight=LAMBDA).fit({"rgb": scores[0], "flow": scores[1]}, labels)
    assert awl.streams_ == ["rgb", "flow"] and awl.weights_.shape == (5, 2)
    grid = np.linspace(0, 1, 201)
    for j in range(5):
        coefficients = eq13_coefficients(scores, labels, j, LAMBDA)
        np.testing.assert_allclose(awl.objective_[j], coefficients, rtol=1e-10)
        reference = linprog(-coefficients, A_eq=[[1.0, 1.0]], b_eq=[1.0], bounds=[(0, 1)] * 2)
        np.testing.assert_allclose(awl.weights_[j] @ coefficients, -reference.fun, rtol=1e-9)
        best_on_grid = max(w * coefficients[0] + (1 - w) * coefficients[1] for w in grid)
        assert awl.weights_[j] @ coefficients >= best_on_grid - 1e-9
        np.testing.assert_allclose(awl.weights_[j].sum(), 1.0)


@pytest.mark.parametrize("streams, min_weight", [(2, 0.0), (2, 0.1), (3, 0.0), (3, 0.2)])
def test_the_optimum_is_a_vertex_one_stream_per_class(streams, min_weight):
    """A linear objective over the simplex peaks at a vertex: all weight on one stream."""
    scores, labels = random_scores(n=80, classes=6, streams=streams, seed=streams)
    awl = AdaptiveFusion(min_weight=min_weight).fit(scores, labels)
    top = 1.0 - (streams - 1) * min_weight
    for j in range(6):
        best = int(np.argmax(awl.objective_[j]))
        expected = np.full(streams, min_weight)
        expected[best] = top
        np.testing.assert_allclose(awl.weights_[j], expected, atol=1e-9)
    # Brute force over the (bounded) simplex finds nothing better.
    grid = [
        w
        for w in itertools.product(np.linspace(0, 1, 21), repeat=streams)
        if abs(sum(w) - 1) < 1e-9 and min(w) >= min_weight - 1e-12
    ]
    for j in range(6):
        assert (
            awl.weights_[j] @ awl.objective_[j]
            >= max(np.dot(w, awl.objective_[j]) for w in grid) - 1e-9
        )


def test_each_class_gets_the_stream_that_recognises_it():
    """Stream 0 is right on classes 0-1 and stream 1 on classes 2-3 (appearance vs motion)."""
    rng = np.random.RandomState(0)
    labels = np.repeat(np.arange(4), 10)
    confused = np.full((40, 4), 0.25)
    spatial = np.where(np.isin(labels, [0, 1])[:, None], np.eye(4)[labels] * 0.7 + 0.075, confused)
    temporal = np.where(np.isin(labels, [2, 3])[:, None], np.eye(4)[labels] * 0.7 + 0.075, confused)
    spatial, temporal = (s + 0.01 * rng.rand(40, 4) for s in (spatial, temporal))
    awl = AdaptiveFusion().fit({"spatial": spatial, "temporal": temporal}, labels)
    np.testing.assert_allclose(awl.weights_, [[1, 0], [1, 0], [0, 1], [0, 1]], atol=1e-9)
    np.testing.assert_array_equal(awl.predict({"spatial": spatial, "temporal": temporal}), labels)


def test_fuse_and_predict_follow_eq14():
    scores, labels = random_scores(seed=3)
    awl = AdaptiveFusion(min_weight=0.2).fit(scores, labels)
    test_scores, _ = random_scores(n=15, seed=4)
    fused = np.zeros((15, 5))
    for t in range(15):
        S_t = np.stack([s[t] for s in test_scores])  # [2, C]
        for j in range(5):
            fused[t, j] = awl.weights_[j] @ S_t @ np.eye(5)[j]  # W_j S_t J_j
    np.testing.assert_allclose(awl.fuse(test_scores), fused, rtol=1e-12)
    np.testing.assert_array_equal(awl.predict(test_scores), fused.argmax(-1))


def test_errors_name_the_argument():
    scores, labels = random_scores()
    with pytest.raises(ValueError, match="not fitted"):
        AdaptiveFusion().predict(scores)
    with pytest.raises(ValueError, match="at least 2 streams"):
        AdaptiveFusion().fit([scores[0]], labels)
    with pytest.raises(ValueError, match=r"same shape.*\(60, 5\).*\(60, 4\)"):
        AdaptiveFusion().fit([scores[0], scores[1][:, :4]], labels)
    with pytest.raises(ValueError, match=r"labels in \[0, 5\)"):
        AdaptiveFusion().fit(scores, labels + 5)
    with pytest.raises(ValueError, match="60 integer class indices"):
        AdaptiveFusion().fit(scores, labels[:10])
    with pytest.raises(ValueError, match="NaN"):
        AdaptiveFusion().fit([scores[0] * np.nan, scores[1]], labels)
    with pytest.raises(ValueError, match="min_weight"):
        AdaptiveFusion(min_weight=0.6)
    with pytest.raises(ValueError, match="infeasible for 3 streams"):
        AdaptiveFusion(min_weight=0.4).fit(random_scores(streams=3)[0], labels)
    with pytest.raises(ValueError, match="negative_weight"):
        AdaptiveFusion(negative_weight=-1)
    awl = AdaptiveFusion().fit({"spatial": scores[0], "temporal": scores[1]}, labels)
    with pytest.raises(ValueError, match="streams"):
        awl.predict({"rgb": scores[0], "flow": scores[1]})
