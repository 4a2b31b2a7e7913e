"""The test-time views: their geometry (pure Python/NumPy) and the average over them.

The protocol of the two-stream paper (Sect. 5; CMA Sect. 4.4, TSN, STPN Sect. 4.7): from
`N` snippets of a video (equally spaced, or STPN's random ones: `TEST_SNIPPETS`) take
`crops` views each (`TEST_CROPS`: 1 centre crop, 3 squares along the long side, or 10 =
four corners and the centre, then the same five mirrored: `test_crop_params`), score
every view, and average the scores per video (`predict_video_scores`). Views are in
frame-major order: view `n * crops + c` is crop `c` of snippet `n` (`view_index`).

This module has no TensorFlow, so the data side (`make_test_dataset` in
`keras_twostream.data.pipeline`, `augment`) and the evaluation side both use it;
`keras_twostream.evaluation.protocol` is its public face, with the parts that sit on top of
the data side (resolving a model's protocol, regrouping views into clips).
"""

import numpy as np

from keras_twostream.data._validation import _check_choice, _check_int, _pair

__all__ = [
    "FIVE_POSITIONS",
    "TEST_CROPS",
    "TEST_SNIPPETS",
    "num_views",
    "predict_video_scores",
    "test_crop_params",
    "view_index",
]

TEST_SNIPPETS = ("uniform", "random")  # equally spaced (two-stream, TSN); STPN's Sect. 4.7
TEST_CROPS = (
    1,
    3,
    10,
)  # centre; three squares (MMAction2's ThreeCrop); 4 corners + centre, flipped

# TSN's fill_fix_offset(more_fix_crop=False), in quarters of the slack
# (H - crop_h, W - crop_w): (quarter_y, quarter_x) = upper-left, upper-right,
# lower-left, lower-right, centre.
FIVE_POSITIONS = ((0, 0), (0, 4), (4, 0), (4, 4), (2, 2))


def test_crop_params(crops, image_size, scale_size=None):
    """The deterministic crops of the test protocol.

    * `crops=1`: the centre crop of side `image_size / scale_size` of the
      short side (TSN's `GroupScale(256)` + `GroupCenterCrop(224)`).
    * `crops=3`: three squares covering the full short side, at the start,
      centre and end of the long side (MMAction2's `ThreeCrop`).
    * `crops=10`: four corners and the centre at `image_size / scale_size` of
      the short side, then the same five flipped (two-stream paper Sect. 5:
      "cropping and flipping four corners and the center of the frame").

    Args:
        crops: 1, 3 or 10.
        image_size: network input size, an int or `(height, width)`.
        scale_size: the short side the frame is notionally rescaled to before
            cropping; defaults to `round(min(image_size) * 256 / 224)`.

    Returns:
        A list of `crops` tuples `(scale_h, scale_w, quarter_y, quarter_x, flip)`.

    Example:

    >>> from keras_twostream.data.views import test_crop_params
    >>> test_crop_params(1, 224)
    [(0.875, 0.875, 2, 2, False)]
    """
    height, width = _pair(image_size, "image_size")
    if scale_size is None:
        scale_size = round(min(height, width) * 256 / 224)
    if not scale_size >= max(height, width):
        raise ValueError(
            f"Expected scale_size >= image_size. Received: scale_size={scale_size!r}, "
            f"image_size={image_size!r}"
        )
    sh, sw = height / scale_size, width / scale_size
    if crops == 1:
        return [(sh, sw, 2, 2, False)]
    if crops == 3:
        # A square of the full short side has no slack along the short side,
        # so quarters (q, q) move it along whichever side is longer.
        return [(1.0, 1.0, q, q, False) for q in (0, 2, 4)]
    if crops == 10:
        five = [(sh, sw, qy, qx) for qy, qx in FIVE_POSITIONS]
        return [(*c, False) for c in five] + [(*c, True) for c in five]
    raise ValueError(f"Expected crops to be 1, 3 or 10. Received: crops={crops!r}")


def num_views(num_frames, crops):
    """Views per video: `num_frames * crops` (250 for the papers' 25 frames x 10 crops).

    Example:

    >>> from keras_twostream.data.views import num_views
    >>> num_views(25, 10)
    250
    """
    return _check_int(num_frames, "num_frames") * _check_int(crops, "crops")


def view_index(snippet, crop, crops):
    """The position of crop `crop` of snippet `snippet` among a video's views (frame-major).

    Example:

    >>> from keras_twostream.data.views import view_index
    >>> view_index(2, 7, crops=10)  # snippet 2, the mirror of crop 2 (crops 5-9 are mirrored)
    27
    """
    return snippet * crops + crop


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
    >>> from keras_twostream.data import make_test_dataset, predict_video_scores
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
