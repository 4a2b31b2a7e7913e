"""Argument checks shared by the model builders: each names the argument and what was expected."""

import numbers
import warnings


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"Expected {name} to be a positive integer. Received: {name}={value!r}")
    return int(value)


def _check_bool(value, name):
    if not isinstance(value, bool):
        raise ValueError(f"Expected {name} to be True or False. Received: {name}={value!r}")
    return value


def _check_rate(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"Expected 0 <= {name} < 1. Received: {name}={value!r}")
    return float(value)


def _check_num_classes(num_classes):
    if (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, numbers.Integral)
        or num_classes < 2
    ):
        raise ValueError(
            f"Expected num_classes to be an integer >= 2. Received: num_classes={num_classes!r}"
        )
    return int(num_classes)


def _renamed_argument(kwargs, old, new, value, default, owner):
    """The value of an argument renamed `old` -> `new` (issue 19: one vocabulary for all builders).

    `old` in `kwargs` is taken, with a `DeprecationWarning`, unless `new` was also given
    with another value than its default (an error naming both).
    """
    if old not in kwargs:
        return value
    old_value = kwargs.pop(old)
    if value != default and value != old_value:
        raise ValueError(
            f"{owner}: got both {new}={value!r} and its deprecated name {old}={old_value!r}; "
            f"pass {new} only"
        )
    warnings.warn(
        f"{owner}: the argument `{old}` is deprecated and will be removed; use `{new}` "
        "(the same argument under the name every builder of the library uses).",
        DeprecationWarning,
        stacklevel=3,
    )
    return old_value


def _renamed_dropout(kwargs, dropout, default, owner):
    """`dropout` after the per-stream `spatial_dropout` / `temporal_dropout` were merged into it.

    The former names (two_stream, MPA + SAL) are taken with a `DeprecationWarning`: each sets
    its stream's rate of the `(spatial, temporal)` pair, the other stream keeping `dropout`'s.
    Giving a former name together with a `dropout` other than its default is an error.
    """
    old = {
        name: kwargs.pop(name) for name in ("spatial_dropout", "temporal_dropout") if name in kwargs
    }
    if not old:
        return dropout
    if dropout != default:
        raise ValueError(
            f"{owner}: got both dropout={dropout!r} and its deprecated per-stream names "
            f"{', '.join(f'{k}={v!r}' for k, v in old.items())}; pass dropout only "
            "(one rate, or a (spatial, temporal) pair)"
        )
    warnings.warn(
        f"{owner}: the arguments `spatial_dropout` / `temporal_dropout` are deprecated and will be "
        "removed; use `dropout` (one rate, or a (spatial, temporal) pair, the name every builder "
        "of the library uses).",
        DeprecationWarning,
        stacklevel=3,
    )
    pair = list(default) if isinstance(default, (list, tuple)) else [default, default]
    pair = [old.get("spatial_dropout", pair[0]), old.get("temporal_dropout", pair[1])]
    return tuple(pair)
