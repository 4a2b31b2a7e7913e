"""Score fusion against NumPy and scikit-learn references."""

import itertools
import math

import numpy as np
import pytest
from sklearn.svm import LinearSVC

from keras_twostream.evaluation.adaptive_fusion import AdaptiveFusion
from keras_twostream.evaluation.fusion import (
    SVMFusion,
    average_fusion,
    fuse_scores,
    l2_normalize_rows,
    search_fusion_weights,
    simplex_grid,
    weighted_fusion,
)


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def streams():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=40)
    # Each stream sees the label through its own noise: neither is perfect, their fusion is better.
    spatial = _softmax(2.0 * np.eye(4)[labels] + rng.normal(0, 1.2, (40, 4)))
    temporal = _softmax(2.0 * np.eye(4)[labels] + rng.normal(0, 1.2, (40, 4)))
    return {"spatial": spatial, "temporal": temporal}, labels


def test_average_and_weighted_fusion_match_numpy(streams):
    scores, _ = streams
    s, t = scores["spatial"], scores["temporal"]
    np.testing.assert_allclose(average_fusion(scores), (s + t) / 2, rtol=0, atol=1e-15)
    np.testing.assert_allclose(
        weighted_fusion(scores, [3, 1]), 0.75 * s + 0.25 * t, rtol=0, atol=1e-15
    )
    np.testing.assert_allclose(
        weighted_fusion(scores, [1, 1]), average_fusion(scores), rtol=0, atol=1e-15
    )
    with pytest.raises(ValueError, match="2 weights"):
        weighted_fusion(scores, [1, 2, 3])
    with pytest.raises(ValueError, match="non-negative"):
        weighted_fusion(scores, [1, -1])


def test_simplex_grid_is_every_composition():
    grid = simplex_grid(3, step=0.25)
    assert len(grid) == math.comb(4 + 2, 2)
    np.testing.assert_allclose(grid.sum(axis=1), 1.0)
    reference = sorted(p for p in itertools.product(range(5), repeat=3) if sum(p) == 4)
    assert sorted(map(tuple, np.rint(grid * 4).astype(int).tolist())) == reference
    with pytest.raises(ValueError, match="1 / step"):
        simplex_grid(2, step=0.3)


def test_weight_search_matches_brute_force(streams):
    scores, labels = streams
    weights, accuracy = search_fusion_weights(scores, labels, step=0.1)
    s, t = scores["spatial"], scores["temporal"]
    brute = [((w * s + (1 - w) * t).argmax(1) == labels).mean() for w in np.linspace(0, 1, 11)]
    assert accuracy == pytest.approx(max(brute))
    fused = weights[0] * s + weights[1] * t
    assert (fused.argmax(1) == labels).mean() == pytest.approx(accuracy)
    # Among the best weights, the one nearest to plain averaging.
    best = [
        w for w, a in zip(np.linspace(0, 1, 11), brute, strict=True) if np.isclose(a, max(brute))
    ]
    assert weights[0] == pytest.approx(min(best, key=lambda w: abs(w - 0.5)))


def test_weight_search_prefers_averaging_on_ties():
    same = np.array([[0.9, 0.1], [0.2, 0.8]])
    weights, accuracy = search_fusion_weights({"a": same, "b": same}, [0, 1])
    assert accuracy == 1.0
    np.testing.assert_allclose(weights, [0.5, 0.5])


def test_svm_fusion_is_linear_svc_on_stacked_l2_normalised_scores(streams):
    scores, labels = streams
    svm = SVMFusion(C=0.5).fit(scores, labels)
    features = np.concatenate(
        [
            scores["spatial"] / np.linalg.norm(scores["spatial"], axis=1, keepdims=True),
            scores["temporal"] / np.linalg.norm(scores["temporal"], axis=1, keepdims=True),
        ],
        axis=1,
    )
    np.testing.assert_allclose(SVMFusion.features(scores), features, rtol=0, atol=1e-15)
    reference = LinearSVC(C=0.5, multi_class="crammer_singer", max_iter=10000, random_state=0).fit(
        features, labels
    )
    np.testing.assert_allclose(
        svm.fuse(scores), reference.decision_function(features), rtol=1e-10, atol=1e-10
    )
    np.testing.assert_array_equal(svm.predict(scores), reference.predict(features))


def test_svm_fusion_gives_absent_classes_minus_infinity():
    rng = np.random.default_rng(1)
    labels = np.array([0, 0, 2, 2, 2, 0])
    a, b = rng.dirichlet(np.ones(3), 6), rng.dirichlet(np.ones(3), 6)
    fused = SVMFusion().fit([a, b], labels).fuse([a, b])
    assert fused.shape == (6, 3)
    assert np.all(np.isneginf(fused[:, 1])) and np.all(np.isfinite(fused[:, [0, 2]]))


def test_l2_normalize_rows():
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(l2_normalize_rows(x), [[0.6, 0.8], [0.0, 0.0]])


def test_fuse_scores_dispatches_and_checks(streams):
    scores, labels = streams
    fused, info = fuse_scores("average", scores)
    np.testing.assert_allclose(fused, average_fusion(scores))
    fused, info = fuse_scores("weighted", scores, fit_scores=scores, fit_labels=labels, step=0.1)
    expected_weights, _ = search_fusion_weights(scores, labels, step=0.1)
    np.testing.assert_allclose(info["weights"], expected_weights)
    fused, info = fuse_scores("adaptive", scores, fit_scores=scores, fit_labels=labels)
    np.testing.assert_allclose(fused, AdaptiveFusion().fit(scores, labels).fuse(scores))
    with pytest.raises(ValueError, match="needs scores and labels"):
        fuse_scores("svm", scores)
    with pytest.raises(ValueError, match="streams"):
        fuse_scores(
            "svm",
            scores,
            fit_scores={"x": scores["spatial"], "y": scores["temporal"]},
            fit_labels=labels,
        )
