"""Figures and tables a person can read: confusion matrices, per-class recall, training curves.

Figures are drawn with matplotlib's object API on an Agg canvas (no global
backend is set, no window opens) and every file is written to a temporary name
and renamed into place, so an interrupted run never leaves half a file.
"""

import csv
import io
import math
import os

import numpy as np


def _replace(path, data, mode="wb"):
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temp = f"{path}.tmp-{os.getpid()}"
    with open(temp, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:
        f.write(data)
    os.replace(temp, path)
    return path


def _save_figure(figure, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return _replace(path, buffer.getvalue())


def write_text(path, text):
    """Writes a text file atomically. Returns `path`.

    Example:

    >>> from keras_twostream.evaluation.report import write_text
    >>> write_text("/tmp/report.md", "# Report")  # doctest: +SKIP
    '/tmp/report.md'
    """
    return _replace(path, text, mode="w")


def write_confusion_csv(matrix, classes, path):
    """The confusion matrix as CSV: a header of predicted classes, one row per true class.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.evaluation.report import write_confusion_csv
    >>> write_confusion_csv(np.eye(2, dtype=int), ["a", "b"], "/tmp/cm.csv")  # doctest: +SKIP
    """
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["true \\ predicted", *classes])
    for name, row in zip(classes, np.asarray(matrix), strict=True):
        writer.writerow([name, *[int(v) for v in row]])
    return _replace(path, out.getvalue(), mode="w")


def plot_confusion_matrix(matrix, classes, path, title="Confusion matrix"):
    """Draws a row-normalised confusion matrix (two-stream paper, Fig. 5) as a PNG.

    Rows are true classes and columns predicted ones; each row is divided by
    its number of videos, so the diagonal is the per-class recall.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.evaluation.report import plot_confusion_matrix
    >>> plot_confusion_matrix(np.eye(3, dtype=int), ["a", "b", "c"], "/tmp/cm.png")  # doctest: +SKIP
    """
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix, np.float64)
    support = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, support, out=np.zeros_like(matrix), where=support > 0)
    n = len(classes)
    side = min(max(4.0, 0.28 * n + 2.0), 30.0)
    figure = Figure(figsize=(side + 1.0, side))
    axes = figure.add_subplot()
    image = axes.imshow(normalised, vmin=0.0, vmax=1.0, cmap="Blues", interpolation="nearest")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of the true class")
    ticks = np.arange(n)
    font = max(4, min(10, int(200 / max(n, 1))))
    axes.set_xticks(ticks, labels=classes, rotation=90, fontsize=font)
    axes.set_yticks(ticks, labels=classes, fontsize=font)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    colour = "white" if normalised[i, j] > 0.5 else "black"
                    axes.text(
                        j,
                        i,
                        int(matrix[i, j]),
                        ha="center",
                        va="center",
                        fontsize=font,
                        color=colour,
                    )
    return _save_figure(figure, path)


def plot_per_class_recall(recall, classes, path, title="Per-class recall"):
    """Draws the per-class recall as a bar chart (two-stream paper, Fig. 6) as a PNG.

    Bars follow the class order; classes without test videos (NaN) are left
    empty and marked "n/a". The dashed line is the mean class accuracy.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.evaluation.report import plot_per_class_recall
    >>> plot_per_class_recall(np.array([1.0, 0.5]), ["a", "b"], "/tmp/recall.png")  # doctest: +SKIP
    """
    from matplotlib.figure import Figure

    recall = np.asarray(recall, np.float64)
    n = len(classes)
    figure = Figure(figsize=(min(max(6.0, 0.22 * n + 2.0), 40.0), 4.5))
    axes = figure.add_subplot()
    values = np.nan_to_num(recall, nan=0.0)
    axes.bar(np.arange(n), values, color="tab:blue")
    font = max(4, min(10, int(300 / max(n, 1))))
    axes.set_xticks(np.arange(n), labels=classes, rotation=90, fontsize=font)
    for i in np.flatnonzero(np.isnan(recall)):
        axes.text(i, 0.02, "n/a", rotation=90, ha="center", va="bottom", fontsize=font)
    if np.any(~np.isnan(recall)):
        mean = float(np.nanmean(recall))
        axes.axhline(
            mean, color="tab:red", linestyle="--", linewidth=1, label=f"mean {100 * mean:.1f}%"
        )
        axes.legend(loc="lower right")
    axes.set_ylim(0.0, 1.0)
    axes.set_ylabel("recall")
    axes.set_title(title)
    return _save_figure(figure, path)


def plot_training_curves(history, path, title="Training curves"):
    """Draws losses and accuracies per epoch (training solid, validation dashed) as a PNG.

    Args:
        history: dict metric name -> list of values per epoch (Keras'
            `History.history`, or the columns of its CSV log); `"epoch"` and
            `"learning_rate"` are drawn separately (the learning rate on a log
            axis).
        path: the PNG to write.

    Example:

    >>> from keras_twostream.evaluation.report import plot_training_curves
    >>> plot_training_curves({"loss": [2.0, 1.0], "val_loss": [2.1, 1.5]}, "/tmp/curves.png")  # doctest: +SKIP
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    names = [k for k in history if k not in ("epoch", "learning_rate") and not k.startswith("val_")]
    groups = {
        "loss": [k for k in names if k.endswith("loss")],
        "accuracy": [k for k in names if not k.endswith("loss")],
    }
    panels = [(key, members) for key, members in groups.items() if members]
    if "learning_rate" in history:
        panels.append(("learning rate", ["learning_rate"]))
    if not panels:
        raise ValueError("The training history holds no metric to plot.")
    figure = Figure(figsize=(5.0 * len(panels), 4.0))
    for index, (label, members) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, len(panels), index)
        for name in members:
            values = np.asarray(history[name], np.float64)
            epochs = np.arange(1, len(values) + 1)
            (line,) = axes.plot(epochs, values, marker="o", markersize=3, label=name)
            if f"val_{name}" in history:
                axes.plot(
                    epochs,
                    np.asarray(history[f"val_{name}"], np.float64),
                    linestyle="--",
                    color=line.get_color(),
                    label=f"val_{name}",
                )
        if label == "learning rate":
            axes.set_yscale("log")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("epoch")
        axes.set_ylabel(label)
        axes.legend(fontsize=7)
        axes.grid(alpha=0.3)
    figure.suptitle(title)
    return _save_figure(figure, path)


def format_percent(value):
    """`0.8765` -> `"87.7%"`, NaN -> `"n/a"`.

    Example:

    >>> from keras_twostream.evaluation.report import format_percent
    >>> format_percent(0.8766)
    '87.7%'
    """
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{100 * value:.1f}%"
    )


def accuracy_table(rows):
    """A Markdown table of `rows`: dicts with `"output"`, `"top1"`, `"top5"`, `"mean_class_accuracy"`.

    Example:

    >>> from keras_twostream.evaluation.report import accuracy_table
    >>> print(accuracy_table([{"output": "fused", "top1": 0.5, "top5": 1.0, "mean_class_accuracy": 0.5}]))
    | output | top-1 | top-5 | mean class accuracy |
    |---|---|---|---|
    | fused | 50.0% | 100.0% | 50.0% |
    """
    lines = ["| output | top-1 | top-5 | mean class accuracy |", "|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['output']} | {format_percent(row['top1'])} | {format_percent(row['top5'])} | "
            f"{format_percent(row['mean_class_accuracy'])} |"
        )
    return "\n".join(lines)
