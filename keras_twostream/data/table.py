"""The annotation table as the pipelines take it: columns, split and labels (no TensorFlow).

`_as_table` coerces the `table` argument to a `pandas.DataFrame` with the required
columns (see `keras_twostream.data.annotations` for reading annotation files into one)
and keeps the rows of a split; `_labels` turns its `label` column into int32 labels or
float32 multi-hot rows and checks them against `num_classes`.
"""

import numpy as np
import pandas as pd


def _as_table(table, split, need_label):
    if not isinstance(table, pd.DataFrame):
        try:
            table = pd.DataFrame(table)
        except (TypeError, ValueError) as error:
            raise ValueError(
                "Expected table to be a pandas DataFrame with columns 'path' and 'label' "
                f"(see keras_twostream.data.annotations). Received: {type(table).__name__} ({error})"
            ) from None
    required = ["path", "label"] if need_label else ["path"]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ValueError(
            f"The annotation table lacks the column(s) {missing}; expected columns "
            f"'path', 'frames', 'label', 'split', 'offset'. Received columns: {list(table.columns)}"
        )
    if split is not None:
        if "split" not in table.columns:
            raise ValueError(f"split={split!r} was given but the table has no 'split' column.")
        table = table[table["split"] == split]
        if table.empty:
            raise ValueError(f"The table has no rows with split == {split!r}.")
    if table.empty:
        raise ValueError("The annotation table is empty.")
    return table


def _labels(table, num_classes, need_label):
    """Single-label int32 `(n,)` or multi-hot float32 `(n, C)`, and the class count."""
    if "label" not in table.columns:
        if need_label:
            raise ValueError("The annotation table has no 'label' column.")
        return np.full((len(table),), -1, np.int32), False, num_classes
    raw = list(table["label"])
    multi = any(isinstance(v, (tuple, list, np.ndarray)) for v in raw)
    rows = list(table.index)
    values = []
    for row, value in zip(rows, raw, strict=True):
        items = list(value) if isinstance(value, (tuple, list, np.ndarray)) else [value]
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (int, np.integer)) or item < 0:
                raise ValueError(
                    f"Row {row} of the annotation table: expected integer labels >= 0, "
                    f"received label={value!r}"
                )
            if num_classes is not None and item >= num_classes:
                raise ValueError(
                    f"Row {row} of the annotation table: label {item} is out of range for "
                    f"num_classes={num_classes}"
                )
        values.append(items)
    if not multi:
        return np.asarray([v[0] for v in values], np.int32), False, num_classes
    if num_classes is None:
        num_classes = 1 + max((max(v) for v in values if v), default=0)
    hot = np.zeros((len(values), num_classes), np.float32)
    for i, items in enumerate(values):
        hot[i, items] = 1.0
    return hot, True, num_classes
