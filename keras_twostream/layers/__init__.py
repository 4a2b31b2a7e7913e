"""Reusable Keras layers of the two-stream architectures. Imports keras only."""

from keras_twostream.layers.compact_bilinear import CompactBilinear
from keras_twostream.layers.fold_segments import FoldSegments, UnfoldSegments
from keras_twostream.layers.local_response_normalization import LocalResponseNormalization
from keras_twostream.layers.pyramid_attention import PyramidAttention
from keras_twostream.layers.score_fusion import ScoreFusion
from keras_twostream.layers.segment_consensus import SegmentConsensus
from keras_twostream.layers.semantic_discriminator import SemanticDiscriminator

__all__ = [
    "CompactBilinear",
    "FoldSegments",
    "LocalResponseNormalization",
    "PyramidAttention",
    "ScoreFusion",
    "SegmentConsensus",
    "SemanticDiscriminator",
    "UnfoldSegments",
]
