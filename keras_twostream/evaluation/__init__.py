"""Test-time protocols, score fusion and metrics."""

from keras_twostream.evaluation.adaptive_fusion import AdaptiveFusion

__all__ = ["AdaptiveFusion"]
