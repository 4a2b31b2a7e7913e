"""Reusable Keras layers of the two-stream architectures. Imports keras only."""

from keras_twostream.layers.class_activation_attention import ClassActivationAttention
from keras_twostream.layers.class_wise_fusion import ClassWiseFusion
from keras_twostream.layers.collaborative_learning import CollaborativeLearning
from keras_twostream.layers.compact_bilinear import CompactBilinear
from keras_twostream.layers.cross_modality_attention import CrossModalityAttention
from keras_twostream.layers.fold_segments import FoldSegments, UnfoldSegments
from keras_twostream.layers.level_weighted_sum import LevelWeightedSum
from keras_twostream.layers.local_response_normalization import LocalResponseNormalization
from keras_twostream.layers.pyramid_attention import PyramidAttention
from keras_twostream.layers.score_fusion import ScoreFusion
from keras_twostream.layers.segment_consensus import SegmentConsensus
from keras_twostream.layers.semantic_discriminator import SemanticDiscriminator
from keras_twostream.layers.spatiotemporal_attention import SpatiotemporalAttention
from keras_twostream.layers.split_paths import SplitPaths
from keras_twostream.layers.temporal_attention import TemporalAttention
from keras_twostream.layers.weighted_average_pooling import WeightedAveragePooling2D

__all__ = [
    "ClassActivationAttention",
    "ClassWiseFusion",
    "CollaborativeLearning",
    "CompactBilinear",
    "CrossModalityAttention",
    "FoldSegments",
    "LevelWeightedSum",
    "LocalResponseNormalization",
    "PyramidAttention",
    "ScoreFusion",
    "SegmentConsensus",
    "SemanticDiscriminator",
    "SpatiotemporalAttention",
    "SplitPaths",
    "TemporalAttention",
    "UnfoldSegments",
    "WeightedAveragePooling2D",
]
