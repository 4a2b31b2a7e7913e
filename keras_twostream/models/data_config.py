"""What a model needs from its data: the model-owned data contract (issue 19, item 3).

`VideoClassifier.data_config()` returns one plain dict whose keys are the data
pipeline's own argument names, so the same settings reach training
(`make_dataset(table, data_config=model)`), evaluation (`make_test_dataset`),
`predict_video` and `export` without any command guessing them:

| key | meaning | comes from |
|---|---|---|
| `modalities` | input names among `"rgb"`, `"flow"`, `"rgb_diff"` | the network |
| `image_size` | input height and width (an int when square) | the network |
| `num_segments` | TSN segments `K` (frames per clip `T` for clip models) | the network |
| `flow_length` | flow fields `L` per snippet (`None` without flow) | the network |
| `num_paths` | STPN's flow paths `P` (`None` elsewhere) | the network |
| `diff_length` | RGB differences `D` per snippet (`None` without `"rgb_diff"`) | the network |
| `rgb_normalization` | `"unit"`, `"caffe"`, `"torch"`, ... (`keras_twostream.data.augment.normalize_rgb`) | the backbone weights, or set |
| `flow_normalization` | `"pixels"`, `"bound"` or `"mmaction"` | the paper, or set |
| `mean_subtract_flow` | subtract each flow field's mean (two-stream paper, Sect. 3.1) | the paper, or set |
| `flow_bound` | the bound flow is quantised with (`None`: the frames' own `meta.json`) | set |
| `class_names` | names of the classes (a dict task -> names for multi-task models) | set |

The first six follow from the network and change only with it (`model.rebuild`). The
last five are preprocessing: derived from the constructor's weights and the paper
until `model.set_data_config(...)` sets them, and then saved in `get_config` under
`"data_config"`, so a `.keras` file carries them.
"""

import numbers

ARCHITECTURE_KEYS = (
    "modalities",
    "image_size",
    "num_segments",
    "flow_length",
    "num_paths",
    "diff_length",
)
SETTABLE_KEYS = (
    "rgb_normalization",
    "flow_normalization",
    "mean_subtract_flow",
    "flow_bound",
    "class_names",
)
KEYS = ARCHITECTURE_KEYS + SETTABLE_KEYS

# The data side's vocabularies, repeated here because models/ never imports data/
# (STYLE.md); tests/models/test_data_config.py checks they agree.
RGB_NORMALIZATIONS = ("unit", "torch", "caffe", "tf", "none")
FLOW_NORMALIZATIONS = ("pixels", "bound", "mmaction")


def default_rgb_normalization(backbone, weights):
    """The RGB input range the spatial backbone's initial weights were trained on.

    keras.applications' ImageNet ResNet and VGG weights expect Caffe preprocessing
    (BGR, ImageNet mean subtracted, no scaling); PyTorch checkpoints (torchvision,
    MMAction2) the ImageNet mean and std (`"torch"`). Networks trained from scratch
    take `[0, 1]` (`"unit"`).

    Example:

    >>> from keras_twostream.models.data_config import default_rgb_normalization
    >>> default_rgb_normalization("resnet50", "imagenet"), default_rgb_normalization("tiny", None)
    ('caffe', 'unit')
    """
    weights = "" if weights is None else str(weights)
    name = backbone if isinstance(backbone, str) else ""
    if weights.endswith(".pth"):
        return "torch"
    if weights.lower() == "imagenet":
        if name.endswith("_torch"):
            return "torch"
        if name.startswith(("resnet", "vgg")):
            return "caffe"
    return "unit"


def check_entries(entries, num_classes, owner):
    """Validates `set_data_config` entries; returns them as plain JSON-able values."""
    unknown = sorted(set(entries) - set(SETTABLE_KEYS))
    if unknown:
        fixed = sorted(set(unknown) & set(ARCHITECTURE_KEYS))
        hint = (
            f" ({', '.join(fixed)} follow from the network: use model.rebuild(...))"
            if fixed
            else ""
        )
        raise ValueError(
            f"{owner}: unknown data config keys {unknown}{hint}; settable: {list(SETTABLE_KEYS)}"
        )
    checked = {}
    for key, value in entries.items():
        if value is None:
            checked[key] = None
        elif key == "rgb_normalization":
            checked[key] = _check_choice(value, RGB_NORMALIZATIONS, key, owner)
        elif key == "flow_normalization":
            checked[key] = _check_choice(value, FLOW_NORMALIZATIONS, key, owner)
        elif key == "mean_subtract_flow":
            if not isinstance(value, bool):
                raise ValueError(
                    f"{owner}: expected mean_subtract_flow to be True or False. "
                    f"Received: mean_subtract_flow={value!r}"
                )
            checked[key] = value
        elif key == "flow_bound":
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or value <= 0:
                raise ValueError(
                    f"{owner}: expected flow_bound > 0 (pixels) or None. Received: flow_bound={value!r}"
                )
            checked[key] = float(value)
        else:
            checked[key] = _check_class_names(value, num_classes, owner)
    return checked


def _check_choice(value, choices, key, owner):
    if value not in choices:
        raise ValueError(f"{owner}: expected {key} in {choices}. Received: {key}={value!r}")
    return str(value)


def _check_class_names(value, num_classes, owner):
    if num_classes is None:  # reloading a saved config: the counts were checked when set
        return dict(value) if isinstance(value, dict) else list(value)
    if isinstance(num_classes, dict):
        if not isinstance(value, dict) or set(value) != set(num_classes):
            raise ValueError(
                f"{owner}: a multi-task model needs class_names as a dict with the tasks "
                f"{sorted(num_classes)} as keys. Received: class_names={value!r}"
            )
        return {
            task: _check_names(value[task], num_classes[task], f"class_names[{task!r}]", owner)
            for task in num_classes
        }
    return _check_names(value, num_classes, "class_names", owner)


def _check_names(names, count, key, owner):
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{owner}: expected {key} to be a list of strings. Received: {names!r}")
    names = list(names)
    if len(names) != int(count):
        raise ValueError(
            f"{owner}: expected {count} names in {key} (the model predicts {count} classes). "
            f"Received: {len(names)} names"
        )
    return names
