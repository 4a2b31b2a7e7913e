"""RGB-only two-stream network with multi-scale pyramid attention and semantic adversarial learning.

The paper (MPA+SAL; `../shared/papers/mpa_sal_rgb_only.txt`): a Spatial
Network on RGB frames and a Temporal Network on RGB differences of adjacent
frames (no optical flow), each a TSN-style network (K segments, shared
weights, consensus G) whose four stages are refined by multi-scale pyramid
attention (MPA, Eqs. 1, 6-7) and combined into the multi-level video
representation

    V̄ = sum_i alpha_i * G(V_1^i, ..., V_n^i)                     (Eq. 2)

on which the classifier C is trained; semantic adversarial learning (SAL,
Eqs. 3-5, 8-11, Algorithm 1) makes V̄ indistinguishable, for a discriminator
D, from the label semantics `S = encoder(y)` of a frozen autoencoder. The
train step lives in `keras_twostream.training.adversarial`.

Choices where the paper is silent (also in the `MPASAL` docstring):

- Levels: the outputs of the backbone's last four stages (res2..res5 of the
  ResNets), each refined in line by `PyramidAttention` (its output feeds the
  next stage, "we put it to the end of each stage") in its residual form
  `(1 + h) * f` ("motivated by recent progress on residual learning"; it
  keeps pretrained features intact), global-average-pooled per frame, reduced
  over the K segments by the consensus G, and projected to `semantic_dim` by
  a fully connected layer with tanh, so that V̄ lives in the range (-1, 1) of
  the tanh code S of the semantic encoder.
- alpha: `alpha = softmax(a)` with learned logits `a` (initialised equal):
  the levels' weights are positive and sum to 1, so V̄ is a convex
  combination of tanh vectors and stays in (-1, 1) like S.
- The Table 3 baseline ("the original network without MPA and SAL" = TSN,
  whose figures it repeats): no levels, no projection; the classifier reads
  the consensus of the last stage's pooled features. With SAL but no MPA the
  last stage alone is projected to V̄.
- Late fusion of the two networks: the weighted average of their softmax
  scores (`fusion_weights`, 1:1 by default).
"""

import numbers
import warnings

import keras

from keras_twostream.layers import (
    FoldSegments,
    LevelWeightedSum,
    PyramidAttention,
    ScoreFusion,
    SegmentConsensus,
    SemanticDiscriminator,
    UnfoldSegments,
)
from keras_twostream.models._validation import (
    _check_bool,
    _check_num_classes,
    _check_positive_int,
    _renamed_dropout,
)
from keras_twostream.models.base import VideoClassifier
from keras_twostream.models.contract import (
    STREAMS,
    apply_class_output,
    backbone_name,
    builds_with_dtype,
    check_dropout,
    check_logits,
    check_streams,
    dropout_config,
    get_stream_backbone,
)
from keras_twostream.models.semantic_autoencoder import SemanticAutoencoder, train_semantic_encoder
from keras_twostream.training.adversarial import SemanticAdversarialMixin

STREAM_CHOICES = ("spatial", "temporal", "two_stream")  # the former `stream` argument
INPUT_KEYS = {"spatial": "rgb", "temporal": "rgb_diff"}


def _renamed_stream(kwargs, streams):
    """`streams` from the former `stream="spatial" | "temporal" | "two_stream"` (deprecated)."""
    if "stream" not in kwargs:
        return streams
    stream = kwargs.pop("stream")
    if stream not in STREAM_CHOICES:
        raise ValueError(
            f"Expected stream (deprecated: use streams) to be one of {STREAM_CHOICES}. "
            f"Received: stream={stream!r}"
        )
    new = STREAMS if stream == "two_stream" else (stream,)
    if tuple(streams) != STREAMS and tuple(streams) != new:
        raise ValueError(
            f"MPASAL: got both streams={streams!r} and its deprecated form stream={stream!r}; "
            "pass streams only"
        )
    warnings.warn(
        "MPASAL: the argument `stream` is deprecated and will be removed; use `streams` "
        '(("spatial", "temporal"), ("spatial",) or ("temporal",)), as build_two_stream does.',
        DeprecationWarning,
        stacklevel=4,
    )
    return new


NUM_LEVELS = 4  # "we divide a deep convolutional neural network into four stages"

# Table 3 of the paper: `build_mpa_sal(101, **ABLATIONS[key])`. Every row is the Spatial
# Network ("All experiments in this ablation study are performed ... by Spatial Network").
ABLATIONS = {
    "baseline": dict(streams=("spatial",), use_mpa=False, use_sal=False),
    "mpa": dict(streams=("spatial",), use_mpa=True, use_sal=False),
    "mpa_sal": dict(streams=("spatial",), use_mpa=True, use_sal=True),
}


def _level_stages(backbone, use_mpa):
    """The stages whose outputs are levels: the last four (one, the last, without MPA)."""
    names = [name for name, _ in backbone.blocks]
    stages = sorted(backbone.stage_ends, key=lambda s: names.index(backbone.stage_ends[s]))
    if len(stages) < NUM_LEVELS:
        raise ValueError(
            f"MPA needs a backbone with at least {NUM_LEVELS} stages; {backbone.architecture} has "
            f"{stages}."
        )
    return stages[-NUM_LEVELS:] if use_mpa else stages[-1:]


def apply_stream(
    inputs,
    backbone,
    stream,
    num_segments,
    use_mpa,
    project,
    semantic_dim,
    mpa_scales,
    mpa_residual,
    consensus,
):
    """One network of the paper: segments through the backbone, MPA per stage, V̄ (Eqs. 1-2, 7).

    Args:
        inputs: `(B, K, H, W, C)` frames (or RGB differences).

    Returns:
        `(features, levels)`: the `(B, D)` input of the classifier (V̄ when
        `project`, else the last stage's pooled consensus feature), and the
        per-level `(B, D_i)` consensus features before projection.
    """
    stages = _level_stages(backbone, use_mpa)
    stage_of_block = {block: stage for stage, block in backbone.stage_ends.items()}
    names = [name for name, _ in backbone.blocks]
    last = backbone.stage_ends[stages[-1]]
    x = FoldSegments(name=f"{stream}_fold")(inputs)  # [B, K, H, W, C] -> [B*K, H, W, C]
    maps = {}
    # The backbone's own head (global pooling, VGG's fc layers) is not used: every level is pooled.
    for block_name, block in backbone.blocks[: names.index(last) + 1]:
        x = block(x)
        stage = stage_of_block.get(block_name)
        if stage in stages:
            if use_mpa:
                # Eqs. (1), (6)-(7): V_j^i = Attn(theta_j; W_i) = h_j^i . f_j^i, in line.
                x = PyramidAttention(
                    scales=mpa_scales, residual=mpa_residual, name=f"{stream}_mpa_{stage}"
                )(x)
            maps[stage] = x
    levels, projected = [], []
    for i, stage in enumerate(stages, start=1):
        v = keras.layers.GlobalAveragePooling2D(name=f"{stream}_level{i}_pool")(maps[stage])
        v = UnfoldSegments(num_segments, name=f"{stream}_level{i}_unfold")(v)  # -> [B, K, D_i]
        v = SegmentConsensus(consensus, name=f"{stream}_level{i}_consensus")(v)  # G -> [B, D_i]
        levels.append(v)
        if project:
            # A common dimension for every level, in the range of S (tanh).
            projected.append(
                keras.layers.Dense(
                    semantic_dim, activation="tanh", name=f"{stream}_level{i}_projection"
                )(v)
            )
    if not project:
        return levels[-1], levels
    if len(projected) == 1:
        return projected[0], levels
    return LevelWeightedSum(name=f"{stream}_level_weights")(projected), levels  # Eq. (2): V̄


@keras.saving.register_keras_serializable(package="keras_twostream")
class MPASAL(SemanticAdversarialMixin, VideoClassifier):
    """The RGB-only two-stream network with MPA and SAL.

    `streams=("spatial", "temporal")` (the default) is the two-stream
    network: the Spatial Network on `{"rgb": (B, K, H, W, 3)}` and the
    Temporal Network on `{"rgb_diff": (B, K, H, W, 3D)}` (the D differences
    of D + 1 consecutive frames per segment, as
    `keras_twostream.data.make_dataset(..., modalities=("rgb", "rgb_diff"),
    diff_length=D)` yields them), with outputs `{"spatial", "temporal",
    "fused"}` (late fusion of the softmax scores), like every two-stream
    model of the library. `streams=("spatial",)` or `("temporal",)` builds
    one network alone, with only its input and its output (no `"fused"`):
    the paper trains the two networks separately (80 / 120 epochs, their own
    gradient clipping) and fuses their scores (`keras-twostream fuse`).
    Outputs are class probabilities named after their stream.

    Each network (Eqs. 1-2, 7): the K segments share one backbone; a
    `PyramidAttention` refines the output of each of its last four stages in
    line; each level is average-pooled, reduced over the segments by the
    consensus G, projected to `semantic_dim` with tanh, and the levels are
    summed with weights `alpha = softmax(a)` into V̄ (`LevelWeightedSum`);
    dropout and a linear classifier C give the class scores (Eq. 4).
    With `use_sal`, each network has a `SemanticDiscriminator` D and the
    model a frozen semantic encoder (Eq. 8), and `fit` runs the alternating
    D / network step of Algorithm 1 (`SemanticAdversarialMixin`). `call()`,
    `predict` and `export` are the inference path only (no D, no encoder).

    The switches give Table 3: `use_mpa=False, use_sal=False` is the
    baseline (TSN: the consensus of the last stage's pooled features into C),
    `use_mpa=True` adds the multi-level MPA representation, `use_sal=True`
    the adversarial learning (`ABLATIONS`). Choices where the paper is silent
    are listed in the module docstring.

    `compile()` defaults (paper, Implementation details): SGD with momentum
    0.9 at 1e-3 for the network (divided by 10 every 40 epochs when
    `compile(steps_per_epoch=...)` is given), Adam at 1e-4 for D, the
    network's gradient clipped to a global norm of 20 (spatial) / 40
    (temporal) after the cross-replica sum. The paper trains 80 (spatial) /
    120 (temporal) epochs with mini-batches of 64.

    Args:
        num_classes: number of classes, >= 2.
        streams: the networks to build, `("spatial", "temporal")` (the
            default), `("spatial",)` or `("temporal",)` (formerly `stream=`
            `"two_stream"` / `"spatial"` / `"temporal"`, still accepted with a
            `DeprecationWarning`).
        backbone: a name in `keras_twostream.backbones.BACKBONES` with at
            least four stages; `"resnet101"` in the paper, `"tiny"` for tests. Or a `keras_twostream.backbones.Backbone`
            instance: its architecture and weights initialise both streams
            (the other stream's first convolution adapted to its channels,
            `keras_twostream.models.contract.get_stream_backbone`).
        image_size: input height and width (224).
        num_segments: K, TSN segments per video (3).
        diff_length: D, RGB differences per segment of the temporal input
            (5, the data pipeline's default, TSN's RGB-difference setting).
        use_mpa: the multi-level representation with pyramid attention.
        use_sal: semantic adversarial learning (discriminators, encoder).
        semantic_dim: the size of V̄ and S (the paper does not give it).
        semantic_hidden_dim: width of the autoencoder's first layer (`None`:
            `max(semantic_dim, num_classes)`).
        mpa_scales: pooling factors of `PyramidAttention`'s extractors.
        mpa_residual: `PyramidAttention` returns `(1 + h) * f` (default)
            rather than Eq. (7)'s `h * f`.
        discriminator_units: hidden widths of each `SemanticDiscriminator`.
        adversarial_weight: lambda of `L = L_cls + lambda * L_adv` (Eq. 5: 1).
        dropout: dropout before the classifiers, one rate or a `(spatial,
            temporal)` pair (0.8, TSN's RGB and RGB-difference setting;
            formerly `spatial_dropout` / `temporal_dropout`, still accepted
            with a `DeprecationWarning`).
        consensus: `"avg"` (TSN) or `"max"`, the consensus G.
        fusion_weights: weights of the spatial and temporal scores in `"fused"`.
        synchronized: synchronised batch normalisation across replicas
            (TensorFlow only); with it a `MirroredStrategy` step equals the
            single-device step on the global batch.
        semantic_encoder: a trained encoder `keras.Model` from
            `train_semantic_encoder(num_classes, semantic_dim)` (its weights are
            copied into the frozen encoder), or `None` (left untrained: for
            loading saved weights). Building the model trains nothing:
            `build_mpa_sal` (whose default `semantic_encoder="train"` trains
            the autoencoder first) is the one-call way. Not saved in the
            config; the weights are saved with the model. Unused without
            `use_sal`.
        spatial_weights: `None`, `"imagenet"` or a weights file for the
            spatial backbone (used when building, not saved in the config).
        temporal_weights: the same for the temporal backbone (ImageNet RGB
            weights are adapted to 3D input channels, TSN's cross-modality
            initialisation).
        logits: `True` makes the outputs logits whose softmax is the
            `logits=False` output (`"fused"`: the log of the averaged
            probabilities); `compile()` follows it.
        dtype: the Keras dtype policy of the layers (`None`: the global one).
        name: the model's name; `None`: `"mpa_sal"`, or
            `"mpa_sal_spatial"` / `"mpa_sal_temporal"` for one network.
        **kwargs: other `keras.Model` keyword arguments (`trainable`) and the
            former names `stream`, `spatial_dropout`, `temporal_dropout`.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.models.mpa_sal import build_mpa_sal
    >>> model = build_mpa_sal(5, backbone="tiny", image_size=32,
    ...                       num_segments=2, diff_length=2, semantic_dim=8)
    >>> x = {"rgb": np.zeros((1, 2, 32, 32, 3), "float32"),
    ...      "rgb_diff": np.zeros((1, 2, 32, 32, 6), "float32")}
    >>> sorted(model.predict(x, verbose=0))
    ['fused', 'spatial', 'temporal']
    >>> model.level_weights("spatial").tolist()
    [0.25, 0.25, 0.25, 0.25]
    """

    @builds_with_dtype
    def __init__(
        self,
        num_classes,
        *,
        streams=STREAMS,
        backbone="resnet101",
        image_size=224,
        num_segments=3,
        diff_length=5,
        use_mpa=True,
        use_sal=True,
        semantic_dim=256,
        semantic_hidden_dim=None,
        mpa_scales=(1, 2, 4),
        mpa_residual=True,
        discriminator_units=(256, 256),
        adversarial_weight=1.0,
        dropout=0.8,
        consensus="avg",
        fusion_weights=(1.0, 1.0),
        synchronized=False,
        logits=False,
        semantic_encoder=None,
        spatial_weights=None,
        temporal_weights=None,
        dtype=None,
        name=None,
        **kwargs,
    ):
        backbone_source, backbone = backbone, backbone_name(backbone)
        _check_num_classes(num_classes)
        streams = check_streams(_renamed_stream(kwargs, streams))
        dropout = _renamed_dropout(kwargs, dropout, 0.8, "MPASAL")
        dropouts = check_dropout(dropout)
        logits = check_logits(logits)
        image_size = _check_positive_int(image_size, "image_size")
        num_segments = _check_positive_int(num_segments, "num_segments")
        diff_length = _check_positive_int(diff_length, "diff_length")
        semantic_dim = _check_positive_int(semantic_dim, "semantic_dim")
        if semantic_hidden_dim is not None:
            semantic_hidden_dim = _check_positive_int(semantic_hidden_dim, "semantic_hidden_dim")
        use_mpa = _check_bool(use_mpa, "use_mpa")
        use_sal = _check_bool(use_sal, "use_sal")
        mpa_residual = _check_bool(mpa_residual, "mpa_residual")
        synchronized = _check_bool(synchronized, "synchronized")
        if (
            isinstance(adversarial_weight, bool)
            or not isinstance(adversarial_weight, numbers.Real)
            or adversarial_weight < 0
        ):
            raise ValueError(
                f"Expected adversarial_weight >= 0. Received: adversarial_weight={adversarial_weight!r}"
            )
        if consensus not in ("avg", "max"):
            raise ValueError(
                f"Expected consensus to be 'avg' or 'max'. Received: consensus={consensus!r}"
            )
        if not (semantic_encoder is None or isinstance(semantic_encoder, keras.Model)):
            raise ValueError(
                "Expected semantic_encoder to be None or a trained encoder keras.Model (from "
                "train_semantic_encoder; build_mpa_sal(..., semantic_encoder='train') trains one). "
                f"Received: semantic_encoder={semantic_encoder!r}"
            )
        project = use_mpa or use_sal
        if name is None:
            name = "mpa_sal" if len(streams) > 1 else f"mpa_sal_{streams[0]}"

        # === Layers ===
        channels = {"spatial": 3, "temporal": 3 * diff_length}
        weights = {"spatial": spatial_weights, "temporal": temporal_weights}
        backbones = {
            s: get_stream_backbone(
                backbone_source,
                input_shape=(image_size, image_size, channels[s]),
                weights=weights[s],
                stream=s,
                synchronized=synchronized,
                name=f"{s}_backbone",
            )
            for s in streams
        }

        # === Functional Model ===
        inputs = {
            INPUT_KEYS[s]: keras.Input(
                (num_segments, image_size, image_size, channels[s]), name=INPUT_KEYS[s]
            )
            for s in streams
        }
        outputs, representations, probabilities = {}, {}, {}
        for s in streams:
            features, _ = apply_stream(
                inputs[INPUT_KEYS[s]],
                backbones[s],
                s,
                num_segments,
                use_mpa,
                project,
                semantic_dim,
                mpa_scales,
                mpa_residual,
                consensus,
            )
            if project:
                representations[s] = features  # V̄ of Eq. (2)
            x = keras.layers.Dropout(dropouts[s], name=f"{s}_dropout")(features)
            stream_logits = keras.layers.Dense(num_classes, name=f"{s}_classifier")(x)  # C
            outputs[s], probabilities[s] = apply_class_output(stream_logits, s, logits)
        if len(streams) > 1:
            outputs["fused"] = ScoreFusion(
                fusion_weights, log_scores=logits, dtype="float32", name="fused"
            )([probabilities[s] for s in STREAMS])
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        # === Config ===
        self.num_classes = int(num_classes)
        self.backbone = backbone
        self.image_size = image_size
        self.num_segments = num_segments
        self.diff_length = diff_length
        self.use_mpa = use_mpa
        self.use_sal = use_sal
        self.semantic_dim = semantic_dim
        self.semantic_hidden_dim = semantic_hidden_dim
        self.mpa_scales = tuple(int(s) for s in mpa_scales)
        self.mpa_residual = mpa_residual
        self.discriminator_units = tuple(int(u) for u in discriminator_units)
        self.adversarial_weight = float(adversarial_weight)
        self.dropout = dropout_config(dropouts)
        self.consensus = consensus
        self.fusion_weights = tuple(float(w) for w in fusion_weights)
        self.synchronized = synchronized
        self.streams = streams

        # === Semantic adversarial learning: D per network and the frozen encoder (Eq. 8) ===
        self.discriminators = {}
        self.semantic_encoder = None
        if use_sal:
            for s in streams:
                discriminator = SemanticDiscriminator(
                    hidden_units=self.discriminator_units, name=f"discriminator_{s}"
                )
                discriminator.build((None, semantic_dim))
                self.discriminators[s] = discriminator
            self.semantic_encoder = self._make_semantic_encoder(semantic_encoder)
        # One forward pass giving the outputs and every V̄, for the train step. Layers are
        # shared with this model; the helper is not tracked (its variables are this model's).
        graph_outputs = {"outputs": outputs}
        if representations:
            graph_outputs["representations"] = representations
        # object.__setattr__ bypasses Keras' attribute tracking (no second owner of the layers).
        object.__setattr__(
            self, "_forward_graph", keras.Model(inputs, graph_outputs, name=f"{self.name}_forward")
        )
        self._create_adversarial_metrics()
        label_map = {name: "default" for name in outputs}
        self._set_contract(
            {key: tuple(t.shape[1:]) for key, t in inputs.items()},
            label_map,
            list(streams),
            logits=logits,
            dtype=dtype,
        )
        self._check_partition()

    def _make_semantic_encoder(self, source):
        encoder = SemanticAutoencoder(
            self.num_classes, self.semantic_dim, hidden_dim=self.semantic_hidden_dim, seed=0
        ).encoder
        encoder.trainable = False  # frozen (Eq. 8): never updated
        if source is not None:
            theirs = source.get_weights()
            expected = [tuple(w.shape) for w in encoder.weights]
            if [tuple(w.shape) for w in theirs] != expected:
                raise ValueError(
                    "Expected semantic_encoder to be an encoder from train_semantic_encoder("
                    f"num_classes={self.num_classes}, semantic_dim={self.semantic_dim}, hidden_dim="
                    f"{self.semantic_hidden_dim}) with weights of shapes {expected}. Received shapes "
                    f"{[tuple(w.shape) for w in theirs]}."
                )
            encoder.set_weights(theirs)
        return encoder

    def _check_partition(self):
        owners = {}
        for s in self.streams:
            for layer in self.stream_layers(s):
                owners.setdefault(id(layer), []).append(s)
        for layer in self.layers:
            if layer.trainable_weights and len(owners.get(id(layer), [])) != 1:
                raise RuntimeError(
                    f"Layer {layer.name!r} belongs to streams {owners.get(id(layer), [])}."
                )

    # --- Streams, representation --------------------------------------------------------------
    def stream_layers(self, stream):
        """The layers of the network G and classifier C of `stream` (named `stream_*`)."""
        if stream not in self.streams:
            raise ValueError(
                f"Expected stream to be one of {self.streams}. Received: stream={stream!r}"
            )
        return [
            layer
            for layer in self.layers
            if layer.name.startswith(f"{stream}_") or layer.name == stream
        ]

    def generator_variables(self, stream):
        """The trainable variables of G and C of `stream`: what the network step updates."""
        variables, seen = [], set()
        for layer in self.stream_layers(stream):
            for v in layer.trainable_variables:
                if id(v) not in seen:
                    seen.add(id(v))
                    variables.append(v)
        return variables

    def discriminator_variables(self, stream):
        """The trainable variables of D of `stream`: what the discriminator step updates."""
        if not self.use_sal:
            return []
        return list(self.discriminators[stream].trainable_variables)

    def adversarial_forward(self, inputs, training=False):
        """One forward pass: `(outputs, representations)`, the model's outputs and each V̄."""
        result = self._forward_graph(inputs, training=training)
        return result["outputs"], result.get("representations", {})

    def representations(self, inputs):
        """The multi-level representation V̄ (Eq. 2) of every stream, in inference mode.

        Returns:
            A dict stream -> `(batch, semantic_dim)` tensor. Empty for the
            baseline (`use_mpa=False, use_sal=False`), which has no V̄.
        """
        self._check_inputs(inputs)
        return self.adversarial_forward(inputs, training=False)[1]

    def semantics(self, labels):
        """The label semantics `S = encoder(y)` (Eq. 8) of integer labels `(batch,)`."""
        if not self.use_sal:
            raise ValueError("This model has no semantic encoder (use_sal=False).")
        return self._semantics(labels)

    def level_weights(self, stream):
        """The level weights alpha of `stream` (Eq. 2) as a NumPy array that sums to one."""
        if stream not in self.streams:
            raise ValueError(
                f"Expected stream to be one of {self.streams}. Received: stream={stream!r}"
            )
        if not self.use_mpa:
            raise ValueError(
                "Level weights exist with use_mpa=True only (the multi-level representation)."
            )
        return self.get_layer(f"{stream}_level_weights").level_weights()

    # --- Inference model and export -------------------------------------------------------
    def inference_model(self):
        """A plain functional model of the inference path (shared weights; no D, no encoder)."""
        # The dict structures (not the flat lists): the export serves {"rgb": ...} as the model.
        return keras.Model(self._inputs_struct, self._outputs_struct, name=f"{self.name}_inference")

    def export(self, filepath, format="tf_saved_model", verbose=None, **kwargs):
        """Exports the inference path (`inference_model()`): no discriminator, no encoder."""
        return self.inference_model().export(filepath, format=format, verbose=verbose, **kwargs)

    # --- Config ----------------------------------------------------------------------------
    def get_config(self):
        return {
            **super().get_config(),
            "name": self.name,
            "trainable": self.trainable,
            "num_classes": self.num_classes,
            "streams": list(self.streams),
            "backbone": self.backbone,
            "image_size": self.image_size,
            "num_segments": self.num_segments,
            "diff_length": self.diff_length,
            "use_mpa": self.use_mpa,
            "use_sal": self.use_sal,
            "semantic_dim": self.semantic_dim,
            "semantic_hidden_dim": self.semantic_hidden_dim,
            "mpa_scales": list(self.mpa_scales),
            "mpa_residual": self.mpa_residual,
            "discriminator_units": list(self.discriminator_units),
            "adversarial_weight": self.adversarial_weight,
            "dropout": self.dropout,
            "consensus": self.consensus,
            "fusion_weights": list(self.fusion_weights),
            "synchronized": self.synchronized,
        }

    @property
    def stream(self):
        """The former `stream` argument: `"two_stream"`, `"spatial"` or `"temporal"`."""
        return "two_stream" if len(self.streams) > 1 else self.streams[0]

    @classmethod
    def from_config(cls, config):
        # The encoder's trained weights come from the saved file (or set_weights in rebuild()).
        return cls(**config, semantic_encoder=None)


def build_mpa_sal(
    num_classes,
    *,
    streams=("spatial", "temporal"),
    backbone="resnet101",
    image_size=224,
    num_segments=3,
    diff_length=5,
    use_mpa=True,
    use_sal=True,
    semantic_dim=256,
    semantic_hidden_dim=None,
    mpa_scales=(1, 2, 4),
    mpa_residual=True,
    discriminator_units=(256, 256),
    adversarial_weight=1.0,
    dropout=0.8,
    consensus="avg",
    fusion_weights=(1.0, 1.0),
    synchronized=False,
    logits=False,
    semantic_encoder="train",
    spatial_weights=None,
    temporal_weights=None,
    dtype=None,
    name=None,
    **deprecated,
):
    """Builds the RGB-only two-stream network with MPA and SAL.

    The arguments are `MPASAL`'s (see `keras_twostream.models.mpa_sal.MPASAL`)
    but for `semantic_encoder`; `ABLATIONS` maps the rows of Table 3 to
    `use_mpa` / `use_sal`. `**deprecated` takes the former names `stream`,
    `spatial_dropout`, `temporal_dropout` and `weights` (the weights of every
    backbone: use `spatial_weights` and `temporal_weights`).

    Args:
        semantic_encoder: `"train"` (the default: train the semantic
            autoencoder with `train_semantic_encoder(num_classes, semantic_dim,
            seed=0, hidden_dim=semantic_hidden_dim)` and freeze its encoder in
            the model), a trained encoder, or `None`. Unused without `use_sal`.

    Returns:
        An `MPASAL` model; `compile()` then `fit()` runs Algorithm 1.

    Example:

    >>> from keras_twostream.models.mpa_sal import ABLATIONS, build_mpa_sal
    >>> model = build_mpa_sal(101, backbone="resnet101", **ABLATIONS["mpa_sal"])  # doctest: +SKIP
    >>> model.compile(steps_per_epoch=len(train_ds))  # doctest: +SKIP
    >>> model.fit(train_ds, epochs=120)  # the paper's temporal schedule  # doctest: +SKIP
    """
    if "weights" in deprecated:
        weights = deprecated.pop("weights")
        if spatial_weights is not None or temporal_weights is not None:
            raise ValueError(
                f"build_mpa_sal: got both weights={weights!r} and spatial_weights / "
                "temporal_weights; pass spatial_weights and temporal_weights only"
            )
        warnings.warn(
            "build_mpa_sal: the argument `weights` is deprecated and will be removed; use "
            "`spatial_weights` and `temporal_weights` (the names every builder uses).",
            DeprecationWarning,
            stacklevel=2,
        )
        spatial_weights = temporal_weights = weights
    if isinstance(semantic_encoder, str) and semantic_encoder == "train":
        semantic_encoder = None
        if use_sal:
            semantic_encoder = train_semantic_encoder(
                num_classes, semantic_dim, seed=0, hidden_dim=semantic_hidden_dim
            )
    return MPASAL(
        num_classes,
        streams=streams,
        backbone=backbone,
        image_size=image_size,
        num_segments=num_segments,
        diff_length=diff_length,
        use_mpa=use_mpa,
        use_sal=use_sal,
        semantic_dim=semantic_dim,
        semantic_hidden_dim=semantic_hidden_dim,
        mpa_scales=mpa_scales,
        mpa_residual=mpa_residual,
        discriminator_units=discriminator_units,
        adversarial_weight=adversarial_weight,
        dropout=dropout,
        consensus=consensus,
        fusion_weights=fusion_weights,
        synchronized=synchronized,
        logits=logits,
        semantic_encoder=semantic_encoder,
        spatial_weights=spatial_weights,
        temporal_weights=temporal_weights,
        dtype=dtype,
        name=name,
        **deprecated,
    )
