"""Frame folders in the TSN/MMAction2 layout: file names, `meta.json`, counts and checks.

A frame folder holds the RGB frames `img_00001.jpg, img_00002.jpg, ...` (1-based, five
digits) and the quantised optical flow `x_00001.jpg, y_00001.jpg, ...`, where flow pair `i`
is the displacement field from frame `i` to frame `i + 1` (forward flow, Sect. 3 of the
two-stream paper, Simonyan & Zisserman 2014), so a complete folder has one flow pair fewer
than RGB frames. `keras_twostream.data.extract` also writes a `meta.json` and, with flow, a
`flow_means.npy` (each flow field's mean, so that the training pipeline can subtract it
without decoding whole fields; see `read_flow_means`); folders made by other tools
(denseflow, MMAction2's `build_rawframes.py`) have neither and are read with `bound=20` and
the counts of the files present.

This module imports only the standard library, NumPy and (lazily) OpenCV, so extraction
workers and the tf.data pipeline can both use it.
"""

import json
import os
import re

RGB_PREFIX = "img_"
FLOW_X_PREFIX = "x_"
FLOW_Y_PREFIX = "y_"
FRAME_SUFFIX = ".jpg"
INDEX_DIGITS = 5
META_FILE = "meta.json"
FLOW_MEANS_FILE = "flow_means.npy"
DEFAULT_BOUND = 20.0
META_KEYS = (
    "algorithm",
    "bound",
    "short_side",
    "width",
    "height",
    "rgb_frames",
    "flow_frames",
    "fps",
    "source",
    "keras_twostream_version",
)
MODALITIES = ("rgb", "flow", "rgb_diff")

_FRAME_RE = re.compile(r"^(img_|x_|y_)(\d+)\.jpg$")


def _check_index(index):
    if isinstance(index, bool) or int(index) != index or index < 1:
        raise ValueError(f"Frame indices are 1-based integers. Received: index={index!r}")
    return int(index)


def rgb_frame_name(index):
    """File name of RGB frame `index` (1-based): `rgb_frame_name(3) == "img_00003.jpg"`."""
    return f"{RGB_PREFIX}{_check_index(index):0{INDEX_DIGITS}d}{FRAME_SUFFIX}"


def rgb_frame_path(directory, index):
    """Path of RGB frame `index` (1-based) in a frame folder.

    Args:
        directory: the frame folder.
        index: 1-based frame index.

    Returns:
        `os.path.join(directory, "img_%05d.jpg" % index)`.

    Example:

    >>> from keras_twostream.data.frames import rgb_frame_path
    >>> rgb_frame_path("v_ApplyEyeMakeup_g01_c01", 7)
    'v_ApplyEyeMakeup_g01_c01/img_00007.jpg'
    """
    return os.path.join(os.fspath(directory), rgb_frame_name(index))


def flow_frame_paths(directory, index):
    """Paths of flow pair `index` (1-based): the flow from frame `index` to `index + 1`.

    Args:
        directory: the frame folder.
        index: 1-based flow index.

    Returns:
        A tuple `(x_path, y_path)` of the horizontal and vertical components.

    Example:

    >>> from keras_twostream.data.frames import flow_frame_paths
    >>> flow_frame_paths("clip", 2)
    ('clip/x_00002.jpg', 'clip/y_00002.jpg')
    """
    index = _check_index(index)
    directory = os.fspath(directory)
    name = f"{index:0{INDEX_DIGITS}d}{FRAME_SUFFIX}"
    return (
        os.path.join(directory, FLOW_X_PREFIX + name),
        os.path.join(directory, FLOW_Y_PREFIX + name),
    )


def list_frame_files(directory):
    """Indices of the frame files present in a frame folder, by kind.

    Args:
        directory: the frame folder.

    Returns:
        A dict `{"img": [...], "x": [...], "y": [...], "empty": [...]}`: sorted 1-based
        indices of the RGB, flow-x and flow-y files, and the names of zero-byte frame files.

    Raises:
        FileNotFoundError: `directory` is not a folder.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"Frame folder not found: {directory}")
    found = {"img": [], "x": [], "y": [], "empty": []}
    with os.scandir(directory) as entries:
        for entry in entries:
            match = _FRAME_RE.match(entry.name)
            if match is None:
                continue
            found[match.group(1)[:-1]].append(int(match.group(2)))
            if entry.stat().st_size == 0:
                found["empty"].append(entry.name)
    for key in ("img", "x", "y", "empty"):
        found[key].sort()
    return found


def _validate_meta(meta, path):
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    missing = [key for key in META_KEYS if key not in meta]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}; expected all of {list(META_KEYS)}")
    for key in ("rgb_frames", "flow_frames"):
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{path}: '{key}' must be an integer >= 0, got {value!r}")
    bound = meta["bound"]
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or bound <= 0:
        raise ValueError(f"{path}: 'bound' must be a number > 0, got {bound!r}")
    return meta


def read_meta(directory):
    """Reads a frame folder's description: `meta.json`, or the files present.

    Folders written by `keras_twostream.data.extract` carry a `meta.json` with the keys
    `algorithm, bound, short_side, width, height, rgb_frames, flow_frames, fps, source,
    keras_twostream_version`. For folders without one (made by denseflow or MMAction2's
    tools), the counts are those of the `img_*`/`x_*` files present, `bound` is 20 (the
    TSN/MMAction2 default), the size is read from the first frame, and the other keys are
    `None`.

    Args:
        directory: the frame folder.

    Returns:
        A dict with the keys above, plus `"has_meta"` (bool).

    Raises:
        FileNotFoundError: `directory` is not a folder.
        ValueError: `meta.json` is not valid JSON or lacks a key (the message names the
            file and the key).

    Example:

    >>> from keras_twostream.data.frames import read_meta
    >>> meta = read_meta("frames/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01")  # doctest: +SKIP
    >>> meta["rgb_frames"], meta["flow_frames"], meta["bound"]  # doctest: +SKIP
    (164, 163, 20.0)
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"Frame folder not found: {directory}")
    path = os.path.join(directory, META_FILE)
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                meta = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
        meta = dict(_validate_meta(meta, path))
        meta["has_meta"] = True
        return meta
    files = list_frame_files(directory)
    width = height = None
    first = None
    if files["img"]:
        first = rgb_frame_path(directory, files["img"][0])
    elif files["x"]:
        first = flow_frame_paths(directory, files["x"][0])[0]
    if first is not None:
        import cv2

        image = cv2.imread(first, cv2.IMREAD_UNCHANGED)
        if image is not None:
            height, width = image.shape[:2]
    return {
        "algorithm": None,
        "bound": DEFAULT_BOUND,
        "short_side": None,
        "width": width,
        "height": height,
        "rgb_frames": len(files["img"]),
        "flow_frames": min(len(files["x"]), len(files["y"])),
        "fps": None,
        "source": None,
        "keras_twostream_version": None,
        "has_meta": False,
    }


def write_meta(directory, meta):
    """Writes `meta.json` into a frame folder (all of `META_KEYS` are required)."""
    path = os.path.join(os.fspath(directory), META_FILE)
    _validate_meta(meta, path)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")
    return path


def write_flow_means(directory, means):
    """Writes `flow_means.npy`: each flow field's mean displacement, in pixels.

    Row `i - 1` holds the means `(mean d^x, mean d^y)` of flow pair `i` (`x_i.jpg`,
    `y_i.jpg`) over the whole field, taken on the values a reader gets back: the JPEG as
    decoded by libjpeg's accurate integer IDCT (OpenCV's decoder; `tf.io.decode_jpeg` with
    `dct_method="INTEGER_ACCURATE"` gives the same pixels), dequantised with
    `d = q * 2 * bound / 255 - bound`. The two-stream paper's mean flow subtraction (Sect.
    3.1) subtracts exactly these, so the pipeline can decode only a crop window of each
    field (`keras_twostream.data.pipeline`).

    Args:
        directory: the frame folder.
        means: float array `[flow_frames, 2]`.

    Returns:
        The path written.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.data.frames import write_flow_means, read_flow_means
    >>> path = write_flow_means("clip", np.zeros((4, 2)))  # doctest: +SKIP
    >>> read_flow_means("clip").shape  # doctest: +SKIP
    (4, 2)
    """
    import numpy as np

    means = np.asarray(means, dtype=np.float64)
    path = os.path.join(os.fspath(directory), FLOW_MEANS_FILE)
    if means.ndim != 2 or means.shape[1] != 2 or not np.isfinite(means).all():
        raise ValueError(
            f"{path}: expected finite flow means of shape [flow_frames, 2]. "
            f"Received: shape {means.shape}"
        )
    with open(path, "wb") as f:
        np.save(f, means, allow_pickle=False)
    return path


def read_flow_means(directory, flow_frames=None):
    """Reads `flow_means.npy` of a frame folder (see `write_flow_means`), or `None`.

    Args:
        directory: the frame folder.
        flow_frames: the number of flow pairs the file must describe (from `meta.json`),
            or `None` to accept any.

    Returns:
        A float64 array `[flow_frames, 2]` of mean displacements `(x, y)` in pixels, or
        `None` when the folder has no such file (older extractions, other tools).

    Raises:
        ValueError: the file is unreadable, not a finite `[N, 2]` array, or describes
            another number of flow pairs (the message names the file).

    Example:

    >>> from keras_twostream.data.frames import read_flow_means
    >>> read_flow_means("frames/v_ApplyEyeMakeup_g01_c01").shape  # doctest: +SKIP
    (163, 2)
    """
    import numpy as np

    path = os.path.join(os.fspath(directory), FLOW_MEANS_FILE)
    try:
        means = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(f"{path}: not a readable .npy file ({error})") from None
    if (
        means.ndim != 2
        or means.shape[1] != 2
        or means.dtype.kind != "f"
        or not np.isfinite(means).all()
    ):
        raise ValueError(
            f"{path}: expected finite float flow means of shape [flow_frames, 2], got "
            f"{means.dtype} {means.shape}"
        )
    if flow_frames is not None and means.shape[0] != flow_frames:
        raise ValueError(
            f"{path}: holds the means of {means.shape[0]} flow pairs, meta.json says {flow_frames}"
        )
    return means.astype(np.float64, copy=False)


def _gaps(indices, count):
    """Indices in 1..count that are absent from the sorted list `indices`."""
    present = set(indices)
    return [i for i in range(1, count + 1) if i not in present]


def _first(items, n=3):
    shown = ", ".join(str(i) for i in items[:n])
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else "")


def check_frame_folder(
    directory, modality=("rgb", "flow"), frames=-1, offset=0, decode=True, min_frames=None
):
    """Lists what is wrong with a frame folder; an empty list means it is usable.

    Checks, for the requested modalities: the folder exists; `meta.json` (if any) is
    valid, and so is `flow_means.npy` (if any, for flow); frame files are numbered 1..N without gaps and none is empty; every `x_i` has
    its `y_i`; the counts match `meta.json`, whose flow count must be one less than its
    RGB count; the folder holds the frames an annotation asks for (`offset + frames` RGB
    frames and `offset + frames - 1` flow pairs); and (with `decode`) the first and last
    image of each kind decode.

    Args:
        directory: the frame folder.
        modality: a modality name or a sequence of them (`"rgb"`, `"flow"`, `"rgb_diff"`).
        frames: RGB frames the annotation says the folder has, or -1 if unknown.
        offset: frames skipped before the first one (the first frame file is
            `offset + 1`).
        decode: also decode the first and last frame of each kind.
        min_frames: if given, fewer RGB frames than this is a problem.

    Returns:
        A list of problem descriptions (strings), empty when the folder is usable.

    Example:

    >>> from keras_twostream.data import check_frame_folder
    >>> check_frame_folder("frames/v_missing")
    ['frame folder not found']
    """
    modality = _check_modality(modality)
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        return ["frame folder not found" if not os.path.exists(directory) else "not a folder"]
    problems = []
    try:
        meta = read_meta(directory)
    except ValueError as error:
        problems.append(str(error))
        meta = None
    files = list_frame_files(directory)
    need_rgb = "rgb" in modality or "rgb_diff" in modality
    need_flow = "flow" in modality
    if files["empty"]:
        problems.append(f"empty (0-byte) frame files: {_first(files['empty'])}")

    kinds = []
    if need_rgb:
        kinds.append(("img", "RGB frames", "img_"))
    if need_flow:
        kinds.append(("x", "flow-x frames", "x_"))
        kinds.append(("y", "flow-y frames", "y_"))
    for key, label, prefix in kinds:
        indices = files[key]
        if not indices:
            problems.append(f"no {label} ({prefix}00001.jpg ...)")
            continue
        gaps = _gaps(indices, indices[-1])
        if gaps:
            names = [f"{prefix}{i:0{INDEX_DIGITS}d}.jpg" for i in gaps]
            problems.append(f"missing {label}: {_first(names)} (the last one is {indices[-1]})")
    if need_flow and files["x"] != files["y"]:
        only_x = sorted(set(files["x"]) - set(files["y"]))
        only_y = sorted(set(files["y"]) - set(files["x"]))
        if only_x:
            problems.append(f"x_ files without their y_ file at indices {_first(only_x)}")
        if only_y:
            problems.append(f"y_ files without their x_ file at indices {_first(only_y)}")

    n_rgb = len(files["img"])
    n_flow = min(len(files["x"]), len(files["y"]))
    if meta is not None and meta["has_meta"]:
        if need_rgb and n_rgb != meta["rgb_frames"]:
            problems.append(
                f"meta.json says {meta['rgb_frames']} RGB frames, the folder has {n_rgb}"
            )
        if need_flow:
            if n_flow != meta["flow_frames"]:
                problems.append(
                    f"meta.json says {meta['flow_frames']} flow pairs, the folder has {n_flow}"
                )
            if meta["algorithm"] in (None, "none"):
                problems.append(
                    "flow requested but meta.json says it was extracted with flow='none'"
                )
            elif meta["flow_frames"] != meta["rgb_frames"] - 1:
                problems.append(
                    f"RGB/flow counts disagree in meta.json: {meta['rgb_frames']} RGB frames need "
                    f"{meta['rgb_frames'] - 1} flow pairs, it says {meta['flow_frames']}"
                )
            try:
                read_flow_means(directory, meta["flow_frames"])
            except ValueError as error:
                problems.append(str(error))
    frames = int(frames)
    offset = int(offset)
    if frames > 0:
        if need_rgb and n_rgb and offset + frames > n_rgb:
            problems.append(
                f"the annotation needs RGB frames {offset + 1}..{offset + frames}, "
                f"the folder has {n_rgb}"
            )
        if need_flow and n_flow and offset + frames - 1 > n_flow:
            problems.append(
                f"the annotation needs flow pairs {offset + 1}..{offset + frames - 1}, "
                f"the folder has {n_flow}"
            )
    if min_frames is not None and n_rgb < min_frames:
        problems.append(f"{n_rgb} RGB frames, fewer than the {min_frames} needed (min_frames)")
    if decode:
        import cv2

        for key, _label, prefix in kinds:
            indices = files[key]
            for i in sorted({indices[0], indices[-1]}) if indices else ():
                name = f"{prefix}{i:0{INDEX_DIGITS}d}.jpg"
                path = os.path.join(directory, name)
                if os.path.getsize(path) and cv2.imread(path, cv2.IMREAD_UNCHANGED) is None:
                    problems.append(f"{name} does not decode as an image")
    return problems


def _check_modality(modality):
    if isinstance(modality, str):
        modality = (modality,)
    modality = tuple(modality)
    unknown = [m for m in modality if m not in MODALITIES]
    if unknown or not modality:
        raise ValueError(
            f"Expected modality to be one or more of {list(MODALITIES)}. Received: modality={modality!r}"
        )
    return modality


# === Backward flow (optional; `keras-twostream extract --flow tvl1-xla --backward-flow`) ===
# Backward pair `i` (`bx_i.jpg`, `by_i.jpg`) is the flow from frame `i + 1` back to frame
# `i`, quantised like the forward pair; the bi-directional input of the two-stream paper
# (Sect. 3.1) stacks L/2 forward and L/2 backward fields. Their means (the counterpart
# of `flow_means.npy`) go to `flow_means_backward.npy`.
BACKWARD_X_PREFIX = "bx_"
BACKWARD_Y_PREFIX = "by_"
FLOW_BACKWARD_MEANS_FILE = "flow_means_backward.npy"


def backward_flow_frame_paths(directory, index):
    """Paths of backward flow pair `index` (1-based): the flow from frame `index + 1` to `index`.

    Args:
        directory: the frame folder.
        index: 1-based flow index (the same index as the forward pair of those frames).

    Returns:
        A tuple `(bx_path, by_path)`.

    Example:

    >>> from keras_twostream.data.frames import backward_flow_frame_paths
    >>> backward_flow_frame_paths("clip", 2)
    ('clip/bx_00002.jpg', 'clip/by_00002.jpg')
    """
    index = _check_index(index)
    directory = os.fspath(directory)
    name = f"{index:0{INDEX_DIGITS}d}{FRAME_SUFFIX}"
    return (
        os.path.join(directory, BACKWARD_X_PREFIX + name),
        os.path.join(directory, BACKWARD_Y_PREFIX + name),
    )
