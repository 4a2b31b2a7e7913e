"""Finds every unreadable video and incomplete frame folder of a dataset before training.

`scan_dataset` takes an annotation table (or a file or folder `load_annotations` reads), or
a folder of videos and/or frame folders, and returns one row per problem: a missing,
empty, truncated or undecodable video; a video or frame folder shorter than the
annotation (or `min_frames`) needs; a frame folder with missing or empty files, flow-x
without flow-y, counts that disagree with its `meta.json` or RGB/flow counts that
disagree; a temporary folder left by an interrupted extraction; a label outside the class
list. `keras-twostream scan` is its command-line form (`add_arguments`/`run`).
"""

import os

from keras_twostream.data.frames import META_FILE, _check_modality, check_frame_folder

_FRAME_PREFIXES = ("img_", "x_", "y_")


def _is_temp(name):
    from keras_twostream.data.extract import _TMP_RE

    return _TMP_RE.match(name) is not None


def _discover(directory):
    """Frame folders, videos and leftover temporary folders under a data folder."""
    from keras_twostream.data.video import VIDEO_EXTENSIONS

    items, problems = [], []
    for parent, dirs, files in os.walk(directory):
        keep = []
        for d in sorted(dirs):
            if _is_temp(d):
                problems.append(
                    (
                        os.path.relpath(os.path.join(parent, d), directory),
                        "temporary folder left by an interrupted extraction: run "
                        "`keras-twostream extract` again to finish (it removes it)",
                    )
                )
            elif not d.startswith("."):
                keep.append(d)
        is_frames = META_FILE in files or any(
            f.startswith(_FRAME_PREFIXES) and f.endswith(".jpg") for f in files
        )
        if is_frames:
            dirs[:] = []
            items.append({"path": parent, "frames": -1, "offset": 0, "label": -1})
            continue
        dirs[:] = keep
        for name in sorted(files):
            if not name.startswith(".") and name.lower().endswith(VIDEO_EXTENSIONS):
                path = os.path.join(parent, name)
                items.append({"path": path, "frames": -1, "offset": 0, "label": -1})
    return items, problems


def _check_entry(path, frames, offset, modality, min_frames, decode):
    """Problems of one video or frame folder (run in worker processes)."""
    from keras_twostream.data.video import VideoDecodeError, probe_video

    if os.path.isdir(path):
        return check_frame_folder(
            path, modality, frames=frames, offset=offset, decode=decode, min_frames=min_frames
        )
    if not os.path.exists(path):
        return ["not found (neither a video file nor a frame folder)"]
    try:
        info = probe_video(path, decode=decode)
    except VideoDecodeError as error:
        return [error.reason]
    except OSError as error:
        return [f"cannot be read ({error})"]
    problems = []
    count = info.frames if info.frames is not None else info.reported_frames
    what = "decoded" if info.frames is not None else "reported by the container"
    if frames > 0 and count >= 0 and offset + frames > count:
        problems.append(
            f"{count} frames {what}, the annotation needs frames {offset + 1}..{offset + frames}"
        )
    if min_frames is not None and 0 <= count < min_frames:
        problems.append(f"{count} frames {what}, fewer than the {min_frames} needed (min_frames)")
    return problems


def _check_entry_star(arguments):
    return _check_entry(*arguments)


def _label_problem(label, num_classes):
    labels = label if isinstance(label, (tuple, list)) else (label,)
    bad = []
    for value in labels:
        try:
            value = int(value)
        except (TypeError, ValueError):
            bad.append(repr(value))
            continue
        if value < -1 or (num_classes is not None and value >= num_classes):
            bad.append(str(value))
    if not bad:
        return None
    allowed = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
    return f"label {', '.join(bad)} outside the class list (expected {allowed}, or -1 for unknown)"


def scan_dataset(
    table_or_dir,
    root=None,
    modality=("rgb", "flow"),
    progress=True,
    min_frames=None,
    num_classes=None,
    workers=1,
    decode=True,
    format="auto",
    split=1,
    multi_label=False,
):
    """Lists every problem of a dataset's videos and frame folders, before training starts.

    Args:
        table_or_dir: an annotation table (`load_annotations`); an annotation file or
            UCF101/HMDB51 split folder (read with `format`, `split`, `multi_label`); or a
            folder of videos and/or frame folders (as written by `keras-twostream extract`),
            scanned recursively.
        root: folder the table's relative paths are relative to.
        modality: the modalities training will read from frame folders (`"rgb"`,
            `"flow"`, `"rgb_diff"`); videos are checked whatever it is.
        progress: show a progress bar.
        min_frames: if given, a video or frame folder with fewer RGB frames is a problem
            (e.g. `num_segments * new_length` for TSN sampling).
        num_classes: if given, labels must be below it.
        workers: processes that decode in parallel.
        decode: decode every video frame (finds truncated videos) and the first and last
            frame of each folder; `False` only reads headers and file lists.
        format: annotation format for file/folder input, see `load_annotations`.
        split: UCF101/HMDB51 split for folder input.
        multi_label: for annotation files with several labels per line.

    Returns:
        A `pandas.DataFrame` with columns `path` and `problem`, one row per problem, empty
        when everything is usable; `attrs["checked"]` is the number of entries checked.

    Raises:
        FileNotFoundError: `table_or_dir` is a path that does not exist.
        ValueError: an argument is invalid, or an annotation file is malformed.

    Example:

    >>> from keras_twostream.data.scan import scan_dataset
    >>> problems = scan_dataset("ucf101_frames", modality=("rgb", "flow"))  # doctest: +SKIP
    >>> problems.empty  # doctest: +SKIP
    True
    """
    import pandas as pd

    from keras_twostream.data.annotations import detect_format, load_annotations

    modality = _check_modality(modality)
    if isinstance(workers, bool) or int(workers) != workers or workers < 1:
        raise ValueError(f"Expected workers to be an integer >= 1. Received: workers={workers!r}")
    if min_frames is not None and (isinstance(min_frames, bool) or int(min_frames) < 1):
        raise ValueError(f"Expected min_frames >= 1 or None. Received: min_frames={min_frames!r}")
    if num_classes is not None and (isinstance(num_classes, bool) or int(num_classes) < 1):
        raise ValueError(
            f"Expected num_classes >= 1 or None. Received: num_classes={num_classes!r}"
        )

    problems = []
    base = None
    if isinstance(table_or_dir, pd.DataFrame):
        missing = [c for c in ("path",) if c not in table_or_dir.columns]
        if missing:
            raise ValueError(
                f"Expected table_or_dir to be an annotation table with a 'path' column. "
                f"Received columns: {list(table_or_dir.columns)}"
            )
        table = table_or_dir
    else:
        path = os.fspath(table_or_dir)
        if not os.path.exists(path):
            raise FileNotFoundError(f"Dataset file or folder not found: {path}")
        table = None
        if os.path.isfile(path) or format != "auto":
            table = load_annotations(
                path, format=format, split=split, root=root, multi_label=multi_label
            )
        else:
            try:
                detect_format(path)  # a UCF101/HMDB51 split folder?
            except ValueError:
                pass  # no: a folder of videos and frame folders
            else:
                table = load_annotations(path, split=split, root=root)
        if table is None:
            base = path
            items, problems = _discover(path)
            if not items and not problems:
                problems.append((".", "no videos or frame folders found"))
            table = pd.DataFrame(items, columns=["path", "frames", "offset", "label"])

    # Tables passed in keep paths relative to `root`; loaded ones are already joined.
    join_root = root is not None and isinstance(table_or_dir, pd.DataFrame)
    entries = []
    for record in table.to_dict("records"):
        path = os.fspath(record["path"])
        if join_root and not os.path.isabs(path):
            path = os.path.join(os.fspath(root), path)
        frames = record.get("frames", -1)
        offset = record.get("offset", 0)
        frames = -1 if frames is None or pd.isna(frames) else int(frames)
        offset = 0 if offset is None or pd.isna(offset) else int(offset)
        entries.append((path, frames, offset, record.get("label", -1)))

    shown = (lambda p: os.path.relpath(p, base)) if base is not None else (lambda p: p)
    for path, _frames, _offset, label in entries:
        problem = _label_problem(label, num_classes)
        if problem:
            problems.append((shown(path), problem))

    unique = list(dict.fromkeys((p, f, o) for p, f, o, _ in entries))
    arguments = [(p, f, o, modality, min_frames, decode) for p, f, o in unique]
    results = _run_checks(arguments, int(workers), progress)
    for (path, _f, _o), found in zip(unique, results, strict=True):
        problems.extend((shown(path), problem) for problem in found)
    result = pd.DataFrame(problems, columns=["path", "problem"])
    result.attrs["checked"] = len(unique)
    return result


def _run_checks(arguments, workers, progress):
    from tqdm.auto import tqdm

    bar = tqdm(total=len(arguments), desc="scan", unit="entry", disable=not progress)
    results = []
    try:
        if workers == 1 or len(arguments) <= 1:
            for argument in arguments:
                results.append(_check_entry_star(argument))
                bar.update(1)
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(min(workers, len(arguments)), mp_context=context) as pool:
                for found in pool.map(_check_entry_star, arguments, chunksize=4):
                    results.append(found)
                    bar.update(1)
    finally:
        bar.close()
    return results


def add_arguments(parser):
    """Adds the `keras-twostream scan` arguments to an `argparse` parser."""
    from keras_twostream.data.annotations import FORMATS
    from keras_twostream.data.frames import MODALITIES

    parser.add_argument(
        "path",
        help="annotation file, UCF101/HMDB51 split folder, or folder of videos/frame folders",
    )
    parser.add_argument("--root", default=None, help="folder the annotation paths are relative to")
    parser.add_argument("--format", choices=FORMATS, default="auto", help="annotation format")
    parser.add_argument("--split", type=int, default=1, help="UCF101/HMDB51 split (1, 2 or 3)")
    parser.add_argument("--multi-label", action="store_true", help="several labels per line")
    parser.add_argument(
        "--modality",
        nargs="+",
        choices=MODALITIES,
        default=["rgb", "flow"],
        help="modalities read from frame folders",
    )
    parser.add_argument("--min-frames", type=int, default=None, help="fewer frames is a problem")
    parser.add_argument("--num-classes", type=int, default=None, help="labels must be below it")
    parser.add_argument("--workers", type=int, default=1, help="decoding processes")
    parser.add_argument(
        "--no-decode", action="store_true", help="only read headers and file lists (faster)"
    )
    parser.add_argument("--output", default=None, help="also write the problems to this CSV file")
    return parser


def run(args):
    """Runs `keras-twostream scan`; returns 0 when nothing is wrong, 1 otherwise."""
    problems = scan_dataset(
        args.path,
        root=args.root,
        modality=tuple(args.modality),
        progress=True,
        min_frames=args.min_frames,
        num_classes=args.num_classes,
        workers=args.workers,
        decode=not args.no_decode,
        format=args.format,
        split=args.split,
        multi_label=args.multi_label,
    )
    for path, problem in problems.itertuples(index=False):
        print(f"{path}: {problem}")
    checked = problems.attrs.get("checked", 0)
    print(f"{len(problems)} problem(s) in {checked} checked entries of {args.path}")
    if args.output:
        problems.to_csv(args.output, index=False)
    return 1 if len(problems) else 0
