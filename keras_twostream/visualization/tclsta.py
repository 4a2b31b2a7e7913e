"""TCLSTA's spatial and temporal attention, as numbers and as Figure 7 of the paper.

Peng et al., IEEE TCSVT 2018, Fig. 7: heatmaps of the spatial-level attention
over the frames of a clip, and a line chart of the temporal-level attention
over time. The functions take a model built by `keras_twostream.build_tclsta`.
"""

import numpy as np

STREAMS = ("spatial", "temporal")


def _check_stream(stream):
    if stream not in STREAMS:
        raise ValueError(f"Expected stream to be one of {STREAMS}. Received: stream={stream!r}")


def _attention(model, inputs, key, switch):
    if not getattr(model, switch, False):
        raise ValueError(
            f"The model was built with {switch}=False: it has no {key.split('_', 1)[1].replace('_', ' ')}. "
            f"Build it with build_tclsta(..., {switch}=True)."
        )
    outputs = model.attention_model()(inputs, training=False)
    return np.asarray(outputs[key], dtype=np.float32)


def spatial_attention_maps(model, inputs, stream="spatial", size=None):
    """The spatial attention map of Eq. (3) on every frame of every clip.

    Args:
        model: a `TCLSTA` model built with `spatial_attention=True`.
        inputs: the model's inputs dict, `{"rgb": (B, T, H, W, 3), "flow": ...}`.
        stream: `"spatial"` (frames) or `"temporal"` (optical flow).
        size: `None` for the feature map's resolution `(h, w)`, or an int or
            `(height, width)` to resize the maps to (bilinear), e.g. the
            input size for overlays.

    Returns:
        A float32 array `(B, T, h, w)` (or `(B, T, height, width)`); at the
        feature map's resolution each map sums to `h * w`.

    Example:

    >>> from keras_twostream.visualization import spatial_attention_maps  # doctest: +SKIP
    >>> spatial_attention_maps(model, batch, size=224).shape  # doctest: +SKIP
    (8, 8, 224, 224)
    """
    _check_stream(stream)
    maps = _attention(model, inputs, f"{stream}_attention_map", "spatial_attention")
    if size is None:
        return maps
    import cv2

    height, width = (size, size) if isinstance(size, int) else tuple(size)
    b, t, h, w = maps.shape
    flat = maps.reshape(b * t, h, w)
    resized = np.stack(
        [cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR) for m in flat]
    )
    return resized.reshape(b, t, height, width)


def temporal_attention_curves(model, inputs, stream="spatial"):
    """The temporal attention `exp(gamma_i) / sum_j exp(gamma_j)` of Eq. (6) per clip.

    Args:
        model: a `TCLSTA` model built with `temporal_attention=True`.
        inputs: the model's inputs dict.
        stream: `"spatial"` (frames) or `"temporal"` (optical flow).

    Returns:
        A float32 array `(B, T)`, each row summing to 1.

    Example:

    >>> import numpy as np
    >>> from keras_twostream import build_tclsta
    >>> from keras_twostream.visualization import temporal_attention_curves
    >>> model = build_tclsta(4, backbone="tiny", image_size=32, num_segments=3, flow_length=2,
    ...                      cam_filters=8, lstm_units=8, collaborative_units=8)
    >>> x = {"rgb": np.random.rand(2, 3, 32, 32, 3).astype("float32"),
    ...      "flow": np.random.rand(2, 3, 32, 32, 4).astype("float32")}
    >>> curves = temporal_attention_curves(model, x)
    >>> curves.shape, bool(np.allclose(curves.sum(axis=1), 1.0))
    ((2, 3), True)
    """
    _check_stream(stream)
    return _attention(model, inputs, f"{stream}_frame_attention", "temporal_attention")


def _displayable(frame):
    frame = np.asarray(frame, dtype=np.float32)
    if frame.ndim == 3 and frame.shape[-1] == 3:
        low, high = frame.min(), frame.max()
        return (frame - low) / (high - low) if high > low else np.zeros_like(frame)
    # Optical flow (2L channels) or anything else: the magnitude over channels, in grey.
    magnitude = np.sqrt((frame.reshape(*frame.shape[:2], -1) ** 2).sum(-1))
    return magnitude / magnitude.max() if magnitude.max() > 0 else magnitude


def plot_attention(frames, maps, curve, path=None, title=None, alpha=0.5):
    """Figure 7 of the paper for one clip: heatmaps over the frames and the temporal curve.

    Args:
        frames: `(T, H, W, C)` frames of one clip (RGB, or flow stacks shown
            as their magnitude).
        maps: `(T, H, W)` spatial attention, e.g. `spatial_attention_maps(...,
            size=H)[b]`; `None` to show the frames alone.
        curve: `(T,)` temporal attention, e.g. `temporal_attention_curves(...)[b]`;
            `None` to leave out the line chart.
        path: where to save the figure (PNG, PDF, ...), or `None`.
        title: a title above the figure.
        alpha: opacity of the heatmaps, drawn on one colour scale (0 to the
            clip's largest value) for all frames.

    Returns:
        The `matplotlib.figure.Figure` (one axis per frame, plus the chart).

    Example:

    >>> import numpy as np
    >>> from keras_twostream.visualization import plot_attention
    >>> figure = plot_attention(np.random.rand(4, 32, 32, 3), np.ones((4, 32, 32)), np.full(4, 0.25))
    >>> len(figure.axes)  # one per frame, and the temporal curve
    5
    """
    # pyplot with the user's backend (inline in a notebook; Agg on a headless machine).
    import matplotlib.pyplot as plt

    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise ValueError(f"Expected frames of shape (T, H, W, C). Received: shape {frames.shape}")
    steps = frames.shape[0]
    if maps is not None and np.shape(maps)[:3] != frames.shape[:3]:
        raise ValueError(
            f"Expected maps of shape {frames.shape[:3]} (T, H, W), the frames' size: pass "
            f"spatial_attention_maps(..., size=(H, W)). Received: shape {np.shape(maps)}"
        )
    if curve is not None and np.shape(curve) != (steps,):
        raise ValueError(f"Expected curve of shape ({steps},). Received: shape {np.shape(curve)}")
    # One colour scale for the whole clip, so that frames can be compared.
    vmax = float(np.max(maps)) if maps is not None else None
    rows = 2 if curve is not None else 1
    figure = plt.figure(figsize=(2.0 * steps, 2.2 * rows), constrained_layout=True)
    grid = figure.add_gridspec(rows, steps)
    for t in range(steps):
        axis = figure.add_subplot(grid[0, t])
        image = _displayable(frames[t])
        axis.imshow(image, cmap=None if image.ndim == 3 else "gray")
        if maps is not None:
            axis.imshow(np.asarray(maps[t]), cmap="jet", alpha=alpha, vmin=0.0, vmax=vmax)
        axis.set_title(f"frame {t + 1}", fontsize=8)
        axis.axis("off")
    if curve is not None:
        axis = figure.add_subplot(grid[1, :])
        axis.plot(np.arange(1, steps + 1), np.asarray(curve), marker="o")
        axis.set_xlabel("frame")
        axis.set_ylabel("temporal attention")
        axis.set_xticks(np.arange(1, steps + 1))
        axis.set_xlim(0.5, steps + 0.5)
    if title:
        figure.suptitle(title)
    if path is not None:
        figure.savefig(path, dpi=100)
    plt.close(figure)
    return figure
