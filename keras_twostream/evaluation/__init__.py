"""Test-time protocols (`protocol`: frames x crops views, clips), score fusion and metrics."""

from keras_twostream.evaluation.adaptive_fusion import AdaptiveFusion
from keras_twostream.evaluation.fusion import (
    FUSION_METHODS,
    SVMFusion,
    average_fusion,
    fuse_scores,
    search_fusion_weights,
    weighted_fusion,
)
from keras_twostream.evaluation.metrics import (
    classification_summary,
    confusion_matrix,
    mean_class_accuracy,
    per_class_recall,
    top_k_accuracy,
)
from keras_twostream.evaluation.protocol import (
    TEST_CROPS,
    TEST_SNIPPETS,
    TEST_VIEWS,
    num_views,
    regroup_clips,
    resolve_protocol,
    test_crop_params,
    view_index,
)
from keras_twostream.evaluation.scores import ScoreFile, load_scores, save_scores

__all__ = [
    "FUSION_METHODS",
    "TEST_CROPS",
    "TEST_SNIPPETS",
    "TEST_VIEWS",
    "AdaptiveFusion",
    "SVMFusion",
    "ScoreFile",
    "average_fusion",
    "classification_summary",
    "confusion_matrix",
    "fuse_scores",
    "load_scores",
    "mean_class_accuracy",
    "num_views",
    "per_class_recall",
    "regroup_clips",
    "resolve_protocol",
    "save_scores",
    "search_fusion_weights",
    "test_crop_params",
    "top_k_accuracy",
    "view_index",
    "weighted_fusion",
]
