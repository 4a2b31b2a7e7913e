"""The timeline of a long video: per-window class probabilities from `predict_video(window=...)`."""

import os

import numpy as np


def plot_timeline(prediction, path=None, top=5, title=None):
    """Plots each window's probability of the `top` classes over the video's time.

    The classes shown are the `top` with the highest probability in any window; each is
    a step curve over `[start, end)` at the window's centre time, so overlapping windows
    (stride < window) show as a smooth curve and a change of action shows where it happens.

    Args:
        prediction: a `keras_twostream.inference.VideoPrediction` with windows.
        path: save the figure to this file (a PNG, written to a temporary name first).
        top: how many classes to draw.
        title: figure title (default: the video's file name).

    Returns:
        The `matplotlib.figure.Figure`.

    Example:

    >>> import keras_twostream
    >>> from keras_twostream.visualization import plot_timeline
    >>> result = keras_twostream.predict_video(model, "long.mp4", window=2, stride=1)  # doctest: +SKIP
    >>> plot_timeline(result, "long_timeline.png")  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    if prediction.windows is None:
        raise ValueError(
            "Expected a prediction with windows: call predict_video(..., window=seconds)"
        )
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"Expected top to be a positive integer. Received: top={top!r}")
    probs = np.asarray(prediction.window_probabilities)  # (W, C)
    centres = (prediction.windows["start"].to_numpy() + prediction.windows["end"].to_numpy()) / 2
    order = np.argsort(-probs.max(axis=0), kind="stable")[: min(top, probs.shape[1])]
    figure, axis = plt.subplots(figsize=(8, 3), constrained_layout=True)
    for c in order:
        axis.plot(centres, probs[:, c], marker="o", markersize=3, label=prediction.classes[c])
    axis.set_xlabel("time (s, window centre)")
    axis.set_ylabel(f"probability ({prediction.output_name})")
    axis.set_ylim(0.0, 1.0)
    axis.set_xlim(0.0, float(prediction.windows["end"].max()))
    axis.legend(loc="upper right", fontsize=7)
    axis.set_title(title or os.path.basename(prediction.path))
    if path is not None:
        path = os.fspath(path)
        root, ext = os.path.splitext(path)
        temp = f"{root}.tmp-{os.getpid()}{ext or '.png'}"
        figure.savefig(temp, dpi=100)
        os.replace(temp, path)
    plt.close(figure)
    return figure
