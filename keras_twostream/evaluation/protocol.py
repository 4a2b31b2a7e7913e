"""The test-time views protocol: snippets x crops per video, scores averaged over the views.

"At test time, given a video, we sample a fixed number of frames (25 in our experiments)
with equal temporal spacing between them. From each of the frames we then obtain 10
ConvNet inputs by cropping and flipping four corners and the center of the frame. The
class scores for the whole video are then obtained by averaging the scores across the
sampled frames and crops therein" (two-stream paper, Sect. 5; the CMA paper, Sect. 4.4,
and TSN do the same; STPN, Sect. 4.7, samples its 10 snippets at random instead).

The parts, and where they run:

* snippets (`TEST_SNIPPETS`): `"uniform"`, `N` equally spaced snippets, or `"random"`,
  STPN's one random snippet in each of `N` equal parts (seeded); drawn by
  `keras_twostream.data.sampling`;
* crops (`TEST_CROPS`, `test_crop_params`): 1 (centre), 3 (squares along the long side)
  or 10 (four corners and the centre, then their mirror images; flow-x is negated in
  mirrored views);
* views (`num_views`, `view_index`): `N * crops` per video in frame-major order, view
  `n * crops + c` being crop `c` of snippet `n`, as
  `keras_twostream.data.make_test_dataset` yields them;
* view kinds (`TEST_VIEWS`): `"frame"` scores each view with the model rebuilt for one
  segment; `"clip"` (TCLSTA's LSTM, 3-D CMA) scores clips of `T` frames, the `N` views of
  a crop dealt into `N // T` interleaved clips (`regroup_clips`);
* the average (`predict_video_scores`): every output of the model averaged over a
  video's views.

`resolve_protocol` picks a model's frames, crops and view kind from its model card and
its paper's defaults; `keras-twostream evaluate`, `keras-twostream predict` and
`keras_twostream.predict_video` use it.

Layering: `data/` may not import `evaluation/`, and `make_test_dataset` needs the crop
geometry, so the pure geometry and the average live in `keras_twostream.data.views`
(NumPy and Python only) and are re-exported here, the protocol's public face; what sits
on top of the data side (`regroup_clips`, `resolve_protocol`) is defined here.
"""

from keras_twostream.data.views import (
    FIVE_POSITIONS,
    TEST_CROPS,
    TEST_SNIPPETS,
    num_views,
    predict_video_scores,
    test_crop_params,
    view_index,
)

__all__ = [
    "FIVE_POSITIONS",
    "TEST_CROPS",
    "TEST_SNIPPETS",
    "TEST_VIEWS",
    "num_views",
    "predict_video_scores",
    "regroup_clips",
    "resolve_protocol",
    "test_crop_params",
    "view_index",
]

TEST_VIEWS = ("frame", "clip")


def resolve_protocol(test=None, defaults=None, frames=None, crops=None):
    """The `(frames, crops, views)` of a model's test protocol.

    Each value is the one given, else the model card's (`test`, the `"test"` entry
    `keras-twostream train` writes), else the paper's default (`defaults`, as
    `keras_twostream.commands.defaults.training_defaults` gives them: `test_frames`,
    `test_crops`, `test_views`).

    Args:
        test: the model card's test settings, a dict with any of `"frames"`, `"crops"`,
            `"views"`, or `None`.
        defaults: a dict with `"test_frames"`, `"test_crops"`, `"test_views"`.
        frames: snippets per video, or `None`.
        crops: crops per snippet (1, 3 or 10), or `None`.

    Returns:
        `(frames, crops, views)`: two ints and `"frame"` or `"clip"`.

    Example:

    >>> from keras_twostream.evaluation.protocol import resolve_protocol
    >>> defaults = {"test_frames": 25, "test_crops": 10, "test_views": "frame"}
    >>> resolve_protocol({"crops": 1}, defaults)
    (25, 1, 'frame')
    >>> resolve_protocol({"crops": 1}, defaults, frames=5, crops=3)
    (5, 3, 'frame')
    """
    test = test or {}
    defaults = defaults or {}
    frames = frames or test.get("frames") or defaults.get("test_frames")
    crops = crops or test.get("crops") or defaults.get("test_crops")
    views = test.get("views") or defaults.get("test_views")
    if frames is None or crops is None or views is None:
        raise ValueError(
            "Expected defaults with 'test_frames', 'test_crops' and 'test_views' where the "
            f"model card gives none. Received: test={test!r}, defaults={defaults!r}"
        )
    return int(frames), int(crops), views


def regroup_clips(inputs, num_frames, crops, clip_length):
    """Deals `N` frame views into `N // T` interleaved clips of `T` frames, per crop.

    Args:
        inputs: dict of `(N * crops, 1, H, W, C)` tensors in frame-major order
            (view `n * crops + c`), as `make_test_dataset` yields them.
        num_frames: `N`.
        crops: crops per frame.
        clip_length: `T`, frames per clip.

    Returns:
        dict of `(G * crops, T, H, W, C)` tensors, `G = N // T`: clip `(g, c)`
        holds frames `g, g + G, ..., g + (T - 1) G` of crop `c`, so each clip spans the
        whole video as the training clips do.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.evaluation.protocol import regroup_clips
    >>> views = {"rgb": np.arange(4, dtype="float32").reshape(4, 1, 1, 1, 1)}  # 4 frames, 1 crop
    >>> np.asarray(regroup_clips(views, num_frames=4, crops=1, clip_length=2)["rgb"]).reshape(2, 2).tolist()
    [[0.0, 2.0], [1.0, 3.0]]
    """
    import tensorflow as tf

    groups = num_frames // clip_length
    regrouped = {}
    for key, value in inputs.items():
        tail = list(value.shape[2:])  # [H, W, ch], static
        v = tf.reshape(value, [num_frames, crops, *tail])  # [N*C, 1, H, W, ch] -> [N, C, H, W, ch]
        v = v[: groups * clip_length]
        v = tf.reshape(v, [clip_length, groups, crops, *tail])  # frame n = t * G + g
        v = tf.transpose(v, [1, 2, 0, 3, 4, 5])  # [T, G, C, H, W, ch] -> [G, C, T, H, W, ch]
        regrouped[key] = tf.reshape(v, [groups * crops, clip_length, *tail])
    return regrouped
