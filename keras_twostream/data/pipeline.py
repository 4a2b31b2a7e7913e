"""tf.data pipelines over TSN frame folders: training clips and test-time views.

`make_dataset` yields `(inputs, labels)` batches for `model.fit`, with the input
names the models use:

* `"rgb"`: `(B, K, H, W, 3)` float32, one RGB frame per segment;
* `"flow"`: `(B, K, H, W, 2L)` float32, `L` consecutive flow fields per segment,
  channels ordered `x1, y1, x2, y2, ...` (Eq. (1) of the two-stream paper); with
  STPN multi-path sampling (`num_paths=P`) `(B, P, H, W, 2L)`, one chunk per path;
* `"rgb_diff"`: `(B, K, H, W, 3D)` float32, the `D` differences of `D + 1`
  consecutive frames per segment, channels ordered `(r, g, b)` of difference 1,
  then of difference 2, ... (TSN's RGB difference, the MPA+SAL paper's temporal
  input "the difference between adjacent frames");
* labels: `(B,)` int32, or `(B, C)` float32 multi-hot for multi-label tables.

`make_test_dataset` yields one element per video holding all its views, and
`predict_video_scores` averages a model's outputs over them.

How it runs: once per epoch, one NumPy call draws every video's frame indices
(`keras_twostream.data.sampling`) and augmentation parameters
(`keras_twostream.data.augment`) from a seeded generator; a parallel `tf.data`
map then reads and decodes the JPEGs with `tf.io.decode_and_crop_jpeg` /
`tf.io.decode_jpeg` and applies the one draw to every frame and modality of
the sample. Flow is cropped, mirrored, resized, moved to channels-last and
dequantised by one XLA kernel per sample (`_fused_flow`). Python runs once per
epoch (the draw), never per frame or per batch (the check for dropped samples
runs in the graph and calls Python only to name them). Because all randomness
is drawn before decoding, a seeded pipeline gives the same batches whatever
the parallelism.

Flow mean subtraction (Sect. 3.1 of the two-stream paper) needs each whole
field's mean. Folders written by `keras_twostream.data.extract` store them
(`flow_means.npy`), so a training sample decodes only its crop window of each
field; folders without them (older extractions, denseflow, MMAction2) decode
whole fields and average them. Both give the same values.

Frame counts: `meta.json` is authoritative where present (its flow count must
be its RGB count minus one); folders without one (denseflow, MMAction2) count
the files present, and when RGB and flow counts differ there, snippets are
drawn from their common range. The table's `frames` (when > 0) and `offset`
restrict the range further.

Errors: frame folders are checked up front (one directory listing per video:
missing folders, missing or empty frame files in the range a sample can use,
RGB/flow counts that disagree with `meta.json`, a flow bound that disagrees
with `meta.json`). Decoding failures at run time (a corrupt JPEG) drop the
sample inside `tf.data` and are then diagnosed by file. With
`on_error="raise"` both kinds raise an error naming the file and the problem;
with `on_error="skip"` the video or sample is left out, logged on the
`keras_twostream.data` logger and recorded in `dataset.dataset_errors`.

What lives where: this module holds the builders (`make_dataset`, `make_test_dataset`)
and the argument handling they share (`_common_args`, and `_clip_dataset`, the training
batches that `keras_twostream.data.multi_task.make_multi_task_dataset` builds on too). The parts they are built from:
`keras_twostream.data.modalities` (the modality table and option vocabularies),
`.table` (the annotation table and labels), `.folders` (the up-front check, through the
frame-folder validator `keras_twostream.data.frames.inspect_frame_folder`),
`.sampling` (frame indices and the sampling plan `_Sampling`), `.augment` (training
crops, flips, colour), `.views` (test-time view geometry and `predict_video_scores`;
public face `keras_twostream.evaluation.protocol`), `.decoding` (JPEG and flow decoding,
`jpeg_problem`, `DCT_METHOD`) and `.guard` (epoch source, error guard, `DatasetErrors`).
Every name that lived here before is still importable from here.
"""

import numpy as np
import tensorflow as tf

from keras_twostream.data import augment, sampling
from keras_twostream.data._validation import _check_choice, _check_int
from keras_twostream.data.data_config import accepts_data_config
from keras_twostream.data.decoding import _decode_views
from keras_twostream.data.folders import _check_backward_flow, _scan
from keras_twostream.data.guard import (
    DatasetErrors,
    _epoch_signature,
    _EpochSource,
    _Guard,
    _guarded,
)
from keras_twostream.data.modalities import (
    AUGMENTATIONS,
    FLOW_NORMALIZATIONS,
    FLOW_STACKINGS,
    ON_ERROR,
    _check_modalities,
)
from keras_twostream.data.sampling import _Sampling
from keras_twostream.data.table import _as_table, _labels
from keras_twostream.data.views import TEST_SNIPPETS, predict_video_scores, test_crop_params

__all__ = [
    "DatasetErrors",
    "make_dataset",
    "make_test_dataset",
    "predict_video_scores",
]

_ON_ERROR = ON_ERROR

# Names that lived here before the split (issue 19 item 6), by their new module: still
# importable from this module (`from keras_twostream.data.pipeline import jpeg_problem`).
_MOVED = {
    "keras_twostream.data.modalities": (
        "MODALITIES",
        "FLOW_NORMALIZATIONS",
        "MMACTION2_FLOW_MEAN",
        "MMACTION2_FLOW_STD",
        "FLOW_STACKINGS",
        "AUGMENTATIONS",
    ),
    "keras_twostream.data.views": ("TEST_SNIPPETS", "_output_names", "_softmax"),
    "keras_twostream.data.table": ("_as_table", "_labels"),
    "keras_twostream.data.folders": (
        "_video_dir",
        "_frame_name",
        "_inspect_video",
        "_inspect_video_file",
        "_VideoProblem",
        "_scan",
        "_check_backward_flow",
    ),
    "keras_twostream.data.sampling": ("_Sampling",),
    "keras_twostream.data.decoding": (
        "DCT_METHOD",
        "jpeg_problem",
        "_read",
        "_SOI",
        "_EOI",
        "_checked_jpeg",
        "_decode",
        "_cut",
        "_resize",
        "_stack",
        "_windows",
        "_decode_views",
        "_flow_views",
        "_BUCKET",
        "_pad_to_bucket",
        "_resize_axis",
        "_fused_flow",
        "_cut_flow",
        "_op_message",
    ),
    "keras_twostream.data.guard": (
        "logger",
        "_KEEP_EPOCHS",
        "_EpochSource",
        "_Guard",
        "_guarded",
        "_epoch_signature",
    ),
    "keras_twostream.data._validation": ("_check_choice", "_check_int"),
}
_MOVED = {name: module for module, names in _MOVED.items() for name in names}


def __getattr__(name):
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _common_args(
    table,
    root,
    modalities,
    flow_length,
    diff_length,
    num_paths,
    path_interval,
    image_size,
    rgb_normalization,
    flow_bound,
    flow_normalization,
    mean_subtract_flow,
    on_error,
    errors,
    num_classes,
    split,
    num_segments,
    need_label,
    flow_stacking="flow",
    bidirectional_flow=False,
):
    modalities = _check_modalities(modalities)
    _check_choice(flow_stacking, FLOW_STACKINGS, "flow_stacking")
    _check_choice(on_error, _ON_ERROR, "on_error")
    _check_choice(rgb_normalization, augment.RGB_PRESETS, "rgb_normalization")
    _check_choice(flow_normalization, FLOW_NORMALIZATIONS, "flow_normalization")
    flow_length = _check_int(flow_length, "flow_length")
    diff_length = _check_int(diff_length, "diff_length")
    if bidirectional_flow and flow_length % 2:
        raise ValueError(
            "bidirectional_flow stacks L/2 forward and L/2 backward fields: flow_length must "
            f"be even. Received: flow_length={flow_length}"
        )
    if num_paths is not None:
        num_paths = _check_int(num_paths, "num_paths")
        if "flow" not in modalities:
            raise ValueError(
                f"num_paths={num_paths} (STPN multi-path flow) needs 'flow' in modalities. "
                f"Received: modalities={modalities!r}"
            )
        if num_segments != 1:
            raise ValueError(
                "With num_paths (STPN multi-path sampling) each sample is one block of flow "
                f"chunks around one RGB frame: use num_segments=1. Received: num_segments={num_segments!r}"
            )
        sampling.draw_intervals(path_interval, 0, rng=np.random.default_rng(0))  # validates
    if flow_bound is not None and not (isinstance(flow_bound, (int, float)) and flow_bound > 0):
        raise ValueError(f"Expected flow_bound > 0 or None. Received: flow_bound={flow_bound!r}")
    if num_classes is not None:
        num_classes = _check_int(num_classes, "num_classes")
    size = augment._pair(image_size, "image_size")
    errors = DatasetErrors() if errors is None else errors
    table = _as_table(table, split, need_label)
    labels, multi, num_classes = _labels(table, num_classes, need_label)
    use_stored = bool(mean_subtract_flow) and "flow" in modalities
    # Trajectories and backward fields need whole fields (and backward fields have no
    # flow_means.npy entry): their means come from the decoded fields.
    use_stored = use_stored and flow_stacking == "flow" and not bidirectional_flow
    videos = _scan(table, root, modalities, flow_bound, on_error, errors, stored_means=use_stored)
    labels = labels[videos["keep"]]
    stored = videos["centre_start"] >= 0
    stored_means = "all" if stored.all() else ("mixed" if stored.any() else "none")
    if bidirectional_flow and "flow" in modalities:
        has_backward = _check_backward_flow(videos, on_error, errors)
        if not has_backward.all():  # on_error="skip": leave those videos out
            if not has_backward.any():
                raise ValueError(
                    "No video in the annotation table has backward flow "
                    f"({errors.count} problems recorded; first: {errors.records[0]})."
                )
            labels = labels[has_backward]
            videos = {
                key: (value if key in ("centre", "video_files") else value[has_backward])
                for key, value in videos.items()
            }
    cfg = _Sampling(
        modalities,
        num_segments,
        flow_length,
        diff_length,
        num_paths,
        path_interval,
        size,
        rgb_normalization,
        flow_normalization,
        mean_subtract_flow,
        stored_means if use_stored else "none",
        flow_stacking=flow_stacking,
        bidirectional_flow=bool(bidirectional_flow),
    )
    cfg.video_files = videos["video_files"]
    return cfg, videos, labels, multi, errors


# --------------------------------------------------------------------------
# Public builders.
# --------------------------------------------------------------------------


@accepts_data_config
def make_dataset(
    table,
    root=None,
    modalities=("rgb", "flow"),
    num_segments=3,
    flow_length=10,
    image_size=224,
    training=True,
    batch_size=8,
    shuffle=None,
    seed=None,
    num_paths=None,
    path_interval=(1, 10),
    diff_length=5,
    rgb_normalization="unit",
    flow_bound=None,
    flow_normalization="pixels",
    mean_subtract_flow=True,
    scales=augment.TSN_SCALES,
    max_distort=1,
    flip=True,
    color_jitter=None,
    augmentation="tsn",
    scale_size=None,
    on_error="raise",
    errors=None,
    num_classes=None,
    split=None,
    drop_remainder=False,
    flow_stacking="flow",
    bidirectional_flow=False,
    video_sampling="shuffle",
    data_config=None,
):
    """Builds a `tf.data.Dataset` of `(inputs, labels)` batches from frame folders.

    Temporal sampling is TSN's (Wang et al., ECCV 2016): the video is cut into
    `num_segments` segments of equal duration and one snippet is taken from
    each, at a random offset in training and at the centre otherwise
    (`keras_twostream.data.sampling.segment_starts`). A snippet is one RGB
    frame `t`, the flow fields `d_t .. d_{t+L-1}` (Eq. (1) of the two-stream
    paper; the cross-modality attention paper, Sect. 4.1, aligns the RGB frame
    with the first flow field likewise) and, for `"rgb_diff"`, the differences
    of frames `t .. t+D`. With `num_paths=P`, the flow follows STPN's
    multi-path temporal sampling instead (Wang et al., CVPR 2017, Sect. 3.2):
    `P` chunks of `L` flow fields whose centres are `tau` frames apart, with
    `tau` drawn from `path_interval` (1..10 in the paper, for training and
    testing alike), and the RGB frame at the block's centre. Videos too short
    for a snippet repeat their edge frames.

    Augmentation (training only) draws once per sample and applies the draw to
    every frame and modality: TSN multi-scale corner cropping (`scales`,
    `max_distort`, five positions) resized to `image_size`, a horizontal flip
    that also negates flow-x, and optional colour jitter on RGB only. With
    `augmentation="two_stream"` the crops are the two-stream paper's instead
    (Sect. 5, "Training"): `image_size / scale_size` of the short side (224 of
    256), not resized, at a position uniform over the whole frame, with the
    same flips and AlexNet's PCA lighting noise (std 0.1) as its "RGB
    jittering" on RGB. Outside training the crop is the centre
    `image_size / scale_size` of the short side.

    Flow values are displacements in pixels, `q * 2 * bound / 255 - bound`,
    minus each field's mean (Sect. 3.1 of the two-stream paper) when
    `mean_subtract_flow`, and divided by `bound` when
    `flow_normalization="bound"` (the range [-1, 1] of the CMA paper, Sect. 4.1).
    `flow_normalization="mmaction"` gives MMAction2's `(q - 128) / 128` on the
    quantised values instead (the normalisation of its TSN flow checkpoints;
    with `mean_subtract_flow=False`, as MMAction2 does).

    Args:
        table: annotation table (pandas DataFrame) with columns `path`,
            `label` and optionally `frames` (-1 = count the files), `offset`,
            `split`; see `keras_twostream.data.annotations`. Paths name frame folders,
            or video files for the "rgb" and "rgb_diff" modalities (read by seeking,
            `keras_twostream.data.video_source`; one kind per table).
        root: folder that relative `path`s are relative to.
        modalities: any of `"rgb"`, `"flow"`, `"rgb_diff"`.
        num_segments: `K`, segments per video (TSN: 3). Must be 1 with `num_paths`.
        flow_length: `L`, consecutive flow fields per snippet (10; CMA uses 5).
        image_size: output size, an int or `(height, width)`.
        training: random sampling and augmentation (`True`) or centre sampling
            and centre crop (`False`).
        batch_size: samples per batch.
        shuffle: shuffle the videos each epoch; defaults to `training`
            (`video_sampling="shuffle"` only).
        seed: int seed; the same seed gives the same batches, epoch by epoch.
            `None` draws fresh entropy each epoch (a fixed 0 when not training,
            which only matters for STPN's `tau`).
        num_paths: `P`, STPN's number of flow paths (3 in the paper), or `None`.
        path_interval: STPN's `tau`: an int, or `(low, high)` drawn per sample.
        diff_length: `D`, RGB differences per snippet for `"rgb_diff"`: 5, the
            differences of 6 consecutive frames, as TSN's reference `_get_diff`
            builds them (the MPA+SAL paper does not give a number).
        rgb_normalization: `"unit"`, `"torch"`, `"caffe"`, `"tf"` or `"none"`
            (see `keras_twostream.data.augment.normalize_rgb`).
        flow_bound: the flow quantisation bound; `None` reads it from each
            folder's `meta.json` (20 without one). A value that disagrees with
            `meta.json` is an error.
        flow_normalization: `"pixels"`, `"bound"` (divide by the bound) or
            `"mmaction"` (`(q - 128) / 128` on quantised values, MMAction2's).
        mean_subtract_flow: subtract each flow field's mean vector.
        scales: crop scales as fractions of the short side (TSN's 1, .875, .75, .66).
        max_distort: largest scale-index difference between crop height and width.
        flip: random horizontal flips in training.
        color_jitter: `None` or a dict with any of `brightness`, `contrast`,
            `saturation` (amounts `x`: factors uniform in `[1 - x, 1 + x]`), RGB only.
        augmentation: `"tsn"` (multi-scale corner crops, `scales` and
            `max_distort`) or `"two_stream"` (random fixed-size crops anywhere
            in the frame and PCA lighting, `keras_twostream.data.augment`).
        scale_size: the short side the centre crop (and the two-stream random
            crop) is relative to (default `image_size * 256 / 224`).
        on_error: `"raise"` or `"skip"` for missing or corrupt frame files and
            inconsistent frame counts.
        errors: a `DatasetErrors` to record skipped samples into (one is made
            otherwise); also available as `dataset.dataset_errors`.
        num_classes: class count for multi-hot labels (inferred if `None`) and
            for checking label ranges.
        split: keep only the rows whose `split` column equals this value.
        drop_remainder: drop the last incomplete batch.
        flow_stacking: `"flow"`, optical flow stacking (Eq. (1) of the two-stream
            paper), or `"trajectory"`, the fields sampled along the trajectory of each
            pixel (Eq. (2); bilinear sampling, trajectories clamped to the frame,
            followed on whole fields before cropping: see
            `keras_twostream.data.trajectory`). Table 1(b) of the paper.
        bidirectional_flow: the paper's bi-directional input: `L/2` forward fields
            from frame `tau` and `L/2` backward fields going back from it (channels:
            forward first, then backward), read from the `bx_`/`by_` files that
            `keras-twostream extract --flow tvl1-xla --backward-flow` writes.
            `flow_length` must be even. Both options decode whole flow fields.
        video_sampling: which videos an epoch holds. `"shuffle"` (the default):
            every video once, in an order reshuffled each epoch (`shuffle`).
            `"class_uniform"`: the two-stream paper's "sampling 256 training
            videos (uniformly across the classes)" (Sect. 5): each sample draws
            a class uniformly over the classes that have videos, then one of its
            videos uniformly, with replacement
            (`keras_twostream.data.sampling.class_uniform_indices`). An epoch is
            then as many samples as the table has usable videos, so
            `steps_per_epoch` and the schedules stay as with `"shuffle"`; some
            videos appear twice in it and others not at all. Seeded like the rest
            of the draw; single-label tables only.
        data_config: a model (its `data_config()`) or such a dict: the arguments
            this call leaves out come from it (modalities, image size, segments, flow
            length, paths, normalisations, flow bound; its class names set
            `num_classes` and must match the table's `attrs["classes"]`), and an
            argument that contradicts it raises a `ValueError` naming both
            (`keras_twostream.data.data_config`).

    Returns:
        A `tf.data.Dataset` of `(inputs, labels)`; `inputs` maps each modality
        to a float32 tensor: `"rgb"` `(B, K, H, W, 3)`, `"flow"`
        `(B, K, H, W, 2L)` (`(B, P, H, W, 2L)` with `num_paths`, and then `"rgb"`
        is `(B, 1, H, W, 3)`), `"rgb_diff"` `(B, K, H, W, 3D)`; `labels` is
        `(B,)` int32 or `(B, C)` float32 multi-hot. The returned dataset has an
        attribute `dataset_errors` (a `DatasetErrors`).

    Example:

    >>> import pandas as pd
    >>> from keras_twostream.data.pipeline import make_dataset
    >>> table = pd.DataFrame({"path": ["tests/data/mmaction2/imgs"], "label": [3]})
    >>> ds = make_dataset(table, num_segments=3, flow_length=5, image_size=112,
    ...                   batch_size=1, seed=0)
    >>> inputs, labels = next(iter(ds))
    >>> inputs["rgb"].shape, inputs["flow"].shape, labels.numpy().tolist()
    (TensorShape([1, 3, 112, 112, 3]), TensorShape([1, 3, 112, 112, 10]), [3])
    """
    num_segments, batch_size, jitter_amounts, shuffle = _training_args(
        num_segments,
        batch_size,
        max_distort,
        scales,
        color_jitter,
        augmentation,
        video_sampling,
        shuffle,
    )
    cfg, videos, labels, multi, errors = _common_args(
        table,
        root,
        modalities,
        flow_length,
        diff_length,
        num_paths,
        path_interval,
        image_size,
        rgb_normalization,
        flow_bound,
        flow_normalization,
        mean_subtract_flow,
        on_error,
        errors,
        num_classes,
        split,
        num_segments,
        need_label=True,
        flow_stacking=flow_stacking,
        bidirectional_flow=bidirectional_flow,
    )
    if video_sampling == "class_uniform" and multi:
        raise ValueError(
            "video_sampling='class_uniform' draws a class, then a video of it (two-stream "
            "paper, Sect. 5): it needs single-label tables, and this table is multi-label"
        )
    ds = _clip_dataset(
        cfg,
        videos,
        labels,
        errors,
        classes=labels,
        class_probabilities=None,
        training=training,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        video_sampling=video_sampling,
        scales=scales,
        max_distort=max_distort,
        flip=flip,
        jitter_amounts=jitter_amounts,
        augmentation=augmentation,
        scale_size=scale_size,
        on_error=on_error,
        drop_remainder=drop_remainder,
    )
    return _finish(ds, errors)


def _training_args(
    num_segments,
    batch_size,
    max_distort,
    scales,
    color_jitter,
    augmentation,
    video_sampling,
    shuffle,
):
    """Checks `make_dataset`'s own arguments; returns `(K, batch, jitter amounts, shuffle)`."""
    num_segments = _check_int(num_segments, "num_segments")
    batch_size = _check_int(batch_size, "batch_size")
    _check_int(max_distort, "max_distort", minimum=0)
    augment.scale_pairs(scales, max_distort)  # validates scales
    jitter_amounts = dict(color_jitter or {})
    unknown = set(jitter_amounts) - {"brightness", "contrast", "saturation"}
    if unknown:
        raise ValueError(
            "Expected color_jitter keys among 'brightness', 'contrast', 'saturation'. "
            f"Received: color_jitter={color_jitter!r}"
        )
    _check_choice(augmentation, AUGMENTATIONS, "augmentation")
    _check_choice(video_sampling, sampling.VIDEO_SAMPLINGS, "video_sampling")
    if video_sampling == "class_uniform" and shuffle is not None and not shuffle:
        raise ValueError(
            "video_sampling='class_uniform' draws the videos at random; shuffle=False "
            "contradicts it. Received: shuffle=False"
        )
    return num_segments, batch_size, jitter_amounts, shuffle


def _clip_dataset(
    cfg,
    videos,
    labels,
    errors,
    *,
    classes,
    class_probabilities,
    training,
    batch_size,
    shuffle,
    seed,
    video_sampling,
    scales,
    max_distort,
    flip,
    jitter_amounts,
    augmentation,
    scale_size,
    on_error,
    drop_remainder,
):
    """The batches of `make_dataset` (and `make_multi_task_dataset`) from checked arguments.

    `labels` has one row per usable video (`(n,)`, `(n, C)` multi-hot or, for multi-task
    training, `(n, T)` with one column per task); `classes` `(n,)` is each video's class
    for `video_sampling="class_uniform"` (`keras_twostream.data.sampling.class_uniform_indices`,
    with `class_probabilities`). An epoch is `n` samples either way.
    """
    shuffle = training if shuffle is None else bool(shuffle)
    use_jitter = training and any(v > 0 for v in jitter_amounts.values())
    use_lighting = training and augmentation == "two_stream"
    centre = test_crop_params(1, cfg.image_size, scale_size)[0]
    n = len(videos["dir"])

    def draw(epoch):
        if not training:  # deterministic; the seed only moves STPN's tau draws
            rng = np.random.default_rng(0 if seed is None else seed)
        elif seed is not None:
            rng = np.random.default_rng([int(seed), epoch])
        else:
            rng = np.random.default_rng()
        if video_sampling == "class_uniform":
            # Two-stream paper, Sect. 5: "sampling 256 training videos (uniformly across
            # the classes)". An epoch is still n samples, drawn with replacement.
            order = sampling.class_uniform_indices(classes, n, rng, class_probabilities)
        else:
            order = rng.permutation(n) if shuffle else np.arange(n)
        rgb_index, flow_index = cfg.positions(videos, order, training, rng)
        arrays = {
            "dir": videos["dir"][order],
            "rgb_index": rgb_index,
            "flow_index": flow_index,
            "bound": videos["bound"][order],
            "label": labels[order],
            "row": videos["row"][order].astype(np.int64),
            "seq": np.arange(n, dtype=np.int64),
            **cfg.stored_centres(videos, order, flow_index),
        }
        if training and augmentation == "two_stream":
            arrays.update(augment.draw_random_crop_params(rng, n, centre[:2]))
            arrays["flip"] = augment.draw_flips(rng, n, 0.5 if flip else 0.0)
            arrays["lighting"] = augment.draw_lighting(rng, n)
        elif training:
            arrays.update(augment.draw_crop_params(rng, n, scales, max_distort))
            arrays["flip"] = augment.draw_flips(rng, n, 0.5 if flip else 0.0)
        else:
            arrays["scale_h"] = np.full((n,), centre[0], np.float64)
            arrays["scale_w"] = np.full((n,), centre[1], np.float64)
            arrays["quarter_y"] = np.full((n,), centre[2], np.int32)
            arrays["quarter_x"] = np.full((n,), centre[3], np.int32)
            arrays["flip"] = np.zeros((n,), bool)
        if use_jitter:
            arrays.update(augment.draw_color_jitter(rng, n, **jitter_amounts))
        return arrays

    def load(e):
        crop = {k: e[k] for k in ("scale_h", "scale_w", "quarter_y", "quarter_x", "flip")}
        jitter = {k: e[k] for k in ("brightness", "contrast", "saturation")} if use_jitter else {}
        if use_lighting:
            jitter["lighting"] = e["lighting"]
        jitter = jitter or None
        views = _decode_views(
            cfg,
            e["dir"],
            e["rgb_index"],
            e["flow_index"],
            e["bound"],
            [crop],
            jitter,
            e.get("flow_centre"),
            e.get("has_centre"),
        )
        inputs = {m: views[m][0] for m in cfg.modalities}
        return inputs, e["label"], e["epoch"], e["seq"]

    source = _EpochSource(draw)
    signature = _epoch_signature({**draw(0), "epoch": np.zeros((1,), np.int64)})
    guard = _Guard(source, cfg, errors, on_error, load)
    ds = _guarded(source, signature, load, guard, batch_size, drop_remainder, size=n)
    if on_error == "raise":
        batches = n // batch_size if drop_remainder else -(-n // batch_size)
        ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
    ds._draw_epoch = draw  # epoch -> the index/augmentation arrays (benchmarks, debugging)
    ds.set_epoch = source.set_epoch  # resuming a run at an epoch (training.ResumableCheckpoint)
    return ds


def _finish(ds, errors, map_labels=None):
    """Prefetches `ds` (after `map_labels`, if given) and carries its attributes over."""
    draw, set_epoch = ds._draw_epoch, ds.set_epoch
    if map_labels is not None:
        ds = ds.map(lambda inputs, labels: (inputs, map_labels(labels)))
    ds = ds.prefetch(tf.data.AUTOTUNE)
    ds.dataset_errors = errors
    ds._draw_epoch = draw
    ds.set_epoch = set_epoch
    return ds


@accepts_data_config
def make_test_dataset(
    table,
    root=None,
    modalities=("rgb", "flow"),
    num_frames=25,
    crops=10,
    flow_length=10,
    image_size=224,
    scale_size=None,
    num_paths=None,
    path_interval=(1, 10),
    diff_length=5,
    rgb_normalization="unit",
    flow_bound=None,
    flow_normalization="pixels",
    mean_subtract_flow=True,
    seed=0,
    on_error="raise",
    errors=None,
    num_classes=None,
    split=None,
    flow_stacking="flow",
    bidirectional_flow=False,
    snippets="uniform",
    data_config=None,
):
    """Builds the test-time protocol: every view of one video per element.

    "At test time, given a video, we sample a fixed number of frames (25 in
    our experiments) with equal temporal spacing between them. From each of
    the frames we then obtain 10 ConvNet inputs by cropping and flipping four
    corners and the center of the frame" (two-stream paper, Sect. 5; the CMA
    paper, Sect. 4.1, and TSN do the same). Each of the `num_frames` snippets
    is a `K = 1` segment; the flow stack starts at the sampled frame (`L`
    fields), or with `num_paths` is STPN's block of `P` chunks around it
    (`tau` drawn from `path_interval` with `seed`, as the paper draws it at
    test time too). Crops are described in
    `keras_twostream.evaluation.protocol` (`test_crop_params`, defined in
    `keras_twostream.data.views`); flipped views negate flow-x.

    `snippets="random"` is STPN's protocol instead (Wang et al., CVPR 2017,
    Sect. 4.7): "10 video snippets are randomly sampled and each of them
    contains 3 RGB images along with the corresponding 30 optical flow frames"
    (`num_frames=10, num_paths=3, flow_length=10`). The draw is stratified, one
    snippet at a random offset in each of `num_frames` equal parts of the
    video (TSN's training rule), seeded by `seed` so a rerun scores the same
    views. Choice where the paper is ambiguous: the model takes one RGB frame
    per snippet, the one at the centre of the block of paths as in training;
    the paper's "3 RGB images" (one per path) are not all fed.

    Args:
        table: annotation table, as for `make_dataset` (`label` may be absent:
            labels are then -1).
        root: folder that relative `path`s are relative to.
        modalities: any of `"rgb"`, `"flow"`, `"rgb_diff"`.
        num_frames: `N`, equally spaced snippets per video (25 in the papers).
        crops: 1 (centre), 3 (three squares along the long side) or 10
            (four corners and centre, plus their flips).
        flow_length: `L`, flow fields per snippet.
        image_size: output size, an int or `(height, width)`.
        scale_size: the short side crops are relative to (default
            `image_size * 256 / 224`: a 224 crop of a 256 frame).
        num_paths: STPN's number of flow paths, or `None`.
        path_interval: STPN's `tau`, an int or `(low, high)`.
        diff_length: `D`, RGB differences per snippet.
        rgb_normalization: see `make_dataset`.
        flow_bound: see `make_dataset`.
        flow_normalization: see `make_dataset`.
        mean_subtract_flow: see `make_dataset`.
        seed: seed of STPN's `tau` draws (the views are otherwise deterministic).
        on_error: `"raise"` or `"skip"`; skipped videos are absent from the
            dataset and listed in `dataset.dataset_errors`.
        errors: a `DatasetErrors` to record into.
        num_classes: as for `make_dataset`.
        split: keep only the rows whose `split` equals this value.
        flow_stacking: see `make_dataset`.
        bidirectional_flow: see `make_dataset`.
        snippets: `"uniform"` (equally spaced, the two-stream/TSN protocol) or
            `"random"` (STPN's randomly sampled snippets).
        data_config: as for `make_dataset` (its `num_segments` does not apply:
            every view is one snippet).

    Returns:
        A `tf.data.Dataset` with one element per video, `(inputs, label)`, where
        with `V = num_frames * crops` views in frame-major order (view
        `n * crops + c` is crop `c` of snippet `n`; for `crops=10` crops 0-4
        are unflipped, 5-9 their mirror images):
        `"rgb"` `(V, 1, H, W, 3)`, `"flow"` `(V, 1, H, W, 2L)` (with
        `num_paths`: `(V, P, H, W, 2L)`), `"rgb_diff"` `(V, 1, H, W, 3D)`;
        `label` is a scalar int32 or a `(C,)` multi-hot vector. Each element is
        a ready batch for `model.predict_on_batch`; see `predict_video_scores`.
        Memory: one element holds `V * H * W * (3 + 2L) * 4` bytes (250 views
        of 224x224 RGB + 10 flow fields: about 1.1 GB), so reduce `num_frames`
        or `crops` on small machines.

    Example:

    >>> import pandas as pd
    >>> from keras_twostream.data.pipeline import make_test_dataset
    >>> table = pd.DataFrame({"path": ["tests/data/mmaction2/imgs"], "label": [3]})
    >>> ds = make_test_dataset(table, num_frames=2, crops=10, flow_length=5, image_size=64)
    >>> inputs, label = next(iter(ds))
    >>> inputs["rgb"].shape, inputs["flow"].shape
    (TensorShape([20, 1, 64, 64, 3]), TensorShape([20, 1, 64, 64, 10]))
    """
    num_frames = _check_int(num_frames, "num_frames")
    _check_choice(snippets, TEST_SNIPPETS, "snippets")
    crop_params = test_crop_params(crops, image_size, scale_size)
    cfg, videos, labels, multi, errors = _common_args(
        table,
        root,
        modalities,
        flow_length,
        diff_length,
        num_paths,
        path_interval,
        image_size,
        rgb_normalization,
        flow_bound,
        flow_normalization,
        mean_subtract_flow,
        on_error,
        errors,
        num_classes,
        split,
        1,
        need_label=False,
        flow_stacking=flow_stacking,
        bidirectional_flow=bidirectional_flow,
    )
    n = len(videos["dir"])
    num_crops = len(crop_params)
    crops_list = [
        {"scale_h": c[0], "scale_w": c[1], "quarter_y": c[2], "quarter_x": c[3], "flip": c[4]}
        for c in crop_params
    ]

    def draw(epoch):
        del epoch  # the views are the same every time; seed fixes STPN's tau draws
        rng = np.random.default_rng(0 if seed is None else seed)
        random = snippets == "random"  # STPN: a random snippet in each of N parts of the video
        rgb, flow = cfg.positions(videos, np.arange(n), random, rng, num_snippets=num_frames)
        return {
            "dir": videos["dir"],
            "rgb_index": rgb.astype(np.int32),
            "flow_index": flow.astype(np.int32),
            "bound": videos["bound"],
            "label": labels,
            "row": videos["row"].astype(np.int64),
            "seq": np.arange(n, dtype=np.int64),
            **cfg.stored_centres(videos, np.arange(n), flow),
        }

    def load(e):
        views = _decode_views(
            cfg,
            e["dir"],
            e["rgb_index"],
            e["flow_index"],
            e["bound"],
            crops_list,
            centre=e.get("flow_centre"),
            has_centre=e.get("has_centre"),
        )
        inputs = {}
        for m in cfg.modalities:
            v = views[m]  # (C, G, h, w, ch)
            paths = cfg.num_paths if (m == "flow" and cfg.num_paths) else 1
            v = tf.reshape(v, [num_crops, num_frames, paths, *v.shape[2:]])
            v = tf.transpose(v, [1, 0, 2, 3, 4, 5])  # [C, N, P, h, w, ch] -> [N, C, P, h, w, ch]
            inputs[m] = tf.reshape(v, [num_frames * num_crops, paths, *v.shape[3:]])
        return inputs, e["label"], e["epoch"], e["seq"]

    source = _EpochSource(draw)
    signature = _epoch_signature({**draw(0), "epoch": np.zeros((1,), np.int64)})
    guard = _Guard(source, cfg, errors, on_error, load)
    ds = _guarded(source, signature, load, guard, size=n)
    if on_error == "raise":
        ds = ds.apply(tf.data.experimental.assert_cardinality(n))
    ds = ds.prefetch(1)
    ds.dataset_errors = errors
    return ds
