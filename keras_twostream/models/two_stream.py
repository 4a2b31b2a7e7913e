"""Two-Stream ConvNets (Simonyan & Zisserman, NIPS 2014).

A spatial ConvNet on RGB frames and a temporal ConvNet on L stacked optical
flow fields (2L channels, Eq. 1), each ending in a softmax, fused late by
averaging their class scores (Sect. 2). Multi-task learning (Sect. 4) gives a
stream one softmax head per dataset, each with its own loss computed only on
that dataset's samples; the training loss is their sum.

TSN-style segments are supported as an extension (K=1 is the paper): each of K
segments goes through the same stream, and the segmental consensus averages
the K class scores before the softmax (Wang et al. 2016, Eq. 1).
"""

import keras

from keras_twostream.layers import FoldSegments, ScoreFusion, SegmentConsensus, UnfoldSegments
from keras_twostream.models._validation import _renamed_dropout
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


def _normalize_num_classes(num_classes):
    """Returns an ordered dict task -> classes; a plain int is the task "default"."""
    if isinstance(num_classes, dict):
        tasks = dict(num_classes)
        if not tasks:
            raise ValueError("Expected num_classes to name at least one task. Received: {}")
    elif isinstance(num_classes, int) and not isinstance(num_classes, bool):
        tasks = {"default": num_classes}
    else:
        raise ValueError(
            "Expected num_classes to be an int, or a dict of task name -> int for multi-task "
            f"learning. Received: num_classes={num_classes!r}"
        )
    for task, n in tasks.items():
        if not isinstance(n, int) or isinstance(n, bool) or n < 2:
            raise ValueError(
                f"Expected at least 2 classes per task. Received: num_classes[{task!r}]={n!r}"
                if task != "default"
                else f"Expected num_classes >= 2. Received: num_classes={n!r}"
            )
        if not str(task).isidentifier():
            raise ValueError(
                f"Task names must be identifiers (they name outputs). Received: {task!r}"
            )
    return tasks


def output_name(stream, task, primary):
    """Output of `stream` for `task`: the primary task has the plain name."""
    return stream if task == primary else f"{stream}_{task}"


def apply_stream_heads(features, tasks, num_segments, consensus, dropout, prefix):
    """Classifier heads of one stream: dropout, one linear layer per task, consensus.

    Args:
        features: `(B*K, D)` per-segment features.

    Returns:
        dict task -> `(B, classes)` logits after the segmental consensus.
    """
    x = keras.layers.Dropout(dropout, name=f"{prefix}_dropout")(features)
    logits = {}
    for task, classes in tasks.items():
        suffix = "" if len(tasks) == 1 else f"_{task}"
        y = keras.layers.Dense(classes, name=f"{prefix}{suffix}_classifier")(x)  # [B*K, n]
        y = UnfoldSegments(num_segments, name=f"{prefix}{suffix}_unfold")(y)  # -> [B, K, n]
        logits[task] = SegmentConsensus(consensus, name=f"{prefix}{suffix}_consensus")(
            y
        )  # -> [B, n]
    return logits


def head_applies_dropout(backbone):
    """True when the backbone's own head (VGG-16 / CNN-M-2048 fc layers) ends in dropout."""
    head = dict(backbone.blocks).get("head")
    return head is not None and isinstance(head.layers[-1], keras.layers.Dropout)


@keras.saving.register_keras_serializable(package="keras_twostream")
class TwoStream(VideoClassifier):
    """The two-stream ConvNet of Simonyan & Zisserman (2014).

    Inputs are a dict `{"rgb": (B, K, H, W, 3), "flow": (B, K, H, W, 2L)}` and
    outputs a dict of softmax probabilities `{"spatial", "temporal", "fused"}`.
    The two streams share no weights and `"fused"` carries no loss, so training
    the model with `compile()` defaults is training the two streams
    independently, as in the paper, in one `fit`.

    Args:
        num_classes: number of classes, or for multi-task learning (Sect. 4)
            a dict task name -> number of classes, e.g.
            `{"hmdb51": 51, "ucf101": 101}`. The first task is the primary one
            and its outputs have the plain names; the others are suffixed
            (`"temporal_ucf101"`). Labels for multi-task training are a dict
            keyed by task, `-1` where a sample belongs to another dataset.
        backbone: a name in `keras_twostream.backbones.BACKBONES`:
            `"cnn_m_2048"` (the paper's network), `"vgg16"`, `"resnet50"`,
            `"resnet101"` or `"tiny"`. Or a `keras_twostream.backbones.Backbone`
            instance: its architecture and weights initialise both streams
            (the other stream's first convolution adapted to its channels,
            `keras_twostream.models.contract.get_stream_backbone`).
        image_size: input height and width (224 in the paper).
        num_segments: K, segments per clip (1 in the paper).
        flow_length: L, stacked flow fields (10 in the paper, Sect. 6).
        dropout: dropout before the classifiers: one rate for both streams
            or a `(spatial, temporal)` pair; `(0.5, 0.9)`, the best
            pre-trained spatial setting of Table 1a and the from-scratch
            temporal setting of Sect. 6 (formerly `spatial_dropout` /
            `temporal_dropout`, still accepted with a `DeprecationWarning`).
        consensus: `"avg"` or `"max"` segmental consensus over K.
        fusion_weights: weights of the spatial and temporal scores in
            `"fused"`; `(1, 1)` is the paper's averaging.
        synchronized: synchronised batch normalisation across the replicas of a
            `tf.distribute` strategy in both backbones (TensorFlow only); with
            `False` each replica normalises with its own batch statistics.
        streams: the streams to build, `("spatial", "temporal")` (the
            default) or one of them. A one-stream model takes only its input
            (`"rgb"` or `"flow"`) and has only that stream's outputs, no
            `"fused"`: the paper trains the two nets separately (Sects. 5-6)
            and fuses their saved scores afterwards (`keras-twostream fuse`,
            `keras_twostream.evaluation.fusion`); `train --stream` builds it.
        logits: `False` (the default): the outputs are probabilities;
            `True`: logits whose softmax is that probability (`"fused"`
            becomes the log of the averaged probabilities), for losses
            `from_logits=True`, distillation or temperature scaling;
            `compile()` follows it.
        spatial_weights: `None`, `"imagenet"` or a weights file for the
            spatial backbone (only used when building; not saved in config).
        temporal_weights: the same for the temporal backbone; RGB weights are
            adapted to 2L channels by `adapt_input_channels`.
        dtype: the Keras dtype policy of the model's layers (`None`: the
            global policy; `"mixed_float16"`, `"mixed_bfloat16"`, ...).
            Outputs stay float32.
        name: the model's name.
        **kwargs: other `keras.Model` keyword arguments (`trainable`), and
            the former argument names.

    Example:

    >>> import numpy as np
    >>> from keras_twostream import build_two_stream
    >>> model = build_two_stream(num_classes=5, backbone="tiny", image_size=64, flow_length=2)
    >>> model.compile()
    >>> x = {"rgb": np.zeros((2, 1, 64, 64, 3), "float32"),
    ...      "flow": np.zeros((2, 1, 64, 64, 4), "float32")}
    >>> sorted(model.predict(x, verbose=0))
    ['fused', 'spatial', 'temporal']
    """

    @builds_with_dtype
    def __init__(
        self,
        num_classes,
        *,
        backbone="cnn_m_2048",
        image_size=224,
        num_segments=1,
        flow_length=10,
        dropout=(0.5, 0.9),
        consensus="avg",
        fusion_weights=(1.0, 1.0),
        synchronized=False,
        streams=STREAMS,
        logits=False,
        spatial_weights=None,
        temporal_weights=None,
        dtype=None,
        name="two_stream",
        **kwargs,
    ):
        backbone_source, backbone = backbone, backbone_name(backbone)
        tasks = _normalize_num_classes(num_classes)
        streams = check_streams(streams)
        primary = next(iter(tasks))
        for arg, value in (
            ("image_size", image_size),
            ("num_segments", num_segments),
            ("flow_length", flow_length),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"Expected {arg} to be a positive integer. Received: {arg}={value!r}"
                )
        dropout = _renamed_dropout(kwargs, dropout, (0.5, 0.9), "TwoStream")
        dropouts = check_dropout(dropout)
        logits = check_logits(logits)

        # === Layers ===
        modality = {"spatial": "rgb", "temporal": "flow"}
        channels = {"spatial": 3, "temporal": 2 * flow_length}
        init = {"spatial": spatial_weights, "temporal": temporal_weights}
        backbones = {
            stream: get_stream_backbone(
                backbone_source,
                input_shape=(image_size, image_size, channels[stream]),
                weights=init[stream],
                stream=stream,
                dropout=dropouts[stream],
                synchronized=synchronized,
                name=f"{stream}_backbone",
            )
            for stream in streams
        }

        # === Functional Model ===
        inputs = {
            modality[stream]: keras.Input(
                (num_segments, image_size, image_size, channels[stream]), name=modality[stream]
            )
            for stream in streams
        }
        stream_logits = {}
        for stream in streams:
            net = backbones[stream]
            x = FoldSegments(name=f"{stream}_fold")(
                inputs[modality[stream]]
            )  # [B, K, H, W, C] -> [B*K, H, W, C]
            features = net(x)["features"]  # -> [B*K, D]
            # VGG-16 and CNN-M-2048 already end in fc7 + dropout (Fig. 1): no second dropout.
            head_dropout = 0.0 if head_applies_dropout(net) else dropouts[stream]
            stream_logits[stream] = apply_stream_heads(
                features, tasks, num_segments, consensus, head_dropout, stream
            )
        outputs = {}
        for task in tasks:
            probs = []
            for stream in streams:
                key = output_name(stream, task, primary)
                outputs[key], probabilities = apply_class_output(
                    stream_logits[stream][task], key, logits
                )
                probs.append(probabilities)
            if len(streams) > 1:
                fused = output_name("fused", task, primary)
                outputs[fused] = ScoreFusion(
                    fusion_weights, log_scores=logits, dtype="float32", name=fused
                )(probs)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.backbone = backbone
        self.image_size = image_size
        self.num_segments = num_segments
        self.flow_length = flow_length
        self.dropout = dropout_config(dropouts)
        self.consensus = consensus
        self.fusion_weights = tuple(float(w) for w in fusion_weights)
        self.synchronized = synchronized
        self.streams = streams
        self.spatial_backbone = backbones.get("spatial")
        self.temporal_backbone = backbones.get("temporal")
        named = (*streams, "fused") if len(streams) > 1 else streams
        label_map = {output_name(s, t, primary): t for t in tasks for s in named}
        self._set_contract(
            {name: tuple(t.shape[1:]) for name, t in inputs.items()},
            label_map,
            [output_name(s, t, primary) for t in tasks for s in streams],
            logits=logits,
            dtype=dtype,
        )

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
            "dropout": self.dropout,
            "consensus": self.consensus,
            "fusion_weights": list(self.fusion_weights),
            "synchronized": self.synchronized,
            "streams": list(self.streams),
        }


def build_two_stream(
    num_classes,
    *,
    backbone="cnn_m_2048",
    image_size=224,
    num_segments=1,
    flow_length=10,
    dropout=(0.5, 0.9),
    consensus="avg",
    fusion_weights=(1.0, 1.0),
    synchronized=False,
    streams=STREAMS,
    logits=False,
    spatial_weights=None,
    temporal_weights=None,
    dtype=None,
    name="two_stream",
    **deprecated,
):
    """Builds the two-stream ConvNet of Simonyan & Zisserman (2014).

    The arguments are `TwoStream`'s (see `keras_twostream.models.TwoStream`);
    `**deprecated` takes the former names `spatial_dropout` /
    `temporal_dropout` (with a `DeprecationWarning`).

    Returns:
        A `TwoStream` model: inputs `{"rgb", "flow"}`, outputs
        `{"spatial", "temporal", "fused"}` class probabilities.

    Example:

    >>> from keras_twostream import build_two_stream
    >>> model = build_two_stream(num_classes=101, backbone="tiny", image_size=64)
    >>> sorted(model.output_names)  # doctest: +SKIP
    ['fused', 'spatial', 'temporal']
    """
    return TwoStream(
        num_classes,
        backbone=backbone,
        image_size=image_size,
        num_segments=num_segments,
        flow_length=flow_length,
        dropout=dropout,
        consensus=consensus,
        fusion_weights=fusion_weights,
        synchronized=synchronized,
        streams=streams,
        logits=logits,
        spatial_weights=spatial_weights,
        temporal_weights=temporal_weights,
        dtype=dtype,
        name=name,
        **deprecated,
    )
