"""Spatiotemporal Pyramid Network (Wang, Long, Wang & Yu, CVPR 2017).

A fusion pyramid between the last convolutional layers of a spatial (RGB) and
a temporal (optical flow) ConvNet and the classifier (Sect. 3.4, Fig. 2),
trained end to end with one softmax and one loss:

1. multi-path temporal fusion (Sect. 3.2): P chunks of L flow fields, their
   centres tau frames apart, go through one temporal network with shared
   weights; a `CompactBilinear` (STCB) fuses the P feature maps;
2. spatiotemporal attention (Sect. 3.3): at every location of the spatial
   feature map an STCB fuses the spatial vector with its temporal
   counterpart, two convolutions (64 x 7 x 7, 1 x 7 x 7) and a softmax over
   the locations give attention weights, and a weighted pooling of the
   spatial map gives the attended feature;
3. top fusion (Sect. 3.4): an STCB of the average-pooled spatial feature, the
   (average-pooled) temporal feature and the attended feature into 4096
   dimensions, then the classifier (for VGG-16 behind two 4096-d fully
   connected layers, Sect. 4.1).

Reading of the paper where it is not explicit (see the `STPN` docstring):
the temporal features stay feature maps up to the top fusion (Sect. 4.4
combines the paths "at the last convolutional layers", Sect. 3.3 fuses each
spatial location with "its temporal counterpart", and Sect. 3.4 average-pools
"the original spatial and temporal features" at the top); `temporal_level=
"vector"` pools every path first instead.
"""

import numbers
import random

import keras

from keras_twostream.backbones import Backbone
from keras_twostream.backbones.weights import leaf_layers
from keras_twostream.layers import (
    CompactBilinear,
    FoldSegments,
    ScoreFusion,
    SegmentConsensus,
    UnfoldSegments,
)
from keras_twostream.layers.spatiotemporal_attention import FUSIONS as ATTENTION_FUSIONS
from keras_twostream.layers.spatiotemporal_attention import SpatiotemporalAttention
from keras_twostream.layers.split_paths import SplitPaths
from keras_twostream.models._validation import (
    _check_num_classes,
    _check_positive_int,
    _renamed_argument,
)
from keras_twostream.models.base import VideoClassifier
from keras_twostream.models.contract import (
    apply_class_output,
    backbone_name,
    builds_with_dtype,
    check_logits,
    get_stream_backbone,
)

FUSIONS = ("compact_bilinear", "concat", "sum", "average")
TEMPORAL_FUSIONS = ("compact_bilinear", "concat", "sum")
TOP_FEATURES = ("spatial", "temporal", "attended")
TEMPORAL_LEVELS = ("map", "vector")
STREAMS = ("spatial", "temporal")
# Sect. 4.1: "for VGG-16, we stack the two 4096-dimensional fully connected layers behind the
# last STCB layer". CNN-M-2048 gets its own full6/full7 sizes likewise; ResNets, BN-Inception
# and tiny none.
FC_UNITS = {"vgg16": (4096, 4096), "cnn_m_2048": (4096, 2048)}
# Sect. 4.1: base learning rate 0.01 for VGG-16, 0.001 for ResNets, divided by 10 every
# 10,000 iterations, stopped at 30,000 (VGG-16) / 20,000 (ResNets). The paper gives no rate for
# BN-Inception; it gets the ResNets' 0.001 (TSN's rate for its BN-Inception spatial net).
LEARNING_RATES = {"vgg16": (1e-2, 3), "cnn_m_2048": (1e-2, 3)}
DEFAULT_LEARNING_RATE = (1e-3, 2)
STEP_SIZE = 10_000

# The ablations of Tables 3-6 as build_stpn keyword arguments: `build_stpn(101, **ABLATIONS[key])`.
# The paper runs them on BN-Inception: Table 3's compact bilinear sweep fuses "the spatial and the
# temporal representations (both 1024-dimensional)" and Table 6 A is the BN-Inception two-stream
# baseline of Table 2 (91.7%), so every row names `backbone="bn_inception"`. For another
# backbone: `build_stpn(101, **{**ABLATIONS[key], "backbone": "resnet50"})`.
ABLATION_BACKBONE = "bn_inception"
_ABLATION_SWITCHES = {
    # Table 3: fusing the two streams (one temporal path, no attention).
    "table3_average": dict(fusion="average", num_paths=1, attention=False),
    "table3_concat": dict(fusion="concat", num_paths=1, attention=False),
    "table3_sum": dict(fusion="sum", num_paths=1, attention=False),
    **{
        f"table3_compact_bilinear_{d}": dict(fusion_dim=d, num_paths=1, attention=False)
        for d in (1024, 2048, 4096, 8192)
    },
    # Table 4: merging temporal paths, optical flow only.
    "table4_concat_1path": dict(num_paths=1, attention=False, top_features=("temporal",)),
    **{
        f"table4_{method}_{paths}path": dict(
            num_paths=paths,
            temporal_fusion=method,
            attention=False,
            top_features=("temporal",),
        )
        for method in TEMPORAL_FUSIONS
        for paths in (3, 5)
    },
    # Table 5: attention pooling in the spatial network (spatial accuracy), guided by one
    # temporal path (the paper does not say how many; one isolates the attention's effect).
    "table5_average_pooling": dict(num_paths=1, attention=False, top_features=("spatial",)),
    **{
        f"table5_{method}": dict(num_paths=1, attention_fusion=method, top_features=("attended",))
        for method in ("temporal", "concat", "sum", "compact_bilinear")
    },
    # Table 6: stacking the components; D is the final architecture (build_stpn's defaults but
    # for the backbone).
    "table6_a": dict(fusion="average", num_paths=1, attention=False),
    "table6_b": dict(num_paths=1, attention=False),
    "table6_c": dict(num_paths=3, attention=False),
    "table6_d": dict(),
}
ABLATIONS = {
    row: {"backbone": ABLATION_BACKBONE, **switches} for row, switches in _ABLATION_SWITCHES.items()
}


def _check_choice(value, choices, name):
    if value not in choices:
        raise ValueError(f"Expected {name} to be one of {choices}. Received: {name}={value!r}")
    return value


def _check_top_features(top_features, attention):
    if top_features is None:
        return ("spatial", "temporal", "attended") if attention else ("spatial", "temporal")
    if isinstance(top_features, str):
        top_features = (top_features,)
    top_features = tuple(top_features)
    if (
        not top_features
        or any(f not in TOP_FEATURES for f in top_features)
        or len(set(top_features)) != len(top_features)
    ):
        raise ValueError(
            f"Expected top_features to be distinct names among {TOP_FEATURES}. "
            f"Received: top_features={top_features!r}"
        )
    if attention != ("attended" in top_features):
        raise ValueError(
            "The attended feature exists only with attention=True and must then reach the top "
            f"fusion. Received: attention={attention!r}, top_features={top_features!r}"
        )
    return top_features


def last_stage_blocks(backbone):
    """The backbone's blocks up to the end of its last stage, without its pooling/fc head.

    STPN takes the last convolutional feature map (res5c of ResNets, inception5b of
    BN-Inception, pool5 of
    VGG-16: Sect. 3.3-3.4); the backbone's own head (global pooling, or VGG's
    flatten-fc1-fc2 on 25088 inputs) is left out of the model.
    """
    names = [name for name, _ in backbone.blocks]
    last = max(backbone.stage_ends.values(), key=names.index)
    return backbone.blocks[: names.index(last) + 1]


def apply_blocks(blocks, x):
    for _, block in blocks:
        x = block(x)
    return x


def apply_fusion(features, method, output_dim, seed, normalize, name):
    """Fuses a list of same-rank features by STCB, concatenation or element-wise sum.

    One feature is returned unchanged (the 1-path columns of Table 4).
    """
    if len(features) == 1:
        return features[0]
    if method == "compact_bilinear":
        return CompactBilinear(
            output_dim, seed=seed, signed_sqrt=normalize, l2_normalize=normalize, name=name
        )(features)  # Algorithm 1
    if method == "concat":
        return keras.layers.Concatenate(axis=-1, name=name)(features)
    dims = [f.shape[-1] for f in features]
    if len(set(dims)) != 1:
        raise ValueError(
            f"Element-wise sum fusion ({name!r}) needs features of one size. Received sizes "
            f"{dims}; use 'compact_bilinear' or 'concat', or set the fused sizes to match."
        )
    return keras.layers.Add(name=name)(features)


def apply_classifier(x, num_classes, num_segments, consensus, fc_units, dropout, prefix):
    """Optional fc layers (VGG-16), dropout, the linear classifier and the segmental consensus.

    Args:
        x: `(B*K, D)` features.

    Returns:
        `(B, classes)` logits.
    """
    for index, units in enumerate(fc_units, start=1):
        x = keras.layers.Dense(units, activation="relu", name=f"{prefix}_fc{index}")(x)
        x = keras.layers.Dropout(dropout, name=f"{prefix}_fc{index}_dropout")(x)
    if not fc_units:
        x = keras.layers.Dropout(dropout, name=f"{prefix}_dropout")(x)
    x = keras.layers.Dense(num_classes, name=f"{prefix}_classifier")(x)  # [B*K, n]
    x = UnfoldSegments(num_segments, name=f"{prefix}_unfold")(x)  # -> [B, K, n]
    return SegmentConsensus(consensus, name=f"{prefix}_consensus")(x)  # -> [B, n]


@keras.saving.register_keras_serializable(package="keras_twostream")
class STPN(VideoClassifier):
    """The Spatiotemporal Pyramid Network of Wang et al. (CVPR 2017).

    Inputs are a dict `{"rgb": (B, K, H, W, 3), "flow": (B, K * P, H, W, 2L)}`:
    per snippet (K = 1 in the paper) one RGB frame and P chunks of L stacked
    flow fields (chunk p of snippet k at index `k * P + p`), exactly as
    `keras_twostream.data.make_dataset(..., num_paths=P)` yields them
    (`"rgb"` is `(B, 1, H, W, 3)` there). The output is `{"fused": (B,
    classes)}` softmax probabilities, the model's one loss (Table 1: one
    end-to-end loss; the pyramid fuses the streams' features, so it has no
    per-stream `"spatial"` / `"temporal"` scores, unlike the library's
    late-fusion models, except with `fusion="average"`), plus `"attention"` `(B, K, h, w)` with
    `return_attention=True`. A variant that uses one modality only (Tables 4
    and 5) takes only that input.

    Architecture (Fig. 2; `S`: the spatial network's last feature map, `h x w
    x C`, res5c of ResNets or pool5 of VGG-16; `T_p`: the temporal network's
    for path p):

    - multi-path temporal fusion (Sect. 3.2, Table 4): the P chunks share one
      temporal network (they are folded into its batch) and
      `T = STCB(T_1, ..., T_P)` per location (`temporal_fusion`; one path is
      used as is);
    - spatiotemporal attention (Sect. 3.3, Table 5): `SpatiotemporalAttention`
      of `S` guided by `T` (STCB per location, 64 x 7 x 7 and 1 x 7 x 7
      convolutions, softmax over locations, weighted pooling of `S`);
    - top fusion (Sect. 3.4, Table 3): `STCB(avgpool(S), avgpool(T), attended)`
      into `fusion_dim` = 4096, then (VGG-16) fc 4096 - fc 4096, dropout and
      the classifier; K snippets are averaged (TSN consensus) before the
      softmax.

    Choices where the paper is silent: the temporal STCB outputs as many
    channels as one path has (`temporal_fusion_dim=None`), so the fused
    temporal feature has the size of a single path's and the sum/concat
    alternatives stay comparable; the attention STCB outputs as many as `S`
    has (`attention_fusion_dim=None`); a ReLU follows the first attention
    convolution; dropout (`dropout`) before the classifier and after each
    fc layer; STCB outputs get compact bilinear pooling's signed square root
    and L2 normalisation (`stcb_normalization`). With
    `temporal_level="vector"` every path's map is average-pooled first, the
    paths are fused as vectors and the attention uses that one temporal
    vector at every location.

    Ablations: `ABLATIONS` maps every row of Tables 3-6 to keyword arguments.
    `fusion` is the top fusion: `"compact_bilinear"`, `"concat"`, `"sum"`, or
    `"average"`, the two-stream baseline (model A of Table 6): each top
    feature gets its own classifier and softmax output (`"spatial"`,
    `"temporal"`, `"attended"`), each with its own loss, and `"fused"` is
    their average. Note that model A here pools VGG-16's pool5 globally
    (`build_two_stream` is the original two-stream network).

    Multistage training (Sect. 4.1): fine-tune each stream alone, then copy
    it into the pyramid and train the whole network; see `build_stpn` and
    `load_stream_weights`.

    `compile()` defaults (Sect. 4.1): SGD with momentum 0.9, base learning
    rate 0.001 (ResNets, BN-Inception, tiny) or 0.01 (VGG-16, CNN-M-2048) divided by 10
    every 10,000 steps; the paper stops at 20,000 / 30,000 iterations of
    batch 32. Momentum is not stated in the paper (Caffe's usual 0.9).

    Args:
        num_classes: number of classes, >= 2.
        backbone: `"resnet50"` (the default: ImageNet weights ship with
            Keras for it), `"bn_inception"` (the network of the paper's
            ablations, Tables 3-6, and of its best result, Table 7),
            `"resnet101"`, `"vgg16"`, `"cnn_m_2048"` or `"tiny"` (tests, CPU
            demos); both streams use it. Or a `keras_twostream.backbones.Backbone`
            instance: its architecture and weights initialise both streams
            (the other stream's first convolution adapted to its channels,
            `keras_twostream.models.contract.get_stream_backbone`).
        image_size: input height and width (224).
        flow_length: L, flow fields per chunk (10, Sect. 3.2).
        num_paths: P, flow chunks per snippet (3; Table 4 also has 1, 5); the
            name of `make_dataset`'s argument (formerly `temporal_paths`,
            still accepted with a `DeprecationWarning`).
        num_segments: K snippets per sample, averaged (TSN consensus) before
            the softmax; 1 in the paper (and the only value
            `make_dataset(num_paths=...)` produces).
        fusion: top fusion, one of `FUSIONS` (Table 3).
        fusion_dim: output size of the top STCB (4096; Table 3: 1024-8192).
        temporal_fusion: `"compact_bilinear"`, `"concat"` or `"sum"` over the
            paths (Table 4).
        temporal_fusion_dim: output size of the temporal STCB; `None`: the
            channels of one path.
        temporal_level: `"map"` (fuse the paths per location; default) or
            `"vector"` (pool each path first).
        attention: use the spatiotemporal attention (Table 6, D).
        attention_fusion: how the attention combines `S` and `T` (Table 5):
            `"compact_bilinear"`, `"concat"`, `"sum"` or `"temporal"`.
        attention_fusion_dim: output size of the attention STCB; `None`: the
            channels of `S`.
        attention_filters: filters of the first attention convolution (64).
        attention_kernel_size: kernel size of both attention convolutions (7).
        top_features: the features fused at the top, among `"spatial"`
            (average-pooled `S`), `"temporal"` (average-pooled `T`) and
            `"attended"`; `None`: all three with attention, else the first
            two. `("temporal",)` is the flow-only network of Table 4 and
            `("attended",)` / `("spatial",)` the spatial networks of Table 5.
        dropout: dropout rate before the classifier and after each fc layer
            (one rate: the top of the pyramid is shared by both streams).
        consensus: `"avg"` or `"max"` over the K snippets.
        stcb_normalization: apply the signed square root and L2
            normalisation of compact bilinear pooling (Gao et al. 2016, the
            method Sect. 3.1 follows) to every STCB output (per location on
            maps). The STPN paper mentions none; without it an STCB's output
            scales with the product of its inputs' norms (10^4 to 10^7 for
            ResNet features through the pyramid's three levels), which
            saturates the softmax at initialisation. `False` is Algorithm 1
            bare.
        return_attention: add the attention map to the outputs.
        synchronized: synchronised batch normalisation across the replicas of a
            `tf.distribute` strategy in both backbones (TensorFlow only); with
            `False` each replica normalises with its own batch statistics.
        seed: seed of the STCB hashes (the temporal, attention and top STCBs
            use `seed`, `seed + 1`, `seed + 2`); `None` draws one, kept in the
            config.
        spatial_weights: `None`, `"imagenet"` or a weights file for the spatial
            backbone (see `keras_twostream.backbones.get_backbone`; used when
            building, not saved in the config).
        temporal_weights: the same for the temporal backbone; RGB weights are
            adapted to 2L channels (TSN cross-modality initialisation, which
            the paper follows).
        logits: `True` makes the class-score outputs logits whose softmax is
            the `logits=False` output (the top fusion's classifier logits;
            with `fusion="average"`, the log of the averaged probabilities);
            `compile()` follows it.
        dtype: the Keras dtype policy of the layers (`None`: the global one;
            the STCBs stay float32).
        name: the model's name.
        **kwargs: other `keras.Model` keyword arguments (`trainable`) and the
            former name `temporal_paths`.

    Example:

    >>> import numpy as np
    >>> from keras_twostream import build_stpn
    >>> model = build_stpn(num_classes=5, backbone="tiny", image_size=64, flow_length=2,
    ...                    fusion_dim=128, return_attention=True)
    >>> x = {"rgb": np.zeros((2, 1, 64, 64, 3), "float32"),
    ...      "flow": np.zeros((2, 3, 64, 64, 4), "float32")}
    >>> out = model.predict(x, verbose=0)
    >>> out["fused"].shape, out["attention"].shape
    ((2, 5), (2, 1, 2, 2))
    """

    @builds_with_dtype
    def __init__(
        self,
        num_classes,
        *,
        backbone="resnet50",
        image_size=224,
        flow_length=10,
        num_paths=3,
        num_segments=1,
        fusion="compact_bilinear",
        fusion_dim=4096,
        temporal_fusion="compact_bilinear",
        temporal_fusion_dim=None,
        temporal_level="map",
        attention=True,
        attention_fusion="compact_bilinear",
        attention_fusion_dim=None,
        attention_filters=64,
        attention_kernel_size=7,
        top_features=None,
        dropout=0.5,
        consensus="avg",
        stcb_normalization=True,
        return_attention=False,
        seed=None,
        synchronized=False,
        logits=False,
        spatial_weights=None,
        temporal_weights=None,
        dtype=None,
        name="stpn",
        **kwargs,
    ):
        backbone_source, backbone = backbone, backbone_name(backbone)
        _check_num_classes(num_classes)
        logits = check_logits(logits)
        image_size = _check_positive_int(image_size, "image_size")
        flow_length = _check_positive_int(flow_length, "flow_length")
        num_paths = _renamed_argument(kwargs, "temporal_paths", "num_paths", num_paths, 3, "STPN")
        temporal_paths = _check_positive_int(num_paths, "num_paths")
        num_segments = _check_positive_int(num_segments, "num_segments")
        fusion_dim = _check_positive_int(fusion_dim, "fusion_dim")
        _check_choice(fusion, FUSIONS, "fusion")
        _check_choice(temporal_fusion, TEMPORAL_FUSIONS, "temporal_fusion")
        _check_choice(temporal_level, TEMPORAL_LEVELS, "temporal_level")
        _check_choice(attention_fusion, ATTENTION_FUSIONS, "attention_fusion")
        _check_choice(consensus, ("avg", "max"), "consensus")
        for arg, value in (
            ("temporal_fusion_dim", temporal_fusion_dim),
            ("attention_fusion_dim", attention_fusion_dim),
        ):
            if value is not None:
                _check_positive_int(value, arg)
        for arg, value in (
            ("attention", attention),
            ("return_attention", return_attention),
            ("stcb_normalization", stcb_normalization),
        ):
            if not isinstance(value, bool):
                raise ValueError(f"Expected {arg} to be a bool. Received: {arg}={value!r}")
        if return_attention and not attention:
            raise ValueError("return_attention=True needs attention=True.")
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, numbers.Real)
            or not 0 <= dropout < 1
        ):
            raise ValueError(f"Expected 0 <= dropout < 1. Received: dropout={dropout!r}")
        top_features = _check_top_features(top_features, attention)
        if seed is None:
            seed = random.randint(0, 2**31 - 3)
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(
                f"Expected seed to be a non-negative integer or None. Received: seed={seed!r}"
            )
        use_rgb = attention or "spatial" in top_features
        use_flow = attention or "temporal" in top_features
        fc_units = FC_UNITS.get(backbone, ())

        # === Layers ===
        backbones = {}
        if use_rgb:
            backbones["spatial"] = get_stream_backbone(
                backbone_source,
                input_shape=(image_size, image_size, 3),
                weights=spatial_weights,
                stream="spatial",
                synchronized=synchronized,
                name="spatial_backbone",
            )
        if use_flow:
            backbones["temporal"] = get_stream_backbone(
                backbone_source,
                input_shape=(image_size, image_size, 2 * flow_length),
                weights=temporal_weights,
                stream="temporal",
                synchronized=synchronized,
                name="temporal_backbone",
            )
        stream_blocks = {stream: last_stage_blocks(net) for stream, net in backbones.items()}

        # === Functional Model ===
        inputs = {}
        if use_rgb:
            inputs["rgb"] = keras.Input((num_segments, image_size, image_size, 3), name="rgb")
        if use_flow:
            inputs["flow"] = keras.Input(
                (num_segments * temporal_paths, image_size, image_size, 2 * flow_length),
                name="flow",
            )
        features = {}
        if use_rgb:
            # [B, K, H, W, 3] -> [B*K, H, W, 3]
            x = FoldSegments(name="spatial_fold")(inputs["rgb"])
            spatial_map = apply_blocks(stream_blocks["spatial"], x)  # -> [B*K, h, w, C]
            if "spatial" in top_features:
                features["spatial"] = keras.layers.GlobalAveragePooling2D(name="spatial_pool")(
                    spatial_map
                )
        if use_flow:
            # Sect. 3.2: the P chunks share the temporal network: fold them into its batch.
            # [B, K*P, H, W, 2L] -> [B*K*P, H, W, 2L]
            x = FoldSegments(name="temporal_fold")(inputs["flow"])
            x = apply_blocks(stream_blocks["temporal"], x)  # -> [B*K*P, h, w, C]
            if temporal_level == "vector":
                # [B*K*P, h, w, C] -> [B*K*P, C]
                x = keras.layers.GlobalAveragePooling2D(name="temporal_path_pool")(x)
            paths = SplitPaths(temporal_paths, name="temporal_paths")(x)  # -> P x [B*K, ...]
            # Sect. 3.2 / Algorithm 1: the first STCB fuses the paths (per location for maps).
            temporal = apply_fusion(
                paths,
                temporal_fusion,
                temporal_fusion_dim or x.shape[-1],
                seed,
                stcb_normalization,
                "temporal_fusion",
            )  # -> [B*K, (h, w,) D_t]
            if "temporal" in top_features:
                features["temporal"] = (
                    keras.layers.GlobalAveragePooling2D(name="temporal_pool")(temporal)
                    if temporal_level == "map"
                    else temporal
                )
        outputs = {}
        if attention:
            # Sect. 3.3: the second STCB and the attention pooling of the spatial map.
            attended, scores = SpatiotemporalAttention(
                fusion=attention_fusion,
                fusion_dim=attention_fusion_dim,
                filters=attention_filters,
                kernel_size=attention_kernel_size,
                seed=seed + 1,
                signed_sqrt=stcb_normalization,
                l2_normalize=stcb_normalization,
                name="spatiotemporal_attention",
            )([spatial_map, temporal], return_attention_scores=True)  # -> [B*K, C], [B*K, h, w]
            features["attended"] = attended
            if return_attention:
                outputs["attention"] = UnfoldSegments(
                    num_segments, dtype="float32", name="attention"
                )(scores)
        top = [features[name] for name in top_features]
        if fusion == "average" and len(top) > 1:
            # Table 3 "Average" / Table 6 A: a classifier per feature, probabilities averaged.
            probabilities = []
            for feature_name, feature in zip(top_features, top, strict=True):
                feature_logits = apply_classifier(
                    feature, num_classes, num_segments, consensus, fc_units, dropout, feature_name
                )
                outputs[feature_name], probs = apply_class_output(
                    feature_logits, feature_name, logits
                )
                probabilities.append(probs)
            outputs["fused"] = ScoreFusion(log_scores=logits, dtype="float32", name="fused")(
                probabilities
            )
            loss_outputs = list(top_features)
        else:
            # Sect. 3.4: the third STCB fuses the pyramid's features into fusion_dim (4096).
            # -> [B*K, fusion_dim]
            fused = apply_fusion(
                top, fusion, fusion_dim, seed + 2, stcb_normalization, "top_fusion"
            )
            fused_logits = apply_classifier(
                fused, num_classes, num_segments, consensus, fc_units, dropout, "fusion"
            )
            outputs["fused"], _ = apply_class_output(fused_logits, "fused", logits)
            loss_outputs = ["fused"]
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        # === Config ===
        self.num_classes = int(num_classes)
        self.backbone = backbone
        self.image_size = image_size
        self.flow_length = flow_length
        self.num_paths = temporal_paths
        self.num_segments = num_segments
        self.fusion = fusion
        self.fusion_dim = fusion_dim
        self.temporal_fusion = temporal_fusion
        self.temporal_fusion_dim = temporal_fusion_dim
        self.temporal_level = temporal_level
        self.attention = attention
        self.attention_fusion = attention_fusion
        self.attention_fusion_dim = attention_fusion_dim
        self.attention_filters = attention_filters
        self.attention_kernel_size = attention_kernel_size
        self.top_features = top_features
        self.dropout = float(dropout)
        self.consensus = consensus
        self.stcb_normalization = stcb_normalization
        self.return_attention = return_attention
        self.seed = int(seed)
        self.synchronized = synchronized
        self._stream_block_names = {
            stream: [block.name for _, block in blocks] for stream, blocks in stream_blocks.items()
        }
        self._stream_specs = {
            stream: (tuple(net.input_shape[1:]), net.stream) for stream, net in backbones.items()
        }
        self._set_contract(
            {name: tuple(t.shape[1:]) for name, t in inputs.items()},
            {key: "default" for key in outputs if key != "attention"},
            loss_outputs,
            logits=logits,
            dtype=dtype,
        )

    @property
    def streams(self):
        """The streams this variant has: `("spatial", "temporal")` or one of them."""
        return tuple(self._stream_block_names)

    def stream_layers(self, stream):
        """The weight-bearing layers of `stream`'s backbone, as named in `keras.applications`."""
        if stream not in self._stream_block_names:
            raise ValueError(
                f"Expected stream to be one of {self.streams}. Received: stream={stream!r}"
            )
        layers = []
        for name in self._stream_block_names[stream]:
            layers += [layer for layer in leaf_layers(self.get_layer(name)) if layer.weights]
        return layers

    def load_stream_weights(self, spatial=None, temporal=None):
        """Copies separately trained single-stream networks into the pyramid (multistage training).

        Sect. 4.1: the spatial and temporal networks are first fine-tuned
        alone, then their "parameters [are filled] into our final pyramid
        network", which is then trained as a whole. Every convolution and
        batch normalisation layer of the stream's backbone up to its last
        feature map is copied by layer name; the source's head (global pool,
        VGG-16's fc layers) and classifier are not used.

        Args:
            spatial: the trained spatial network: a
                `keras_twostream.backbones.Backbone`, a model with a
                `spatial_backbone` attribute (such as a `TwoStream`), or the
                path of a `.weights.h5` file saved by `Backbone.save_weights`
                from a backbone of the same architecture and input shape.
                `None` leaves the stream as it is.
            temporal: the same for the temporal stream (`2L` input channels;
                `temporal_backbone` attribute).

        Returns:
            The model.
        """
        for stream, source in (("spatial", spatial), ("temporal", temporal)):
            if source is None:
                continue
            if stream not in self._stream_block_names:
                raise ValueError(
                    f"This STPN variant has no {stream} stream (top_features={self.top_features}, "
                    f"attention={self.attention}); received {stream}={source!r}."
                )
            source = self._source_backbone(stream, source)
            theirs = {layer.name: layer for layer in leaf_layers(source) if layer.weights}
            for layer in self.stream_layers(stream):
                if layer.name not in theirs:
                    raise ValueError(
                        f"Layer {layer.name!r} of the {stream} stream has no counterpart in the "
                        f"source backbone {source.name!r} ({source.architecture}); expected a "
                        f"{self.backbone} backbone."
                    )
                values = theirs[layer.name].get_weights()
                expected = [tuple(w.shape) for w in layer.weights]
                if [tuple(v.shape) for v in values] != expected:
                    raise ValueError(
                        f"Layer {layer.name!r} of the {stream} stream expects weights of shapes "
                        f"{expected}; the source backbone {source.name!r} has "
                        f"{[tuple(v.shape) for v in values]}."
                    )
                layer.set_weights(values)
        return self

    def _source_backbone(self, stream, source):
        if isinstance(source, Backbone):
            return source
        attribute = getattr(source, f"{stream}_backbone", None)
        if isinstance(attribute, Backbone):
            return attribute
        if isinstance(source, str) or hasattr(source, "__fspath__"):
            input_shape, stream_kind = self._stream_specs[stream]
            reference = Backbone(
                self.backbone, input_shape=input_shape, stream=stream_kind, name=f"{stream}_source"
            )
            try:
                reference.load_weights(source)
            except (ValueError, KeyError, OSError) as error:
                raise ValueError(
                    f"Could not load {stream} stream weights from {source!r}: expected a .weights.h5 "
                    f"file saved by Backbone.save_weights from a {self.backbone} backbone with "
                    f"input_shape={input_shape}. ({str(error).splitlines()[0][:200]})"
                ) from None
            return reference
        raise ValueError(
            f"Expected {stream} to be a keras_twostream.backbones.Backbone, a model with a "
            f"{stream}_backbone attribute or a .weights.h5 path. Received: {source!r}"
        )

    def default_optimizer(self):
        """SGD, momentum 0.9, the paper's step schedule for the backbone (Sect. 4.1)."""
        base, steps = LEARNING_RATES.get(self.backbone, DEFAULT_LEARNING_RATE)
        schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
            boundaries=[STEP_SIZE * i for i in range(1, steps)],
            values=[base * 0.1**i for i in range(steps)],
        )
        return keras.optimizers.SGD(learning_rate=schedule, momentum=0.9)

    @property
    def temporal_paths(self):
        """P, flow chunks per snippet (`num_paths`; the former name)."""
        return self.num_paths

    def get_config(self):
        return {
            **super().get_config(),
            "name": self.name,
            "trainable": self.trainable,
            "num_classes": self.num_classes,
            "backbone": self.backbone,
            "image_size": self.image_size,
            "flow_length": self.flow_length,
            "num_paths": self.num_paths,
            "num_segments": self.num_segments,
            "fusion": self.fusion,
            "fusion_dim": self.fusion_dim,
            "temporal_fusion": self.temporal_fusion,
            "temporal_fusion_dim": self.temporal_fusion_dim,
            "temporal_level": self.temporal_level,
            "attention": self.attention,
            "attention_fusion": self.attention_fusion,
            "attention_fusion_dim": self.attention_fusion_dim,
            "attention_filters": self.attention_filters,
            "attention_kernel_size": self.attention_kernel_size,
            "top_features": list(self.top_features),
            "dropout": self.dropout,
            "consensus": self.consensus,
            "stcb_normalization": self.stcb_normalization,
            "return_attention": self.return_attention,
            "seed": self.seed,
            "synchronized": self.synchronized,
        }


def build_stpn(
    num_classes,
    *,
    backbone="resnet50",
    image_size=224,
    flow_length=10,
    num_paths=3,
    num_segments=1,
    fusion="compact_bilinear",
    fusion_dim=4096,
    temporal_fusion="compact_bilinear",
    temporal_fusion_dim=None,
    temporal_level="map",
    attention=True,
    attention_fusion="compact_bilinear",
    attention_fusion_dim=None,
    attention_filters=64,
    attention_kernel_size=7,
    top_features=None,
    dropout=0.5,
    consensus="avg",
    stcb_normalization=True,
    return_attention=False,
    seed=None,
    synchronized=False,
    logits=False,
    spatial_weights=None,
    temporal_weights=None,
    dtype=None,
    name="stpn",
    **deprecated,
):
    """Builds the Spatiotemporal Pyramid Network of Wang et al. (CVPR 2017).

    The defaults are the paper's final architecture (Table 6, D): 3 temporal
    paths of 10 flow fields fused by an STCB, STCB attention pooling, and a
    4096-d STCB top fusion, trained end to end with one loss, on ResNet-50
    (one of the paper's base networks, Tables 2 and 7, with ImageNet weights in
    Keras). Every row of Tables 3-6 is
    `build_stpn(num_classes, **STPN_ABLATIONS[row])`, on BN-Inception as in the
    paper (so `STPN_ABLATIONS["table6_d"]` is D on BN-Inception)
    (`keras_twostream.models.STPN_ABLATIONS`, the module's `ABLATIONS`). The
    arguments are `STPN`'s (see `keras_twostream.models.STPN`); `**deprecated`
    takes the former name `temporal_paths`.

    Multistage training (Sect. 4.1). The paper initialises both streams from
    ImageNet, fine-tunes each alone on the video dataset, copies them into
    the pyramid and trains the whole network:

    1. ImageNet: `build_stpn(..., spatial_weights="imagenet",
       temporal_weights="imagenet")` (the temporal stream's first convolution
       is adapted to 2L channels as in TSN); or in step 2 build the single
       streams with those weights.
    2. Fine-tune the streams alone, e.g. `two = build_two_stream(num_classes,
       backbone="resnet50", flow_length=10, spatial_weights="imagenet",
       temporal_weights="imagenet")`, `two.compile()`, `two.fit(...)` (its
       streams train independently, each with its own loss).
    3. Copy them: `model = build_stpn(num_classes, backbone="resnet50")`,
       `model.load_stream_weights(spatial=two.spatial_backbone,
       temporal=two.temporal_backbone)`, or from files written by
       `two.spatial_backbone.save_weights("spatial.weights.h5")`:
       `model.load_stream_weights(spatial="spatial.weights.h5", ...)`.
       Layers are matched by name, so any `Backbone` of the same
       architecture and input shape works.
    4. `model.compile()` and `model.fit(...)`: the whole pyramid, one loss.

    Returns:
        An `STPN` model: inputs `{"rgb": (B, K, H, W, 3), "flow": (B, K * P,
        H, W, 2L)}`, outputs `{"fused": (B, classes)}` probabilities.

    Example:

    >>> from keras_twostream import build_stpn
    >>> from keras_twostream.models import STPN_ABLATIONS
    >>> model = build_stpn(num_classes=101)  # Table 6 D's components on ResNet-50  # doctest: +SKIP
    >>> model_b = build_stpn(num_classes=101, **STPN_ABLATIONS["table6_b"])  # doctest: +SKIP
    >>> model.load_stream_weights(spatial=two.spatial_backbone, temporal=two.temporal_backbone)  # doctest: +SKIP
    """
    return STPN(
        num_classes,
        backbone=backbone,
        image_size=image_size,
        flow_length=flow_length,
        num_paths=num_paths,
        num_segments=num_segments,
        fusion=fusion,
        fusion_dim=fusion_dim,
        temporal_fusion=temporal_fusion,
        temporal_fusion_dim=temporal_fusion_dim,
        temporal_level=temporal_level,
        attention=attention,
        attention_fusion=attention_fusion,
        attention_fusion_dim=attention_fusion_dim,
        attention_filters=attention_filters,
        attention_kernel_size=attention_kernel_size,
        top_features=top_features,
        dropout=dropout,
        consensus=consensus,
        stcb_normalization=stcb_normalization,
        return_attention=return_attention,
        seed=seed,
        synchronized=synchronized,
        logits=logits,
        spatial_weights=spatial_weights,
        temporal_weights=temporal_weights,
        dtype=dtype,
        name=name,
        **deprecated,
    )
