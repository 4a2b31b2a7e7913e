"""Two-stream video classification with cross-modality attention (Chi et al., 2019).

Two branches, RGB (one frame per segment) and Flow (L = 5 stacked optical flow
fields, 2L channels), each a ResNet-50 run block by block in lockstep. After
some residual blocks (by default every other block of res3 and res4: five per
branch, Sect. 4.1) a `CrossModalityAttention` block in each branch queries
the other branch's feature map at the same point: the RGB branch attends over
the Flow branch and vice versa (Fig. 2). TSN framework (Sect. 4.2): the K
segments of a clip go through the same weights, and the K class scores of a
branch are averaged by `SegmentConsensus` (Eq. 6) before the softmax of the
cross-entropy loss (Eq. 7). Outputs are the RGB and Flow probabilities,
named `"spatial"` and `"temporal"` as in every two-stream model of the
library, and their weighted sum `"fused"` (Sect. 5.2: 5:1 toward the branch
trained last). The branches keep the paper's names in their layers
(`"rgb_*"`, `"flow_*"`), so checkpoints from before the renaming load.

The model trains branch by branch with `AlternatingSchedule` (Sect. 4.3);
see `keras_twostream.training.alternating`.

`build_non_local` is the baseline of Table 4 (rows 4-6): the same two ResNet-50
branches with self-attention (non-local) blocks at the CMA positions and no
cross-modality exchange.

`CMA3D` is the Sect. 5.6 variant: one 3-D CMA block after res4 of each branch
of a 3-D network, shown on a small pseudo-3-D ResNet (P3D, Qiu et al. 2017).
"""

import keras

from keras_twostream.backbones.p3d import TINY_3D_FILTERS, apply_p3d_block, apply_tiny_p3d_stem
from keras_twostream.layers.cross_modality_attention import CrossModalityAttention
from keras_twostream.layers.fold_segments import FoldSegments
from keras_twostream.layers.score_fusion import ScoreFusion
from keras_twostream.models._validation import (
    _check_num_classes,
    _check_positive_int,
    _renamed_argument,
)
from keras_twostream.models.base import VideoClassifier
from keras_twostream.models.contract import (
    STREAMS,
    apply_class_output,
    backbone_name,
    builds_with_dtype,
    check_dropout,
    check_logits,
    dropout_config,
    get_stream_backbone,
)
from keras_twostream.models.two_stream import apply_stream_heads, head_applies_dropout
from keras_twostream.training.alternating import AlternatingTrainingMixin

# The layer-name prefixes of the two branches (the paper's modality names).
BRANCHES = ("rgb", "flow")
# Branch (= output) name -> layer prefix: the outputs follow the library's vocabulary.
BRANCH_PREFIXES = {"spatial": "rgb", "temporal": "flow"}
# The names CMA's outputs and branches had before issue 19 (still accepted, with a warning).
FORMER_NAMES = {"rgb": "spatial", "flow": "temporal"}
NON_LOCAL_CHOICES = (False, True, "rgb", "spatial", "both")
DEFAULT_CMA_STAGES = ("res3", "res4")


def _check_fusion_weights(fusion_weights):
    try:
        weights = [float(w) for w in fusion_weights]
    except (TypeError, ValueError):
        weights = []
    if len(weights) != 2 or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(
            "Expected fusion_weights to be two non-negative numbers (RGB, Flow) with a positive "
            f"sum. Received: fusion_weights={fusion_weights!r}"
        )
    return tuple(weights)


def _stage_blocks(block_names, stage_ends):
    """Stage name -> the names of its blocks, from the stage ends in network order."""
    ends = sorted(stage_ends.items(), key=lambda item: block_names.index(item[1]))
    stages, start = {}, 0
    for stage, last in ends:
        stop = block_names.index(last) + 1
        stages[stage] = block_names[start:stop]
        start = stop
    return stages


def default_cma_blocks(block_names, stage_ends, stages=DEFAULT_CMA_STAGES):
    """The CMA positions of the paper: after every other residual block of res3 and res4.

    Counting back from the last block of each stage, so a stage's last block
    always has one. For ResNet-50 this gives the paper's five blocks (Sect.
    4.1, the setting of the non-local networks): after `conv3_block2`,
    `conv3_block4`, `conv4_block2`, `conv4_block4` and `conv4_block6`; for the
    tiny backbone (one block per stage) after `conv3_block1` and
    `conv4_block1`.

    Args:
        block_names: the backbone's block names in order (`[n for n, _ in backbone.blocks]`).
        stage_ends: stage name -> its last block (`backbone.stage_ends`).
        stages: the stages that get CMA blocks.

    Returns:
        The list of block names, in network order, after which a CMA block goes.
    """
    block_names = list(block_names)
    per_stage = _stage_blocks(block_names, stage_ends)
    chosen = []
    for stage in stages:
        if stage not in per_stage:
            raise ValueError(
                f"The backbone has no stage {stage!r} for the default CMA positions; its stages are "
                f"{sorted(per_stage)}. Pass cma_blocks=[block names] explicitly."
            )
        chosen += per_stage[stage][::-1][::2][::-1]
    return chosen


def _resolve_cma_blocks(cma_blocks, backbone):
    names = [name for name, _ in backbone.blocks]
    if cma_blocks is None:
        return default_cma_blocks(names, backbone.stage_ends)
    if isinstance(cma_blocks, str) or not all(isinstance(b, str) for b in cma_blocks):
        raise ValueError(
            f"Expected cma_blocks to be None or a list of block names. Received: cma_blocks={cma_blocks!r}"
        )
    cma_blocks = list(cma_blocks)
    maps = {name for name, block in backbone.blocks if len(block.output.shape) == 4}
    for name in cma_blocks:
        if name not in maps:
            raise ValueError(
                f"cma_blocks names {name!r}, which is not a block of the {backbone.architecture} backbone "
                f"ending in a feature map. Expected names among: {[n for n in names if n in maps]}"
            )
    if len(set(cma_blocks)) != len(cma_blocks):
        raise ValueError(f"cma_blocks names a block twice. Received: cma_blocks={cma_blocks}")
    return sorted(cma_blocks, key=names.index)


def _check_partition(model):
    """Every layer with variables belongs to exactly one branch, or is the fusion layer."""
    owners = {}
    for branch in model.branches:
        for layer in model.branch_layers(branch):
            owners.setdefault(id(layer), []).append(branch)
    for layer in model.layers:
        if (
            layer.weights
            and layer.name != model.fusion_layer_name
            and len(owners.get(id(layer), [])) != 1
        ):
            raise RuntimeError(
                f"Layer {layer.name!r} belongs to branches {owners.get(id(layer), [])}."
            )


def apply_probabilities(logits, fusion_weights, as_logits=False):
    """Softmax per branch and their weighted sum, `{"spatial", "temporal", "fused"}`.

    `logits` is keyed by layer prefix (`"rgb"`, `"flow"`); with `as_logits` the outputs are
    the logits (and `log` of the fused probabilities), see `models.contract`.
    """
    outputs, probabilities = {}, []
    for stream, prefix in BRANCH_PREFIXES.items():
        outputs[stream], probs = apply_class_output(logits[prefix], stream, as_logits)
        probabilities.append(probs)
    outputs["fused"] = ScoreFusion(
        fusion_weights, log_scores=as_logits, dtype="float32", name="fused"
    )(probabilities)
    return outputs


def _keep_former_layer_order(model, inputs, outputs):
    """Lists the layers in the order they had when the outputs were named "rgb" and "flow".

    A `.keras` file stores a functional model's layers by position, and Keras orders them by
    walking the graph from the outputs sorted by name: formerly `flow, fused, rgb`, now
    `fused, spatial, temporal`, which would hand the RGB backbone the Flow backbone's
    weights when loading a file saved before the renaming. The walk from the outputs in the
    former order (`temporal, fused, spatial`) gives the former layer list back.
    """
    former = keras.Model(inputs, [outputs["temporal"], outputs["fused"], outputs["spatial"]])
    model._operations = former._operations


class _BranchNames:
    """CMA's branches: named after their outputs, layers named after the paper's modalities."""

    BRANCH_ALIASES = FORMER_NAMES
    OUTPUT_ALIASES = FORMER_NAMES

    @property
    def branch_prefixes(self):
        return dict(BRANCH_PREFIXES)


@keras.saving.register_keras_serializable(package="keras_twostream")
class CMA(_BranchNames, AlternatingTrainingMixin, VideoClassifier):
    """The RGB + Flow model with cross-modality attention of Chi et al. (2019).

    Inputs are a dict `{"rgb": (B, K, H, W, 3), "flow": (B, K, H, W, 2L)}`
    (K TSN segments, one RGB frame and L stacked flow fields each, the RGB
    frame aligned with the first flow field) and outputs a dict of softmax
    probabilities `{"spatial", "temporal", "fused"}`: the RGB branch, the
    Flow branch and their weighted sum (before issue 19 the branch outputs
    were named `"rgb"` and `"flow"`; loss, metric and label dicts under those
    names still work, with a `DeprecationWarning`).

    Each branch is a backbone run block by block; after each block in
    `cma_blocks` the two branches exchange information: the RGB branch's
    CMA block takes queries from the RGB map and keys/values from the Flow
    map, and the Flow branch's the reverse, both from the maps before either
    block (Fig. 2). A segment's RGB map attends over the same segment's Flow
    map. Freshly built, every CMA block is an identity, so the model starts
    as two independent streams.

    The branches are `model.branches == ("spatial", "temporal")`, named
    after their outputs; their layers are named after the modality
    (`"rgb_*"`, `"flow_*"`, `model.branch_prefixes`), which is how the
    alternating schedule knows which variables a branch owns; the fusion
    layer `"fused"` belongs to neither. `compile()` defaults follow Sect. 4.4:
    SGD with learning rate 0.01, momentum 0.9, weight decay 5e-4, and a
    cross-entropy loss on `"spatial"` and `"temporal"`.

    Args:
        num_classes: number of classes.
        backbone: `"resnet50"` (the paper), `"resnet101"` or `"tiny"`; any
            name in `keras_twostream.backbones.BACKBONES` whose blocks end in
            feature maps works with explicit `cma_blocks`. Or a `keras_twostream.backbones.Backbone`
            instance: its architecture and weights initialise both streams
            (the other stream's first convolution adapted to its channels,
            `keras_twostream.models.contract.get_stream_backbone`).
        image_size: input height and width (224 in the paper).
        num_segments: K, TSN segments per clip (3 in the paper).
        flow_length: L, stacked flow fields per segment (5 in the paper).
        cma_blocks: names of the backbone blocks after which a CMA block is
            inserted in each branch. `None` (the default) puts one after every
            other residual block of res3 and res4, counted back from each
            stage's end (`default_cma_blocks`): five per branch for ResNet-50,
            two for the tiny backbone.
        pool_size: the max-pooling before keys and values of every CMA block
            (2 in the paper; `None` for none).
        non_local: insert non-local (self-attention) blocks (Wang et al.,
            CVPR 2018) at the CMA positions, just before the CMA blocks:
            `False` (none), `True`, `"spatial"` or `"rgb"` (in the RGB branch only, as in
            Table 4's CMA rows, "the Flow branch is the same to the Flow
            modality of the ResNet50 model"), or `"both"` (in each branch:
            Table 4's "ResNet50 + non-local" rows). A non-local block is a
            `CrossModalityAttention` whose queries, keys and values come from
            the same map, "a special case of CMA" (Sect. 3.1).
        cross_modality: insert the CMA blocks (`True`, the paper's model);
            `False` keeps the two branches independent (a TSN two-stream
            ResNet, or with `non_local="both"` the non-local baseline of
            Table 4; see `build_non_local`).
        dropout: dropout before each branch's classifier (0.7, Sect. 4.4):
            one rate, or a `(spatial, temporal)` pair.
        consensus: `"avg"` (Eq. 6) or `"max"` segmental consensus.
        fusion_weights: weights of the RGB and Flow probabilities in
            `"fused"`; `(5, 1)` after training the RGB branch (Sect. 5.2).
        synchronized: synchronised batch normalisation in backbones and CMA
            blocks (Sect. 4.4; TensorFlow only).
        spatial_weights: `None`, `"imagenet"` or a weights file for the RGB
            backbone (used when building; not saved in the config). Formerly
            `rgb_weights` (still accepted with a `DeprecationWarning`).
        temporal_weights: the same for the Flow backbone (formerly
            `flow_weights`); RGB weights are adapted
            to 2L input channels by replicating the mean of the first
            convolution over its RGB channels (Sect. 4.1,
            `keras_twostream.backbones.adapt_input_channels`).
        logits: `True` makes the outputs logits whose softmax is the
            `logits=False` output (`"fused"`: the log of the fused
            probabilities); `compile()` follows it.
        dtype: the Keras dtype policy of the layers (`None`: the global one).
        name: the model's name.
        **kwargs: other `keras.Model` keyword arguments (`trainable`) and the
            former names `rgb_weights` / `flow_weights`.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.models.cma import build_cma
    >>> model = build_cma(num_classes=5, backbone="tiny", image_size=64, num_segments=2, flow_length=2)
    >>> x = {"rgb": np.zeros((1, 2, 64, 64, 3), "float32"),
    ...      "flow": np.zeros((1, 2, 64, 64, 4), "float32")}
    >>> sorted(model.predict(x, verbose=0))
    ['fused', 'spatial', 'temporal']
    >>> model.cma_block_names
    ['conv3_block1', 'conv4_block1']
    """

    @builds_with_dtype
    def __init__(
        self,
        num_classes,
        *,
        backbone="resnet50",
        image_size=224,
        num_segments=3,
        flow_length=5,
        cma_blocks=None,
        pool_size=2,
        non_local=False,
        cross_modality=True,
        dropout=0.7,
        consensus="avg",
        fusion_weights=(5.0, 1.0),
        synchronized=False,
        logits=False,
        spatial_weights=None,
        temporal_weights=None,
        dtype=None,
        name="cma",
        **kwargs,
    ):
        backbone_source, backbone = backbone, backbone_name(backbone)
        num_classes = _check_num_classes(num_classes)
        image_size = _check_positive_int(image_size, "image_size")
        num_segments = _check_positive_int(num_segments, "num_segments")
        flow_length = _check_positive_int(flow_length, "flow_length")
        dropouts = check_dropout(dropout)
        logits = check_logits(logits)
        fusion_weights = _check_fusion_weights(fusion_weights)
        if not any(
            non_local is c or (isinstance(c, str) and non_local == c) for c in NON_LOCAL_CHOICES
        ):
            raise ValueError(
                f"Expected non_local to be one of {NON_LOCAL_CHOICES}. Received: non_local={non_local!r}"
            )
        if not isinstance(cross_modality, bool):
            raise ValueError(
                f"Expected cross_modality to be a bool. Received: cross_modality={cross_modality!r}"
            )
        non_local_branches = {
            False: (),
            True: ("rgb",),
            "rgb": ("rgb",),
            "spatial": ("rgb",),
            "both": BRANCHES,
        }[non_local]
        spatial_weights = _renamed_argument(
            kwargs, "rgb_weights", "spatial_weights", spatial_weights, None, "CMA"
        )
        temporal_weights = _renamed_argument(
            kwargs, "flow_weights", "temporal_weights", temporal_weights, None, "CMA"
        )

        # === Layers ===
        backbones = {
            "rgb": get_stream_backbone(
                backbone_source,
                input_shape=(image_size, image_size, 3),
                weights=spatial_weights,
                synchronized=synchronized,
                name="rgb_backbone",
            ),
            "flow": get_stream_backbone(
                backbone_source,
                input_shape=(image_size, image_size, 2 * flow_length),
                weights=temporal_weights,
                stream="temporal",
                synchronized=synchronized,
                name="flow_backbone",
            ),
        }
        positions = _resolve_cma_blocks(cma_blocks, backbones["rgb"])

        def attention(name):
            return CrossModalityAttention(pool_size=pool_size, synchronized=synchronized, name=name)

        # === Functional Model ===
        inputs = {
            "rgb": keras.Input((num_segments, image_size, image_size, 3), name="rgb"),
            "flow": keras.Input(
                (num_segments, image_size, image_size, 2 * flow_length), name="flow"
            ),
        }
        # [B, K, H, W, C] -> [B*K, H, W, C]: segments share weights (TSN).
        x = {branch: FoldSegments(name=f"{branch}_fold")(inputs[branch]) for branch in BRANCHES}
        blocks = zip(backbones["rgb"].blocks, backbones["flow"].blocks, strict=True)
        for (block_name, rgb_block), (_, flow_block) in blocks:
            x = {"rgb": rgb_block(x["rgb"]), "flow": flow_block(x["flow"])}
            if block_name in positions:
                # Table 4: non-local blocks before the CMA blocks (RGB branch only, or both).
                for branch in non_local_branches:
                    x[branch] = attention(f"{branch}_nonlocal_{block_name}")(x[branch])
                if cross_modality:
                    # Fig. 1-2: each branch queries the other; both read the maps before either.
                    x = {
                        "rgb": attention(f"rgb_cma_{block_name}")(x["rgb"], x["flow"]),
                        "flow": attention(f"flow_cma_{block_name}")(x["flow"], x["rgb"]),
                    }
        tasks = {"default": num_classes}
        branch_logits = {}
        for stream, branch in BRANCH_PREFIXES.items():
            rate = dropouts[stream]
            branch_dropout = 0.0 if head_applies_dropout(backbones[branch]) else rate
            # Dropout, classifier per segment, Eq. (6) consensus over the K segments -> [B, classes].
            branch_logits[branch] = apply_stream_heads(
                x[branch], tasks, num_segments, consensus, branch_dropout, branch
            )["default"]
        outputs = apply_probabilities(branch_logits, fusion_weights, logits)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        _keep_former_layer_order(self, inputs, outputs)

        # === Config ===
        self.num_classes = num_classes
        self.backbone = backbone
        self.image_size = image_size
        self.num_segments = num_segments
        self.flow_length = flow_length
        self.cma_blocks = None if cma_blocks is None else list(cma_blocks)
        self.pool_size = pool_size
        self.non_local = non_local
        self.cross_modality = cross_modality
        self.dropout = dropout_config(dropouts)
        self.consensus = consensus
        self.fusion_weights = fusion_weights
        self.synchronized = synchronized
        self.branches = STREAMS
        self.cma_block_names = positions
        self._set_contract(
            {name: tuple(t.shape[1:]) for name, t in inputs.items()},
            {"spatial": "default", "temporal": "default", "fused": "default"},
            list(STREAMS),
            logits=logits,
            dtype=dtype,
        )
        _check_partition(self)

    def default_optimizer(self):
        """SGD, learning rate 0.01, coupled L2 weight decay 5e-4 (Sect. 4.4), momentum 0.9 (TSN)."""
        from keras_twostream.training.coupled_sgd import CoupledSGD

        return CoupledSGD(learning_rate=1e-2, momentum=0.9, weight_decay=5e-4)

    def cma_layers(self, branch):
        """The CMA blocks of `branch` in network order (non-local blocks excluded)."""
        prefix = self.branch_prefixes[self._check_branch(branch)]
        if not self.cross_modality:
            return []
        return [self.get_layer(f"{prefix}_cma_{name}") for name in self.cma_block_names]

    # Sect. 4.1: flow divided by its bound, to [-1, 1]; no mean subtraction is mentioned.
    FLOW_DATA_DEFAULTS = {"flow_normalization": "bound", "mean_subtract_flow": False}

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
            "cma_blocks": self.cma_blocks,
            "pool_size": self.pool_size,
            "non_local": self.non_local,
            "cross_modality": self.cross_modality,
            "dropout": self.dropout,
            "consensus": self.consensus,
            "fusion_weights": list(self.fusion_weights),
            "synchronized": self.synchronized,
        }


def build_cma(
    num_classes,
    *,
    backbone="resnet50",
    image_size=224,
    num_segments=3,
    flow_length=5,
    cma_blocks=None,
    pool_size=2,
    non_local=False,
    cross_modality=True,
    dropout=0.7,
    consensus="avg",
    fusion_weights=(5.0, 1.0),
    synchronized=False,
    logits=False,
    spatial_weights=None,
    temporal_weights=None,
    dtype=None,
    name="cma",
    **deprecated,
):
    """Builds the RGB + Flow model with cross-modality attention (Chi et al., 2019).

    The arguments are `CMA`'s (see `keras_twostream.models.CMA`);
    `**deprecated` takes the former names `rgb_weights` / `flow_weights`.
    Train it branch by branch with
    `keras_twostream.training.alternating.AlternatingSchedule`.

    Returns:
        A `CMA` model: inputs `{"rgb", "flow"}`, outputs `{"spatial",
        "temporal", "fused"}` class probabilities.

    Example:

    >>> from keras_twostream.models.cma import build_cma
    >>> from keras_twostream.training.alternating import AlternatingSchedule
    >>> model = build_cma(num_classes=101)  # two ResNet-50, 5 CMA blocks each, K=3, L=5  # doctest: +SKIP
    >>> model.compile()  # doctest: +SKIP
    >>> model.fit(train_ds, epochs=60, callbacks=[AlternatingSchedule(30)])  # doctest: +SKIP
    """
    return CMA(
        num_classes,
        backbone=backbone,
        image_size=image_size,
        num_segments=num_segments,
        flow_length=flow_length,
        cma_blocks=cma_blocks,
        pool_size=pool_size,
        non_local=non_local,
        cross_modality=cross_modality,
        dropout=dropout,
        consensus=consensus,
        fusion_weights=fusion_weights,
        synchronized=synchronized,
        logits=logits,
        spatial_weights=spatial_weights,
        temporal_weights=temporal_weights,
        dtype=dtype,
        name=name,
        **deprecated,
    )


def build_non_local(
    num_classes,
    *,
    backbone="resnet50",
    image_size=224,
    num_segments=3,
    flow_length=5,
    cma_blocks=None,
    pool_size=2,
    dropout=0.7,
    consensus="avg",
    fusion_weights=(1.0, 1.0),
    synchronized=False,
    logits=False,
    spatial_weights=None,
    temporal_weights=None,
    dtype=None,
    name="non_local",
    **deprecated,
):
    """Builds the ResNet-50 + non-local baseline of the CMA paper (Table 4, rows 4-6).

    Two independent branches, RGB and Flow, each with a non-local block
    (Wang et al., CVPR 2018) wherever `build_cma` puts a CMA block ("we add five
    blocks to ResNet50 in res3 and res4, the same numbers and locations as
    that of the CMA blocks", Sect. 5.5), and no cross-modality exchange. The
    outputs `"rgb"`, `"flow"` and `"fused"` are the table's RGB, Flow and
    RGB + Flow rows. With independent branches, joint training (`fit`
    without `AlternatingSchedule`) trains each branch on its own loss.
    `fusion_weights` defaults to `(1, 1)`: the table fuses the two
    modalities of the baseline like a two-stream network (the paper does
    not give the weights). The arguments are `CMA`'s (see
    `keras_twostream.models.CMA`), with `non_local="both"` and
    `cross_modality=False` fixed.

    Returns:
        A `CMA` model named `"non_local"`.

    Example:

    >>> from keras_twostream.models.cma import build_non_local
    >>> model = build_non_local(5, backbone="tiny", image_size=64, num_segments=2, flow_length=2)
    >>> sorted(layer.name for layer in model.layers if "nonlocal" in layer.name)
    ['flow_nonlocal_conv3_block1', 'flow_nonlocal_conv4_block1', 'rgb_nonlocal_conv3_block1', 'rgb_nonlocal_conv4_block1']
    >>> model.cma_layers("rgb")
    []
    """
    return CMA(
        num_classes,
        backbone=backbone,
        image_size=image_size,
        num_segments=num_segments,
        flow_length=flow_length,
        cma_blocks=cma_blocks,
        pool_size=pool_size,
        non_local="both",
        cross_modality=False,
        dropout=dropout,
        consensus=consensus,
        fusion_weights=fusion_weights,
        synchronized=synchronized,
        logits=logits,
        spatial_weights=spatial_weights,
        temporal_weights=temporal_weights,
        dtype=dtype,
        name=name,
        **deprecated,
    )


# --- The 3-D variant (Sect. 5.6; its P3D blocks are in keras_twostream.backbones.p3d) -------------
@keras.saving.register_keras_serializable(package="keras_twostream")
class CMA3D(_BranchNames, AlternatingTrainingMixin, VideoClassifier):
    """The 3-D CMA model of Sect. 5.6 on a small pseudo-3-D ResNet.

    Two 3-D branches, RGB clips `(B, T, H, W, 3)` and optical flow clips
    `(B, T, H, W, 2)` (one flow field per frame), each a tiny P3D ResNet
    (stem, res2..res5, 1x3x3 spatial and 3x1x1 temporal convolutions). As in
    the paper (P3D ResNet-152: "we only add one CMA block after the last
    layer in res4"), each branch has one 3-D CMA block after res4, whose
    queries attend over all space-time positions of the other branch's res4
    map. Outputs `{"spatial", "temporal", "fused"}` probabilities (the RGB
    and Flow branches; formerly `"rgb"`, `"flow"`); the alternating
    schedule applies as for `CMA`.

    Args:
        num_classes: number of classes.
        backbone: `"tiny"`, the tiny P3D ResNet (the only 3-D backbone of
            the library; the paper uses P3D ResNet-152).
        image_size: input height and width.
        num_segments: T, frames per clip (formerly `num_frames`, still
            accepted with a `DeprecationWarning`).
        flow_length: flow fields per frame, `2 * flow_length` channels (1:
            the x and y of one field per frame; formerly `flow_channels=2`,
            still accepted with a `DeprecationWarning`).
        cma_stages: the stages after which a CMA block goes (`("res4",)`).
        train_from_cma: freeze (`trainable=False`, inference-mode BN) every
            layer before the first CMA block, training "the CMA block and all
            layers behind it" as the paper does with a pretrained P3D.
        dropout: dropout before each classifier: one rate, or a
            `(spatial, temporal)` pair.
        fusion_weights: weights of the RGB and Flow probabilities in "fused".
        synchronized: synchronised batch normalisation (TensorFlow only).
        logits: `True` makes the outputs logits (see `CMA`).
        dtype: the Keras dtype policy of the layers (`None`: the global one).
        name: the model's name.
        **kwargs: other `keras.Model` keyword arguments (`trainable`) and the
            former names `num_frames`, `flow_channels`.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.models.cma import build_cma_3d
    >>> model = build_cma_3d(num_classes=4, num_segments=4, image_size=32)
    >>> x = {"rgb": np.zeros((1, 4, 32, 32, 3), "float32"),
    ...      "flow": np.zeros((1, 4, 32, 32, 2), "float32")}
    >>> model.predict(x, verbose=0)["fused"].shape
    (1, 4)
    """

    @builds_with_dtype
    def __init__(
        self,
        num_classes,
        *,
        backbone="tiny",
        image_size=112,
        num_segments=8,
        flow_length=1,
        cma_stages=("res4",),
        train_from_cma=False,
        dropout=0.5,
        fusion_weights=(5.0, 1.0),
        synchronized=False,
        logits=False,
        dtype=None,
        name="cma_3d",
        **kwargs,
    ):
        num_classes = _check_num_classes(num_classes)
        if backbone != "tiny":
            raise ValueError(
                "Expected backbone='tiny' (the tiny pseudo-3-D ResNet, the only 3-D backbone). "
                f"Received: backbone={backbone!r}"
            )
        num_segments = _renamed_argument(
            kwargs, "num_frames", "num_segments", num_segments, 8, "CMA3D"
        )
        num_frames = _check_positive_int(num_segments, "num_segments")  # T frames of a 3-D clip
        image_size = _check_positive_int(image_size, "image_size")
        if "flow_channels" in kwargs:
            channels = kwargs["flow_channels"]
            if isinstance(channels, bool) or not isinstance(channels, int) or channels % 2:
                raise ValueError(
                    "Expected flow_channels (deprecated: use flow_length, channels / 2) to be an "
                    f"even number of channels. Received: flow_channels={channels!r}"
                )
            kwargs["flow_channels"] = channels // 2
        flow_length = _renamed_argument(
            kwargs, "flow_channels", "flow_length", flow_length, 1, "CMA3D"
        )
        flow_length = _check_positive_int(flow_length, "flow_length")
        flow_channels = 2 * flow_length
        dropouts = check_dropout(dropout)
        logits = check_logits(logits)
        fusion_weights = _check_fusion_weights(fusion_weights)
        stages = [f"res{i}" for i in range(2, 6)]
        if (
            isinstance(cma_stages, str)
            or not cma_stages
            or any(s not in stages for s in cma_stages)
        ):
            raise ValueError(
                f"Expected cma_stages to be a non-empty list of stages among {stages}. "
                f"Received: cma_stages={cma_stages!r}"
            )
        if not isinstance(train_from_cma, bool):
            raise ValueError(
                f"Expected train_from_cma to be a bool. Received: train_from_cma={train_from_cma!r}"
            )

        # === Functional Model ===
        inputs = {
            "rgb": keras.Input((num_frames, image_size, image_size, 3), name="rgb"),
            "flow": keras.Input((num_frames, image_size, image_size, flow_channels), name="flow"),
        }
        # Tiny P3D ResNet per branch (stem, res2..res5 of one block each; strides 4..32 in space,
        # 1 in time), built stage by stage in lockstep so that a CMA block sees the other
        # branch's map of the same stage.
        state = {
            branch: apply_tiny_p3d_stem(inputs[branch], branch, synchronized) for branch in BRANCHES
        }
        for index, filters in enumerate(TINY_3D_FILTERS, start=2):
            stage = f"res{index}"
            stride = 1 if index == 2 else 2
            state = {
                branch: apply_p3d_block(
                    state[branch], filters, stride, f"{branch}_{stage}", synchronized
                )
                for branch in BRANCHES
            }
            if stage in cma_stages:  # Sect. 5.6: one 3-D CMA block after res4 in each branch.
                state = {
                    "rgb": CrossModalityAttention(
                        synchronized=synchronized, name=f"rgb_cma_{stage}"
                    )(state["rgb"], state["flow"]),
                    "flow": CrossModalityAttention(
                        synchronized=synchronized, name=f"flow_cma_{stage}"
                    )(state["flow"], state["rgb"]),
                }
        branch_logits = {}
        for stream, branch in BRANCH_PREFIXES.items():
            features = keras.layers.GlobalAveragePooling3D(name=f"{branch}_avg_pool")(state[branch])
            y = keras.layers.Dropout(dropouts[stream], name=f"{branch}_dropout")(features)
            branch_logits[branch] = keras.layers.Dense(num_classes, name=f"{branch}_classifier")(y)
        outputs = apply_probabilities(branch_logits, fusion_weights, logits)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        _keep_former_layer_order(self, inputs, outputs)

        # === Config ===
        self.num_classes = num_classes
        self.backbone = backbone
        self.num_segments = num_frames
        self.image_size = image_size
        self.flow_length = flow_length
        self.cma_stages = tuple(cma_stages)
        self.train_from_cma = train_from_cma
        self.dropout = dropout_config(dropouts)
        self.fusion_weights = fusion_weights
        self.synchronized = synchronized
        self.branches = STREAMS
        if train_from_cma:
            first = min(stages.index(stage) for stage in cma_stages)
            frozen = ("stem", *stages[: first + 1])
            for layer in self.layers:
                if any(
                    layer.name.startswith(f"{branch}_{part}_")
                    for branch in BRANCHES
                    for part in frozen
                ):
                    layer.trainable = False
        self._set_contract(
            {name: tuple(t.shape[1:]) for name, t in inputs.items()},
            {"spatial": "default", "temporal": "default", "fused": "default"},
            list(STREAMS),
            logits=logits,
            dtype=dtype,
        )
        _check_partition(self)

    @property
    def flow_channels(self):
        """Channels of a flow frame, `2 * flow_length` (the former argument's name)."""
        return 2 * self.flow_length

    @property
    def num_frames(self):
        """T, frames per 3-D clip: `num_segments` under the name of the paper's setting."""
        return self.num_segments

    # Sect. 4.1: flow divided by its bound, to [-1, 1]; no mean subtraction is mentioned.
    FLOW_DATA_DEFAULTS = {"flow_normalization": "bound", "mean_subtract_flow": False}

    def get_config(self):
        return {
            **super().get_config(),
            "name": self.name,
            "trainable": self.trainable,
            "num_classes": self.num_classes,
            "backbone": self.backbone,
            "num_segments": self.num_segments,
            "image_size": self.image_size,
            "flow_length": self.flow_length,
            "cma_stages": list(self.cma_stages),
            "train_from_cma": self.train_from_cma,
            "dropout": self.dropout,
            "fusion_weights": list(self.fusion_weights),
            "synchronized": self.synchronized,
        }


def build_cma_3d(
    num_classes,
    *,
    backbone="tiny",
    image_size=112,
    num_segments=8,
    flow_length=1,
    cma_stages=("res4",),
    train_from_cma=False,
    dropout=0.5,
    fusion_weights=(5.0, 1.0),
    synchronized=False,
    logits=False,
    dtype=None,
    name="cma_3d",
    **deprecated,
):
    """Builds the 3-D CMA model of Sect. 5.6 on a tiny pseudo-3-D ResNet.

    The arguments are `CMA3D`'s (see `keras_twostream.models.CMA3D`);
    `**deprecated` takes the former names `num_frames` and `flow_channels`.

    Example:

    >>> from keras_twostream.models.cma import build_cma_3d
    >>> model = build_cma_3d(num_classes=4, num_segments=4, image_size=32)
    >>> sorted(layer.name for layer in model.layers if "cma" in layer.name)
    ['flow_cma_res4', 'rgb_cma_res4']
    """
    return CMA3D(
        num_classes,
        backbone=backbone,
        image_size=image_size,
        num_segments=num_segments,
        flow_length=flow_length,
        cma_stages=cma_stages,
        train_from_cma=train_from_cma,
        dropout=dropout,
        fusion_weights=fusion_weights,
        synchronized=synchronized,
        logits=logits,
        dtype=dtype,
        name=name,
        **deprecated,
    )
