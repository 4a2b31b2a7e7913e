"""Argument checks shared by the data modules (standard library and NumPy only)."""

import numpy as np


def _check_choice(value, choices, name):
    if value not in choices:
        raise ValueError(f"Expected {name} to be one of {choices}. Received: {name}={value!r}")


def _check_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(
            f"Expected {name} to be an integer >= {minimum}. Received: {name}={value!r}"
        )
    return int(value)


def _pair(size, name):
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    try:
        height, width = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(
            f"Expected {name} to be an int or (height, width). Received: {name}={size!r}"
        ) from None
    if height < 1 or width < 1:
        raise ValueError(f"Expected {name} > 0. Received: {name}={size!r}")
    return height, width
