"""`data_config=`: the pipelines take their settings from the model (issue 19, item 3).

A model's `data_config()` (`keras_twostream.models.VideoClassifier.data_config`)
names the pipeline's own arguments. `make_dataset(table, data_config=model)` fills
every argument the call leaves out from it, and refuses an argument that
contradicts it: a ResNet with ImageNet-Caffe weights then cannot be fed `[0, 1]`
inputs by accident, nor a 5-field flow model 10-field stacks. The data side
imports nothing of the model side: anything with a `data_config()` method, or a
plain dict with those keys, works.
"""

import functools
import inspect
from collections.abc import Mapping

# Keys a pipeline function does not take are left out (make_test_dataset samples its
# own views, so it takes no `num_segments`); `class_names` becomes `num_classes`.
_NOT_ARGUMENTS = ("class_names",)


def resolve_data_config(data_config):
    """The dict behind `data_config=`: a mapping, or an object's `data_config()`."""
    if hasattr(data_config, "data_config") and callable(data_config.data_config):
        data_config = data_config.data_config()
    if not isinstance(data_config, Mapping):
        raise TypeError(
            "Expected data_config to be a model (with a data_config() method) or a dict. "
            f"Received: {type(data_config).__name__}"
        )
    return dict(data_config)


def _same(key, given, wanted):
    if key == "modalities":
        return tuple(given) == tuple(wanted)
    if key == "image_size":
        as_pair = lambda v: (int(v), int(v)) if isinstance(v, int) else tuple(int(x) for x in v)  # noqa: E731
        return as_pair(given) == as_pair(wanted)
    return given == wanted


def _table_classes(table):
    attrs = getattr(table, "attrs", None)
    classes = attrs.get("classes") if isinstance(attrs, dict) else None
    return list(classes) if classes else None


def merge_data_config(name, parameters, given, config):
    """Fills `given` (argument name -> value) in place from `config`, the keys in `parameters`.

    An argument given with another value than the config's raises a `ValueError` naming
    `name`, the argument and both values. `class_names` is left to the caller.
    """
    for key, value in config.items():
        if value is None or key in _NOT_ARGUMENTS or key not in parameters:
            continue
        if key in given and not _same(key, given[key], value):
            raise ValueError(
                f"{name}: {key}={given[key]!r} contradicts the model's data config "
                f"({key}={value!r}); leave {key} out to use the model's, or rebuild the model"
            )
        given.setdefault(key, tuple(value) if key == "modalities" else value)
    return given


def check_table_classes(name, table, names, where=""):
    """Raises when the table's `attrs["classes"]` name other classes than `names`."""
    table_classes = _table_classes(table)
    if table_classes is None or table_classes == names:
        return
    differ = next(
        (i for i, (a, b) in enumerate(zip(table_classes, names, strict=False)) if a != b),
        min(len(table_classes), len(names)),
    )
    raise ValueError(
        f"{name}: the table{where}'s labels index other classes than the model's: label "
        f"{differ} is {table_classes[differ] if differ < len(table_classes) else 'absent'!r} "
        f"in the table, {names[differ] if differ < len(names) else 'absent'!r} for the model "
        f"({len(table_classes)} vs {len(names)} classes)"
    )


def accepts_data_config(function):
    """Decorates a pipeline builder with the `data_config=` argument (see the module docstring)."""
    signature = inspect.signature(function)
    name = function.__name__

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        given = dict(bound.arguments)
        config = given.pop("data_config", None)
        if config is None:
            return function(**given)
        config = resolve_data_config(config)
        merge_data_config(name, signature.parameters, given, config)
        names = config.get("class_names")
        if isinstance(names, list) and "num_classes" in signature.parameters:
            if given.get("num_classes") not in (None, len(names)):
                raise ValueError(
                    f"{name}: num_classes={given['num_classes']!r} but the model predicts "
                    f"{len(names)} classes"
                )
            given["num_classes"] = len(names)
            check_table_classes(name, given.get("table"), names)
        return function(**given)

    return wrapper
