"""Annotation formats of action-recognition datasets, read into one pandas table.

Every reader returns a `pandas.DataFrame` with the columns

- `path` (str): a frame folder or a video file, relative to `root`, or joined to it when
  `root` is given;
- `frames` (int): total RGB frames, -1 when the file does not say (video lists);
- `label` (int, 0-based; -1 for unknown) or, with `multi_label=True`, a tuple of ints;
- `split` (str): `"train"`, `"test"`, `"val"`, or `""` when the file does not say;
- `offset` (int): frames skipped before the first one (its file index is `offset + 1`).

`table.attrs` holds `"format"`, `"root"` and, for UCF101/HMDB51, `"classes"` (class
names in label order).

Formats (`load_annotations(..., format=)`):

- `"ucf101"`: the `ucfTrainTestlist` folder: `classInd.txt` (`1 ApplyEyeMakeup`, 1-based),
  `trainlist0N.txt` (`ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1`) and
  `testlist0N.txt` (no label: it comes from the class folder through `classInd.txt`).
- `"hmdb51"`: the split folder of `<class>_test_split<N>.txt` files, lines
  `<video>.avi <tag>` with tag 1 = train, 2 = test, 0 = unused (dropped); labels index the
  sorted class names; paths are `<class>/<video>.avi`.
- `"rawframes"`: MMAction2 rawframe lists, `frame_dir total_frames label`, with an offset
  `frame_dir offset total_frames label` (`with_offset`), or multi-label
  `frame_dir total_frames label1 label2 ...` (`multi_label=True`).
- `"videos"`: MMAction2 video lists, `video label` or `video label1 label2 ...`.
- `"csv"`: a CSV file with a header holding the table's columns (`path` and `label`
  required; multi-label cells like `"3 5"`, `"3;5"` or `"(3, 5)"`).

Paths may contain spaces: the numbers are taken from the end of each line, so a path
must not end with a space followed by digits (`"clip 1"`), which would read as a number.
"""

import os
import re

COLUMNS = ("path", "frames", "label", "split", "offset")
FORMATS = ("auto", "ucf101", "hmdb51", "rawframes", "videos", "csv")
LAYOUTS = ("auto", "videos", "frames")

_INT = r"-?\d+"
_LINE_RE = re.compile(rf"^(?P<path>.*?\S)(?P<numbers>(?:\s+{_INT})+)\s*$")
_HMDB_RE = re.compile(r"^(?P<cls>.+)_test_split(?P<split>\d+)\.txt$")
_UCF_LIST_RE = re.compile(r"^(?P<kind>train|test)list(?P<split>\d+)\.txt$")


def _video_extensions():
    from keras_twostream.data.video import VIDEO_EXTENSIONS

    return VIDEO_EXTENSIONS


def _lines(path):
    """(line_number, text) of the non-blank lines of a text file."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a UTF-8 text file ({error})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, line.rstrip("\r\n")


def _split_numbers(path, number, line, expected):
    """Splits `line` into the path and its trailing integers."""
    match = _LINE_RE.match(line)
    if match is None:
        raise ValueError(f"{path}, line {number}: expected {expected}, got {line.strip()!r}")
    return match["path"].strip(), [int(n) for n in match["numbers"].split()]


def _check_label(label, path, number, num_classes, classes=None):
    if label < -1 or (num_classes is not None and label >= num_classes):
        allowed = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
        detail = f" ({len(classes)} classes in the class list)" if classes is not None else ""
        raise ValueError(
            f"{path}, line {number}: label {label} is outside the class list: expected {allowed} "
            f"or -1 for unknown{detail}"
        )
    return label


def _table(rows, fmt, root, classes=None, multi_label=False):
    import pandas as pd

    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table["path"] = table["path"].astype(str)
    table["frames"] = table["frames"].astype("int64")
    table["offset"] = table["offset"].astype("int64")
    table["split"] = table["split"].astype(str)
    table["label"] = table["label"].astype(object if multi_label else "int64")
    table.attrs["format"] = fmt
    table.attrs["root"] = None if root is None else os.fspath(root)
    if classes is not None:
        table.attrs["classes"] = list(classes)
    return table


def read_class_index(path):
    """Reads UCF101's `classInd.txt` (`1 ApplyEyeMakeup` per line, 1-based).

    Args:
        path: the file.

    Returns:
        The class names in label order (label 0 first).

    Raises:
        ValueError: a malformed line, or indices that are not 1..N in order (the message
            names the file and line).
    """
    path = os.fspath(path)
    classes = []
    for number, line in _lines(path):
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not re.fullmatch(r"\d+", parts[0]):
            raise ValueError(
                f"{path}, line {number}: expected '<index> <class name>', got {line!r}"
            )
        if int(parts[0]) != len(classes) + 1:
            raise ValueError(
                f"{path}, line {number}: expected class index {len(classes) + 1}, got {parts[0]}"
            )
        classes.append(parts[1].strip())
    if not classes:
        raise ValueError(f"{path}: no classes found")
    return classes


def read_ucf101(path, split=1):
    """Reads one UCF101 split (train and test lists) from the `ucfTrainTestlist` folder.

    Args:
        path: the folder with `classInd.txt`, `trainlist0N.txt` and `testlist0N.txt`, or one
            of those list files (then only that list is read).
        split: 1, 2 or 3.

    Returns:
        The annotation table (paths are the video files, e.g.
        `ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi`), `attrs["classes"]` the class names.

    Raises:
        FileNotFoundError: `classInd.txt` or a list file is missing.
        ValueError: a malformed line, a label outside `classInd.txt`, or a label that
            disagrees with the class folder (naming the file and line).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        directory = path
        lists = [
            (os.path.join(directory, f"trainlist{split:02d}.txt"), "train"),
            (os.path.join(directory, f"testlist{split:02d}.txt"), "test"),
        ]
    elif os.path.basename(path) == "classInd.txt":
        return read_ucf101(os.path.dirname(path) or ".", split)
    else:
        directory = os.path.dirname(path)
        match = _UCF_LIST_RE.match(os.path.basename(path))
        if match is None:
            raise ValueError(
                f"{path}: expected a UCF101 file named classInd.txt, trainlist0N.txt or testlist0N.txt"
            )
        lists = [(path, match["kind"])]
    class_file = os.path.join(directory, "classInd.txt")
    if not os.path.exists(class_file):
        raise FileNotFoundError(f"UCF101 class list not found: {class_file}")
    classes = read_class_index(class_file)
    # Folder names are matched case-insensitively (UCF101 spells some video names
    # differently from their folder, e.g. HandstandPushups/v_HandStandPushups_g01_c01.avi).
    index = {name.lower(): i for i, name in enumerate(classes)}
    rows = []
    for list_file, kind in lists:
        if not os.path.exists(list_file):
            raise FileNotFoundError(f"UCF101 {kind} list not found: {list_file} (split={split})")
        for number, line in _lines(list_file):
            parts = line.split()
            folder = parts[0].replace("\\", "/").split("/")[0] if "/" in parts[0] else None
            if kind == "train":
                if len(parts) != 2 or not re.fullmatch(r"\d+", parts[1]):
                    raise ValueError(
                        f"{list_file}, line {number}: expected '<class>/<video>.avi <label 1..{len(classes)}>', "
                        f"got {line.strip()!r}"
                    )
                label = int(parts[1]) - 1
                if not 0 <= label < len(classes):
                    raise ValueError(
                        f"{list_file}, line {number}: label {parts[1]} is outside the class list "
                        f"{class_file} (1..{len(classes)})"
                    )
                if folder is not None and folder.lower() != classes[label].lower():
                    raise ValueError(
                        f"{list_file}, line {number}: label {parts[1]} is class {classes[label]!r} "
                        f"but the video is in the folder {folder!r}"
                    )
            else:
                if len(parts) != 1:
                    raise ValueError(
                        f"{list_file}, line {number}: expected '<class>/<video>.avi', got {line.strip()!r}"
                    )
                if folder is None or folder.lower() not in index:
                    raise ValueError(
                        f"{list_file}, line {number}: the class folder {folder!r} of {parts[0]!r} "
                        f"is not in the class list {class_file}"
                    )
                label = index[folder.lower()]
            rows.append((parts[0].replace("\\", "/"), -1, label, kind, 0))
    return _table(rows, "ucf101", None, classes)


def read_hmdb51(path, split=1):
    """Reads one HMDB51 split from the folder of `<class>_test_split<N>.txt` files.

    Tags: 1 = train, 2 = test, 0 = not used in this split (dropped). Labels index the
    sorted class names (the order of MMAction2's and most papers' class lists).

    Args:
        path: the split folder (`testTrainMulti_7030_splits`).
        split: 1, 2 or 3.

    Returns:
        The annotation table with paths `<class>/<video>.avi`; `attrs["classes"]`.

    Raises:
        FileNotFoundError: no split file for `split` in the folder.
        ValueError: a malformed line or an unknown tag (naming the file and line).
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"HMDB51 split folder not found: {path}")
    files = {}
    for name in os.listdir(path):
        match = _HMDB_RE.match(name)
        if match and int(match["split"]) == split:
            files[match["cls"]] = os.path.join(path, name)
    if not files:
        raise FileNotFoundError(f"{path}: no HMDB51 files '<class>_test_split{split}.txt'")
    classes = sorted(files)
    rows = []
    tags = {"1": "train", "2": "test"}
    for label, cls in enumerate(classes):
        for number, line in _lines(files[cls]):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise ValueError(
                    f"{files[cls]}, line {number}: expected '<video>.avi <0|1|2>' "
                    f"(0 unused, 1 train, 2 test), got {line.strip()!r}"
                )
            if parts[1] in tags:
                rows.append((f"{cls}/{parts[0]}", -1, label, tags[parts[1]], 0))
    return _table(rows, "hmdb51", None, classes)


def read_rawframe_list(path, multi_label=False, with_offset=None, num_classes=None):
    """Reads an MMAction2 rawframe list.

    Line forms: `frame_dir total_frames label`; with offset
    `frame_dir offset total_frames label`; multi-label
    `frame_dir [offset] total_frames label1 label2 ...`.

    Args:
        path: the list file.
        multi_label: labels are the variable number of integers after `total_frames`.
        with_offset: lines carry an offset before `total_frames`. `None` (default):
            decided from the first line for single-label lists (4 fields mean an offset),
            no offset for multi-label lists (it cannot be told apart from a label there).
        num_classes: if given, labels must be in `0..num_classes - 1` (or -1).

    Returns:
        The annotation table (`split` is `""`).

    Raises:
        ValueError: a malformed line or a label outside the class list (naming the file
            and line).
    """
    path = os.fspath(path)
    rows = []
    for number, line in _lines(path):
        if multi_label:
            expected = "'frame_dir [offset] total_frames label1 [label2 ...]'"
        else:
            expected = "'frame_dir [offset] total_frames label'"
        frame_dir, numbers = _split_numbers(path, number, line, expected)
        if with_offset is None and not multi_label:
            if len(numbers) not in (2, 3):
                raise ValueError(
                    f"{path}, line {number}: expected {expected}, found {len(numbers)} numbers "
                    "after the folder (a multi-label list needs multi_label=True)"
                )
            with_offset = len(numbers) == 3
        fixed = 2 if with_offset else 1
        if multi_label:
            if len(numbers) < fixed + 1:
                raise ValueError(
                    f"{path}, line {number}: expected {expected}, got {line.strip()!r}"
                )
        elif len(numbers) != fixed + 1:
            raise ValueError(
                f"{path}, line {number}: expected {expected} "
                f"({'with' if with_offset else 'without'} offset, as the first line), "
                f"found {len(numbers)} numbers after the folder"
                + (
                    ""
                    if len(numbers) < fixed + 1
                    else " (a multi-label list needs multi_label=True)"
                )
            )
        offset = numbers[0] if with_offset else 0
        frames = numbers[fixed - 1]
        if frames < 1 or offset < 0:
            raise ValueError(
                f"{path}, line {number}: expected total_frames >= 1 and offset >= 0, "
                f"got total_frames={frames}, offset={offset}"
            )
        labels = [_check_label(n, path, number, num_classes) for n in numbers[fixed:]]
        label = tuple(labels) if multi_label else labels[0]
        rows.append((frame_dir, frames, label, "", offset))
    return _table(rows, "rawframes", None, multi_label=multi_label)


def read_video_list(path, multi_label=False, num_classes=None):
    """Reads an MMAction2 video list: `video label` or `video label1 label2 ...`.

    Args:
        path: the list file.
        multi_label: lines carry one or more labels.
        num_classes: if given, labels must be in `0..num_classes - 1` (or -1).

    Returns:
        The annotation table (`frames` is -1, `split` `""`).

    Raises:
        ValueError: a malformed line or a label outside the class list (naming the file
            and line).
    """
    path = os.fspath(path)
    rows = []
    for number, line in _lines(path):
        expected = "'video label1 [label2 ...]'" if multi_label else "'video label'"
        video, numbers = _split_numbers(path, number, line, expected)
        if not multi_label and len(numbers) != 1:
            raise ValueError(
                f"{path}, line {number}: expected {expected}, found {len(numbers)} numbers after "
                "the video (a multi-label list needs multi_label=True)"
            )
        labels = [_check_label(n, path, number, num_classes) for n in numbers]
        rows.append((video, -1, tuple(labels) if multi_label else labels[0], "", 0))
    return _table(rows, "videos", None, multi_label=multi_label)


def _parse_label_cell(value, path, number, multi_label, num_classes):
    text = str(value).strip()
    if multi_label:
        items = [t for t in re.split(r"[\s,;()\[\]]+", text) if t]
    else:
        items = [text]
    try:
        labels = [int(float(t)) if re.fullmatch(r"-?\d+(\.0*)?", t) else int(t) for t in items]
    except ValueError:
        kind = "integers" if multi_label else "an integer"
        raise ValueError(
            f"{path}, line {number}: column 'label' must hold {kind}, got {text!r}"
        ) from None
    if not labels:
        raise ValueError(f"{path}, line {number}: column 'label' is empty")
    labels = [_check_label(n, path, number, num_classes) for n in labels]
    return tuple(labels) if multi_label else labels[0]


def read_csv(path, multi_label=False, num_classes=None):
    """Reads a CSV file with a header naming the table's columns.

    `path` and `label` are required; `frames` (default -1), `split` (default `""`) and
    `offset` (default 0) are optional; other columns are kept.

    Args:
        path: the CSV file.
        multi_label: label cells hold several integers (`"3 5"`, `"3;5"`, `"(3, 5)"`).
        num_classes: if given, labels must be in `0..num_classes - 1` (or -1).

    Returns:
        The annotation table.

    Raises:
        ValueError: a missing column or a bad cell (naming the file, line and column).
    """
    import pandas as pd

    path = os.fspath(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"{path}: empty CSV file; expected a header with 'path' and 'label'"
        ) from None
    missing = [c for c in ("path", "label") if c not in raw.columns]
    if missing:
        raise ValueError(
            f"{path}: missing columns {missing}; expected a header with at least 'path' and 'label' "
            f"(found {list(raw.columns)})"
        )
    rows = []
    for i, record in enumerate(raw.to_dict("records")):
        number = i + 2  # line 1 is the header
        if not record["path"].strip():
            raise ValueError(f"{path}, line {number}: column 'path' is empty")
        values = {}
        for column, default in (("frames", -1), ("offset", 0)):
            cell = str(record.get(column, "")).strip()
            if cell == "":
                values[column] = default
                continue
            if not re.fullmatch(r"-?\d+(\.0*)?", cell):
                raise ValueError(
                    f"{path}, line {number}: column {column!r} must be an integer, got {cell!r}"
                )
            values[column] = int(float(cell))
        split = str(record.get("split", "")).strip()
        if split not in ("train", "test", "val", ""):
            raise ValueError(
                f"{path}, line {number}: column 'split' must be 'train', 'test', 'val' or empty, got {split!r}"
            )
        label = _parse_label_cell(record["label"], path, number, multi_label, num_classes)
        rows.append((record["path"].strip(), values["frames"], label, split, values["offset"]))
    table = _table(rows, "csv", None, multi_label=multi_label)
    for column in raw.columns:
        if column not in COLUMNS:
            table[column] = raw[column].to_numpy()
    return table


def detect_format(path):
    """Guesses the annotation format of a file or folder.

    Folders: `"ucf101"` if they hold `classInd.txt`, `"hmdb51"` if they hold
    `*_test_split<N>.txt` files. Files: `"csv"` by extension, `"ucf101"` for
    `classInd.txt`/`trainlist0N.txt`/`testlist0N.txt`, else `"videos"` when the first
    entry ends with a video extension and `"rawframes"` otherwise.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: nothing recognisable.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Annotation file or folder not found: {path}")
    if os.path.isdir(path):
        names = os.listdir(path)
        if "classInd.txt" in names:
            return "ucf101"
        if any(_HMDB_RE.match(n) for n in names):
            return "hmdb51"
        raise ValueError(
            f"{path}: a folder of annotations must hold UCF101's classInd.txt or HMDB51's "
            "<class>_test_split<N>.txt files"
        )
    name = os.path.basename(path)
    if name.lower().endswith(".csv"):
        return "csv"
    if name == "classInd.txt" or _UCF_LIST_RE.match(name):
        return "ucf101"
    for number, line in _lines(path):
        entry, _ = _split_numbers(path, number, line, "'<path> <numbers ...>'")
        return "videos" if entry.lower().endswith(_video_extensions()) else "rawframes"
    raise ValueError(f"{path}: empty annotation file")


def load_annotations(
    path_or_dir,
    format="auto",
    split=1,
    root=None,
    multi_label=False,
    with_offset=None,
    num_classes=None,
    layout="auto",
):
    """Reads an annotation file or folder into the common table.

    Args:
        path_or_dir: a UCF101 `ucfTrainTestlist` folder (or one of its files), an HMDB51
            split folder, an MMAction2 rawframe or video list, or a CSV file.
        format: `"auto"` (see `detect_format`), `"ucf101"`, `"hmdb51"`, `"rawframes"`,
            `"videos"` or `"csv"`.
        split: the UCF101/HMDB51 split, 1, 2 or 3.
        root: folder the paths are relative to; when given, each relative path is joined
            to it (and `table.attrs["root"]` records it).
        multi_label: the list holds several labels per line; `label` holds tuples.
        with_offset: rawframe lists only, see `read_rawframe_list`.
        num_classes: if given, labels of rawframe/video/CSV lists must be below it.
        layout: what the paths of video-based lists (UCF101, HMDB51, video lists) name:
            `"videos"` keeps the video files; `"frames"` drops the extension, naming the
            frame folders written by `keras-twostream extract`
            (`ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01`); `"auto"` picks `"frames"` when
            `root` is given, the first video is not under it and its frame folder is.

    Returns:
        A `pandas.DataFrame` with columns `path, frames, label, split, offset`.

    Raises:
        FileNotFoundError: the file or folder does not exist.
        ValueError: an unknown format, a malformed line, or a label outside the class
            list (naming the file and line number).

    Example:

    >>> from keras_twostream.data.annotations import load_annotations
    >>> table = load_annotations("ucfTrainTestlist", split=1, root="UCF-101")  # doctest: +SKIP
    >>> table[table.split == "train"].shape  # doctest: +SKIP
    (9537, 5)
    """
    if format not in FORMATS:
        raise ValueError(
            f"Expected format to be one of {list(FORMATS)}. Received: format={format!r}"
        )
    if layout not in LAYOUTS:
        raise ValueError(
            f"Expected layout to be one of {list(LAYOUTS)}. Received: layout={layout!r}"
        )
    if isinstance(split, bool) or not isinstance(split, int) or split < 1:
        raise ValueError(
            f"Expected split to be an integer >= 1 (1, 2 or 3). Received: split={split!r}"
        )
    if num_classes is not None and (isinstance(num_classes, bool) or int(num_classes) < 1):
        raise ValueError(
            f"Expected num_classes >= 1 or None. Received: num_classes={num_classes!r}"
        )
    path = os.fspath(path_or_dir)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Annotation file or folder not found: {path}")
    if format == "auto":
        format = detect_format(path)
    if format in ("ucf101", "hmdb51") and multi_label:
        raise ValueError(f"format={format!r} is single-label; multi_label=True does not apply")
    if format == "ucf101":
        table = read_ucf101(path, split)
    elif format == "hmdb51":
        table = read_hmdb51(path, split)
    elif format == "rawframes":
        table = read_rawframe_list(path, multi_label, with_offset, num_classes)
    elif format == "videos":
        table = read_video_list(path, multi_label, num_classes)
    else:
        table = read_csv(path, multi_label, num_classes)
    if format != "rawframes" and format != "csv" and len(table):
        if layout == "auto":
            layout = _guess_layout(table["path"].iloc[0], root)
        if layout == "frames":
            table["path"] = [os.path.splitext(p)[0] for p in table["path"]]
    if root is not None:
        root = os.fspath(root)
        table["path"] = [p if os.path.isabs(p) else os.path.join(root, p) for p in table["path"]]
        table.attrs["root"] = root
    return table


def _guess_layout(first_path, root):
    if root is None:
        return "videos"
    video = os.path.join(os.fspath(root), first_path)
    folder = os.path.splitext(video)[0]
    if not os.path.exists(video) and os.path.isdir(folder):
        return "frames"
    return "videos"
