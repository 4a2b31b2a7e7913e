"""Frame index sampling for two-stream training and testing (pure NumPy).

Every function here works on 0-based *positions* inside a video's usable range
of frames; the frame file index is `offset + 1 + position` (TSN/MMAction2 frame
folders are 1-based). A position `t` addresses RGB frame `t` and the flow field
`d_t` from frame `t` to frame `t + 1` (the flow pair with file index
`offset + 1 + t`).

A *snippet* starting at position `t` (Eq. (1) of the two-stream paper, Simonyan
& Zisserman 2014) is RGB frame `t` together with the flow fields
`d_t, ..., d_{t+L-1}`; the cross-modality attention paper (Chi et al., Sect.
4.1) states the same alignment: "the RGB frame is corresponding to the first
optical flow field". A snippet therefore spans `L + 1` frames.

The functions accept a scalar video length or an array of lengths (one per
video, vectorised so a whole epoch is drawn in one NumPy call) and draw from a
`numpy.random.Generator`, so a seeded pipeline is reproducible no matter how
many threads decode the frames. Short videos never fail: positions are clamped
into range, which repeats frames (MMAction2's `SampleFrames` does the same).
"""

import numpy as np

# Which videos make up a training epoch (`make_dataset(video_sampling=...)`): each video once,
# shuffled; or videos drawn "uniformly across the classes" (two-stream paper, Sect. 5).
VIDEO_SAMPLINGS = ("shuffle", "class_uniform")

__all__ = [
    "VIDEO_SAMPLINGS",
    "clamp_positions",
    "class_uniform_indices",
    "draw_intervals",
    "multipath_chunk_starts",
    "segment_starts",
    "snippet_positions",
    "test_starts",
]


def _as_int_array(value, name):
    array = np.asarray(value)
    if array.dtype.kind not in "iu":
        if array.dtype.kind == "f" and np.all(np.equal(np.mod(array, 1), 0)):
            array = array.astype(np.int64)
        else:
            raise ValueError(f"Expected {name} to hold integers. Received: {name}={value!r}")
    return array.astype(np.int64)


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"Expected {name} to be an integer >= 1. Received: {name}={value!r}")


def clamp_positions(positions, num_positions):
    """Clamps positions into `[0, num_positions - 1]`, repeating edge frames.

    Args:
        positions: integer array of positions, any shape.
        num_positions: number of frames (or flow fields) available; a scalar or
            an array broadcastable against `positions`. A length of 0 is
            treated as 1 so the result is always a valid index.

    Returns:
        An int64 array with the shape of `positions`.

    Example:

    >>> from keras_twostream.data.sampling import clamp_positions
    >>> clamp_positions([-1, 0, 3, 7], 5).tolist()
    [0, 0, 3, 4]
    """
    positions = _as_int_array(positions, "positions")
    upper = np.maximum(_as_int_array(num_positions, "num_positions"), 1) - 1
    return np.clip(positions, 0, upper)


def _usable(num_positions, span):
    """Number of valid snippet starts, at least 1 (TSN: num_frames - new_length + 1)."""
    return np.maximum(num_positions - span + 1, 1)


def segment_starts(num_positions, num_segments, span=1, training=True, rng=None):
    """TSN segment sampling: one snippet start per segment.

    The usable starts `[0, num_positions - span]` are divided into
    `num_segments` segments of equal duration. In training, a start is drawn
    uniformly inside each segment (TSN, Wang et al. ECCV 2016, Sect. 3.1, and
    its reference `_sample_indices`: `arange(K) * d + randint(d)` with
    `d = usable // K`, so the last `usable % K` starts are never drawn). In
    testing, each segment contributes its centre, `int(d / 2 + d * k)` with
    `d = usable / K` (TSN's `_get_val_indices`), which is deterministic. When a
    video has fewer usable starts than segments, training draws `K` sorted
    starts with repetition and testing repeats the centres; snippets running
    past the end are clamped by `snippet_positions`.

    Args:
        num_positions: number of frames of the video (or of each video: an
            array of shape `(n,)`).
        num_segments: `K`, the number of segments.
        span: frames covered by one snippet (1 for RGB, `L + 1` for a stack of
            `L` flow fields, `D + 1` for `D` RGB differences), an int or an
            array of shape `(n,)`.
        training: random offsets (`True`) or segment centres (`False`).
        rng: a `numpy.random.Generator`; required when `training=True`.

    Returns:
        int64 starts of shape `(K,)` for a scalar `num_positions`, else `(n, K)`.

    Example:

    >>> from keras_twostream.data.sampling import segment_starts
    >>> segment_starts(30, 3, training=False).tolist()
    [5, 15, 25]
    """
    _check_positive_int(num_segments, "num_segments")
    num_positions = _as_int_array(num_positions, "num_positions")
    span = _as_int_array(span, "span")
    if np.any(span < 1):
        raise ValueError(f"Expected span >= 1. Received: span={span!r}")
    scalar = num_positions.ndim == 0 and span.ndim == 0
    num_positions, span = np.broadcast_arrays(np.atleast_1d(num_positions), np.atleast_1d(span))
    usable = _usable(num_positions, span)[:, None]  # (n, 1)
    k = np.arange(num_segments)[None, :]  # (1, K)
    if training:
        if rng is None:
            raise ValueError("segment_starts(training=True) needs rng, a numpy.random.Generator.")
        n = usable.shape[0]
        duration = usable // num_segments
        # Both branches are drawn for every video so the random stream, and
        # therefore a seeded epoch, does not depend on the video lengths.
        within = rng.integers(0, np.maximum(duration, 1), size=(n, num_segments))
        short = np.sort(rng.integers(0, usable, size=(n, num_segments)), axis=1)
        starts = np.where(duration > 0, k * duration + within, short)
    else:
        tick = usable / num_segments
        starts = (tick / 2.0 + tick * k).astype(np.int64)
    starts = starts.astype(np.int64)
    return starts[0] if scalar else starts


def test_starts(num_positions, num_frames=25, span=1):
    """Equally spaced snippet starts of the test protocol (25 frames in the papers).

    "We sample a fixed number of frames (25 in our experiments) with equal
    temporal spacing between them" (two-stream paper, Sect. 5, Testing). This is
    the centre rule of `segment_starts(..., training=False)` with `num_frames`
    segments, as in TSN's test script.

    Args:
        num_positions: number of frames of the video, scalar or `(n,)`.
        num_frames: number of sampled frames (snippets).
        span: frames covered by one snippet, as in `segment_starts`.

    Returns:
        int64 starts of shape `(num_frames,)` or `(n, num_frames)`.

    Example:

    >>> from keras_twostream.data.sampling import test_starts
    >>> test_starts(100, num_frames=4).tolist()
    [12, 37, 62, 87]
    """
    _check_positive_int(num_frames, "num_frames")
    return segment_starts(num_positions, num_frames, span=span, training=False)


def snippet_positions(starts, length, num_positions):
    """Consecutive positions `start, ..., start + length - 1`, clamped to the video.

    Builds the frame positions of a flow stack (Eq. (1) of the two-stream paper:
    channel pair `k` holds `d_{tau+k-1}`) or of an RGB-difference stack.

    Args:
        starts: integer array of snippet starts, any shape `S`.
        length: number of consecutive positions per snippet.
        num_positions: number of frames or flow fields available (scalar, or an
            array broadcastable to `S`).

    Returns:
        int64 array of shape `S + (length,)`.

    Example:

    >>> from keras_twostream.data.sampling import snippet_positions
    >>> snippet_positions([0, 3], 3, 4).tolist()
    [[0, 1, 2], [3, 3, 3]]
    """
    _check_positive_int(length, "length")
    starts = _as_int_array(starts, "starts")
    num_positions = _as_int_array(num_positions, "num_positions")
    positions = starts[..., None] + np.arange(length)
    return clamp_positions(positions, np.asarray(num_positions)[..., None])


def draw_intervals(interval, size, rng=None):
    """The STPN interval tau between flow chunks, one per video.

    STPN (Wang et al. CVPR 2017, Sect. 3.2): "tau is randomly selected from 1
    to 10" "for both training and testing". An int fixes tau; a `(low, high)`
    pair draws it uniformly from `low..high` inclusive.

    Args:
        interval: an int >= 1 or a pair `(low, high)` with `1 <= low <= high`.
        size: number of videos.
        rng: a `numpy.random.Generator`, needed for a range.

    Returns:
        int64 array of shape `(size,)`.

    Example:

    >>> from keras_twostream.data.sampling import draw_intervals
    >>> draw_intervals(4, 3).tolist()
    [4, 4, 4]
    """
    if isinstance(interval, (int, np.integer)) and not isinstance(interval, bool):
        _check_positive_int(interval, "interval")
        return np.full((size,), int(interval), np.int64)
    try:
        low, high = (int(v) for v in interval)
    except (TypeError, ValueError):
        raise ValueError(
            "Expected interval to be an int >= 1 or a pair (low, high). "
            f"Received: interval={interval!r}"
        ) from None
    if not 1 <= low <= high:
        raise ValueError(f"Expected 1 <= low <= high in interval. Received: interval={interval!r}")
    if rng is None:
        raise ValueError("draw_intervals with a (low, high) range needs rng.")
    return rng.integers(low, high + 1, size=(size,)).astype(np.int64)


def multipath_chunk_starts(num_positions, num_paths, length, intervals, training=True, rng=None):
    """Flow chunk starts of STPN's multi-path temporal subnetworks.

    STPN (Sect. 3.2) samples `P` chunks of `L` consecutive flow fields "at an
    interval of tau", each chunk covering "the previous L/2 and the next L/2
    frames" around its centre. Here chunk `p` starts at `s + p * tau`, so chunk
    centres are `tau` frames apart and the `P` chunks span `(P - 1) * tau + L`
    flow fields (`+ 1` frames). The block start `s` is drawn like one TSN
    segment: uniformly in training, the centre of the video in testing.

    Args:
        num_positions: number of frames of the video, scalar or `(n,)`.
        num_paths: `P`, the number of chunks (3 in the paper's final model).
        length: `L`, flow fields per chunk (10 in the paper).
        intervals: tau per video, an int or an int array of shape `(n,)`.
        training: random block start (`True`) or centred (`False`).
        rng: a `numpy.random.Generator`, required when `training=True`.

    Returns:
        A pair `(chunk_starts, centre)`: int64 chunk starts of shape `(P,)` or
        `(n, P)` (not yet clamped; clamp with `snippet_positions`), and the
        position of the centre frame of the whole block, `(,)` or `(n,)`,
        clamped, for the RGB frame that goes with the chunks.

    Example:

    >>> from keras_twostream.data.sampling import multipath_chunk_starts
    >>> starts, centre = multipath_chunk_starts(60, 3, 10, 5, training=False)
    >>> starts.tolist(), int(centre)
    ([20, 25, 30], 30)
    """
    _check_positive_int(num_paths, "num_paths")
    _check_positive_int(length, "length")
    num_positions = _as_int_array(num_positions, "num_positions")
    intervals = _as_int_array(intervals, "intervals")
    if np.any(intervals < 1):
        raise ValueError(f"Expected intervals >= 1. Received: intervals={intervals!r}")
    scalar = num_positions.ndim == 0 and intervals.ndim == 0
    num_positions, intervals = np.broadcast_arrays(
        np.atleast_1d(num_positions), np.atleast_1d(intervals)
    )
    span = (num_paths - 1) * intervals + length + 1  # frames covered by the block
    block = segment_starts(num_positions, 1, span=span, training=training, rng=rng)[:, 0]
    starts = block[:, None] + np.arange(num_paths)[None, :] * intervals[:, None]
    centre = clamp_positions(block + (span - 1) // 2, num_positions)
    if scalar:
        return starts[0], centre[0]
    return starts, centre


def class_uniform_indices(classes, num_samples, rng, class_probabilities=None):
    """Draws videos "uniformly across the classes" (two-stream paper, Sect. 5).

    "A mini-batch of 256 samples is constructed by sampling 256 training videos
    (uniformly across the classes)": each sample first draws a class, uniformly
    over the classes that have videos, then a video uniformly among that class's
    videos, both with replacement. A class with few videos is therefore seen as
    often as a class with many, and its videos more often each.

    Args:
        classes: int array `(n,)`, the class of each video (any integers: for
            multi-task training, one id per (task, label) pair).
        num_samples: how many videos to draw.
        rng: a `numpy.random.Generator`.
        class_probabilities: `None` (uniform over the classes present), or a
            float array with one probability per class present, in the order
            of `numpy.unique(classes)`, summing to 1.

    Returns:
        int64 `(num_samples,)` indices into `classes`.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.data.sampling import class_uniform_indices
    >>> classes = np.array([0] * 8 + [1] * 2)  # 8 videos of class 0, 2 of class 1
    >>> picks = class_uniform_indices(classes, 10000, np.random.default_rng(0))
    >>> round(float(np.mean(classes[picks] == 1)), 2)  # half the samples, not a fifth
    0.5
    """
    classes = _as_int_array(classes, "classes").reshape(-1)
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)):
        raise ValueError(f"Expected num_samples >= 0. Received: num_samples={num_samples!r}")
    if num_samples < 0:
        raise ValueError(f"Expected num_samples >= 0. Received: num_samples={num_samples!r}")
    if classes.size == 0:
        raise ValueError("Expected at least one video to draw from. Received: classes=[]")
    present, inverse, counts = np.unique(classes, return_inverse=True, return_counts=True)
    if class_probabilities is None:
        picked = rng.integers(len(present), size=num_samples)
    else:
        p = np.asarray(class_probabilities, np.float64).reshape(-1)
        if p.shape != present.shape or np.any(p < 0) or not np.isclose(p.sum(), 1.0):
            raise ValueError(
                f"Expected class_probabilities: {len(present)} probabilities >= 0 summing to 1, "
                f"one per class present ({present.tolist()}). Received: {class_probabilities!r}"
            )
        picked = rng.choice(len(present), size=num_samples, p=p / p.sum())
    # The videos of class c are by_class[starts[c] : starts[c] + counts[c]].
    by_class = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    within = rng.integers(0, counts[picked])  # uniform among the class's videos
    return by_class[starts[picked] + within].astype(np.int64)


# --------------------------------------------------------------------------
# The sampling plan of a pipeline (moved from data/pipeline.py).
# --------------------------------------------------------------------------


class _Sampling:
    """Static sampling configuration shared by the epoch draw and the decoder.

    The sampling plan of `keras_twostream.data.pipeline`: which frame files each sample
    reads (`positions`, drawn per epoch in NumPy) and the static settings the decoder
    (`keras_twostream.data.decoding`) needs.
    """

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
        from keras_twostream.data.video_source import SHORT_SIDE  # OpenCV, NumPy

        self.video_short_side = SHORT_SIDE

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
            # multipath_chunk_starts, which this equals for K = 1).
            paths = self.num_paths
            reps = np.repeat(np.arange(n), k)  # (n*K,)
            intervals = draw_intervals(self.path_interval, n * k, rng=rng)
            span = (paths - 1) * intervals + length + 1
            starts = segment_starts(
                num_positions[reps], k, span=span, training=training, rng=rng
            )  # (n*K, K): row r is video reps[r] with its own span; keep column r % K
            block = starts[np.arange(n * k), np.tile(np.arange(k), n)]
            chunks = block[:, None] + np.arange(paths)[None, :] * intervals[:, None]
            centre = clamp_positions(block + (span - 1) // 2, num_positions[reps])
            flow = snippet_positions(chunks, length, num_flow[reps][:, None])
            flow = flow.reshape(n, k * paths, length)
            rgb = snippet_positions(centre[:, None], self.rgb_span, num_rgb[reps][:, None])
            rgb = rgb.reshape(n, k, self.rgb_span)
        else:
            span = 1
            if self.need_flow:
                span = max(span, length + 1)
            if "rgb_diff" in self.modalities:
                span = max(span, self.diff_length + 1)
            starts = segment_starts(num_positions, k, span=span, training=training, rng=rng)
            rgb = snippet_positions(starts, self.rgb_span, num_rgb[:, None])
            flow = snippet_positions(starts, length, num_flow[:, None])
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
