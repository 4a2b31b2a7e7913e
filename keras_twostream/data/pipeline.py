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
"""

import logging
import os
import re
import threading

import numpy as np
import pandas as pd
import tensorflow as tf

from keras_twostream.data import augment, frames, sampling, video_source
from keras_twostream.data.data_config import accepts_data_config
from keras_twostream.data.trajectory import trajectory_planes

__all__ = [
    "DatasetErrors",
    "make_dataset",
    "make_test_dataset",
    "predict_video_scores",
]

logger = logging.getLogger("keras_twostream.data")

MODALITIES = ("rgb", "flow", "rgb_diff")
FLOW_NORMALIZATIONS = ("pixels", "bound", "mmaction")
# MMAction2's flow normalisation: mean 128, std 128 on the quantised 0..255 values
# (its TSN flow configs: `mean=[128, 128], std=[128, 128]`), what converted MMAction2 flow
# checkpoints expect (`keras_twostream.backbones.load_torch_weights`).
MMACTION2_FLOW_MEAN = 128.0
MMACTION2_FLOW_STD = 128.0
FLOW_STACKINGS = ("flow", "trajectory")  # Eq. (1) and Eq. (2) of the two-stream paper
TEST_SNIPPETS = ("uniform", "random")  # equally spaced (two-stream, TSN); STPN's Sect. 4.7
AUGMENTATIONS = ("tsn", "two_stream")  # TSN's multi-scale crops; the two-stream paper's Sect. 5
_ON_ERROR = ("raise", "skip")
_KEEP_EPOCHS = 4  # epochs of drawn indices kept for diagnosing dropped samples


class DatasetErrors:
    """The problems a pipeline met with, for `on_error="skip"`.

    Each record is a dict `{"video", "file", "problem", "row"}`: the frame
    folder, the offending file (or `None` for a folder-level problem), what
    was wrong, and the row of the table. Up-front problems are recorded when
    the dataset is built; decoding failures when the epoch reaches the sample
    (once per epoch in which the sample is drawn), so read `count` after
    iterating.

    Example:

    >>> from keras_twostream.data.pipeline import DatasetErrors
    >>> errors = DatasetErrors()
    >>> errors.add("videos/v1", "videos/v1/img_00003.jpg", "not a valid JPEG", row=4)
    >>> errors.count
    1
    """

    def __init__(self):
        self.records = []
        self._lock = threading.Lock()

    @property
    def count(self):
        """Number of problems recorded so far."""
        return len(self.records)

    def add(self, video, file, problem, row=None):
        """Records (and logs) one problem."""
        with self._lock:
            self.records.append({"video": video, "file": file, "problem": problem, "row": row})
        logger.warning("Skipped a sample of %s: %s: %s", video, file or video, problem)

    def reset(self):
        """Forgets all records."""
        with self._lock:
            self.records = []

    def __repr__(self):
        return f"DatasetErrors(count={self.count})"


# --------------------------------------------------------------------------
# Argument checks.
# --------------------------------------------------------------------------


def _check_choice(value, choices, name):
    if value not in choices:
        raise ValueError(f"Expected {name} to be one of {choices}. Received: {name}={value!r}")


def _check_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(
            f"Expected {name} to be an integer >= {minimum}. Received: {name}={value!r}"
        )
    return int(value)


def _check_modalities(modalities):
    if isinstance(modalities, str):
        modalities = (modalities,)
    modalities = tuple(modalities)
    unknown = [m for m in modalities if m not in MODALITIES]
    if not modalities or unknown or len(set(modalities)) != len(modalities):
        raise ValueError(
            f"Expected modalities to be distinct names among {MODALITIES}. "
            f"Received: modalities={modalities!r}"
        )
    return modalities


def _as_table(table, split, need_label):
    if not isinstance(table, pd.DataFrame):
        try:
            table = pd.DataFrame(table)
        except (TypeError, ValueError) as error:
            raise ValueError(
                "Expected table to be a pandas DataFrame with columns 'path' and 'label' "
                f"(see keras_twostream.data.annotations). Received: {type(table).__name__} ({error})"
            ) from None
    required = ["path", "label"] if need_label else ["path"]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ValueError(
            f"The annotation table lacks the column(s) {missing}; expected columns "
            f"'path', 'frames', 'label', 'split', 'offset'. Received columns: {list(table.columns)}"
        )
    if split is not None:
        if "split" not in table.columns:
            raise ValueError(f"split={split!r} was given but the table has no 'split' column.")
        table = table[table["split"] == split]
        if table.empty:
            raise ValueError(f"The table has no rows with split == {split!r}.")
    if table.empty:
        raise ValueError("The annotation table is empty.")
    return table


def _labels(table, num_classes, need_label):
    """Single-label int32 `(n,)` or multi-hot float32 `(n, C)`, and the class count."""
    if "label" not in table.columns:
        if need_label:
            raise ValueError("The annotation table has no 'label' column.")
        return np.full((len(table),), -1, np.int32), False, num_classes
    raw = list(table["label"])
    multi = any(isinstance(v, (tuple, list, np.ndarray)) for v in raw)
    rows = list(table.index)
    values = []
    for row, value in zip(rows, raw, strict=True):
        items = list(value) if isinstance(value, (tuple, list, np.ndarray)) else [value]
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (int, np.integer)) or item < 0:
                raise ValueError(
                    f"Row {row} of the annotation table: expected integer labels >= 0, "
                    f"received label={value!r}"
                )
            if num_classes is not None and item >= num_classes:
                raise ValueError(
                    f"Row {row} of the annotation table: label {item} is out of range for "
                    f"num_classes={num_classes}"
                )
        values.append(items)
    if not multi:
        return np.asarray([v[0] for v in values], np.int32), False, num_classes
    if num_classes is None:
        num_classes = 1 + max((max(v) for v in values if v), default=0)
    hot = np.zeros((len(values), num_classes), np.float32)
    for i, items in enumerate(values):
        hot[i, items] = 1.0
    return hot, True, num_classes


# --------------------------------------------------------------------------
# The up-front validity table.
# --------------------------------------------------------------------------


def _video_dir(path, root):
    path = os.fspath(path)
    if root is not None and not os.path.isabs(path):
        path = os.path.join(os.fspath(root), path)
    return os.path.normpath(path)


def _frame_name(prefix, index):
    return f"{prefix}{index:0{frames.INDEX_DIGITS}d}{frames.FRAME_SUFFIX}"


def _inspect_video(
    directory, total_frames, offset, need_rgb, need_flow, flow_bound, stored_means=False
):
    """Counts `(R, F, bound, centres)` of one frame folder, or raises `_VideoProblem`.

    `centres` is `None`, or with `stored_means` and a `flow_means.npy` beside
    `meta.json`, float64 `[flow_frames, 2]`: each field's mean in quantised units
    (0..255), the value the whole-field path would take with `tf.reduce_mean`.
    """
    if video_source.is_video_file(directory):
        return _inspect_video_file(directory, total_frames, offset, need_flow)
    if not os.path.isdir(directory):
        if os.path.isfile(directory):
            raise _VideoProblem(
                None,
                "is a file, not a frame folder: extract its frames first "
                "(keras_twostream.data.extract)",
            )
        raise _VideoProblem(None, "frame folder not found", missing=True)
    meta = None
    if os.path.exists(os.path.join(directory, frames.META_FILE)):
        try:
            meta = frames.read_meta(directory)
        except ValueError as error:
            raise _VideoProblem(os.path.join(directory, frames.META_FILE), str(error)) from None
    files = frames.list_frame_files(directory)
    bound = float(meta["bound"]) if meta else frames.DEFAULT_BOUND
    if flow_bound is not None:
        if meta and need_flow and not np.isclose(bound, flow_bound):
            raise _VideoProblem(
                os.path.join(directory, frames.META_FILE),
                f"the flow was quantised with bound={bound:g} but flow_bound={flow_bound:g} was "
                "given; pass flow_bound=None to read the bound from meta.json",
            )
        bound = float(flow_bound)
    if meta and need_flow and meta["flow_frames"] != meta["rgb_frames"] - 1:
        raise _VideoProblem(
            os.path.join(directory, frames.META_FILE),
            f"RGB/flow counts disagree: {meta['rgb_frames']} RGB frames need "
            f"{meta['rgb_frames'] - 1} flow pairs, meta.json says {meta['flow_frames']}",
        )
    rgb_total = meta["rgb_frames"] if meta else len(files["img"])
    flow_total = meta["flow_frames"] if meta else min(len(files["x"]), len(files["y"]))
    num_rgb = total_frames if total_frames > 0 else rgb_total - offset
    num_flow = flow_total - offset
    if total_frames > 0:
        num_flow = min(num_flow, total_frames - 1)
    centres = None
    if meta and need_flow and stored_means:
        try:
            means = frames.read_flow_means(directory, meta["flow_frames"])
        except ValueError as error:
            raise _VideoProblem(
                os.path.join(directory, frames.FLOW_MEANS_FILE), str(error)
            ) from None
        if means is not None:
            # Stored in pixels, d = q * 2b/255 - b with the bound of meta.json.
            stored_bound = float(meta["bound"])
            centres = (means + stored_bound) * (255.0 / (2.0 * stored_bound))
    empty = set(files["empty"])
    checks = []
    if need_rgb:
        if num_rgb < 1:
            raise _VideoProblem(None, f"no RGB frames after offset {offset} (img_*.jpg)")
        checks.append(("img_", set(files["img"]), num_rgb))
    if need_flow:
        if num_flow < 1:
            raise _VideoProblem(None, f"no flow frames after offset {offset} (x_*.jpg, y_*.jpg)")
        checks.append(("x_", set(files["x"]), num_flow))
        checks.append(("y_", set(files["y"]), num_flow))
    for prefix, present, count in checks:
        for index in range(offset + 1, offset + count + 1):
            name = _frame_name(prefix, index)
            if index not in present:
                raise _VideoProblem(
                    os.path.join(directory, name),
                    f"missing frame file (the sample range needs {prefix}*.jpg "
                    f"{offset + 1}..{offset + count})",
                    missing=True,
                )
            if name in empty:
                raise _VideoProblem(os.path.join(directory, name), "empty (0-byte) frame file")
    return max(num_rgb, 0), max(num_flow, 0), bound, centres


def _inspect_video_file(path, total_frames, offset, need_flow):
    """`_inspect_video` for a video file (`keras_twostream.data.video_source`)."""
    if need_flow:
        raise _VideoProblem(
            None,
            "is a video file: the 'flow' modality reads extracted flow; extract its frames "
            "first (keras-twostream extract), or train an RGB-only model ('rgb', 'rgb_diff')",
        )
    if not os.path.exists(path):
        raise _VideoProblem(None, "video file not found", missing=True)
    try:
        count, _ = video_source.verified_frame_count(path)
    except video_source.VideoDecodeError as error:
        raise _VideoProblem(None, error.reason) from None
    num_rgb = min(count - offset, total_frames) if total_frames > 0 else count - offset
    if num_rgb < 1:
        raise _VideoProblem(None, f"no frames after offset {offset} ({count} frames decode)")
    return num_rgb, 0, frames.DEFAULT_BOUND, None


class _VideoProblem(Exception):
    def __init__(self, file, problem, missing=False):
        super().__init__(problem)
        self.file = file
        self.problem = problem
        self.missing = missing


def _scan(table, root, modalities, flow_bound, on_error, errors, stored_means=False):
    """The validity table: one entry per usable video, in table order.

    With `stored_means`, `"centre"` holds the stored field means of all videos
    end to end (float32 `[sum of flow counts, 2]`, quantised units) and
    `"centre_start"` each video's first row in it, or -1 for a video without
    `flow_means.npy`.
    """
    need_rgb = "rgb" in modalities or "rgb_diff" in modalities
    need_flow = "flow" in modalities
    keep, dirs, num_rgb, num_flow, offsets, bounds, is_video = [], [], [], [], [], [], []
    centres, centre_start, stored_rows = [], [], 0
    totals = table["frames"] if "frames" in table.columns else [-1] * len(table)
    offs = table["offset"] if "offset" in table.columns else [0] * len(table)
    for i, (row, path, total, offset) in enumerate(
        zip(table.index, table["path"], totals, offs, strict=True)
    ):
        directory = _video_dir(path, root)
        total = -1 if pd.isna(total) else int(total)
        offset = 0 if pd.isna(offset) else int(offset)
        if offset < 0:
            raise ValueError(
                f"Row {row} of the annotation table: offset must be >= 0, got {offset}"
            )
        try:
            r, f, bound, centre = _inspect_video(
                directory, total, offset, need_rgb, need_flow, flow_bound, stored_means
            )
        except _VideoProblem as problem:
            where = problem.file or directory
            if on_error == "raise":
                error_type = (
                    FileNotFoundError
                    if "not found" in problem.problem or "missing" in problem.problem
                    else ValueError
                )
                raise error_type(
                    f"{where}: {problem.problem} (row {row} of the annotation table; "
                    "pass on_error='skip' to leave such videos out)"
                ) from None
            errors.add(directory, problem.file, problem.problem, row=row)
            continue
        keep.append(i)
        is_video.append(video_source.is_video_file(directory))
        dirs.append(directory)
        num_rgb.append(r)
        num_flow.append(f)
        offsets.append(offset)
        bounds.append(bound)
        if centre is None:
            centre_start.append(-1)
        else:
            centre_start.append(stored_rows)
            centres.append(centre)
            stored_rows += len(centre)
    if not keep:
        raise ValueError(
            f"No usable video in the annotation table ({errors.count} problems recorded; "
            f"first: {errors.records[0] if errors.records else None})."
        )
    if any(is_video) and not all(is_video):
        raise ValueError(
            f"The annotation table mixes video files ({dirs[is_video.index(True)]}) and frame "
            f"folders ({dirs[is_video.index(False)]}); use one kind per table."
        )
    return {
        "video_files": bool(is_video[0]),
        "keep": np.asarray(keep, np.int64),
        "dir": np.asarray(dirs, object),
        "num_rgb": np.asarray(num_rgb, np.int64),
        "num_flow": np.asarray(num_flow, np.int64),
        "offset": np.asarray(offsets, np.int64),
        "bound": np.asarray(bounds, np.float32),
        "row": np.asarray(table.index)[keep],
        "centre": (
            np.concatenate(centres).astype(np.float32) if centres else np.zeros((0, 2), np.float32)
        ),
        "centre_start": np.asarray(centre_start, np.int64),
    }


# --------------------------------------------------------------------------
# Per-epoch index drawing (NumPy) and per-sample decoding (tf ops).
# --------------------------------------------------------------------------


class _Sampling:
    """Static sampling configuration shared by the epoch draw and the decoder."""

    def __init__(
        self,
        modalities,
        num_segments,
        flow_length,
        diff_length,
        num_paths,
        path_interval,
        image_size,
        rgb_normalization,
        flow_normalization,
        mean_subtract_flow,
        stored_means="none",
        flow_stacking="flow",
        bidirectional_flow=False,
    ):
        self.modalities = modalities
        self.num_segments = num_segments
        self.flow_length = flow_length
        self.diff_length = diff_length
        self.num_paths = num_paths
        self.path_interval = path_interval
        self.image_size = image_size
        self.rgb_normalization = rgb_normalization
        self.flow_normalization = flow_normalization
        self.mean_subtract_flow = mean_subtract_flow
        # Which videos subtract stored field means (`flow_means.npy`) instead of
        # taking them from whole decoded fields: "all", "none" or "mixed".
        self.stored_means = stored_means
        # Two-stream Sect. 3.1: "trajectory" stacking (Eq. (2)) and bi-directional flow
        # (see keras_twostream.data.trajectory); both decode whole fields.
        self.flow_stacking = flow_stacking
        self.bidirectional_flow = bidirectional_flow
        self.need_rgb = "rgb" in modalities or "rgb_diff" in modalities
        self.need_flow = "flow" in modalities
        # Frames of RGB decoded per snippet: 1, or D + 1 for D differences.
        self.rgb_span = diff_length + 1 if "rgb_diff" in modalities else 1
        # Video files instead of frame folders (set from the scan; see video_source),
        # their frames resized to this short side like extracted frames.
        self.video_files = False
        self.video_short_side = video_source.SHORT_SIDE

    def num_positions(self, videos, index):
        """Snippet positions per video: frames with an RGB frame and a flow field."""
        num_rgb = videos["num_rgb"][index]
        num_flow = videos["num_flow"][index]
        if self.need_flow and self.need_rgb:
            return np.minimum(num_rgb, num_flow + 1)
        if self.need_flow:
            return num_flow + 1
        return num_rgb

    def positions(self, videos, index, training, rng, num_snippets=None):
        """Frame file indices of the videos `index`.

        Returns:
            `(rgb, flow)`: int32 `(n, K, Dr)` RGB indices (`Dr = D + 1` with
            rgb_diff, else 1) and `(n, K, L)` flow indices, or `(n, K * P, L)`
            with STPN multi-path sampling (`P` chunks per snippet).
        """
        k = self.num_segments if num_snippets is None else num_snippets
        n = len(index)
        num_rgb = videos["num_rgb"][index]
        num_flow = videos["num_flow"][index]
        num_positions = self.num_positions(videos, index)
        length = self.flow_length
        offset = videos["offset"][index][:, None, None] + 1
        if self.num_paths:
            # STPN Sect. 3.2: per snippet, P chunks of L flow fields, chunk
            # centres tau frames apart; the block of (P - 1) tau + L fields is
            # placed like a TSN snippet of that span (see
            # sampling.multipath_chunk_starts, which this equals for K = 1).
            paths = self.num_paths
            reps = np.repeat(np.arange(n), k)  # (n*K,)
            intervals = sampling.draw_intervals(self.path_interval, n * k, rng=rng)
            span = (paths - 1) * intervals + length + 1
            starts = sampling.segment_starts(
                num_positions[reps], k, span=span, training=training, rng=rng
            )  # (n*K, K): row r is video reps[r] with its own span; keep column r % K
            block = starts[np.arange(n * k), np.tile(np.arange(k), n)]
            chunks = block[:, None] + np.arange(paths)[None, :] * intervals[:, None]
            centre = sampling.clamp_positions(block + (span - 1) // 2, num_positions[reps])
            flow = sampling.snippet_positions(chunks, length, num_flow[reps][:, None])
            flow = flow.reshape(n, k * paths, length)
            rgb = sampling.snippet_positions(centre[:, None], self.rgb_span, num_rgb[reps][:, None])
            rgb = rgb.reshape(n, k, self.rgb_span)
        else:
            span = 1
            if self.need_flow:
                span = max(span, length + 1)
            if "rgb_diff" in self.modalities:
                span = max(span, self.diff_length + 1)
            starts = sampling.segment_starts(
                num_positions, k, span=span, training=training, rng=rng
            )
            rgb = sampling.snippet_positions(starts, self.rgb_span, num_rgb[:, None])
            flow = sampling.snippet_positions(starts, length, num_flow[:, None])
        return (rgb + offset).astype(np.int32), (flow + offset).astype(np.int32)

    def stored_centres(self, videos, index, flow_index):
        """The epoch arrays `flow_centre`, `has_centre` of the videos `index`.

        Returns:
            A dict: `"flow_centre"` float32 `(n, Gf, 2L)`, the stored mean (in
            quantised units) of every plane `flow_index` names, ordered `x1, y1,
            x2, y2, ...` like the decoded planes (zeros for videos without
            stored means); `"has_centre"` bool `(n,)`. Empty without stored means.
        """
        if self.stored_means == "none":
            return {}
        start = videos["centre_start"][index]  # (n,)
        has = start >= 0
        rows = np.where(has, start, 0)[:, None, None] + flow_index.astype(np.int64) - 1
        rows = np.where(has[:, None, None], rows, 0)  # (n, Gf, L)
        table = videos["centre"] if len(videos["centre"]) else np.zeros((1, 2), np.float32)
        centre = np.where(has[:, None, None, None], table[rows], 0.0)  # (n, Gf, L, 2)
        n, groups, length = flow_index.shape
        return {
            "flow_centre": centre.reshape(n, groups, 2 * length).astype(np.float32),
            "has_centre": has,
        }


# libjpeg's accurate integer IDCT: the pixels OpenCV, PIL and MMAction2's loaders get, and
# those the stored flow means of `keras_twostream.data.extract` are taken on (tested equal,
# byte for byte). TensorFlow's default ("INTEGER_FAST") differs from them by up to 13
# levels on a quality-95 flow JPEG (0.3 on average; a field's mean moves by up to 0.46
# levels) and decodes no faster (measured: 0.108 vs 0.116 ms per 340x256 field).
DCT_METHOD = "INTEGER_ACCURATE"


def _read(files, count):
    flat = tf.reshape(files, [-1])
    return [tf.io.read_file(flat[i]) for i in range(count)]


_SOI = b"\xff\xd8"  # JPEG start-of-image marker
_EOI = b"\xff\xd9"  # JPEG end-of-image marker


def _checked_jpeg(contents):
    """`contents`, after asserting that it is a whole JPEG file (issue 20).

    TensorFlow's decoders are not strict on their own (measured, TF 2.21):
    `decode_jpeg` decodes a PNG renamed `.jpg`, and `decode_and_crop_jpeg`
    returns a crop window of a truncated JPEG without error when the window
    lies in the part before the cut (libjpeg only warns "Premature end of JPEG
    data"). So every frame must start with the SOI marker and end with the EOI
    marker before it is decoded, whatever decoder or window follows; random
    bytes with a JPEG header then still fail in libjpeg. Choice: trailing bytes
    after EOI (no writer this project reads produces them) count as corrupt.
    """
    n = tf.strings.length(contents)
    whole = tf.logical_and(
        tf.equal(tf.strings.substr(contents, 0, 2), _SOI),
        tf.equal(tf.strings.substr(contents, tf.maximum(n - 2, 0), 2), _EOI),
    )
    whole = tf.logical_and(whole, n >= 4)
    check = tf.debugging.Assert(whole, ["not a whole JPEG file (SOI/EOI markers)"])
    with tf.control_dependencies([check]):
        return tf.identity(contents)


def jpeg_problem(contents):
    """What is wrong with the bytes of a frame file, by the pipeline's rules, or `None`.

    The same checks as the `tf.data` decoding (`_checked_jpeg`, then libjpeg with the
    accurate integer IDCT), so the diagnosis of a dropped sample names exactly what
    the pipeline refused.

    Args:
        contents: the file's bytes.

    Returns:
        `None` when the file decodes as a whole JPEG, else a description such as
        `"is not a valid JPEG (it starts with 0x89 0x50; ...)"`.

    Example:

    >>> from keras_twostream.data.pipeline import jpeg_problem
    >>> jpeg_problem(b"")
    'is not a valid JPEG (an empty file)'
    """
    contents = bytes(contents)
    if not contents:
        return "is not a valid JPEG (an empty file)"
    if contents[:2] != _SOI:
        head = " ".join(f"0x{b:02x}" for b in contents[:2])
        return f"is not a valid JPEG (it starts with {head}; a JPEG starts with 0xff 0xd8)"
    if len(contents) < 4 or contents[-2:] != _EOI:
        return (
            f"is not a valid JPEG (truncated: {len(contents)} bytes, no end-of-image "
            "marker 0xff 0xd9)"
        )
    try:
        tf.io.decode_jpeg(contents, dct_method=DCT_METHOD)
    except tf.errors.OpError as error:
        return f"is not a valid JPEG ({_op_message(error)})"
    return None


def _decode(contents, channels, window):
    contents = [_checked_jpeg(c) for c in contents]
    if window is None:
        return [tf.io.decode_jpeg(c, channels=channels, dct_method=DCT_METHOD) for c in contents]
    return [
        tf.io.decode_and_crop_jpeg(c, window, channels=channels, dct_method=DCT_METHOD)
        for c in contents
    ]


def _cut(frames, window, flip, size):
    """One view of uint8 `(T, H, W, C)` frames: crop `window` (or none), flip, resize.

    The flip is applied to the uint8 crop before the float resize: bilinear
    resizing with half-pixel centres commutes with a horizontal mirror, and
    mirroring bytes is cheaper than mirroring the float result.
    """
    if window is not None:
        frames = frames[:, window[0] : window[0] + window[2], window[1] : window[1] + window[3], :]
    frames = augment.flip_frames(frames, flip)
    return _resize(frames, size)


def _resize(images, size):
    """Bilinear resize of `[N, h, w, C]` to float32 `[N, *size, C]`; a cast when h, w == size.

    The resize reads uint8 directly (its kernel converts each pixel to float, so
    the result is bit-identical to casting first) and saves a pass.
    """
    same = tf.reduce_all(tf.equal(tf.shape(images)[1:3], tf.constant(size)))
    resized = tf.cond(
        same,
        lambda: tf.cast(images, tf.float32),
        lambda: tf.image.resize(images, size, method="bilinear"),
    )
    return tf.ensure_shape(resized, [images.shape[0], size[0], size[1], images.shape[-1]])


def _stack(views):
    """`tf.stack`, without its copy for a single view (the training case)."""
    return views[0][None] if len(views) == 1 else tf.stack(views)


def _windows(contents, crops):
    shape = tf.io.extract_jpeg_shape(contents)
    return [
        augment.crop_window(
            shape[0], shape[1], c["scale_h"], c["scale_w"], c["quarter_y"], c["quarter_x"]
        )
        for c in crops
    ]


def _decode_views(
    cfg, directory, rgb_index, flow_index, bound, crops, jitter=None, centre=None, has_centre=None
):
    """Decodes one sample's frames and cuts `len(crops)` views out of them.

    Args:
        cfg: the `_Sampling` configuration.
        directory: scalar string, the frame folder.
        rgb_index: int32 `(G, Dr)` RGB file indices (`Dr = D + 1` with rgb_diff).
        flow_index: int32 `(Gf, L)` flow file indices.
        bound: scalar float, the flow quantisation bound.
        crops: list of dicts `scale_h, scale_w, quarter_y, quarter_x, flip`
            (tensors or Python values); one crop decodes only the windows.
        jitter: optional dict with `brightness, contrast, saturation` scalars
            and/or `lighting`, AlexNet's PCA coefficients `(3,)`.
        centre: float32 `(Gf, 2L)` stored field means in quantised units (with
            `cfg.stored_means` "all" or "mixed"), else `None`.
        has_centre: scalar bool, whether `centre` holds this video's means
            (read with `cfg.stored_means == "mixed"`).

    Returns:
        A dict modality -> float32 `(len(crops), G, H, W, C)`.
    """
    size = cfg.image_size
    out = {}
    single = len(crops) == 1
    if cfg.need_rgb:
        groups, span = rgb_index.shape
        if cfg.video_files:
            # Frame i of a folder (img_{i:05d}.jpg, 1-based) is frame i - 1 of the video.
            decoded = video_source.frames_op(
                directory, tf.reshape(rgb_index, [-1]) - 1, cfg.video_short_side
            )  # [G*Dr, h, w, 3]
            shape = tf.shape(decoded)
            windows = [
                augment.crop_window(
                    shape[1], shape[2], c["scale_h"], c["scale_w"], c["quarter_y"], c["quarter_x"]
                )
                for c in crops
            ]
            decoded_windowed = False
        else:
            names = tf.strings.as_string(rgb_index, width=frames.INDEX_DIGITS, fill="0")
            files = tf.strings.join([directory, "/", frames.RGB_PREFIX, names, frames.FRAME_SUFFIX])
            contents = _read(files, groups * span)
            windows = _windows(contents[0], crops)
            # One view: decode only the window (tf.io.decode_and_crop_jpeg).
            decoded = tf.stack(_decode(contents, 3, windows[0] if single else None))
            decoded_windowed = single
        rgb_views, diff_views = [], []
        for crop, window in zip(crops, windows, strict=True):
            x = _cut(decoded, None if decoded_windowed else window, crop["flip"], size)
            if jitter is not None:
                x = x / 255.0
                if "brightness" in jitter:
                    x = augment.adjust_color(
                        x, jitter["brightness"], jitter["contrast"], jitter["saturation"]
                    )
                if "lighting" in jitter:
                    x = augment.adjust_lighting(x, jitter["lighting"])
                x = 255.0 * x
            x = augment.normalize_rgb(x, cfg.rgb_normalization)
            if span == 1:  # a reshape, not a strided copy
                rgb_views.append(tf.reshape(x, [groups, size[0], size[1], 3]))
                continue
            x = tf.reshape(x, [groups, span, size[0], size[1], 3])
            rgb_views.append(x[:, 0])
            if "rgb_diff" in cfg.modalities:
                diff = x[:, 1:] - x[:, :-1]  # [G, D, h, w, 3]
                diff = tf.transpose(diff, [0, 2, 3, 1, 4])  # [G, D, h, w, 3] -> [G, h, w, D, 3]
                diff_views.append(tf.reshape(diff, [groups, size[0], size[1], 3 * (span - 1)]))
        if "rgb" in cfg.modalities:
            out["rgb"] = _stack(rgb_views)
        if diff_views:
            out["rgb_diff"] = _stack(diff_views)
    if cfg.need_flow:
        out["flow"] = _flow_views(cfg, directory, flow_index, bound, crops, centre, has_centre)
    return out


def _flow_views(cfg, directory, flow_index, bound, crops, centre, has_centre):
    """The flow part of `_decode_views`: float32 `(len(crops), Gf, H, W, 2L)`.

    Two-stream paper Sect. 3.1, "Mean flow subtraction": each displacement
    field's mean vector, over the whole field, is subtracted. Where the frame
    folder stores those means (`flow_means.npy`, written at extraction) they are
    read from `centre` and a single view decodes only its crop window of each
    field; otherwise (older extractions, other tools) whole fields are decoded
    and averaged here. Both give the same values (tested).
    """
    groups, length = flow_index.shape
    names = tf.strings.as_string(flow_index, width=frames.INDEX_DIGITS, fill="0")
    x_files = tf.strings.join([directory, "/", frames.FLOW_X_PREFIX, names, frames.FRAME_SUFFIX])
    y_files = tf.strings.join([directory, "/", frames.FLOW_Y_PREFIX, names, frames.FRAME_SUFFIX])
    chains = None
    if cfg.bidirectional_flow:
        # Sect. 3.1: the snippet's L indices s..s+L-1 around tau = s + L/2 give the L/2
        # forward fields tau..tau+L/2-1 and the L/2 backward fields tau-1, .., tau-L/2
        # (backward pair i: frame i+1 -> i), in that order (keras_twostream.data.trajectory).
        half = length // 2
        back = names[:, :half][:, ::-1]
        bx = tf.strings.join([directory, "/", frames.BACKWARD_X_PREFIX, back, frames.FRAME_SUFFIX])
        by = tf.strings.join([directory, "/", frames.BACKWARD_Y_PREFIX, back, frames.FRAME_SUFFIX])
        x_files = tf.concat([x_files[:, half:], bx], axis=1)
        y_files = tf.concat([y_files[:, half:], by], axis=1)
        chains = [half, half]
    trajectory = cfg.flow_stacking == "trajectory"
    x_contents = _read(x_files, groups * length)
    y_contents = _read(y_files, groups * length)
    windows = _windows(x_contents[0], crops)
    single = len(crops) == 1

    def decode(window):
        # Eq. (1) of the two-stream paper: channels 2k-1, 2k hold d^x, d^y of field
        # k. The planes are stacked on a leading axis in (segment, field, x/y)
        # order; `_fused_flow` moves that axis last.
        xs = _decode(x_contents, 1, window)
        ys = _decode(y_contents, 1, window)
        planes = [t for i in range(groups * length) for t in (xs[i], ys[i])]
        return tf.stack(planes)[..., 0]  # [2*G*L, H, W] uint8

    def cut(planes, means, decoded_window):
        if decoded_window:  # `planes` holds the one view's window, at the origin
            origins = [tf.zeros([2], tf.int32)]
        else:  # whole fields; each view reads its window out of them
            origins = [w[:2] for w in windows]
        planes = _pad_to_bucket(planes)
        return _cut_flow(cfg, planes, origins, windows, crops, means, bound, groups, length)

    def along_trajectories(planes):
        # Eq. (2), on whole fields at their stored resolution, before any crop.
        return trajectory_planes(planes, bound, groups, length, chains)

    def whole_fields():
        if not cfg.mean_subtract_flow:
            if trajectory:
                return cut(along_trajectories(decode(None)), None, False)
            # No mean needed: one view decodes only its window.
            return cut(decode(windows[0] if single else None), None, single)
        planes = decode(None)
        # Each whole field's mean, in quantised units: the dequantisation
        # d = (q - 127.5) * 2b/255 is affine and bilinear resizing preserves
        # constants, so (q - mean(q)) * 2b/255 on the resized window is exact.
        # (An XLA reduction here measured 7x slower than TensorFlow's.)
        means = tf.reduce_mean(tf.cast(planes, tf.float32), axis=[1, 2])
        if trajectory:
            # The raw fields' means: sampling a field minus its mean (bilinear weights
            # sum to 1) equals the sampled field minus that mean.
            planes = along_trajectories(planes)
        return cut(planes, tf.reshape(means, [groups, 2 * length]), False)

    def stored_means():
        return cut(decode(windows[0] if single else None), centre, single)

    if cfg.stored_means == "all":
        return stored_means()
    if cfg.stored_means == "mixed":
        return tf.cond(tf.cast(has_centre, tf.bool), stored_means, whole_fields)
    return whole_fields()


_BUCKET = 64


def _pad_to_bucket(planes):
    """Pads `[P, h, w]` on the bottom and right to multiples of 64 pixels.

    `_fused_flow` is compiled once per input shape; padding the crop windows
    (TSN's four scales give ten window sizes per frame size) and whole frames
    (whose widths vary with the aspect ratio) to a few bucket sizes bounds the
    compilations. The padding is never read.
    """
    shape = tf.shape(planes)
    pad_h = -shape[1] % _BUCKET
    pad_w = -shape[2] % _BUCKET
    return tf.pad(planes, [[0, 0], [0, pad_h], [0, pad_w]])


def _resize_axis(in_size, out_size, origin, flip=None):
    """Source indices and weights of `tf.image.resize` (bilinear) along one axis.

    TensorFlow's ResizeBilinear with half-pixel centres: output `i` samples the
    input at `p = (i + 0.5) * (in_size / out_size) - 0.5`, between pixels
    `lower = max(floor(p), 0)` and `upper = min(ceil(p), in_size - 1)` with
    weight `lerp = p - floor(p)` on `upper`. The same float32 operations as the
    kernel, so the indices and weights are bit-identical (tested). `flip`
    mirrors the input (index `k` reads `in_size - 1 - k`: exactly the resize of
    the mirrored image); `origin` offsets the indices into a larger array.

    Returns:
        `(lower, upper, lerp)`: int32, int32, float32 vectors of `out_size`.
    """
    in_size = tf.cast(in_size, tf.int32)
    scale = tf.cast(in_size, tf.float32) / float(out_size)
    position = (tf.range(out_size, dtype=tf.float32) + 0.5) * scale - 0.5
    low = tf.floor(position)
    lerp = position - low
    lower = tf.maximum(tf.cast(low, tf.int32), 0)
    upper = tf.minimum(tf.cast(tf.math.ceil(position), tf.int32), in_size - 1)
    if flip is not None:
        flip = tf.cast(flip, tf.bool)
        lower = tf.where(flip, in_size - 1 - lower, lower)
        upper = tf.where(flip, in_size - 1 - upper, upper)
    return lower + origin, upper + origin, lerp


@tf.function(jit_compile=True)
def _fused_flow(planes, rows, cols, centre, factor):
    """Crop, flip, resize, channels-last and dequantise flow planes in one pass.

    One XLA kernel instead of five TensorFlow ops (mirror, transpose, resize,
    subtract, multiply), each a pass over the frames: the output is written
    once. The interpolation is TensorFlow's (same indices and weights, see
    `_resize_axis`, and the kernel's order of operations: along x in the upper
    and lower rows, then along y); XLA may fuse a multiply-add, which moves a
    value by at most 3e-5 quantisation levels.

    Args:
        planes: uint8 `[G*2L, H, W]` flow planes in (segment, field, x/y) order.
        rows: `(lower, upper, lerp)` of the `S0` output rows (`_resize_axis`).
        cols: `(lower, upper, lerp)` of the `S1` output columns.
        centre: float32 `[G, 2L]`, subtracted per plane (quantised units).
        factor: float32 `[2L]`, multiplied per channel.

    Returns:
        float32 `[G, S0, S1, 2L]`: `(resized planes - centre) * factor`.
    """
    groups, channels = centre.shape
    y0, y1, wy = rows
    x0, x1, wx = cols
    q = tf.cast(planes, tf.float32)
    top = tf.gather(q, y0, axis=1)  # [P, S0, W]
    bottom = tf.gather(q, y1, axis=1)
    top_left = tf.gather(top, x0, axis=2)  # [P, S0, S1]
    top = top_left + (tf.gather(top, x1, axis=2) - top_left) * wx
    bottom_left = tf.gather(bottom, x0, axis=2)
    bottom = bottom_left + (tf.gather(bottom, x1, axis=2) - bottom_left) * wx
    q = top + (bottom - top) * wy[:, None]
    size = (y0.shape[0], x0.shape[0])
    # [G*2L, S0, S1] -> [G, S0, S1, 2L]
    q = tf.transpose(tf.reshape(q, [groups, channels, size[0], size[1]]), [0, 2, 3, 1])
    return (q - centre[:, None, None, :]) * factor


def _cut_flow(cfg, planes, origins, windows, crops, centre, bound, groups, length):
    """Views of uint8 flow planes: crop, flip, resize, dequantise.

    Args:
        planes: uint8 `[2GL, H, W]`, whole fields or one view's decoded window
            (padded: only the windows are read).
        origins: per view, int32 `[y, x]` of its window in `planes`.
        windows: per view, its window `[y, x, h, w]` (its size is used).
        centre: float32 `[G, 2L]` field means in quantised units, or `None`
            (no mean subtraction: the quantisation midpoint 127.5).

    Returns:
        float32 `(len(crops), G, H, W, 2L)`: `(q - centre) * 2b/255` (divided by
        `b` with `flow_normalization="bound"`; `(q - centre) / 128` with
        `"mmaction"`, whose centre without mean subtraction is 128, not the
        quantisation midpoint), flow-x negated in mirrored views.
    """
    size = cfg.image_size
    bound = tf.cast(bound, tf.float32)
    scale = 2.0 * bound / 255.0
    midpoint = 127.5
    if cfg.flow_normalization == "bound":
        scale = scale / bound
    elif cfg.flow_normalization == "mmaction":
        scale = tf.constant(1.0 / MMACTION2_FLOW_STD)
        midpoint = MMACTION2_FLOW_MEAN
    if centre is None:
        centre = tf.fill([groups, 2 * length], midpoint)
    flip_sign = tf.constant([-1.0, 1.0] * length)  # a mirror negates flow-x
    views = []
    for crop, origin, window in zip(crops, origins, windows, strict=True):
        flip = tf.cast(crop["flip"], tf.bool)
        rows = _resize_axis(window[2], size[0], origin[0])
        cols = _resize_axis(window[3], size[1], origin[1], flip)
        factor = scale * tf.where(flip, flip_sign, tf.ones_like(flip_sign))
        views.append(_fused_flow(planes, rows, cols, centre, factor))
    return _stack(views)


# --------------------------------------------------------------------------
# Epoch source and error guard.
# --------------------------------------------------------------------------


class _EpochSource:
    """Draws a whole epoch of samples per iteration of the dataset."""

    def __init__(self, draw):
        self._draw = draw
        self._counter = 0
        self._lock = threading.Lock()
        self.epochs = {}
        self.latest = None
        self.on_draw = None  # called before each epoch is drawn (the guard's reset)

    def set_epoch(self, epoch):
        """The next iteration of the dataset draws `epoch` (the draws depend on (seed, epoch)
        only, so a run resumed at epoch `e` by `keras_twostream.training.ResumableCheckpoint`
        sees the batches of the uninterrupted run's epoch `e`)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(
                f"Expected epoch to be a non-negative integer. Received: epoch={epoch!r}"
            )
        with self._lock:
            self._counter = epoch

    def generate(self):
        if self.on_draw is not None:
            self.on_draw()
        with self._lock:
            epoch = self._counter
            self._counter += 1
        arrays = self._draw(epoch)
        n = len(arrays["seq"])
        arrays["epoch"] = np.full((n,), epoch, np.int64)
        with self._lock:
            self.epochs[epoch] = arrays
            for old in [e for e in self.epochs if e <= epoch - _KEEP_EPOCHS]:
                del self.epochs[old]
            self.latest = epoch
        # Fresh copies: tf.data may alias the yielded NumPy buffers and reuse them
        # in place (measured: the bound array was overwritten by 2 * bound / 255),
        # which must not touch the arrays kept for diagnosis or the video table.
        yield {k: np.array(v, copy=True) for k, v in arrays.items()}


def _op_message(error):
    """A TensorFlow error's message without the function-node prefix and op suffix."""
    message = getattr(error, "message", None) or str(error)
    message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", message)
    return re.sub(r"\s*\[Op:\w+\]", "", message).strip()


class _Guard:
    """Finds the samples `ignore_errors` dropped and names their bad file.

    Samples carry their position `seq` in the epoch; a parallel map with
    `deterministic=True` keeps that order, so a gap in `seq` after
    `ignore_errors()` is a dropped sample. A sentinel element after the last
    sample catches drops at the end of the epoch. The check runs in the graph
    (`_guarded`); Python is called only when samples are missing.
    """

    def __init__(self, source, cfg, errors, on_error, load):
        self.source = source
        self.cfg = cfg
        self.errors = errors
        self.on_error = on_error
        self.load = load
        # Set in the graph once a failure has been raised (on_error="raise"), so that
        # tf.data's threads, which run ahead of the consumer, never call into Python
        # again: a Python call in a background thread while the main thread (holding
        # the GIL) destroys the iterator after the error deadlocks the process
        # (measured: `keras-twostream train` hung after printing the traceback, the
        # main thread in ~PrefetchDatasetOp::Iterator waiting for a runner thread in
        # this guard's EagerPyFunc). Cleared when an epoch is drawn.
        self.failed = tf.Variable(False, trainable=False, name="dataset_failed")
        source.on_draw = lambda: self.failed.assign(False)

    def report_missing(self, epoch, seq, expected):
        """Reports the samples from `expected` on that the batch `seq` lacks.

        Args:
            epoch: the batch's epochs (one value repeated).
            seq: the batch's positions, increasing; `[-1]` for the sentinel,
                after which every position from `expected` to the end of the
                latest epoch is missing.
            expected: the first position not seen yet.

        Returns:
            `(count, message)`: the number of missing samples and, with
            `on_error="raise"`, the error naming the first one's bad file
            (raised in the graph, see `_guarded`), else `""`.
        """
        seq = np.asarray(seq).reshape(-1).astype(np.int64)
        expected = int(expected)
        if seq[0] >= 0:
            e = int(np.asarray(epoch).reshape(-1)[0])
            present = set(seq.tolist())
            missing = [s for s in range(expected, int(seq[-1])) if s not in present]
        elif self.source.latest is not None and self.source.latest in self.source.epochs:
            e = self.source.latest
            missing = range(expected, len(self.source.epochs[e]["seq"]))
        else:
            missing = []
        for s in missing:
            message = self._report(e, s)
            if message:
                return np.int64(len(missing)), message
        return np.int64(len(missing)), ""

    def _report(self, epoch, seq):
        arrays = self.source.epochs[epoch]
        element = {k: v[seq] for k, v in arrays.items()}
        directory = element["dir"].decode() if isinstance(element["dir"], bytes) else element["dir"]
        file, problem = self._diagnose(directory, element)
        if self.on_error == "raise":
            return (
                f"{file or directory}: {problem} (video {directory}, row {element['row']} of the "
                "annotation table; pass on_error='skip' to drop such samples)"
            )
        self.errors.add(directory, file, problem, row=int(element["row"]))
        return ""

    def _diagnose(self, directory, element):
        cfg = self.cfg
        if cfg.video_files:
            try:
                video_source.read_frames(
                    directory, np.asarray(element["rgb_index"]) - 1, cfg.video_short_side
                )
            except (OSError, ValueError) as error:  # VideoDecodeError is a ValueError
                return directory, getattr(error, "reason", str(error))
            return directory, "was dropped by tf.data for an unknown reason"
        files = []
        if cfg.need_rgb:
            files += [
                os.path.join(directory, _frame_name(frames.RGB_PREFIX, int(i)))
                for i in np.unique(element["rgb_index"])
            ]
        if cfg.need_flow:
            for i in np.unique(element["flow_index"]):
                files += list(frames.flow_frame_paths(directory, int(i)))
        shapes = {}
        for path in files:
            try:
                contents = tf.io.read_file(path)
            except tf.errors.OpError as error:
                return path, f"cannot be read ({_op_message(error)})"
            problem = jpeg_problem(contents.numpy())
            if problem is not None:
                return path, problem
            shape = tuple(tf.io.extract_jpeg_shape(contents).numpy()[:2])
            kind = os.path.basename(path)[:2]
            if shapes.setdefault(kind, (shape, path))[0] != shape:
                first_shape, first = shapes[kind]
                return (
                    path,
                    f"has size {shape}, but {first} has {first_shape}: frames differ in size",
                )
        try:
            self.load({k: tf.constant(v) for k, v in element.items()})
        except (tf.errors.OpError, ValueError) as error:
            return None, f"could not be loaded ({_op_message(error)})"
        return None, "was dropped by tf.data for an unknown reason"


def _guarded(source, signature, load, guard, batch_size=None, drop_remainder=False, size=None):
    """Epoch arrays -> loaded (and batched) samples; failures dropped, reported, sentinel removed.

    The gap check runs once per sample, in the graph (a `scan` over the
    position expected next), before batching; only a missing sample calls
    Python to name it. A sentinel element with `seq = -1` follows the last
    sample of each epoch, so drops at the very end are caught too, and because
    the check runs before `batch`, the epoch's last batch is not emitted before
    the sentinel has been checked (issue 20: with the check after batching, a
    drop in the last batch was only seen by the sentinel batch, which
    `model.fit` never pulls, since it stops after the known number of steps;
    training then went on with a sample fewer and exited 0). `size` is the
    number of samples of an epoch. With `drop_remainder`, the last incomplete
    batch is dropped after the check, so its samples are not taken for failures.
    """
    ds = tf.data.Dataset.from_generator(source.generate, output_signature=signature)
    ds = ds.flat_map(tf.data.Dataset.from_tensor_slices)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors()
    spec = ds.element_spec

    def sentinel(_):
        def zeros(s):
            return tf.zeros([1 if d is None else d for d in s.shape], s.dtype)

        inputs, label, epoch, seq = tf.nest.map_structure(zeros, spec)
        return inputs, label, epoch - 1, seq - 1

    ds = ds.concatenate(tf.data.Dataset.range(1).map(sentinel))
    failed = guard.failed
    raising = guard.on_error == "raise"

    def call_guard(epoch, seq, expected):
        count, message = tf.py_function(
            guard.report_missing, [epoch, seq, expected], [tf.int64, tf.string]
        )
        if not raising:
            return count
        # Raised here, in the graph, after setting `failed`: later checks raise
        # without calling Python (see `_Guard.__init__`).
        flag = failed.assign(tf.not_equal(message, ""))
        with tf.control_dependencies([flag]):
            check = tf.debugging.Assert(tf.equal(message, ""), [message], summarize=1)
        with tf.control_dependencies([check]):
            return tf.identity(count)

    def already_failed():
        check = tf.debugging.Assert(
            False, ["an earlier sample of this dataset failed to load (see the first error)"]
        )
        with tf.control_dependencies([check]):
            return tf.constant(0, tf.int64)

    def check(expected, element):
        inputs, label, epoch, seq = element
        seq = tf.reshape(seq, [-1])
        is_sentinel = seq[0] < 0
        count = tf.cast(tf.size(seq), tf.int64)
        complete = tf.reduce_all(tf.equal(seq, expected + tf.range(count, dtype=tf.int64)))
        complete = tf.where(is_sentinel, tf.equal(expected, size), complete)
        reported = tf.cond(
            complete,
            lambda: tf.constant(0, tf.int64),
            lambda: tf.cond(
                failed.read_value(),
                already_failed,
                lambda: call_guard(tf.reshape(epoch, [-1]), seq, expected),
            ),
        )
        following = tf.where(is_sentinel, tf.constant(0, tf.int64), seq[-1] + 1)
        return following + 0 * reported, (inputs, label, is_sentinel)

    ds = ds.scan(tf.constant(0, tf.int64), check)  # sequential: the samples in order
    ds = ds.filter(lambda inputs, label, is_sentinel: tf.logical_not(is_sentinel))
    ds = ds.map(lambda inputs, label, _: (inputs, label))
    if batch_size is None:
        return ds
    # In parallel, in order: a sequential batch copy (8 x 7.8 MB for 224x224 clips)
    # capped the parallel map (measured on 2 idle cores: 139 clips/s, 186 unbatched).
    ds = ds.batch(batch_size, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if drop_remainder:
        ds = ds.filter(lambda inputs, label: tf.equal(tf.shape(label)[0], batch_size))

        def static_batch(inputs, label):
            def fix(t):
                return tf.ensure_shape(t, [batch_size, *t.shape[1:]])

            return tf.nest.map_structure(fix, (inputs, label))

        return ds.map(static_batch)
    return ds


def _epoch_signature(arrays):
    def spec(value):
        value = np.asarray(value)
        dtype = tf.string if value.dtype == object else tf.as_dtype(value.dtype)
        return tf.TensorSpec((None,) + value.shape[1:], dtype)

    return {k: spec(v) for k, v in arrays.items()}


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


def _check_backward_flow(videos, on_error, errors):
    """Raises (or records) for folders without backward flow; returns a bool mask of those with.

    (With bidirectional flow no stored means are used, so `videos["centre"]` is empty and
    every other entry of `videos` is per video.)
    """
    has = np.ones(len(videos["dir"]), bool)
    for i, (directory, row) in enumerate(zip(videos["dir"], videos["row"], strict=True)):
        first = frames.backward_flow_frame_paths(directory, 1)[0]
        if not os.path.exists(first):
            problem = (
                "no backward flow (bidirectional_flow=True reads bx_/by_ files; extract "
                "with keras-twostream extract --flow tvl1-xla --backward-flow)"
            )
            if on_error == "raise":
                raise FileNotFoundError(f"{first}: {problem} (row {row} of the annotation table)")
            errors.add(directory, first, problem, row=row)
            has[i] = False
    return has


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
        shuffle: shuffle the videos each epoch; defaults to `training`.
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
    shuffle = training if shuffle is None else bool(shuffle)
    use_jitter = training and any(v > 0 for v in jitter_amounts.values())
    _check_choice(augmentation, AUGMENTATIONS, "augmentation")
    use_lighting = training and augmentation == "two_stream"
    centre = augment.test_crop_params(1, cfg.image_size, scale_size)[0]
    n = len(videos["dir"])

    def draw(epoch):
        if not training:  # deterministic; the seed only moves STPN's tau draws
            rng = np.random.default_rng(0 if seed is None else seed)
        elif seed is not None:
            rng = np.random.default_rng([int(seed), epoch])
        else:
            rng = np.random.default_rng()
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
    ds = ds.prefetch(tf.data.AUTOTUNE)
    ds.dataset_errors = errors
    ds._draw_epoch = draw  # epoch -> the index/augmentation arrays (benchmarks, debugging)
    ds.set_epoch = source.set_epoch  # resuming a run at an epoch (training.ResumableCheckpoint)
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
    `keras_twostream.data.augment.test_crop_params`; flipped views negate flow-x.

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
    crop_params = augment.test_crop_params(crops, image_size, scale_size)
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


def _output_names(model, outputs):
    if isinstance(outputs, dict):
        return list(outputs), [outputs[k] for k in outputs]
    if isinstance(outputs, (list, tuple)):
        names = list(getattr(model, "output_names", None) or [])
        if len(names) != len(outputs):
            names = [f"output_{i}" for i in range(len(outputs))]
        return names, list(outputs)
    names = list(getattr(model, "output_names", None) or [])
    return [names[0] if len(names) == 1 else "output"], [outputs]


def predict_video_scores(
    model, dataset, activation=None, max_views_per_call=None, return_labels=False
):
    """Scores every view of every video and averages them per video.

    The last step of the test protocol: "the class scores for the whole video
    are then obtained by averaging the scores across the sampled frames and
    crops therein" (two-stream paper, Sect. 5).

    Args:
        model: a Keras model taking the inputs dict of `dataset` (any backend).
        dataset: a dataset from `make_test_dataset` (or any dataset whose
            elements are `(inputs, label)` holding one video's views on axis 0).
        activation: `None` averages the outputs as the model returns them;
            `"softmax"` averages softmax scores of logits.
        max_views_per_call: split a video's views into calls of at most this
            many (to bound memory); `None` scores all views at once.
        return_labels: also return the labels.

    Returns:
        A dict from output name (the keys of a dict-output model, else
        `model.output_names`) to a float32 NumPy array `(num_videos, ...)`,
        the mean over views of that output; with `return_labels`, a pair
        `(scores, labels)` where `labels` is `(num_videos,)` or
        `(num_videos, C)`.

    Example:

    >>> import keras, pandas as pd
    >>> from keras_twostream.data.pipeline import make_test_dataset, predict_video_scores
    >>> table = pd.DataFrame({"path": ["tests/data/mmaction2/imgs"], "label": [0]})
    >>> ds = make_test_dataset(table, modalities=("rgb",), num_frames=2, crops=1, image_size=32)
    >>> x = keras.Input((1, 32, 32, 3), name="rgb")
    >>> y = keras.layers.Dense(4, name="scores")(keras.layers.Flatten()(x))
    >>> model = keras.Model({"rgb": x}, y)
    >>> predict_video_scores(model, ds)["scores"].shape
    (1, 4)
    """
    _check_choice(activation, (None, "softmax"), "activation")
    if max_views_per_call is not None:
        max_views_per_call = _check_int(max_views_per_call, "max_views_per_call")
    scores, labels, names = None, [], None
    for inputs, label in dataset:
        inputs = {k: np.asarray(v) for k, v in inputs.items()}
        views = len(next(iter(inputs.values())))
        step = max_views_per_call or views
        chunks = []
        for start in range(0, views, step):
            part = {k: v[start : start + step] for k, v in inputs.items()}
            names, outputs = _output_names(model, model.predict_on_batch(part))
            chunks.append([np.asarray(o, np.float32) for o in outputs])
        per_output = [np.concatenate([c[i] for c in chunks]) for i in range(len(names))]
        if activation == "softmax":
            per_output = [_softmax(o) for o in per_output]
        means = [o.mean(axis=0) for o in per_output]
        if scores is None:
            scores = {name: [] for name in names}
        for name, mean in zip(names, means, strict=True):
            scores[name].append(mean)
        labels.append(np.asarray(label))
    if scores is None:
        raise ValueError("predict_video_scores: the dataset yielded no video.")
    scores = {name: np.stack(values).astype(np.float32) for name, values in scores.items()}
    if return_labels:
        return scores, np.stack(labels)
    return scores


def _softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)
