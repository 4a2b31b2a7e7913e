"""Two-stream collaborative learning with spatial-temporal attention (TCLSTA).

Peng, Zhao and Zhang, "Two-Stream Collaborative Learning with Spatial-Temporal
Attention for Video Classification", IEEE TCSVT 2018 (arXiv:1711.03273).

Each stream (frames, and stacks of L optical flow fields) is a spatial-temporal
attention model (Sect. III-A, Fig. 3): the T frames of a clip go through the
same backbone; on its last feature map a CAM branch (`ClassActivationAttention`,
Eqs. 1-3) gives class scores and a spatial attention map that weights the
final pooling (`WeightedAveragePooling2D`); an LSTM over the T pooled
features gives the temporal attention (`TemporalAttention`, Eqs. 4-6). The
static-motion collaborative model (Sect. III-B) refines the two streams'
attended features jointly (`CollaborativeLearning`, Eqs. 7-9, Algorithm 1)
and fuses the two streams' scores with one weight pair per class
(`ClassWiseFusion`, Eq. 14; the weights come from
`keras_twostream.evaluation.AdaptiveFusion`, Eqs. 10-13).

Choices where the paper is silent, made here:

- The paper trains on single frames (mini-batches of 64 frames); this model
  takes clips of T frames, so the frame-level heads (connection network and
  CAM) are averaged over the T frames, as TSN's consensus does.
- The connection network's softmax is applied to the clip feature
  `sum_i beta_i` of Eq. (6) with temporal attention (the attention-weighted
  average of the frame features, so the temporal attention shapes the
  stream's prediction and is trained by its loss, "the connection network and
  temporal-level attention network can influence each other through the
  joint training procedure", Sect. III-A-1), and to the plain average of the
  frame features without it. Being linear, the latter equals averaging the
  per-frame logits.
- The LSTM's softmax is applied to every hidden state and the logits are
  averaged over time (as LRCN does), so every step is supervised. The LSTM is
  unrolled over the T steps: clips are short, and unrolled it traces and
  runs faster than a loop.
- The CAM class `c`: see `ClassActivationAttention` (`attention_class`).
- The collaborative learning network takes the features `beta_i` of Eq. (6)
  (the features `alpha_i` without temporal attention); its number of
  alternations is `num_alternations`.
- Dropout: the paper gives none, so `dropout` defaults to 0. A positive rate
  (one, or a `(spatial, temporal)` pair, the library's shared argument)
  drops features before each stream's linear classifiers (connection
  network, LSTM and collaborative heads; not the CAM convolution, not the
  early-fusion classifier on the stop-gradient features).
- Late fusion averages the collaborative heads' scores with collaborative
  learning on and the streams' scores without it (Table VII: "obtained by late
  fusion"). Early fusion (Table VIII) trains a softmax classifier on the
  concatenated stream features, behind a stop-gradient so that, like the
  paper's SVM on extracted features, it does not change the streams.
"""

import keras
from keras import ops

from keras_twostream.layers.class_activation_attention import ClassActivationAttention
from keras_twostream.layers.class_wise_fusion import ClassWiseFusion
from keras_twostream.layers.collaborative_learning import CollaborativeLearning
from keras_twostream.layers.fold_segments import FoldSegments, UnfoldSegments
from keras_twostream.layers.segment_consensus import SegmentConsensus
from keras_twostream.layers.temporal_attention import TemporalAttention
from keras_twostream.layers.weighted_average_pooling import WeightedAveragePooling2D
from keras_twostream.models._validation import (
    _check_bool,
    _check_num_classes,
    _check_positive_int,
    _renamed_argument,
)
from keras_twostream.models.base import VideoClassifier
from keras_twostream.models.contract import (
    apply_class_output,
    backbone_name,
    builds_with_dtype,
    check_dropout,
    check_logits,
    dropout_config,
    get_stream_backbone,
)

STREAMS = (("spatial", "rgb"), ("temporal", "flow"))
FUSIONS = ("late", "early")


def _feature_map_blocks(backbone, feature_stage):
    """The backbone's blocks up to the end of `feature_stage` (default: its last stage)."""
    stage_ends = backbone.stage_ends
    stage = feature_stage or list(stage_ends)[-1]
    if stage not in stage_ends:
        raise ValueError(
            f"Expected feature_stage to be one of the {backbone.architecture} stages "
            f"{list(stage_ends)}. Received: feature_stage={feature_stage!r}"
        )
    blocks = []
    for block_name, block in backbone.blocks:
        blocks.append(block)
        if block_name == stage_ends[stage]:
            return blocks
    raise AssertionError(f"stage {stage!r} ends in an unknown block")  # pragma: no cover


def apply_classifier_head(features, num_classes, name, consensus_segments=None, dropout=0.0):
    """Dropout (when positive), a linear classifier and, for per-frame inputs `(B, T, D)`, the
    average over T.

    Returns `(B, num_classes)` logits.
    """
    if dropout:
        features = keras.layers.Dropout(dropout, name=f"{name}_dropout")(features)
    logits = keras.layers.Dense(num_classes, name=f"{name}_classifier")(features)
    if consensus_segments is not None:
        logits = SegmentConsensus("avg", name=f"{name}_consensus")(logits)  # [B, T, N] -> [B, N]
    return logits


def apply_spatial_temporal_attention(
    frames,
    blocks,
    num_classes,
    num_frames,
    spatial_attention,
    temporal_attention,
    cam_filters,
    attention_class,
    lstm_units,
    prefix,
    dropout=0.0,
):
    """One stream of the spatial-temporal attention model (Sect. III-A, Fig. 3).

    Args:
        frames: `(B, T, H, W, C)` frames or flow stacks.
        blocks: the backbone blocks up to the feature map.

    Returns:
        A tuple `(logits, frame_features, video_features)`: a dict of
        `(B, num_classes)` logits (`prefix`, and `f"{prefix}_cam"` /
        `f"{prefix}_lstm"` with their attention); the frame features
        `(B, T, D)` (the `beta_i` of Eq. 6, or the `alpha_i` without temporal
        attention); and the clip feature `(B, D)` (the sum of the `beta_i`, or
        the mean of the `alpha_i`).
    """
    x = FoldSegments(name=f"{prefix}_fold")(frames)  # [B, T, H, W, C] -> [B*T, H, W, C]
    for block in blocks:
        x = block(x)  # -> [B*T, h, w, D]: the connection network's last feature map
    logits = {}
    if spatial_attention:
        cam_logits, attention = ClassActivationAttention(
            num_classes,
            filters=cam_filters,
            attention_class=attention_class,
            name=f"{prefix}_cam_attention",
        )(x)
        cam_logits = UnfoldSegments(num_frames, name=f"{prefix}_cam_unfold")(
            cam_logits
        )  # -> [B, T, N]
        logits[f"{prefix}_cam"] = SegmentConsensus("avg", name=f"{prefix}_cam_consensus")(
            cam_logits
        )
        # Sect. III-A-1: the weighted pooling replaces ResNet-50's last (average) pooling.
        pooled = WeightedAveragePooling2D(name=f"{prefix}_weighted_pool")(
            [x, attention]
        )  # -> [B*T, D]
    else:
        pooled = keras.layers.GlobalAveragePooling2D(name=f"{prefix}_avg_pool")(x)  # -> [B*T, D]
    alpha = UnfoldSegments(num_frames, name=f"{prefix}_unfold")(pooled)  # -> [B, T, D]
    if temporal_attention:
        beta, hidden, _ = TemporalAttention(
            lstm_units, unroll=True, name=f"{prefix}_temporal_attention"
        )(alpha)
        logits[f"{prefix}_lstm"] = apply_classifier_head(
            hidden, num_classes, f"{prefix}_lstm", num_frames, dropout
        )
        frame_features = beta
        video_features = ops.sum(beta, axis=1)  # sum_i beta_i: attention-weighted mean, [B, D]
    else:
        frame_features = alpha
        video_features = SegmentConsensus("avg", name=f"{prefix}_frame_consensus")(alpha)  # [B, D]
    logits[prefix] = apply_classifier_head(video_features, num_classes, prefix, dropout=dropout)
    return logits, frame_features, video_features


@keras.saving.register_keras_serializable(package="keras_twostream")
class TCLSTA(VideoClassifier):
    """Two-stream collaborative learning with spatial-temporal attention (Peng et al. 2018).

    Inputs are a dict `{"rgb": (B, T, H, W, 3), "flow": (B, T, H, W, 2L)}`:
    T frames of a clip and, for each, a stack of L optical flow fields. The
    outputs are a dict of class probabilities, every one but `"fused"` a
    cross-entropy head (Fig. 3) trained by `compile()`'s defaults:

    | output | head | present with |
    |---|---|---|
    | `"spatial"`, `"temporal"` | connection network (weighted pooling, Sect. III-A-1) | always |
    | `"spatial_cam"`, `"temporal_cam"` | CAM branch (spatial-level attention) | `spatial_attention` |
    | `"spatial_lstm"`, `"temporal_lstm"` | LSTM (temporal-level attention) | `temporal_attention` |
    | `"spatial_cln"`, `"temporal_cln"` | collaborative learning network | `collaborative` |
    | `"fused"` | late fusion (Eq. 14) or early fusion | always |

    The switches reproduce the paper's ablations: `"spatial"` / `"temporal"`
    / `"fused"` with neither attention are "Frame", "Optical flow" and
    "Two-stream" of Table VI; `spatial_attention` and `temporal_attention`
    add "SA", "TA" or both ("STA"); `collaborative` is "+CLN" of Table VII;
    `fusion="early"` and adaptive weights (`set_fusion_weights` with
    `keras_twostream.evaluation.AdaptiveFusion`) give Table VIII. Read the
    module docstring for the choices where the paper is silent.

    Args:
        num_classes: number of classes (at least 2).
        backbone: a name in `keras_twostream.backbones.BACKBONES`; ResNet-50
            in the paper. Or a `keras_twostream.backbones.Backbone`
            instance: its architecture and weights initialise both streams
            (the other stream's first convolution adapted to its channels,
            `keras_twostream.models.contract.get_stream_backbone`).
        image_size: input height and width (224 in the paper).
        num_segments: T, frames (and flow stacks) per clip, the library's
            `num_segments` of every builder (formerly `num_frames`, still
            accepted with a `DeprecationWarning`). The paper does not give it;
            8 by default.
        flow_length: L, stacked flow fields per frame (10 in the paper).
        spatial_attention: the CAM branch and weighted pooling (Eqs. 1-3);
            without it the feature map is average-pooled.
        temporal_attention: the LSTM temporal attention (Eqs. 4-6); without
            it the frame features are averaged.
        collaborative: the collaborative learning network (Eqs. 7-9).
        fusion: `"late"` (the default: per-class weighted average of the two
            streams' scores, even until `set_fusion_weights` is called) or
            `"early"`.
        feature_stage: the backbone stage whose feature map is attended and
            pooled; `None` (the default) is the last one (`"res5"` of
            ResNet-50, as in Table II).
        cam_filters: filters of the CAM conv layer (1024, Table III).
        attention_class: `"predicted"` or `"expected"`: which class gives the
            spatial attention map, see `ClassActivationAttention`.
        lstm_units: LSTM units (512, Table IV).
        collaborative_units: `k` of Eq. (7) (not given in the paper; 512).
        num_alternations: loop iterations of Algorithm 1 (2).
        dropout: dropout before each stream's linear classifiers (see the
            module docstring): one rate or a `(spatial, temporal)` pair; 0,
            as the paper gives none.
        synchronized: synchronised batch normalisation across the replicas of a
            `tf.distribute` strategy in both backbones (TensorFlow only); with
            `False` each replica normalises with its own batch statistics.
        logits: `True` makes the outputs logits whose softmax is the
            `logits=False` output; late `"fused"` becomes the log of Eq.
            (14)'s scores (its softmax renormalises them; with per-class
            weights, average test views on `exp` of it to keep Eq. 14 at
            video level); `compile()` follows it.
        spatial_weights: `None`, `"imagenet"` or a weights file for the frame
            backbone (only used when building; not saved in config).
        temporal_weights: the same for the flow backbone; RGB weights are
            adapted to 2L channels by `adapt_input_channels`.
        dtype: the Keras dtype policy of the layers (`None`: the global one).
        name: the model's name.
        **kwargs: other `keras.Model` keyword arguments (`trainable`) and the
            former name `num_frames`.

    Example:

    >>> import numpy as np
    >>> from keras_twostream import build_tclsta
    >>> model = build_tclsta(num_classes=5, backbone="tiny", image_size=64, num_segments=3,
    ...                      flow_length=2, cam_filters=16, lstm_units=8, collaborative_units=8)
    >>> model.compile()
    >>> x = {"rgb": np.zeros((2, 3, 64, 64, 3), "float32"),
    ...      "flow": np.zeros((2, 3, 64, 64, 4), "float32")}
    >>> sorted(model.predict(x, verbose=0))  # doctest: +NORMALIZE_WHITESPACE
    ['fused', 'spatial', 'spatial_cam', 'spatial_cln', 'spatial_lstm',
     'temporal', 'temporal_cam', 'temporal_cln', 'temporal_lstm']
    """

    @builds_with_dtype
    def __init__(
        self,
        num_classes,
        *,
        backbone="resnet50",
        image_size=224,
        num_segments=8,
        flow_length=10,
        spatial_attention=True,
        temporal_attention=True,
        collaborative=True,
        fusion="late",
        feature_stage=None,
        cam_filters=1024,
        attention_class="predicted",
        lstm_units=512,
        collaborative_units=512,
        num_alternations=2,
        dropout=0.0,
        synchronized=False,
        logits=False,
        spatial_weights=None,
        temporal_weights=None,
        dtype=None,
        name="tclsta",
        **kwargs,
    ):
        backbone_source, backbone = backbone, backbone_name(backbone)
        _check_num_classes(num_classes)
        dropouts = check_dropout(dropout)
        logits = check_logits(logits)
        num_classes = int(num_classes)
        num_segments = _renamed_argument(
            kwargs, "num_frames", "num_segments", num_segments, 8, "TCLSTA"
        )
        num_frames = num_segments  # T frames per clip; the name the paper's notation suggests
        for arg, value in (
            ("image_size", image_size),
            ("num_segments", num_segments),
            ("flow_length", flow_length),
            ("cam_filters", cam_filters),
            ("lstm_units", lstm_units),
            ("collaborative_units", collaborative_units),
            ("num_alternations", num_alternations),
        ):
            _check_positive_int(value, arg)
        for arg, value in (
            ("spatial_attention", spatial_attention),
            ("temporal_attention", temporal_attention),
            ("collaborative", collaborative),
        ):
            _check_bool(value, arg)
        if fusion not in FUSIONS:
            raise ValueError(f"Expected fusion to be one of {FUSIONS}. Received: fusion={fusion!r}")

        # === Layers ===
        backbones = {
            "spatial": get_stream_backbone(
                backbone_source,
                input_shape=(image_size, image_size, 3),
                weights=spatial_weights,
                stream="spatial",
                synchronized=synchronized,
                name="spatial_backbone",
            ),
            "temporal": get_stream_backbone(
                backbone_source,
                input_shape=(image_size, image_size, 2 * flow_length),
                weights=temporal_weights,
                stream="temporal",
                synchronized=synchronized,
                name="temporal_backbone",
            ),
        }
        blocks = {
            stream: _feature_map_blocks(net, feature_stage) for stream, net in backbones.items()
        }

        # === Functional Model ===
        inputs = {
            "rgb": keras.Input((num_frames, image_size, image_size, 3), name="rgb"),
            "flow": keras.Input((num_frames, image_size, image_size, 2 * flow_length), name="flow"),
        }
        head_logits, frame_features, video_features = {}, {}, {}
        for stream, key in STREAMS:
            stream_logits, frame_features[stream], video_features[stream] = (
                apply_spatial_temporal_attention(
                    inputs[key],
                    blocks[stream],
                    num_classes,
                    num_frames,
                    spatial_attention,
                    temporal_attention,
                    cam_filters,
                    attention_class,
                    lstm_units,
                    stream,
                    dropouts[stream],
                )
            )
            head_logits.update(stream_logits)
        if collaborative:
            # Sect. III-B-1: V^s and V^m are the frame features of the two streams.
            static, motion, _, _ = CollaborativeLearning(
                collaborative_units, num_alternations, name="collaborative_learning"
            )([frame_features["spatial"], frame_features["temporal"]], return_coefficients=True)
            video_features = {"spatial": static, "temporal": motion}
            for stream, features in video_features.items():
                head_logits[f"{stream}_cln"] = apply_classifier_head(
                    features, num_classes, f"{stream}_cln", dropout=dropouts[stream]
                )
        outputs, probabilities = {}, {}
        for key, value in head_logits.items():
            outputs[key], probabilities[key] = apply_class_output(value, key, logits)
        fused_outputs = (
            ("spatial_cln", "temporal_cln") if collaborative else ("spatial", "temporal")
        )
        if fusion == "late":
            outputs["fused"] = ClassWiseFusion(log_scores=logits, dtype="float32", name="fused")(
                [probabilities[n] for n in fused_outputs]
            )
        else:
            features = keras.layers.Concatenate(name="early_fusion_concat")(
                [video_features["spatial"], video_features["temporal"]]
            )
            features = ops.stop_gradient(
                features
            )  # a classifier on extracted features, like the paper's SVM
            outputs["fused"], _ = apply_class_output(
                apply_classifier_head(features, num_classes, "early_fusion"), "fused", logits
            )
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.backbone = backbone
        self.image_size = image_size
        self.num_segments = num_segments
        self.flow_length = flow_length
        self.spatial_attention = spatial_attention
        self.temporal_attention = temporal_attention
        self.collaborative = collaborative
        self.fusion = fusion
        self.feature_stage = feature_stage
        self.cam_filters = cam_filters
        self.attention_class = attention_class
        self.lstm_units = lstm_units
        self.collaborative_units = collaborative_units
        self.num_alternations = num_alternations
        self.dropout = dropout_config(dropouts)
        self.synchronized = synchronized
        self.fused_outputs = fused_outputs
        loss_outputs = [name for name in outputs if name != "fused" or fusion == "early"]
        self._set_contract(
            {name: tuple(t.shape[1:]) for name, t in inputs.items()},
            {name: "default" for name in outputs},
            loss_outputs,
            logits=logits,
            dtype=dtype,
        )

    def default_optimizer(self):
        """SGD with momentum 0.9, learning rate 0.001 and coupled L2 weight decay 0.0001 (Sect. IV-B-1)."""
        from keras_twostream.training.coupled_sgd import CoupledSGD

        return CoupledSGD(learning_rate=1e-3, momentum=0.9, weight_decay=1e-4)

    def set_fusion_weights(self, class_weights):
        """Sets the per-class stream weights of `"fused"` (late fusion, Eq. 14).

        Args:
            class_weights: `(num_classes, 2)`: row `j` weights the scores of
                class `j` of `fused_outputs[0]` (spatial) and
                `fused_outputs[1]` (temporal), e.g. `AdaptiveFusion.weights_`
                fitted on those two outputs' training scores.
        """
        if self.fusion != "late":
            raise ValueError(
                f"set_fusion_weights needs fusion='late'; this model was built with fusion={self.fusion!r}."
            )
        self.get_layer("fused").set_class_weights(class_weights)

    def attention_model(self):
        """A model from the same inputs to the attentions, for inspection (Fig. 7).

        Returns:
            A `keras.Model` whose dict outputs, for each stream `s` of
            `"spatial"` and `"temporal"`, are `f"{s}_attention_map"`: the
            map of Eq. (3) per frame, `(B, T, h, w)` (with spatial
            attention); `f"{s}_frame_attention"`: the weights
            `exp(gamma_i) / sum_j exp(gamma_j)` of Eq. (6), `(B, T)` (with
            temporal attention); and `f"{s}_collaborative"`: the coefficients
            `z^s` / `z^m` of Algorithm 1, `(B, T)` (with collaborative
            learning).
        """
        outputs = {}
        for stream, _ in STREAMS:
            if self.spatial_attention:
                attention = self.get_layer(f"{stream}_cam_attention").output[1]  # [B*T, h, w]
                outputs[f"{stream}_attention_map"] = UnfoldSegments(
                    self.num_segments, name=f"{stream}_attention_unfold"
                )(attention)  # -> [B, T, h, w]
            if self.temporal_attention:
                outputs[f"{stream}_frame_attention"] = self.get_layer(
                    f"{stream}_temporal_attention"
                ).output[2]
        if self.collaborative:
            cln = self.get_layer("collaborative_learning").output
            outputs["spatial_collaborative"], outputs["temporal_collaborative"] = cln[2], cln[3]
        if not outputs:
            raise ValueError(
                "This model has no attention to show: build it with spatial_attention, "
                "temporal_attention or collaborative."
            )
        return keras.Model(self.input, outputs, name=f"{self.name}_attention")

    @property
    def num_frames(self):
        """T, frames per clip: `num_segments` under the name the paper's notation suggests."""
        return self.num_segments

    def get_config(self):
        return {
            **super().get_config(),
            "name": self.name,
            "trainable": self.trainable,
            "num_classes": self.num_classes,
            "backbone": self.backbone,
            "image_size": self.image_size,
            "num_segments": self.num_segments,
            "flow_length": self.flow_length,
            "spatial_attention": self.spatial_attention,
            "temporal_attention": self.temporal_attention,
            "collaborative": self.collaborative,
            "fusion": self.fusion,
            "feature_stage": self.feature_stage,
            "cam_filters": self.cam_filters,
            "attention_class": self.attention_class,
            "lstm_units": self.lstm_units,
            "collaborative_units": self.collaborative_units,
            "num_alternations": self.num_alternations,
            "dropout": self.dropout,
            "synchronized": self.synchronized,
        }


def build_tclsta(
    num_classes,
    *,
    backbone="resnet50",
    image_size=224,
    num_segments=8,
    flow_length=10,
    spatial_attention=True,
    temporal_attention=True,
    collaborative=True,
    fusion="late",
    feature_stage=None,
    cam_filters=1024,
    attention_class="predicted",
    lstm_units=512,
    collaborative_units=512,
    num_alternations=2,
    dropout=0.0,
    synchronized=False,
    logits=False,
    spatial_weights=None,
    temporal_weights=None,
    dtype=None,
    name="tclsta",
    **deprecated,
):
    """Builds TCLSTA (Peng et al., IEEE TCSVT 2018): two-stream collaborative learning
    with spatial-temporal attention.

    The arguments are `TCLSTA`'s (see `keras_twostream.models.TCLSTA`);
    `**deprecated` takes the former name `num_frames`.

    Returns:
        A `TCLSTA` model: inputs `{"rgb": (B, T, H, W, 3), "flow": (B, T, H, W, 2L)}`,
        a dict of class probabilities with one entry per loss head and `"fused"`.

    Example:

    >>> from keras_twostream import build_tclsta
    >>> frame_sa = build_tclsta(101, temporal_attention=False, collaborative=False)  # doctest: +SKIP
    """
    return TCLSTA(
        num_classes,
        backbone=backbone,
        image_size=image_size,
        num_segments=num_segments,
        flow_length=flow_length,
        spatial_attention=spatial_attention,
        temporal_attention=temporal_attention,
        collaborative=collaborative,
        fusion=fusion,
        feature_stage=feature_stage,
        cam_filters=cam_filters,
        attention_class=attention_class,
        lstm_units=lstm_units,
        collaborative_units=collaborative_units,
        num_alternations=num_alternations,
        dropout=dropout,
        synchronized=synchronized,
        logits=logits,
        spatial_weights=spatial_weights,
        temporal_weights=temporal_weights,
        dtype=dtype,
        name=name,
        **deprecated,
    )
