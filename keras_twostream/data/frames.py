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
from keras_twostream.data.modalities import MODALITIES  # noqa: E402

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


class FolderProblem:
    """One problem of a frame folder: the file it concerns (or `None`), what is wrong.

    Attributes:
        file: the offending file's path, or `None` for a folder-level problem.
        problem: the description (the message `check_frame_folder` returns).
        missing: whether a folder or file is absent (the pipelines raise
            `FileNotFoundError` for those).
    """

    __slots__ = ("file", "problem", "missing")

    def __init__(self, file, problem, missing=False):
        self.file = file
        self.problem = problem
        self.missing = missing

    def __repr__(self):
        return f"FolderProblem(file={self.file!r}, problem={self.problem!r})"


class FolderInspection:
    """What `inspect_frame_folder` found: the problems and, for the pipelines, the counts.

    Attributes:
        problems: a list of `FolderProblem`, empty when the folder is usable.
        rgb_frames: RGB frames a sample can use (from `offset + 1` on).
        flow_frames: flow pairs a sample can use (from `offset + 1` on).
        bound: the flow quantisation bound (`meta.json`'s, 20 without one, or the
            `flow_bound` given).
        centres: with `stored_means` and a `flow_means.npy`, float64 `[flow_frames, 2]`,
            each field's mean in quantised units (0..255); else `None`.
    """

    __slots__ = ("problems", "rgb_frames", "flow_frames", "bound", "centres")

    def __init__(self, problems, rgb_frames=0, flow_frames=0, bound=DEFAULT_BOUND, centres=None):
        self.problems = problems
        self.rgb_frames = rgb_frames
        self.flow_frames = flow_frames
        self.bound = bound
        self.centres = centres


NOT_A_FOLDER = (
    "is a file, not a frame folder: extract its frames first (keras_twostream.data.extract)"
)
FOLDER_NOT_FOUND = "frame folder not found"


def folder_presence_problem(directory, video_files=False):
    """The validator's first check: is there a frame folder (or a video) at `directory`?

    `inspect_frame_folder` starts with it, and the commands' up-front check of a whole
    annotation (`keras_twostream.commands.common.check_missing`) runs only it, so both
    name a missing folder with the same words.

    Args:
        directory: the frame folder's path.
        video_files: a file counts as present (the RGB-only pipelines decode video files
            directly); otherwise a file is a problem (`NOT_A_FOLDER`).

    Returns:
        `None` when present, else a `FolderProblem` (`missing` is true for an absent path).

    Example:

    >>> from keras_twostream.data.frames import folder_presence_problem
    >>> folder_presence_problem("frames/v_missing")
    FolderProblem(file=None, problem='frame folder not found')
    """
    directory = os.fspath(directory)
    if os.path.isdir(directory):
        return None
    if os.path.isfile(directory):
        return None if video_files else FolderProblem(None, NOT_A_FOLDER)
    return FolderProblem(None, FOLDER_NOT_FOUND, missing=True)


def inspect_frame_folder(
    directory,
    modality=("rgb", "flow"),
    frames=-1,
    offset=0,
    complete=True,
    decode=False,
    min_frames=None,
    flow_bound=None,
    stored_means=False,
):
    """The one frame-folder validator: every check of a frame folder, with one set of messages.

    `check_frame_folder` (and so `keras-twostream scan`) and the pipelines' up-front check
    (`keras_twostream.data.make_dataset`, `make_test_dataset`) both call it; they differ
    only in how much of the folder they require:

    * `complete=True` (`check_frame_folder`): the folder as `keras_twostream.data.extract`
      writes it. Frame files are numbered 1..N without gaps and none is empty; every
      `x_i` has its `y_i`; the counts match `meta.json`, whose flow count must be one
      less than its RGB count; `meta.json` and `flow_means.npy` are valid; the folder
      holds the frames the annotation asks for (`offset + frames` RGB frames and
      `offset + frames - 1` flow pairs); with `min_frames`, enough RGB frames; with
      `decode`, the first and last image of each kind decode.
    * `complete=False` (the pipelines): only what a sample can read. `meta.json` is valid
      and its counts agree; the flow bound agrees with `flow_bound`; with
      `stored_means`, `flow_means.npy` is valid; and every frame file in the range a
      sample can use (`offset + 1 ..`, `meta.json`'s counts or the files present, bounded
      by `frames`) is present and not empty, each problem naming its file.

    Checks shared by both modes give the same message in both.

    Args:
        directory: the frame folder.
        modality: a modality name or a sequence of them (`"rgb"`, `"flow"`, `"rgb_diff"`).
        frames: RGB frames the annotation says the folder has, or -1 if unknown.
        offset: frames skipped before the first one (the first frame file is `offset + 1`).
        complete: the whole folder (`True`) or the sample range only (`False`).
        decode: also decode the first and last frame of each kind (`complete` only).
        min_frames: if given, fewer RGB frames than this is a problem (`complete` only).
        flow_bound: the bound the caller will dequantise flow with, or `None` for
            `meta.json`'s (`complete=False` only: a disagreement is a problem).
        stored_means: read `flow_means.npy` into `centres` (`complete=False`).

    Returns:
        A `FolderInspection`.

    Example:

    >>> from keras_twostream.data.frames import inspect_frame_folder
    >>> inspect_frame_folder("frames/v_missing").problems
    [FolderProblem(file=None, problem='frame folder not found')]
    """
    modality = _check_modality(modality)
    directory = os.fspath(directory)
    presence = folder_presence_problem(directory)
    if presence is not None:
        return FolderInspection([presence])
    need_rgb = "rgb" in modality or "rgb_diff" in modality
    need_flow = "flow" in modality
    meta_path = os.path.join(directory, META_FILE)
    means_path = os.path.join(directory, FLOW_MEANS_FILE)
    problems = []
    meta = None
    if os.path.exists(meta_path):
        try:
            meta = read_meta(directory)
        except ValueError as error:
            problems.append(FolderProblem(meta_path, str(error)))
            if not complete:
                return FolderInspection(problems)
    files = list_frame_files(directory)
    bound = float(meta["bound"]) if meta else DEFAULT_BOUND
    if not complete and flow_bound is not None:
        if meta and need_flow and not abs(bound - flow_bound) <= 1e-8 + 1e-5 * abs(flow_bound):
            problems.append(
                FolderProblem(
                    meta_path,
                    f"the flow was quantised with bound={bound:g} but flow_bound={flow_bound:g} "
                    "was given; pass flow_bound=None to read the bound from meta.json",
                )
            )
            return FolderInspection(problems)
        bound = float(flow_bound)

    kinds = []
    if need_rgb:
        kinds.append(("img", "RGB frames", RGB_PREFIX))
    if need_flow:
        kinds.append(("x", "flow-x frames", FLOW_X_PREFIX))
        kinds.append(("y", "flow-y frames", FLOW_Y_PREFIX))
    if complete:
        _complete_folder_problems(files, kinds, need_flow, problems)

    n_rgb = len(files["img"])
    n_flow = min(len(files["x"]), len(files["y"]))
    if complete and meta is not None:
        if need_rgb and n_rgb != meta["rgb_frames"]:
            problems.append(
                FolderProblem(
                    meta_path,
                    f"meta.json says {meta['rgb_frames']} RGB frames, the folder has {n_rgb}",
                )
            )
        if need_flow and n_flow != meta["flow_frames"]:
            problems.append(
                FolderProblem(
                    meta_path,
                    f"meta.json says {meta['flow_frames']} flow pairs, the folder has {n_flow}",
                )
            )
    if meta is not None and need_flow:
        if complete and meta["algorithm"] in (None, "none"):
            problems.append(
                FolderProblem(
                    meta_path,
                    "flow requested but meta.json says it was extracted with flow='none'",
                )
            )
        elif meta["flow_frames"] != meta["rgb_frames"] - 1:
            problems.append(
                FolderProblem(
                    meta_path,
                    f"RGB/flow counts disagree in meta.json: {meta['rgb_frames']} RGB frames "
                    f"need {meta['rgb_frames'] - 1} flow pairs, it says {meta['flow_frames']}",
                )
            )
            if not complete:
                return FolderInspection(problems)
    centres = None
    if meta is not None and need_flow and (complete or stored_means):
        try:
            means = read_flow_means(directory, meta["flow_frames"])
        except ValueError as error:
            problems.append(FolderProblem(means_path, str(error)))
            if not complete:
                return FolderInspection(problems)
        else:
            if means is not None and not complete:
                # Stored in pixels, d = q * 2b/255 - b with the bound of meta.json.
                stored_bound = float(meta["bound"])
                centres = (means + stored_bound) * (255.0 / (2.0 * stored_bound))

    frames = int(frames)
    offset = int(offset)
    if complete:
        if frames > 0:
            if need_rgb and n_rgb and offset + frames > n_rgb:
                problems.append(
                    FolderProblem(
                        None,
                        f"the annotation needs RGB frames {offset + 1}..{offset + frames}, "
                        f"the folder has {n_rgb}",
                    )
                )
            if need_flow and n_flow and offset + frames - 1 > n_flow:
                problems.append(
                    FolderProblem(
                        None,
                        f"the annotation needs flow pairs {offset + 1}..{offset + frames - 1}, "
                        f"the folder has {n_flow}",
                    )
                )
        if min_frames is not None and n_rgb < min_frames:
            problems.append(
                FolderProblem(
                    None, f"{n_rgb} RGB frames, fewer than the {min_frames} needed (min_frames)"
                )
            )
        if decode:
            _decode_problems(directory, files, kinds, problems)
        return FolderInspection(problems, n_rgb, n_flow, bound)

    # The sample range (complete=False): what a sample can read, file by file.
    rgb_total = meta["rgb_frames"] if meta else n_rgb
    flow_total = meta["flow_frames"] if meta else n_flow
    num_rgb = frames if frames > 0 else rgb_total - offset
    num_flow = flow_total - offset
    if frames > 0:
        num_flow = min(num_flow, frames - 1)
    if need_rgb and num_rgb < 1:
        problems.append(FolderProblem(None, f"no RGB frames after offset {offset} (img_*.jpg)"))
        return FolderInspection(problems)
    if need_flow and num_flow < 1:
        problems.append(
            FolderProblem(None, f"no flow frames after offset {offset} (x_*.jpg, y_*.jpg)")
        )
        return FolderInspection(problems)
    empty = set(files["empty"])
    counts = {"img": num_rgb, "x": num_flow, "y": num_flow}
    for key, _label, prefix in kinds:
        present = set(files[key])
        count = counts[key]
        for index in range(offset + 1, offset + count + 1):
            name = f"{prefix}{index:0{INDEX_DIGITS}d}{FRAME_SUFFIX}"
            if index not in present:
                problems.append(
                    FolderProblem(
                        os.path.join(directory, name),
                        f"missing frame file (the sample range needs {prefix}*.jpg "
                        f"{offset + 1}..{offset + count})",
                        missing=True,
                    )
                )
                return FolderInspection(problems)
            if name in empty:
                problems.append(
                    FolderProblem(os.path.join(directory, name), "empty (0-byte) frame file")
                )
                return FolderInspection(problems)
    return FolderInspection(problems, max(num_rgb, 0), max(num_flow, 0), bound, centres)


def _complete_folder_problems(files, kinds, need_flow, problems):
    """The whole-folder checks of `inspect_frame_folder`: empty files, gaps, x/y pairs."""
    if files["empty"]:
        problems.append(
            FolderProblem(None, f"empty (0-byte) frame files: {_first(files['empty'])}")
        )
    for key, label, prefix in kinds:
        indices = files[key]
        if not indices:
            problems.append(FolderProblem(None, f"no {label} ({prefix}00001.jpg ...)"))
            continue
        gaps = _gaps(indices, indices[-1])
        if gaps:
            names = [f"{prefix}{i:0{INDEX_DIGITS}d}.jpg" for i in gaps]
            problems.append(
                FolderProblem(
                    None,
                    f"missing {label}: {_first(names)} (the last one is {indices[-1]})",
                    missing=True,
                )
            )
    if need_flow and files["x"] != files["y"]:
        only_x = sorted(set(files["x"]) - set(files["y"]))
        only_y = sorted(set(files["y"]) - set(files["x"]))
        if only_x:
            problems.append(
                FolderProblem(None, f"x_ files without their y_ file at indices {_first(only_x)}")
            )
        if only_y:
            problems.append(
                FolderProblem(None, f"y_ files without their x_ file at indices {_first(only_y)}")
            )


def _decode_problems(directory, files, kinds, problems):
    """`inspect_frame_folder(decode=True)`: the first and last image of each kind decode."""
    import cv2

    for key, _label, prefix in kinds:
        indices = files[key]
        for i in sorted({indices[0], indices[-1]}) if indices else ():
            name = f"{prefix}{i:0{INDEX_DIGITS}d}.jpg"
            path = os.path.join(directory, name)
            if os.path.getsize(path) and cv2.imread(path, cv2.IMREAD_UNCHANGED) is None:
                problems.append(FolderProblem(path, f"{name} does not decode as an image"))


def check_frame_folder(
    directory, modality=("rgb", "flow"), frames=-1, offset=0, decode=True, min_frames=None
):
    """Lists what is wrong with a frame folder; an empty list means it is usable.

    The messages of `inspect_frame_folder(..., complete=True)`, the one frame-folder
    validator. Checks, for the requested modalities: the folder exists; `meta.json` (if
    any) is valid, and so is `flow_means.npy` (if any, for flow); frame files are
    numbered 1..N without gaps and none is empty; every `x_i` has its `y_i`; the counts
    match `meta.json`, whose flow count must be one less than its RGB count; the folder
    holds the frames an annotation asks for (`offset + frames` RGB frames and
    `offset + frames - 1` flow pairs); and (with `decode`) the first and last image of
    each kind decode.

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
    found = inspect_frame_folder(
        directory,
        modality,
        frames=frames,
        offset=offset,
        complete=True,
        decode=decode,
        min_frames=min_frames,
    )
    return [p.problem for p in found.problems]


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
