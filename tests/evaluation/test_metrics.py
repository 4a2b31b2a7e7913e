"""Video-level metrics and score files against scikit-learn and NumPy references."""

import numpy as np
import pytest
from sklearn import metrics as sk

from keras_twostream.evaluation.metrics import (
    classification_summary,
    confusion_matrix,
    mean_class_accuracy,
    per_class_recall,
    top_k_accuracy,
)
from keras_twostream.evaluation.scores import ScoreFile, load_scores, save_scores


@pytest.fixture
def scored():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, size=60)
    scores = rng.random((60, 7)) + 0.8 * np.eye(7)[labels]
    return scores, labels


def test_top_k_matches_sklearn(scored):
    scores, labels = scored
    for k in (1, 3, 5):
        expected = sk.top_k_accuracy_score(labels, scores, k=k, labels=np.arange(7))
        assert top_k_accuracy(scores, labels, k) == pytest.approx(expected)
    assert top_k_accuracy(scores, labels, 1) == pytest.approx((scores.argmax(1) == labels).mean())


def test_confusion_and_mean_class_accuracy_match_sklearn(scored):
    scores, labels = scored
    predictions = scores.argmax(1)
    matrix = confusion_matrix(labels, predictions, 7)
    np.testing.assert_array_equal(
        matrix, sk.confusion_matrix(labels, predictions, labels=np.arange(7))
    )
    assert mean_class_accuracy(scores, labels) == pytest.approx(
        sk.balanced_accuracy_score(labels, predictions)
    )
    np.testing.assert_allclose(
        per_class_recall(matrix),
        sk.recall_score(labels, predictions, average=None, labels=np.arange(7)),
    )


def test_classes_without_videos_are_left_out_of_the_mean():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0]])
    labels = np.array([0, 1, 1])  # class 2 has no video
    recall = per_class_recall(confusion_matrix(labels, scores.argmax(1), 3))
    assert recall[0] == 1.0 and recall[1] == 0.5 and np.isnan(recall[2])
    assert mean_class_accuracy(scores, labels) == pytest.approx(0.75)
    summary = classification_summary(scores, labels)
    assert (
        summary["top1"] == pytest.approx(2 / 3)
        and summary["top5"] == 1.0
        and summary["videos"] == 3
    )


def test_metrics_reject_bad_labels():
    with pytest.raises(ValueError, match=r"labels in \[0, 2\)"):
        top_k_accuracy(np.eye(2), [0, 2])
    with pytest.raises(ValueError, match="2 integer labels"):
        top_k_accuracy(np.eye(2), [0])


def test_score_file_round_trip_and_alignment(tmp_path):
    scores = {"spatial": np.random.default_rng(0).random((3, 2)), "fused": np.eye(3, 2)}
    path = save_scores(
        tmp_path / "s.npz", scores, ["a/v1", "b/v2", "c/v3"], [0, 1, 1], ["x", "y"], {"split": 1}
    )
    loaded = load_scores(path)
    assert list(loaded.scores) == ["spatial", "fused"] and loaded.classes == ["x", "y"]
    np.testing.assert_allclose(loaded.scores["spatial"], scores["spatial"].astype(np.float32))
    assert loaded.meta == {"split": 1}
    reordered = loaded.select(np.array(["c/v3", "a/v1"]))
    assert reordered.labels.tolist() == [1, 0]
    np.testing.assert_array_equal(reordered.scores["fused"], loaded.scores["fused"][[2, 0]])
    assert not list(tmp_path.glob("*.tmp-*"))
    with pytest.raises(ValueError, match="expected \\(3 videos, 2 classes\\)"):
        save_scores(tmp_path / "bad.npz", {"x": np.eye(2)}, ["a", "b", "c"], [0, 1, 1], ["x", "y"])
    np.savez(tmp_path / "other.npz", a=np.eye(2))
    with pytest.raises(ValueError, match="not a score file"):
        load_scores(tmp_path / "other.npz")
    assert isinstance(loaded, ScoreFile)
