"""Training straight from a folder of videos, for models that take no optical flow.

`keras-twostream train VIDEOS --model mpa_sal` reads the `"rgb"` / `"rgb_diff"` inputs
from the video files themselves (`keras_twostream.data.video_source`): no frame folder
is written. Models that take flow keep the extraction path (`common.resolve_data`).
"""

import os
from pathlib import Path

from keras_twostream.commands import UserError, common

# The MODELS whose every configuration reads RGB only (MPA+SAL: RGB and RGB differences).
RGB_ONLY_MODELS = ("mpa_sal",)


def trains_from_videos(name, data, frames_dir=None):
    """True when `data` is a folder of videos (not frames) and model `name` needs no flow.

    Example:

    >>> from keras_twostream.commands.video_data import trains_from_videos
    >>> trains_from_videos("two_stream", "UCF-101")
    False
    """
    if name not in RGB_ONLY_MODELS or frames_dir is not None:
        return False
    path = Path(data)
    if not path.is_dir() or common.is_frame_folder(path):
        return False
    from keras_twostream.data.extract import find_videos

    return bool(find_videos(path))


def load_video_table(data, annotations=None, split=1, fmt="auto"):
    """The annotation table of the video files under `data`, and the class names.

    Without `annotations`, every video under `data` is listed and labelled by its
    parent folder (classes sorted by name, as `keras-twostream extract` numbers them);
    with `annotations`, the split files decide (`layout="videos"`).

    Returns:
        `(table, classes, source)`, the table's paths absolute video files.

    Example:

    >>> from keras_twostream.commands.video_data import load_video_table
    >>> table, classes, source = load_video_table("UCF-101", "ucfTrainTestlist")  # doctest: +SKIP
    """
    import pandas as pd

    from keras_twostream.data.annotations import load_annotations
    from keras_twostream.data.extract import find_videos

    root = Path(data).resolve()
    if annotations is not None:
        source = Path(annotations)
        table = load_annotations(source, format=fmt, split=split, root=root, layout="videos")
        if table.empty:
            raise UserError(f"{source}: lists no videos")
        classes = table.attrs.get("classes") or [
            f"class_{i}" for i in range(int(table["label"].max()) + 1)
        ]
        return table, list(classes), source
    videos = [v for v in find_videos(root) if "/" in v]
    if not videos:
        raise UserError(
            f"{root}: no videos in class folders (expected {root}/<class>/<video>.mp4), "
            "or pass --annotations"
        )
    classes = sorted({v.split("/")[-2] for v in videos})
    index = {c: i for i, c in enumerate(classes)}
    table = pd.DataFrame(
        {
            "path": [os.path.join(root, *v.split("/")) for v in videos],
            "frames": -1,
            "label": [index[v.split("/")[-2]] for v in videos],
            "split": "",
            "offset": 0,
        }
    )
    return table, classes, root
