"""Multi-task training data: one dataset mixing several annotated datasets, labels per task.

The two-stream paper (Simonyan & Zisserman, NIPS 2014, Sect. 4) trains one network on
UCF-101 and HMDB-51 at once: "a ConvNet architecture is modified so that it has *two*
softmax classification layers on top of the last fully-connected layer [...]. Each of the
layers is equipped with its own loss function, which operates only on the videos, coming
from the respective dataset. The overall training loss is computed as the sum of the
individual tasks' losses". `TwoStream(num_classes={"hmdb51": 51, "ucf101": 101})` is that
network; `make_multi_task_dataset` is its data: the videos of every task's table in one
stream of batches, each sample labelled for its own task and `-1` for the others, which the
model's losses and accuracies skip (`keras_twostream.models.VideoClassifier`).

How the tasks are mixed (the paper does not say; choices documented here and in
`docs/data.md`):

- `video_sampling="shuffle"` (the default, as in `make_dataset`): an epoch holds every
  video of every task once, shuffled together, so the tasks are mixed in proportion to
  their sizes (UCF-101's 9.5K and HMDB-51's 3.7K training videos: about 72% / 28%).
- `video_sampling="class_uniform"`: the paper's "sampling 256 training videos (uniformly
  across the classes)" (Sect. 5), applied to the union of the tasks' classes: each sample
  draws one of the `C_1 + C_2 + ...` (task, class) pairs uniformly, then a video of it.
  Every task is then class-uniform, and a task's share of the samples is its share of the
  classes (101 / 152 = 66% UCF-101, 51 / 152 = 34% HMDB-51).
- `task_weights={"hmdb51": 0.5, "ucf101": 0.5}` (with `"class_uniform"`): a task is drawn
  with its weight first, then a class of it uniformly, then a video: class-uniform within
  each task, in the given proportions between tasks.

An epoch is as many samples as the tables have usable videos together, in every mode.
"""

import inspect

import numpy as np

from keras_twostream.data.data_config import (
    check_table_classes,
    merge_data_config,
    resolve_data_config,
)
from keras_twostream.data.guard import DatasetErrors
from keras_twostream.data.pipeline import (
    _clip_dataset,
    _common_args,
    _finish,
    _training_args,
    make_dataset,
)

__all__ = ["make_multi_task_dataset"]

_NAME = "make_multi_task_dataset"
# make_dataset's arguments, with their defaults; those a source or this function sets itself
# are not keyword arguments here.
_PARAMETERS = {
    name: parameter.default
    for name, parameter in inspect.signature(make_dataset).parameters.items()
    if name not in ("table", "root", "num_classes", "data_config")
}


def _check_sources(sources):
    """`[(task, table, root)]` in the order of `sources`."""
    if not hasattr(sources, "items"):
        raise ValueError(
            "Expected sources to be a dict task name -> annotation table (or (table, root)). "
            f"Received: {type(sources).__name__}"
        )
    if len(sources) < 2:
        raise ValueError(
            "Expected sources to name at least two tasks (for one dataset use make_dataset). "
            f"Received: sources with tasks {list(sources)}"
        )
    checked = []
    for task, value in sources.items():
        if not isinstance(task, str) or not task.isidentifier():
            raise ValueError(
                f"Expected task names that are identifiers (they name the model's outputs). "
                f"Received: {task!r}"
            )
        table, root = value if isinstance(value, tuple) else (value, None)
        checked.append((task, table, root))
    return checked


def _model_tasks(data_config, config):
    """Task -> class count of the model behind `data_config`, or `None` if it does not say."""
    counts = getattr(data_config, "num_classes", None)  # a multi-task model
    if isinstance(counts, dict):
        return {str(task): int(n) for task, n in counts.items()}
    if counts is not None:
        raise ValueError(
            f"{_NAME}: the model has one task ({counts} classes), so labels per task mean "
            "nothing to it; build it with num_classes={task: classes, ...} (a multi-task model), "
            "or train it on one dataset with make_dataset"
        )
    names = (config or {}).get("class_names")
    if isinstance(names, dict):
        return {str(task): len(n) for task, n in names.items()}
    return None


def _check_num_classes(num_classes, tasks, model_tasks):
    """Task -> class count (or `None`: inferred from the labels), checked against the model."""
    if num_classes is None:
        num_classes = model_tasks
    elif not isinstance(num_classes, dict):
        raise ValueError(
            "Expected num_classes to be a dict task name -> number of classes. "
            f"Received: num_classes={num_classes!r}"
        )
    elif model_tasks is not None and dict(num_classes) != model_tasks:
        raise ValueError(
            f"{_NAME}: num_classes={dict(num_classes)!r} but the model predicts {model_tasks!r}"
        )
    if num_classes is None:
        return dict.fromkeys(tasks)
    if set(num_classes) != set(tasks):
        owner = "the model's tasks" if model_tasks is not None else "num_classes"
        raise ValueError(
            f"{_NAME}: sources name the tasks {list(tasks)}, {owner} are {list(num_classes)}; "
            "give one annotation table per task, under the task's name"
        )
    for task, count in num_classes.items():
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise ValueError(
                f"Expected num_classes[{task!r}] to be an integer >= 1. Received: {count!r}"
            )
    return {task: int(num_classes[task]) for task in tasks}


def _check_task_weights(task_weights, tasks, video_sampling):
    if task_weights is None:
        return None
    if video_sampling != "class_uniform":
        raise ValueError(
            "task_weights draws each sample's task at random: use it with "
            f"video_sampling='class_uniform'. Received: video_sampling={video_sampling!r}"
        )
    if not hasattr(task_weights, "items") or set(task_weights) != set(tasks):
        raise ValueError(
            f"Expected task_weights to be a dict with the tasks {list(tasks)} as keys. "
            f"Received: task_weights={task_weights!r}"
        )
    weights = {}
    for task in tasks:
        value = task_weights[task]
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or value < 0:
            raise ValueError(
                f"Expected task_weights[{task!r}] to be a number >= 0. Received: {value!r}"
            )
        weights[task] = float(value)
    total = sum(weights.values())
    if not total > 0:
        raise ValueError(
            f"Expected task_weights with a positive sum. Received: task_weights={task_weights!r}"
        )
    return {task: w / total for task, w in weights.items()}


def _merge_videos(parts):
    """One validity table (`keras_twostream.data.folders._scan`) from the tasks' tables."""
    kinds = {task: bool(videos["video_files"]) for task, videos in parts}
    if len(set(kinds.values())) > 1:
        raise ValueError(
            f"{_NAME}: the tasks mix video files and frame folders ({kinds}); extract the "
            "videos of every task (keras-twostream extract), or give every task videos"
        )
    merged = {"video_files": next(iter(kinds.values()))}
    shift, centres, starts = 0, [], []
    for _, videos in parts:
        start = videos["centre_start"]
        starts.append(np.where(start >= 0, start + shift, -1))
        centres.append(videos["centre"])
        shift += len(videos["centre"])
    merged["centre"] = np.concatenate(centres).astype(np.float32)
    merged["centre_start"] = np.concatenate(starts).astype(np.int64)
    for key in ("keep", "dir", "num_rgb", "num_flow", "offset", "bound", "row"):
        merged[key] = np.concatenate([videos[key] for _, videos in parts])
    return merged


def make_multi_task_dataset(
    sources, num_classes=None, task_weights=None, data_config=None, **kwargs
):
    """Builds multi-task training batches: several datasets' videos, one label per task.

    Two-stream paper, Sect. 4: the network has one softmax per dataset, "each [...]
    equipped with its own loss function, which operates only on the videos, coming from
    the respective dataset". Each sample of the returned dataset is labelled with its
    own class for the task whose table it comes from and `-1` for every other task,
    which the losses (`ignore_class=-1`) and accuracies of
    `keras_twostream.models.TwoStream(num_classes={...})` leave out: the dataset feeds
    such a model's `fit` directly. How the tasks are mixed (`video_sampling`,
    `task_weights`) is described in `keras_twostream.data.multi_task`.

    Args:
        sources: a dict task name -> annotation table (see `make_dataset`'s `table`), or
            -> `(table, root)` when the table's relative paths are relative to `root`;
            at least two tasks, single-label tables. The names are the model's task
            names (`TwoStream(num_classes={"hmdb51": 51, "ucf101": 101})`: `"hmdb51"`
            and `"ucf101"`); their order is the order of the label dict.
        num_classes: a dict task -> number of classes, checking each task's labels
            (default: from `data_config`'s model, else labels are only checked >= 0).
        task_weights: `None`, or with `video_sampling="class_uniform"` a dict task ->
            weight >= 0: the share of the samples each task gets (normalised to sum
            1); within a task the classes stay uniform. `None` is uniform over the
            union of the tasks' classes.
        data_config: a multi-task model (its `num_classes` dict gives the tasks and
            their class counts, its `data_config()` the data settings) or such a data
            config dict (with `class_names` a dict task -> names): as for
            `make_dataset`. The tables' `attrs["classes"]` must match the model's
            class names of their task.
        **kwargs: any other argument of `make_dataset` (`modalities`,
            `num_segments`, `image_size`, `training`, `batch_size`, `seed`,
            `video_sampling`, `split` applied to every table, `on_error`, ...), with
            its default.

    Returns:
        A `tf.data.Dataset` of `(inputs, labels)`: `inputs` as for `make_dataset`;
        `labels` a dict task -> `(B,)` int32, in the order of `sources`. It has the
        attribute `dataset_errors` (a `DatasetErrors`; records keep the row of their
        own table).

    Example:

    >>> import pandas as pd
    >>> from keras_twostream.data import make_multi_task_dataset
    >>> clip = "tests/data/mmaction2/imgs"
    >>> sources = {"hmdb51": pd.DataFrame({"path": [clip] * 2, "label": [3, 7]}),
    ...            "ucf101": pd.DataFrame({"path": [clip], "label": [42]})}
    >>> ds = make_multi_task_dataset(sources, num_classes={"hmdb51": 51, "ucf101": 101},
    ...                              num_segments=1, flow_length=5, image_size=32,
    ...                              training=False, batch_size=3)
    >>> inputs, labels = next(iter(ds))
    >>> {task: y.numpy().tolist() for task, y in labels.items()}
    {'hmdb51': [3, 7, -1], 'ucf101': [-1, -1, 42]}
    """
    unknown = sorted(set(kwargs) - set(_PARAMETERS))
    if unknown:
        taken = sorted(set(unknown) & {"table", "root"})
        hint = " (each task's table and root come from sources)" if taken else ""
        raise TypeError(f"{_NAME}() got unexpected keyword arguments {unknown}{hint}")
    checked = _check_sources(sources)
    tasks = [task for task, _, _ in checked]
    given = dict(kwargs)
    model_tasks, names = None, None
    if data_config is not None:
        config = resolve_data_config(data_config)
        model_tasks = _model_tasks(data_config, config)
        merge_data_config(_NAME, _PARAMETERS, given, config)
        names = config.get("class_names") if isinstance(config.get("class_names"), dict) else None
        if model_tasks is None and num_classes is None:
            raise ValueError(
                f"{_NAME}: data_config names no tasks; pass the multi-task model itself, "
                "a data config whose class_names is a dict task -> names, or num_classes"
            )
    counts = _check_num_classes(num_classes, tasks, model_tasks)
    args = {**_PARAMETERS, **given}
    video_sampling = args["video_sampling"]
    weights = _check_task_weights(task_weights, tasks, video_sampling)
    num_segments, batch_size, jitter_amounts, shuffle = _training_args(
        args["num_segments"],
        args["batch_size"],
        args["max_distort"],
        args["scales"],
        args["color_jitter"],
        args["augmentation"],
        video_sampling,
        args["shuffle"],
    )
    errors = DatasetErrors() if args["errors"] is None else args["errors"]
    parts, labels, cfgs = [], [], []
    for t, (task, table, root) in enumerate(checked):
        if names is not None:
            check_table_classes(_NAME, table, list(names[task]), where=f" of task {task!r}")
        try:
            cfg, videos, task_labels, multi, _ = _common_args(
                table,
                root,
                args["modalities"],
                args["flow_length"],
                args["diff_length"],
                args["num_paths"],
                args["path_interval"],
                args["image_size"],
                args["rgb_normalization"],
                args["flow_bound"],
                args["flow_normalization"],
                args["mean_subtract_flow"],
                args["on_error"],
                errors,
                counts[task],
                args["split"],
                num_segments,
                need_label=True,
                flow_stacking=args["flow_stacking"],
                bidirectional_flow=args["bidirectional_flow"],
            )
        except (ValueError, FileNotFoundError) as error:
            raise type(error)(f"task {task!r}: {error}") from error
        if multi:
            raise ValueError(
                f"task {task!r}: multi-label tables are not supported in multi-task training "
                "(each task's head is a softmax over its classes)"
            )
        column = np.full((len(task_labels), len(tasks)), -1, np.int32)  # -1: another task's
        column[:, t] = task_labels
        parts.append((task, videos))
        labels.append(column)
        cfgs.append(cfg)
    videos = _merge_videos(parts)
    labels = np.concatenate(labels)  # (n, T)
    cfg = cfgs[0]
    cfg.video_files = videos["video_files"]
    if cfg.stored_means != "none" or any(c.stored_means != "none" for c in cfgs):
        stored = videos["centre_start"] >= 0
        cfg.stored_means = "all" if stored.all() else ("mixed" if stored.any() else "none")
    # Class-uniform over the union of the tasks' classes: one id per (task, label) pair,
    # task t's labels shifted by the class counts of the tasks before it.
    task_of = np.argmax(labels >= 0, axis=1)  # (n,): the task each video belongs to
    own = labels[np.arange(len(labels)), task_of]
    sizes = [counts[task] or int(labels[:, t].max()) + 1 for t, task in enumerate(tasks)]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    classes = offsets[task_of] + own
    probabilities = None
    if weights is not None:
        # P(class c of task t) = w_t / (classes of t with videos): uniform within each task.
        present = np.unique(classes)
        present_task = np.searchsorted(offsets, present, side="right") - 1
        per_task = np.bincount(present_task, minlength=len(tasks))
        probabilities = np.array([weights[tasks[t]] / per_task[t] for t in present_task])
        probabilities = probabilities / probabilities.sum()
    ds = _clip_dataset(
        cfg,
        videos,
        labels,
        errors,
        classes=classes,
        class_probabilities=probabilities,
        training=args["training"],
        batch_size=batch_size,
        shuffle=shuffle,
        seed=args["seed"],
        video_sampling=video_sampling,
        scales=args["scales"],
        max_distort=args["max_distort"],
        flip=args["flip"],
        jitter_amounts=jitter_amounts,
        augmentation=args["augmentation"],
        scale_size=args["scale_size"],
        on_error=args["on_error"],
        drop_remainder=args["drop_remainder"],
    )
    return _finish(
        ds, errors, lambda y: {task: y[:, t] for t, task in enumerate(tasks)}
    )  # [B, T] -> {task: [B]}
