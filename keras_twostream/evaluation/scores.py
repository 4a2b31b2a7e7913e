"""Per-video score files: what `keras-twostream evaluate` writes and `keras-twostream fuse` reads.

A score file is a NumPy `.npz` archive (`numpy.load(path)` reads it; no pickles)
holding, for `n` videos and `C` classes:

| key | dtype, shape | content |
|---|---|---|
| `format` | str, () | `"keras_twostream-scores"` |
| `version` | int, () | `1` |
| `videos` | str, (n,) | video ids: frame-folder paths relative to the data root |
| `labels` | int64, (n,) | ground-truth class indices (-1 unknown) |
| `classes` | str, (C,) | class names in label order |
| `outputs` | str, (k,) | the model outputs scored, e.g. `spatial`, `temporal`, `fused` |
| `scores_<output>` | float32, (n, C) | per-video scores of that output: the mean over the test views of its softmax probabilities |
| `meta` | str, () | JSON: model path, split, frames, crops, ... |

Scores from separately trained streams can be fused offline as long as they
cover the same videos (in any order) and the same classes.

Example:

>>> import numpy as np
>>> from keras_twostream.evaluation.scores import save_scores, load_scores
>>> save_scores("/tmp/s.npz", {"fused": np.eye(2)}, ["a", "b"], [0, 1], ["x", "y"])  # doctest: +SKIP
>>> load_scores("/tmp/s.npz").scores["fused"].shape  # doctest: +SKIP
(2, 2)
"""

import json
import os
from dataclasses import dataclass, field

import numpy as np

SCORES_FORMAT = "keras_twostream-scores"
SCORES_VERSION = 1
_PREFIX = "scores_"


@dataclass
class ScoreFile:
    """The contents of a score file (see the module docstring).

    Attributes:
        scores: dict output name -> float32 `(n, C)`.
        videos: str array `(n,)`.
        labels: int64 array `(n,)`.
        classes: list of `C` class names.
        meta: dict.
        path: the file it was read from (or `None`).

    Example:

    >>> import numpy as np
    >>> from keras_twostream.evaluation.scores import ScoreFile
    >>> f = ScoreFile({"fused": np.eye(2)}, np.array(["a", "b"]), np.array([0, 1]), ["x", "y"])
    >>> f.select(np.array(["b"])).labels.tolist()
    [1]
    """

    scores: dict
    videos: np.ndarray
    labels: np.ndarray
    classes: list
    meta: dict = field(default_factory=dict)
    path: str = None

    def select(self, videos):
        """The same file restricted to, and ordered as, `videos` (all must be present)."""
        index = {v: i for i, v in enumerate(self.videos.tolist())}
        rows = np.asarray([index[v] for v in np.asarray(videos).tolist()], np.int64)
        return ScoreFile(
            {k: v[rows] for k, v in self.scores.items()},
            self.videos[rows],
            self.labels[rows],
            list(self.classes),
            dict(self.meta),
            self.path,
        )


def save_scores(path, scores, videos, labels, classes, meta=None):
    """Writes a score file atomically (a temporary file renamed into place).

    Args:
        path: the `.npz` file to write.
        scores: dict output name -> `(n, C)` scores.
        videos: `n` video ids.
        labels: `n` integer labels.
        classes: `C` class names.
        meta: a JSON-serialisable dict.

    Returns:
        `path`.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.evaluation.scores import save_scores
    >>> save_scores("/tmp/scores.npz", {"fused": np.eye(2)}, ["v1", "v2"], [0, 1], ["a", "b"])  # doctest: +SKIP
    '/tmp/scores.npz'
    """
    path = os.fspath(path)
    videos = np.asarray([str(v) for v in videos])
    labels = np.asarray(labels, np.int64).reshape(-1)
    classes = np.asarray([str(c) for c in classes])
    arrays = {
        "format": np.asarray(SCORES_FORMAT),
        "version": np.asarray(SCORES_VERSION),
        "videos": videos,
        "labels": labels,
        "classes": classes,
        "outputs": np.asarray(list(scores)),
        "meta": np.asarray(json.dumps(meta or {})),
    }
    for name, values in scores.items():
        values = np.asarray(values, np.float32)
        if values.shape != (len(videos), len(classes)):
            raise ValueError(
                f"Scores of output {name!r} have shape {values.shape}; expected "
                f"({len(videos)} videos, {len(classes)} classes)."
            )
        arrays[_PREFIX + name] = values
    if labels.shape != (len(videos),):
        raise ValueError(f"Expected {len(videos)} labels, one per video. Received: {labels.shape}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temp = f"{path}.tmp-{os.getpid()}"
    with open(temp, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(temp, path)
    return path


def load_scores(path):
    """Reads a score file written by `save_scores` (or `keras-twostream evaluate`).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is not a score file, or its arrays disagree in size.

    Returns:
        A `ScoreFile`.

    Example:

    >>> from keras_twostream.evaluation.scores import load_scores
    >>> load_scores("runs/eval_split1/scores.npz").classes[:1]  # doctest: +SKIP
    ['ApplyEyeMakeup']
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Score file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            contents = {k: data[k] for k in data.files}
    except (OSError, ValueError) as error:
        raise ValueError(
            f"{path}: not a score file written by keras-twostream evaluate ({error})"
        ) from None
    if str(contents.get("format", "")) != SCORES_FORMAT:
        raise ValueError(
            f"{path}: not a score file written by keras-twostream evaluate "
            f"(expected format {SCORES_FORMAT!r})"
        )
    outputs = [str(o) for o in contents["outputs"].tolist()]
    scores = {name: contents[_PREFIX + name] for name in outputs}
    videos, labels = contents["videos"], contents["labels"]
    classes = [str(c) for c in contents["classes"].tolist()]
    for name, values in scores.items():
        if values.shape != (len(videos), len(classes)):
            raise ValueError(
                f"{path}: scores of {name!r} have shape {values.shape}, expected "
                f"({len(videos)}, {len(classes)})"
            )
    return ScoreFile(scores, videos, labels, classes, json.loads(str(contents["meta"])), path)
