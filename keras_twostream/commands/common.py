"""What the commands share: data folders, annotation tables, models, their input needs and sidecar files.

Sidecar files. Next to every checkpoint `NAME.keras` that `keras-twostream train`
writes lies `NAME.json`, the model's *model card*: the model name, the class
names in label order, the data settings it was trained with (modalities, image
size, flow length, normalisations, and the extraction settings of its frames:
flow algorithm, short side, bound) and the test protocol. `evaluate`,
`predict` and `export` read it when present; a model saved from Python has
none, and the commands then use the library defaults and say so.
"""

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from keras_twostream.commands import UserError

MODEL_INFO_FORMAT = "keras_twostream-model-info"
CHECKPOINT_NAMES = ("best.keras", "last.keras")
MAX_LISTED = 5


def say(command, message):
    """Prints `[command] message` and flushes (progress lines interleave with Keras' bars).

    Example:

    >>> from keras_twostream.commands.common import say
    >>> say("train", "done")
    [train] done
    """
    print(f"[{command}] {message}", flush=True)


def first_line(error, limit=300):
    """The first line of an exception's message, shortened.

    Example:

    >>> from keras_twostream.commands.common import first_line
    >>> first_line(ValueError("bad value"))
    'bad value'
    """
    text = str(error).strip().splitlines()
    text = text[0] if text else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def listing(items, limit=MAX_LISTED):
    """`a, b, c, ... (and 7 more)`.

    Example:

    >>> from keras_twostream.commands.common import listing
    >>> listing(["a", "b", "c"], limit=2)
    'a, b, ... (and 1 more)'
    """
    items = [str(i) for i in items]
    shown = ", ".join(items[:limit])
    return shown + (f", ... (and {len(items) - limit} more)" if len(items) > limit else "")


def atomic_write_text(path, text):
    """Writes a text file through a temporary file renamed into place.

    Example:

    >>> from keras_twostream.commands.common import atomic_write_text
    >>> atomic_write_text("/tmp/notes.txt", "hello")  # doctest: +SKIP
    '/tmp/notes.txt'
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temp = f"{path}.tmp-{os.getpid()}"
    with open(temp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(temp, path)
    return path


# --------------------------------------------------------------------------
# Sidecar files and models.
# --------------------------------------------------------------------------


def sidecar_path(model_path):
    """`runs/best.keras` -> `runs/best.json` (for a SavedModel folder `OUT`: `OUT/keras_twostream.json`).

    Example:

    >>> from keras_twostream.commands.common import sidecar_path
    >>> sidecar_path("runs/best.keras").as_posix()
    'runs/best.json'
    """
    path = Path(model_path)
    if path.is_dir():
        return path / "keras_twostream.json"
    return path.with_suffix(".json")


def write_sidecar(model_path, info):
    """Writes the model card next to a checkpoint (atomically).

    Example:

    >>> from keras_twostream.commands.common import write_sidecar
    >>> write_sidecar("runs/best.keras", {"model": "two_stream", "classes": ["a", "b"]})  # doctest: +SKIP
    """
    return atomic_write_text(
        sidecar_path(model_path), json.dumps({"format": MODEL_INFO_FORMAT, **info}, indent=2)
    )


def read_sidecar(model_path):
    """The model card of a checkpoint, or `{}` when it has none.

    Example:

    >>> from keras_twostream.commands.common import read_sidecar
    >>> read_sidecar("runs/best.keras")["classes"][:2]  # doctest: +SKIP
    ['ApplyEyeMakeup', 'ApplyLipstick']
    """
    path = sidecar_path(model_path)
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(
            f"{path}: unreadable model card ({first_line(error)}); remove it or fix it"
        ) from None
    if not isinstance(info, dict) or info.get("format") != MODEL_INFO_FORMAT:
        return {}
    return info


def resolve_model_path(path):
    """A `.keras` file, or a training output folder (its `best.keras`, else `last.keras`).

    Example:

    >>> from keras_twostream.commands.common import resolve_model_path
    >>> resolve_model_path("runs/two_stream")  # doctest: +SKIP
    PosixPath('runs/two_stream/best.keras')
    """
    path = Path(path)
    if path.is_dir():
        for name in CHECKPOINT_NAMES:
            if (path / name).is_file():
                return path / name
        raise UserError(
            f"{path}: a folder without {' or '.join(CHECKPOINT_NAMES)}; give the .keras file"
        )
    if not path.is_file():
        raise UserError(f"{path}: model file not found")
    if path.suffix != ".keras":
        raise UserError(
            f"{path}: expected a .keras model file (written by keras-twostream train or model.save)"
        )
    return path


def load_model(path):
    """Loads a `.keras` model with every keras_twostream class registered; errors become `UserError`.

    Example:

    >>> from keras_twostream.commands.common import load_model
    >>> model, path = load_model("runs/two_stream")  # doctest: +SKIP
    """
    from keras_twostream.models import load_model as _load

    path = resolve_model_path(path)
    try:
        return _load(path), path
    except Exception as error:  # noqa: BLE001 - any failure to read the file is the user's to fix
        raise UserError(f"{path}: cannot load the model ({first_line(error)})") from None


def num_classes_of(model):
    """The number of classes the model predicts (its primary task for multi-task models).

    Example:

    >>> from keras_twostream import build_two_stream
    >>> from keras_twostream.commands.common import num_classes_of
    >>> num_classes_of(build_two_stream(5, backbone="tiny", image_size=32, flow_length=2))
    5
    """
    config = model.get_config() if hasattr(model, "get_config") else {}
    value = config.get("num_classes")
    if isinstance(value, int):
        return value
    if isinstance(value, dict) and value:
        return int(next(iter(value.values())))
    return int(score_outputs(model)[0][1])


def score_outputs(model):
    """`[(name, num_classes)]` of the outputs that are class scores `(batch, classes)`.

    For a multi-task model (`TwoStream(num_classes={...})`, two-stream paper Sect. 4), the
    primary (first) task's outputs only: the commands score one dataset, whose classes are
    the primary task's (`evaluate`, `predict`, `fuse` and `export` on a multi-task run).

    Example:

    >>> from keras_twostream import build_two_stream
    >>> from keras_twostream.commands.common import score_outputs
    >>> score_outputs(build_two_stream(5, backbone="tiny", image_size=32, flow_length=2))
    [('spatial', 5), ('temporal', 5), ('fused', 5)]
    """
    outputs = model.output if isinstance(model.output, dict) else None
    if outputs is None:
        names = list(getattr(model, "output_names", None) or ["output"])
        tensors = model.outputs
        outputs = dict(zip(names, tensors, strict=False))
    found = [(name, int(t.shape[-1])) for name, t in outputs.items() if len(t.shape) == 2]
    label_map = getattr(model, "_label_map", None) or {}  # output -> task (VideoClassifier)
    tasks = model.get_config().get("num_classes") if hasattr(model, "get_config") else None
    if isinstance(tasks, dict) and len(tasks) > 1:
        primary = next(iter(tasks))
        found = [(name, n) for name, n in found if label_map.get(name, primary) == primary]
    if not found:
        raise UserError(f"{model.name}: the model has no class-score output (batch, classes)")
    return found


def primary_output(names):
    """`"fused"` when the model has it, else its first score output.

    Example:

    >>> from keras_twostream.commands.common import primary_output
    >>> primary_output(["spatial", "temporal", "fused"]), primary_output(["spatial"])
    ('fused', 'spatial')
    """
    return "fused" if "fused" in names else names[0]


@dataclass
class DataSpec:
    """What a model's inputs need from the data pipeline.

    Attributes:
        modalities: input names among `"rgb"`, `"flow"`, `"rgb_diff"`.
        image_size: input height and width (an int when square).
        segments: `K` (TSN segments, or frames per clip `T`).
        segment_arg: the constructor argument holding `segments`
            (`"num_segments"`, `"num_frames"` or `None`).
        flow_length: `L` (flow fields per snippet), 1 when no flow.
        diff_length: `D` (RGB differences per snippet), 1 when none.
        num_paths: STPN's flow paths `P` per snippet, or `None`.

    Example:

    >>> from keras_twostream.commands.common import DataSpec
    >>> DataSpec(("rgb", "flow"), 224, 3, "num_segments", flow_length=5).flow_length
    5
    """

    modalities: tuple
    image_size: object
    segments: int
    segment_arg: str
    flow_length: int = 1
    diff_length: int = 1
    num_paths: int = None


def model_spec(model):
    """Reads a model's `DataSpec` from its `data_config()` (foreign models: their input shapes).

    Example:

    >>> from keras_twostream import build_two_stream
    >>> from keras_twostream.commands.common import model_spec
    >>> spec = model_spec(build_two_stream(5, backbone="tiny", image_size=32, num_segments=3, flow_length=2))
    >>> spec.modalities, spec.segments, spec.flow_length
    (('rgb', 'flow'), 3, 2)
    """
    if hasattr(model, "data_config"):
        config = model.data_config()
        if not config["modalities"] or set(config["modalities"]) - {"rgb", "flow", "rgb_diff"}:
            raise UserError(
                f"{model.name}: expected a model with named inputs among 'rgb', 'flow', "
                f"'rgb_diff'; it takes {list(config['modalities'])}"
            )
        return DataSpec(
            modalities=tuple(config["modalities"]),
            image_size=config["image_size"],
            segments=int(config["num_segments"]),
            segment_arg="num_segments" if "num_segments" in model.get_config() else None,
            flow_length=int(config["flow_length"] or 1),
            diff_length=int(config["diff_length"] or 1),
            num_paths=config["num_paths"],
        )
    inputs = model.input if isinstance(model.input, dict) else {}
    shapes = {name: tuple(t.shape[1:]) for name, t in inputs.items()}
    unknown = sorted(set(shapes) - {"rgb", "flow", "rgb_diff"})
    if not shapes or unknown:
        raise UserError(
            f"{model.name}: expected a model with named inputs among 'rgb', 'flow', 'rgb_diff'; "
            f"it takes {sorted(shapes)}"
        )
    first = next(iter(shapes.values()))
    height, width = int(first[1]), int(first[2])
    spec = DataSpec(
        modalities=tuple(shapes),
        image_size=height if height == width else (height, width),
        segments=int(first[0]),
        segment_arg=None,
    )
    if "flow" in shapes:
        spec.flow_length = int(shapes["flow"][-1]) // 2
    if "rgb_diff" in shapes:
        spec.diff_length = int(shapes["rgb_diff"][-1]) // 3
    return spec


# The preprocessing entries of a model's data config that model cards of runs trained
# before the model owned them (keras_twostream < 0.9) recorded under "data".
_CARD_PREPROCESSING = ("rgb_normalization", "flow_normalization", "mean_subtract_flow")


def data_config_of(model, info=None):
    """The model's `data_config()`; for a model saved before models owned their data
    settings, the model card (`info`) fills in the preprocessing and class names.

    Example:

    >>> from keras_twostream import build_two_stream
    >>> from keras_twostream.commands.common import data_config_of
    >>> model = build_two_stream(2, backbone="tiny", image_size=32, flow_length=2)
    >>> data_config_of(model, {"classes": ["a", "b"], "data": {"rgb_normalization": "caffe"}})["rgb_normalization"]
    'caffe'
    """
    info = info or {}
    if not hasattr(model, "data_config"):
        spec = model_spec(model)
        config = {
            "modalities": spec.modalities,
            "image_size": spec.image_size,
            "num_segments": spec.segments,
            "flow_length": spec.flow_length if "flow" in spec.modalities else None,
            "num_paths": spec.num_paths,
            "diff_length": spec.diff_length if "rgb_diff" in spec.modalities else None,
            "rgb_normalization": "unit",
            "flow_normalization": "pixels",
            "mean_subtract_flow": True,
            "flow_bound": None,
            "class_names": None,
        }
        stored = {}
    else:
        config = model.data_config()
        stored = model.get_config().get("data_config") or {}
    card = info.get("data") or {}
    for key in _CARD_PREPROCESSING:
        if key not in stored and key in card:
            config[key] = card[key]
    if config.get("class_names") is None and info.get("classes"):
        config["class_names"] = list(info["classes"])
    return config


def model_name_of(model, info=None):
    """The `MODELS` key of a model: from its model card, else from its class name.

    Example:

    >>> from keras_twostream import build_two_stream
    >>> from keras_twostream.commands.common import model_name_of
    >>> model_name_of(build_two_stream(5, backbone="tiny", image_size=32, flow_length=2))
    'two_stream'
    """
    if info and info.get("model"):
        return info["model"]
    from keras_twostream.models import MODELS

    cls = type(model).__name__.lower()
    for name, builder in MODELS.items():
        if builder.__name__ == f"build_{name}" and name.replace("_", "") == cls:
            return name
    return cls


# --------------------------------------------------------------------------
# Data folders and annotation tables.
# --------------------------------------------------------------------------


def is_frame_folder(path):
    """A folder written by `keras-twostream extract` (it lists its videos in `rawframes.txt`)
    or any folder holding frame folders (`meta.json` or `img_00001.jpg` within two levels).

    Example:

    >>> from keras_twostream.commands.common import is_frame_folder
    >>> is_frame_folder("ucf101_frames")  # doctest: +SKIP
    True
    """
    path = Path(path)
    if (path / "rawframes.txt").is_file():
        return True
    for pattern in ("*/meta.json", "*/*/meta.json", "*/img_00001.jpg", "*/*/img_00001.jpg"):
        if next(path.glob(pattern), None) is not None:
            return True
    return False


def resolve_data(
    data, command, frames_dir=None, flow="tvl1", short_side=256, bound=20.0, workers=1
):
    """The frame folder to read: `data` itself, or where the videos in `data` are extracted to.

    A folder of videos is extracted (resumably: complete frame folders are kept)
    into `frames_dir`, by default the sibling folder `<data>_frames`.

    Returns:
        The frame folder, a `Path`.

    Example:

    >>> from keras_twostream.commands.common import resolve_data
    >>> resolve_data("UCF-101", "train", flow="tvl1")  # doctest: +SKIP
    PosixPath('UCF-101_frames')
    """
    data = Path(data)
    if not data.exists():
        raise UserError(f"{data}: no such folder")
    if not data.is_dir():
        raise UserError(
            f"{data}: expected a folder (frames from keras-twostream extract, or videos)"
        )
    if is_frame_folder(data):
        return data
    from keras_twostream.data.extract import extract_videos, find_videos

    videos = find_videos(data)
    if not videos:
        raise UserError(
            f"{data}: neither a frame folder written by keras-twostream extract (rawframes.txt) "
            "nor a folder of videos"
        )
    target = Path(frames_dir) if frames_dir else data.parent / f"{data.name}_frames"
    say(command, f"{len(videos)} videos in {data}: extracting frames and {flow} flow into {target}")
    summary = extract_videos(
        data, target, flow=flow, workers=workers, short_side=short_side, bound=bound
    )
    if summary.failed:
        say(
            command,
            f"{len(summary.failed)} videos failed to extract (listed in {target / 'failures.txt'})",
        )
    return target


def read_classes_file(path):
    """Class names from `classes.txt` (`0 name` per line, written by `keras-twostream extract`).

    Example:

    >>> from keras_twostream.commands.common import read_classes_file
    >>> read_classes_file("ucf101_frames/classes.txt")[:1]  # doctest: +SKIP
    ['ApplyEyeMakeup']
    """
    names = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) != len(names):
            raise UserError(
                f"{path}, line {number}: expected '{len(names)} <class name>', got {line!r}"
            )
        names.append(parts[1].strip())
    return names


def load_table(root, annotations=None, split=1, fmt="auto"):
    """The annotation table of the videos under the frame folder `root`, and the class names.

    Without `annotations`, `root/rawframes.txt` (written by `extract`) lists the
    videos and `root/classes.txt` names the classes (every video then belongs
    to no particular split). With `annotations` (a UCF101 `ucfTrainTestlist`
    folder, an HMDB51 split folder, a rawframe/video list or a CSV file; see
    `keras_twostream.data.load_annotations`), the split files decide.

    Returns:
        `(table, classes, source)`: the table (absolute frame-folder paths), the
        class names in label order, and the annotation file or folder used.

    Example:

    >>> from keras_twostream.commands.common import load_table
    >>> table, classes, source = load_table("ucf101_frames", "ucfTrainTestlist", split=1)  # doctest: +SKIP
    >>> len(classes)  # doctest: +SKIP
    101
    """
    from keras_twostream.data.annotations import load_annotations

    root = Path(root)
    if annotations is None:
        source = root / "rawframes.txt"
        if not source.is_file():
            raise UserError(
                f"{root}: no rawframes.txt; pass --annotations (UCF101/HMDB51 split folder, rawframe "
                "or video list, CSV) or point at a folder written by keras-twostream extract"
            )
        table = load_annotations(source, format="rawframes", root=root)
    else:
        source = Path(annotations)
        table = load_annotations(source, format=fmt, split=split, root=root, layout="frames")
    if table.empty:
        raise UserError(f"{source}: lists no videos")
    if any(isinstance(v, tuple) for v in table["label"]):
        raise UserError(
            f"{source}: multi-label annotations are not supported by the command line yet"
        )
    classes = table.attrs.get("classes")
    if classes is None:
        classes_file = root / "classes.txt"
        top = int(table["label"].max())
        if classes_file.is_file():
            classes = read_classes_file(classes_file)
            if top >= len(classes):
                raise UserError(
                    f"{source}: label {top} is outside the {len(classes)} classes of {classes_file}"
                )
        else:
            classes = [f"class_{i}" for i in range(top + 1)]
    return table, list(classes), source


def subset(table, which):
    """The rows of one split (`"train"`, `"test"`, `"val"`), or every row when the table has no
    split column values (a plain list) or `which == "all"`.

    Example:

    >>> import pandas as pd
    >>> from keras_twostream.commands.common import subset
    >>> table = pd.DataFrame({"path": ["a", "b"], "split": ["train", "test"]})
    >>> subset(table, "test")["path"].tolist()
    ['b']
    """
    if which == "all" or not (table["split"] != "").any():
        return table
    return table[table["split"] == which]


def video_ids(table, root):
    """Video ids: the frame-folder paths relative to `root` (with "/").

    Example:

    >>> import pandas as pd
    >>> from keras_twostream.commands.common import video_ids
    >>> video_ids(pd.DataFrame({"path": ["/data/frames/Run/v1"]}), "/data/frames")
    ['Run/v1']
    """
    root = os.path.abspath(os.fspath(root))
    ids = []
    for path in table["path"]:
        path = os.path.abspath(path)
        rel = os.path.relpath(path, root) if path.startswith(root + os.sep) else path
        ids.append(rel.replace(os.sep, "/"))
    return ids


def check_missing(table, root, source, command, skip=False):
    """Refuses (or with `skip`, drops and reports) videos whose frame folder is not under `root`.

    Returns:
        The table without the missing videos.

    Example:

    >>> from keras_twostream.commands.common import check_missing
    >>> table = check_missing(table, "ucf101_frames", "ucfTrainTestlist", "train")  # doctest: +SKIP
    """
    from keras_twostream.data.frames import folder_presence_problem

    # The frame-folder validator's first check (the rest runs when the pipeline is built).
    # A video file counts as present: RGB-only models read videos directly (video_data).
    present = [folder_presence_problem(p, video_files=True) is None for p in table["path"]]
    missing = [vid for vid, ok in zip(video_ids(table, root), present, strict=True) if not ok]
    if not missing:
        return table
    message = (
        f"{len(missing)} of the {len(table)} videos named in {source} have no frame folder in {root}: "
        f"{listing(missing)}"
    )
    if not skip:
        raise UserError(message + "; extract them (keras-twostream extract) or pass --skip-missing")
    say(command, message + "; left out (--skip-missing)")
    kept = table[present]
    if kept.empty:
        raise UserError(f"none of the videos named in {source} has a frame folder in {root}")
    return kept


def extraction_settings(table):
    """The extraction settings (flow algorithm, short side, bound) of the first video with a meta.json.

    Example:

    >>> from keras_twostream.commands.common import extraction_settings
    >>> extraction_settings(table)  # doctest: +SKIP
    {'flow': 'tvl1', 'short_side': 256, 'bound': 20.0}
    """
    from keras_twostream.data.frames import META_FILE

    for path in table["path"][:20]:
        meta_path = os.path.join(path, META_FILE)
        if os.path.isfile(meta_path):
            try:
                with open(meta_path, encoding="utf-8") as f:
                    meta = json.load(f)
            except (OSError, ValueError):
                continue
            return {
                "flow": meta.get("algorithm"),
                "short_side": meta.get("short_side"),
                "bound": meta.get("bound"),
            }
    return {}


# --------------------------------------------------------------------------
# Data errors met while a command runs (`--on-error`, issue 15 item 2).
# --------------------------------------------------------------------------

ON_ERROR_CHOICES = ("raise", "skip")


def add_on_error_argument(parser):
    """Adds `--on-error {raise,skip}` (the pipelines' `on_error`) to a command's parser."""
    parser.add_argument(
        "--on-error",
        choices=list(ON_ERROR_CHOICES),
        default="raise",
        help="a missing or corrupt frame file: stop with an error naming it (raise, the default), "
        "or leave the sample out, name it and count it in the report (skip)",
    )


def skipped_summary(errors):
    """The problems a `DatasetErrors` recorded, once per (video, file, problem), with counts.

    Args:
        errors: a `keras_twostream.data.DatasetErrors` (or `None`).

    Returns:
        A dict `{"count": int, "records": [{"video", "file", "problem", "row", "times"}]}`:
        `count` is the number of distinct problems, `times` how often each was met (a
        corrupt frame is met once per epoch that draws it).

    Example:

    >>> from keras_twostream.data import DatasetErrors
    >>> from keras_twostream.commands.common import skipped_summary
    >>> errors = DatasetErrors()
    >>> errors.add("v1", "v1/img_00003.jpg", "is not a valid JPEG (an empty file)", row=2)
    >>> skipped_summary(errors)["count"]
    1
    """
    merged = {}
    for record in [] if errors is None else errors.records:
        key = (record["video"], record["file"], record["problem"])
        if key in merged:
            merged[key]["times"] += 1
        else:
            merged[key] = {**record, "times": 1}
    return {"count": len(merged), "records": list(merged.values())}


def report_skipped(command, summary):
    """Prints the skipped samples of a run (see `skipped_summary`), or nothing when none."""
    if not summary["count"]:
        return
    say(command, f"skipped {summary['count']} bad sample file(s) (--on-error skip):")
    for record in summary["records"][:MAX_LISTED]:
        print(
            f"  {record['file'] or record['video']}: {record['problem']} "
            f"(row {record['row']}, met {record['times']}x)",
            file=sys.stderr,
        )
    if summary["count"] > MAX_LISTED:
        print(f"  ... ({summary['count']} in all)", file=sys.stderr)


_ASSERTION = re.compile(r"assertion failed: \[(.*?)\]\s*(?:\[\[|$)", re.S)


def data_error(error):
    """A `UserError` for a data failure raised inside `tf.data`, or `None` for other errors.

    The pipelines raise decoding failures in the graph (`keras_twostream.data.pipeline`),
    so they reach `model.fit`/`predict` as a TensorFlow `OpError` whose message holds the
    diagnosis ("FILE: is not a valid JPEG (...) (video ..., row N ...)"); this keeps that
    sentence and drops TensorFlow's node and traceback text.
    """
    message = getattr(error, "message", None) or str(error)
    match = _ASSERTION.search(message)
    if match is None or "annotation table" not in match.group(1):
        return None
    text = match.group(1).replace("\\'", "'").replace("on_error='skip'", "--on-error skip")
    return UserError(text)
