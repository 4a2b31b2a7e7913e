"""Attention maps of cross-modality attention blocks, as numbers and as Figure 5 of the paper.

Chi et al. (2019), Fig. 5: for a query location of the RGB frame, the weights
with which the last CMA block of res4 attends over the Flow branch's feature
map, drawn next to the RGB frame and the optical flow, with an arrow from the
query to where it looks most. Works with `build_cma`, `build_cma_3d` and any
model containing a `CrossModalityAttention` layer.

Matplotlib is imported only by `plot_cma_attention`, and draws on its own
"Agg" canvas (the pyplot backend of the session is left alone).
"""

import dataclasses
import numbers

import numpy as np


@dataclasses.dataclass
class CMAAttentionMap:
    """The attention of one query position over the key/value map of a CMA block.

    Attributes:
        weights: float32 array over the key grid, `(h, w)` (or `(t, h, w)` for
            3-D blocks): the softmax weights of Eq. (1), summing to 1.
        query: the query's cell on the query grid, `(row, col)` (or `(t, row, col)`).
        query_grid: the query feature map's spatial size.
        key_grid: the (pooled) key/value feature map's spatial size.
        layer: the name of the CMA block.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.visualization import CMAAttentionMap
    >>> attention = CMAAttentionMap(weights=np.full((2, 2), 0.25, "float32"), query=(0, 1),
    ...                             query_grid=(4, 4), key_grid=(2, 2), layer="rgb_cma_conv4_block1")
    >>> float(attention.weights.sum())
    1.0
    """

    weights: np.ndarray
    query: tuple
    query_grid: tuple
    key_grid: tuple
    layer: str


def _attention_layers(model):
    from keras_twostream.layers.cross_modality_attention import CrossModalityAttention

    return [layer for layer in model.layers if isinstance(layer, CrossModalityAttention)]


def _default_layer(model):
    """Fig. 5 shows "the last CMA block in res4" of the RGB branch: the RGB branch's last one."""
    names = getattr(model, "cma_block_names", None)
    if names:
        return model.get_layer(f"rgb_cma_{names[-1]}")
    layers = [layer for layer in _attention_layers(model) if layer.name.startswith("rgb_cma")]
    layers = layers or _attention_layers(model)
    if not layers:
        raise ValueError(f"Model {model.name!r} has no CrossModalityAttention layer.")
    return layers[-1]


def _query_cell(query, grid):
    if len(query) != len(grid):
        raise ValueError(
            f"Expected query to have {len(grid)} coordinates for a query grid of shape {grid}. "
            f"Received: query={query!r}"
        )
    cell = []
    for q, size in zip(query, grid, strict=True):
        if isinstance(q, numbers.Integral) and not isinstance(q, bool):
            if not 0 <= q < size:
                raise ValueError(f"Query cell {query!r} is outside the query grid {grid}.")
            cell.append(int(q))
        elif isinstance(q, numbers.Real) and 0.0 <= q <= 1.0:
            cell.append(min(int(q * size), size - 1))
        else:
            raise ValueError(
                "Expected query coordinates to be integers (cells of the query grid) or floats in "
                f"[0, 1] (relative positions in the frame). Received: query={query!r}"
            )
    return tuple(cell)


def cma_attention_map(model, inputs, layer=None, query=(0.5, 0.5), sample=0, segment=0):
    """The attention map of one CMA block for one query position of one input clip.

    Args:
        model: a model with `CrossModalityAttention` layers (`build_cma`, `build_cma_3d`).
        inputs: the model's inputs dict for a batch of clips (NumPy arrays).
        layer: a CMA layer or its name, e.g. `"rgb_cma_conv4_block6"`; `None`
            takes the RGB branch's last CMA block (the paper's Fig. 5: "the
            last CMA block in res4").
        query: the query position: floats in `[0, 1]` give a relative `(y, x)`
            position in the frame (`(t, y, x)` for 3-D blocks), integers a cell
            of the query feature map.
        sample: which clip of the batch.
        segment: which TSN segment of the clip (2-D models with K segments).

    Returns:
        A `CMAAttentionMap` whose `weights` lie on the key grid.

    Example:

    >>> from keras_twostream.visualization.cma import cma_attention_map  # doctest: +SKIP
    >>> attention = cma_attention_map(model, batch, query=(0.4, 0.6))  # doctest: +SKIP
    >>> attention.weights.shape, attention.weights.sum()  # doctest: +SKIP
    ((7, 7), 1.0)
    """
    import keras

    layer = (
        _default_layer(model)
        if layer is None
        else (model.get_layer(layer) if isinstance(layer, str) else layer)
    )
    node_inputs = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
    if not isinstance(inputs, dict):
        raise ValueError(
            f"Expected inputs to be the model's inputs dict. Received: {type(inputs).__name__}"
        )
    inputs = {k: np.asarray(v) for k, v in inputs.items()}
    batch = len(next(iter(inputs.values())))
    if not 0 <= sample < batch:
        raise ValueError(
            f"Expected 0 <= sample < {batch} (the batch size). Received: sample={sample}"
        )
    clip = {k: v[sample : sample + 1] for k, v in inputs.items()}
    segments = getattr(model, "num_segments", 1) if not hasattr(model, "num_frames") else 1
    if not 0 <= segment < segments:
        raise ValueError(
            f"Expected 0 <= segment < {segments} (the model's segments). Received: segment={segment}"
        )

    # The block's inputs, read from the model's own graph (no new node is added to the layer).
    probe = keras.Model(model.input, list(node_inputs))
    maps = probe.predict(clip, verbose=0)
    maps = [
        np.asarray(m)[segment : segment + 1] for m in (maps if isinstance(maps, list) else [maps])
    ]
    _, scores = layer(*maps, training=False, return_attention_scores=True)
    scores = np.asarray(keras.ops.convert_to_numpy(scores), np.float32)[0]  # [Nx, Ny]

    query_grid = tuple(int(s) for s in maps[0].shape[1:-1])
    key_source = maps[-1].shape[1:-1]
    pool = layer.pool_size
    key_grid = tuple(int(s) for s in key_source[:-2]) + tuple(
        int(s) if pool is None else -(-int(s) // pool) for s in key_source[-2:]
    )
    if len(query) == 2 and len(query_grid) == 3:
        query = (0.5, *query)  # 3-D blocks: the middle frame unless a time is given
    cell = _query_cell(tuple(query), query_grid)
    weights = scores[np.ravel_multi_index(cell, query_grid)].reshape(key_grid)
    return CMAAttentionMap(
        weights=weights, query=cell, query_grid=query_grid, key_grid=key_grid, layer=layer.name
    )


def _displayable(frame):
    frame = np.asarray(frame, np.float32)
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(
            f"Expected frame to be an RGB image (height, width, 3). Received shape: {frame.shape}"
        )
    low, high = float(frame.min()), float(frame.max())
    if low < 0.0 or high > 1.0:  # another range (uint8, mean-subtracted): rescale for display
        frame = (frame - low) / max(high - low, 1e-12)
    return frame


def _cell_centre(cell, grid, height, width):
    row, col = cell[-2:]
    rows, cols = grid[-2:]
    return (col + 0.5) * width / cols, (row + 0.5) * height / rows


def plot_cma_attention(frame, attention, flow=None, path=None, title=None, alpha=0.5, cmap="jet"):
    """Draws a CMA attention map over the RGB frame, in the layout of Fig. 5 of the paper.

    Panels: the RGB frame with the query location, the optical flow (when
    given), and the attention weights over the frame with an arrow from the
    query to the key position it attends to most. 3-D maps are summed over
    time.

    Args:
        frame: the RGB frame `(height, width, 3)`, floats in `[0, 1]` or any
            range (rescaled for display), e.g. `inputs["rgb"][sample, segment]`.
        attention: a `CMAAttentionMap` from `cma_attention_map`.
        flow: optional flow input `(height, width, 2L)` of the same segment;
            its first field is colour-coded.
        path: if given, the figure is saved there (PNG, PDF, ... by suffix).
        title: optional figure title.
        alpha: opacity of the attention overlay.
        cmap: colour map of the attention overlay.

    Returns:
        The `matplotlib.figure.Figure`.

    Example:

    >>> from keras_twostream.visualization.cma import cma_attention_map, plot_cma_attention  # doctest: +SKIP
    >>> attention = cma_attention_map(model, batch, query=(0.4, 0.6))  # doctest: +SKIP
    >>> plot_cma_attention(batch["rgb"][0, 0], attention, flow=batch["flow"][0, 0], path="fig5.png")  # doctest: +SKIP
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not isinstance(attention, CMAAttentionMap):
        raise ValueError(
            f"Expected attention to be a CMAAttentionMap from cma_attention_map. Received: {type(attention).__name__}"
        )
    image = _displayable(frame)
    height, width = image.shape[:2]
    weights = attention.weights.sum(axis=0) if attention.weights.ndim == 3 else attention.weights
    panels = 3 if flow is not None else 2
    figure = Figure(figsize=(3.2 * panels, 3.4))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, panels)
    query_xy = _cell_centre(attention.query, attention.query_grid, height, width)
    target = np.unravel_index(int(np.argmax(weights)), weights.shape)
    target_xy = _cell_centre(target, weights.shape, height, width)

    axes[0].imshow(image)
    axes[0].set_title("RGB frame")
    if flow is not None:
        from keras_twostream.data.flow import flow_to_color

        flow = np.asarray(flow, np.float32)
        if flow.ndim != 3 or flow.shape[-1] < 2 or flow.shape[:2] != (height, width):
            raise ValueError(
                f"Expected flow of shape ({height}, {width}, 2L), the frame's size. Received shape: {flow.shape}"
            )
        axes[1].imshow(flow_to_color(flow[..., :2]))
        axes[1].set_title("optical flow")
    overlay = axes[-1]
    overlay.imshow(image)
    overlay.imshow(
        weights, cmap=cmap, alpha=alpha, extent=(0, width, height, 0), interpolation="bilinear"
    )
    overlay.annotate(
        "",
        xy=target_xy,
        xytext=query_xy,
        arrowprops={"arrowstyle": "->", "color": "white", "lw": 2},
    )
    overlay.set_title(f"attention ({attention.layer})", fontsize=8)
    for ax in axes:
        ax.plot(*query_xy, marker="o", markersize=6, color="white", markeredgecolor="black")
        ax.set_axis_off()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    if path is not None:
        figure.savefig(path)
    return figure
