"""TV-L1 optical flow in `keras.ops`, batched over frame pairs and compiled by XLA.

A port of OpenCV's `cv::optflow::DualTVL1OpticalFlow` (opencv_contrib,
`modules/optflow/src/tvl1flow.cpp`), which follows Zach, Pock & Bischof, "A duality based
approach for realtime TV-L1 optical flow" (DAGM 2007) in the formulation of Sánchez Pérez,
Meinhardt-Llopis & Facciolo, "TV-L1 optical flow estimation" (IPOL 2013). The flow `u`
minimises `sum |grad u1| + |grad u2| + lambda |I1(x + u) - I0(x)|`; the coupling variable
`v` with `1/(2 theta) |u - v|^2` splits it into

- the thresholding step (IPOL Eq. (22), `estimateV` in OpenCV): with
  `rho(v) = I1(x + u0) + grad I1(x + u0) . (v - u0) - I0(x)`,
  `v = u + lambda theta grad I1w` if `rho < -lambda theta |grad I1w|^2`,
  `v = u - lambda theta grad I1w` if `rho > lambda theta |grad I1w|^2`,
  `v = u - rho grad I1w / |grad I1w|^2` otherwise;
- the primal step (IPOL Eq. (20)): `u = v + theta div p` (divergence with backward
  differences);
- the dual step (Chambolle's projection, IPOL Eq. (21)):
  `p = (p + tau/theta grad u) / (1 + tau/theta |grad u|)` (gradient with forward
  differences, zero on the last column/row).

As in OpenCV: a pyramid of `nscales` levels built by bilinear resizing with factor
`scale_step` (stopping before a level under 16 pixels), zero initial flow at the coarsest
level, `warps` warpings per level (`I1` and its centred-difference gradient are warped by
bicubic interpolation with zero outside the image, as `remap(..., INTER_CUBIC)`), at most
`outer_iterations` x `inner_iterations` iterations per warp, stopped early once
`sum |u_new - u_old|^2 <= epsilon^2 * area`, a 5x5 median of the flow at the start of each
outer iteration, and bilinear upsampling of the flow (times `1/scale_step`) to the next
level. The early stop is decided per pair: a pair that has converged is frozen while the
other pairs of the batch go on, so a pair's flow does not depend on its batch.

The loops are `while_loop`s with static shapes, so XLA compiles one program per
(batch, height, width, parameters); `tvl1` caches the compiled function.
"""

import functools

import numpy as np

from keras_twostream.flow.median import median5x5, pad_edge

TVL1_DEFAULTS = {
    "tau": 0.25,
    "lambda_": 0.15,
    "theta": 0.3,
    "nscales": 5,
    "warps": 5,
    "epsilon": 0.01,
    "inner_iterations": 30,
    "outer_iterations": 10,
    "scale_step": 0.8,
    "gamma": 0.0,
    "median_filtering": 5,
}

# OpenCV's fixed-point RGB -> gray for 8-bit images (cvtColor, shift 14).
_GRAY_R, _GRAY_G, _GRAY_B, _GRAY_SHIFT = 4899, 9617, 1868, 14


def _check_params(params):
    unknown = sorted(set(params) - set(TVL1_DEFAULTS))
    if unknown:
        raise ValueError(
            f"Unknown TV-L1 parameters {unknown}; expected some of {sorted(TVL1_DEFAULTS)}"
        )
    p = {**TVL1_DEFAULTS, **params}
    for name in ("tau", "lambda_", "theta", "epsilon"):
        if isinstance(p[name], bool) or not np.isfinite(p[name]) or p[name] <= 0:
            raise ValueError(f"Expected {name} > 0. Received: {name}={p[name]!r}")
    for name in ("nscales", "warps", "inner_iterations", "outer_iterations"):
        if isinstance(p[name], bool) or int(p[name]) != p[name] or p[name] < 1:
            raise ValueError(f"Expected {name} to be an integer >= 1. Received: {name}={p[name]!r}")
        p[name] = int(p[name])
    if not 0 < p["scale_step"] < 1:
        raise ValueError(f"Expected 0 < scale_step < 1. Received: scale_step={p['scale_step']!r}")
    if p["gamma"] != 0:
        # OpenCV's gamma > 0 adds an illumination term u3; its default (and the value
        # every paper's TV-L1 uses) is 0. Not ported.
        raise NotImplementedError(
            f"gamma != 0 (illumination term) is not implemented. Received: gamma={p['gamma']!r}"
        )
    if p["median_filtering"] not in (0, 1, 5):
        raise ValueError(
            "Expected median_filtering to be 5 (OpenCV's default), 0 or 1 (off). "
            f"Received: median_filtering={p['median_filtering']!r}"
        )
    p["gamma"] = 0.0
    return {k: (float(v) if isinstance(v, float) else v) for k, v in p.items()}


def pyramid_sizes(height, width, nscales=5, scale_step=0.8):
    """The `(height, width)` of each pyramid level, finest first, as OpenCV builds them.

    Level `s` is `resize(level[s-1], Size(), scale_step, scale_step)`: each side is
    `round(side * scale_step)` (OpenCV's `saturate_cast<int>`, ties to even); levels stop
    before one whose side would be under 16 pixels.

    Args:
        height: frame height.
        width: frame width.
        nscales: the most levels.
        scale_step: the factor between levels.

    Returns:
        A list of `(height, width)` tuples.

    Example:

    >>> from keras_twostream.flow.tvl1 import pyramid_sizes
    >>> pyramid_sizes(256, 340)
    [(256, 340), (205, 272), (164, 218), (131, 174), (105, 139)]
    """
    sizes = [(int(height), int(width))]
    for _ in range(1, nscales):
        h, w = sizes[-1]
        h, w = int(np.rint(h * scale_step)), int(np.rint(w * scale_step))
        if h < 16 or w < 16:
            break
        sizes.append((h, w))
    return sizes


def _linear_matrix(n_out, n_in, scale):
    """`[n_out, n_in]` matrix of OpenCV's INTER_LINEAR resize along one axis.

    Source coordinate `(i + 0.5) * scale - 0.5` (half-pixel centres), clamped to the
    first/last sample as in `cv::resize`.
    """
    f = (np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5
    s = np.floor(f).astype(np.int64)
    f = f - s
    f = np.where(s < 0, 0.0, f)
    s = np.where(s < 0, 0, s)
    last = s >= n_in - 1
    f = np.where(last, 0.0, f)
    s = np.where(last, n_in - 1, s)
    m = np.zeros((n_out, n_in), np.float32)
    rows = np.arange(n_out)
    np.add.at(m, (rows, s), (1.0 - f).astype(np.float32))
    np.add.at(m, (rows, np.minimum(s + 1, n_in - 1)), f.astype(np.float32))
    return m


def _resize(x, matrix_y, matrix_x):
    """Separable linear resize of `[B, h, w]` by `[H, h]` and `[W, w]` matrices."""
    from keras import ops

    x = ops.einsum("Hh,bhw->bHw", matrix_y, x)
    return ops.einsum("bHw,Ww->bHW", x, matrix_x)


def _centered_gradient(x):
    """OpenCV's `centeredGradient`: `(x[i+1] - x[i-1]) / 2`, one-sided at the borders."""

    p = pad_edge(x, 1)
    dx = 0.5 * (p[:, 1:-1, 2:] - p[:, 1:-1, :-2])
    dy = 0.5 * (p[:, 2:, 1:-1] - p[:, :-2, 1:-1])
    return dx, dy


def _forward_gradient(u):
    """OpenCV's `forwardGradient`: `u[i+1] - u[i]`, zero on the last column / row."""
    from keras import ops

    dx = ops.pad(u[:, :, 1:] - u[:, :, :-1], ((0, 0), (0, 0), (0, 1)))
    dy = ops.pad(u[:, 1:, :] - u[:, :-1, :], ((0, 0), (0, 1), (0, 0)))
    return dx, dy


def _divergence(p1, p2):
    """OpenCV's `divergence`: backward differences with zero outside (the adjoint of -grad)."""
    from keras import ops

    d1 = p1 - ops.pad(p1[:, :, :-1], ((0, 0), (0, 0), (1, 0)))
    d2 = p2 - ops.pad(p2[:, :-1, :], ((0, 0), (1, 0), (0, 0)))
    return d1 + d2


def _cubic_weights(t):
    """Keys' cubic convolution weights with A = -0.75 (OpenCV's `interpolateCubic`)."""
    a = -0.75
    x0 = t + 1.0
    w0 = ((a * x0 - 5.0 * a) * x0 + 8.0 * a) * x0 - 4.0 * a
    w1 = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    x2 = 1.0 - t
    w2 = ((a + 2.0) * x2 - (a + 3.0)) * x2 * x2 + 1.0
    return (w0, w1, w2, 1.0 - w0 - w1 - w2)


def _warp_cubic(images, u1, u2):
    """`remap(image, x + u1, y + u2, INTER_CUBIC)` with `BORDER_CONSTANT` 0, for a stack.

    Args:
        images: `[B, h, w, C]` (the channels share the sampling positions).
        u1, u2: `[B, h, w]` displacements.

    Returns:
        `[B, h, w, C]`. Taps outside the image read 0, as OpenCV's default border.
    """
    from keras import ops

    batch, height, width, channels = images.shape
    ys = ops.cast(ops.arange(height), "float32")[None, :, None]
    xs = ops.cast(ops.arange(width), "float32")[None, None, :]
    # Clipping keeps the integer conversion finite; any position beyond it reads 0 anyway.
    mx = ops.clip(xs + u1, -8.0, width + 8.0)
    my = ops.clip(ys + u2, -8.0, height + 8.0)
    x0 = ops.floor(mx)
    y0 = ops.floor(my)
    wx = _cubic_weights(mx - x0)
    wy = _cubic_weights(my - y0)
    x0 = ops.cast(x0, "int32") - 1
    y0 = ops.cast(y0, "int32") - 1
    flat = ops.reshape(images, (batch * height * width, channels))
    base = ops.reshape(ops.arange(batch, dtype="int32") * (height * width), (batch, 1, 1))
    out = None
    for i in range(4):
        yy = y0 + i
        row_ok = (yy >= 0) & (yy < height)
        row = None
        for j in range(4):
            xx = x0 + j
            ok = row_ok & (xx >= 0) & (xx < width)
            index = base + ops.clip(yy, 0, height - 1) * width + ops.clip(xx, 0, width - 1)
            tap = ops.take(flat, index, axis=0)  # [B, h, w, C]
            tap = ops.where(ok[..., None], tap, 0.0) * wx[j][..., None]
            row = tap if row is None else row + tap
        row = row * wy[i][..., None]
        out = row if out is None else out + row
    return out


def _to_gray_255(frames, name):
    """uint8 / float frames `[B, H, W]`, `[B, H, W, 1]` or RGB `[B, H, W, 3]` -> float32 0..255."""
    import keras
    from keras import ops

    dtype = keras.backend.standardize_dtype(frames.dtype)
    if len(frames.shape) == 4 and frames.shape[-1] == 3:
        if dtype == "uint8":
            x = ops.cast(frames, "int32")
            gray = (
                x[..., 0] * _GRAY_R
                + x[..., 1] * _GRAY_G
                + x[..., 2] * _GRAY_B
                + (1 << (_GRAY_SHIFT - 1))
            ) // (1 << _GRAY_SHIFT)
            return ops.cast(gray, "float32")
        x = ops.cast(frames, "float32")
        gray = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
        return gray * 255.0
    if len(frames.shape) == 4 and frames.shape[-1] == 1:
        frames = frames[..., 0]
    if len(frames.shape) != 3:
        raise ValueError(
            f"Expected {name} of shape [B, H, W], [B, H, W, 1] or [B, H, W, 3]. "
            f"Received: {name}.shape={tuple(frames.shape)}"
        )
    if dtype == "uint8":
        return ops.cast(frames, "float32")
    # OpenCV reads float frames as 0..1 and scales them by 255 (`convertTo(..., 255.0)`).
    return ops.cast(frames, "float32") * 255.0


def _one_scale(i0, i1, u1, u2, p):
    """TV-L1 at one pyramid level (OpenCV's `procOneScale`); returns the new `(u1, u2)`."""
    from keras import ops

    batch, height, width = i0.shape
    l_t = p["lambda_"] * p["theta"]
    taut = p["tau"] / p["theta"]
    theta = p["theta"]
    # OpenCV: epsilon^2 * area, compared with the sum of squared updates of (u1, u2).
    scaled_epsilon = float(np.float32(p["epsilon"] * p["epsilon"] * height * width))
    float_epsilon = float(np.finfo(np.float32).eps)
    inner, outer = p["inner_iterations"], p["outer_iterations"]
    median = p["median_filtering"] == 5

    i1x, i1y = _centered_gradient(i1)
    stack = ops.stack([i1, i1x, i1y], axis=-1)  # [B, h, w, 3]
    zeros = ops.zeros_like(i0)

    def mask(active, new, old):
        return ops.where(active[:, None, None], new, old)

    def warp(_, state):
        u1, u2, p11, p12, p21, p22 = state
        warped = _warp_cubic(stack, u1, u2)
        i1w, i1wx, i1wy = warped[..., 0], warped[..., 1], warped[..., 2]
        grad = i1wx * i1wx + i1wy * i1wy
        rho_c = i1w - i1wx * u1 - i1wy * u2 - i0
        l_t_grad = l_t * grad
        safe_grad = ops.where(grad > float_epsilon, grad, 1.0)

        def inner_step(k, active, u1, u2, p11, p12, p21, p22):
            # Thresholding (estimateV).
            rho = rho_c + (i1wx * u1 + i1wy * u2)
            coef = ops.where(
                rho < -l_t_grad,
                l_t,
                ops.where(
                    rho > l_t_grad,
                    -l_t,
                    ops.where(grad > float_epsilon, -rho / safe_grad, 0.0),
                ),
            )
            v1 = u1 + coef * i1wx
            v2 = u2 + coef * i1wy
            # Primal step (estimateU) and the stopping criterion.
            n1 = v1 + theta * _divergence(p11, p12)
            n2 = v2 + theta * _divergence(p21, p22)
            error = ops.sum(ops.square(n1 - u1) + ops.square(n2 - u2), axis=(1, 2))
            # Dual step (estimateDualVariables).
            u1x, u1y = _forward_gradient(n1)
            u2x, u2y = _forward_gradient(n2)
            ng1 = 1.0 + taut * ops.sqrt(u1x * u1x + u1y * u1y)
            ng2 = 1.0 + taut * ops.sqrt(u2x * u2x + u2y * u2y)
            q11 = (p11 + taut * u1x) / ng1
            q12 = (p12 + taut * u1y) / ng1
            q21 = (p21 + taut * u2x) / ng2
            q22 = (p22 + taut * u2y) / ng2
            new = (n1, n2, q11, q12, q21, q22)
            old = (u1, u2, p11, p12, p21, p22)
            out = tuple(mask(active, a, b) for a, b in zip(new, old, strict=True))
            return (k + 1, active & (error > scaled_epsilon), *out)

        def outer_step(n, active, u1, u2, p11, p12, p21, p22):
            if median:
                # One network for both components: [2B, h, w] (halves the compile time).
                filtered = median5x5(ops.concatenate([u1, u2], axis=0))
                u1 = mask(active, filtered[:batch], u1)
                u2 = mask(active, filtered[batch:], u2)
            state = ops.while_loop(
                lambda k, active, *_: (k < inner) & ops.any(active),
                inner_step,
                (ops.convert_to_tensor(0, "int32"), active, u1, u2, p11, p12, p21, p22),
            )
            return (n + 1, *state[1:])

        active = ops.ones((batch,), "bool")
        state = ops.while_loop(
            lambda n, active, *_: (n < outer) & ops.any(active),
            outer_step,
            (ops.convert_to_tensor(0, "int32"), active, u1, u2, p11, p12, p21, p22),
        )
        return tuple(state[2:])

    state = (u1, u2, zeros, zeros, zeros, zeros)
    state = ops.fori_loop(0, p["warps"], warp, state)
    return state[0], state[1]


def tvl1_graph(frames_a, frames_b, **params):
    """TV-L1 flow from `frames_a` to `frames_b` as traceable `keras.ops` (not compiled).

    The body of `tvl1`, for use inside a caller's own `tf.function` / `jax.jit` (for
    example in a `tf.data` map or a model). Shapes must be static.

    Args:
        frames_a: `[B, H, W]`, `[B, H, W, 1]` or RGB `[B, H, W, 3]` frames `t`; uint8
            (0..255) or float (0..1, as OpenCV reads float images).
        frames_b: frames `t + 1`, same shape and dtype.
        **params: TV-L1 parameters (see `tvl1`).

    Returns:
        float32 `[B, H, W, 2]`: the displacement `(u, v)` of each pixel of `frames_a`.

    Example:

    >>> import tensorflow as tf  # doctest: +SKIP
    >>> from keras_twostream.flow import tvl1_graph  # doctest: +SKIP
    >>> f = tf.function(lambda a, b: tvl1_graph(a, b, warps=1), jit_compile=True)  # doctest: +SKIP
    """
    from keras import ops

    p = _check_params(params)
    i0 = _to_gray_255(frames_a, "frames_a")
    i1 = _to_gray_255(frames_b, "frames_b")
    if tuple(i0.shape) != tuple(i1.shape):
        raise ValueError(
            "Expected frames_a and frames_b to have the same shape. "
            f"Received: {tuple(frames_a.shape)} and {tuple(frames_b.shape)}"
        )
    batch, height, width = i0.shape
    if height is None or width is None or batch is None:
        raise ValueError(f"tvl1 needs static shapes. Received: {tuple(frames_a.shape)}")
    if height < 3 or width < 3:
        raise ValueError(f"Expected frames of at least 3x3 pixels. Received: {height}x{width}")
    sizes = pyramid_sizes(height, width, p["nscales"], p["scale_step"])
    inv = 1.0 / p["scale_step"]
    levels = [(i0, i1)]
    for (h0, w0), (h, w) in zip(sizes[:-1], sizes[1:], strict=True):
        # resize(..., Size(), scaleStep, scaleStep): the source step is 1/scaleStep.
        my, mx = _linear_matrix(h, h0, inv), _linear_matrix(w, w0, inv)
        a, b = levels[-1]
        levels.append((_resize(a, my, mx), _resize(b, my, mx)))
    h, w = sizes[-1]
    u1 = ops.zeros((batch, h, w), "float32")
    u2 = ops.zeros((batch, h, w), "float32")
    for s in range(len(sizes) - 1, -1, -1):
        a, b = levels[s]
        u1, u2 = _one_scale(a, b, u1, u2, p)
        if s == 0:
            break
        # resize(u, size[s-1]) (source step = size ratio), then times 1/scaleStep.
        (h1, w1), (h, w) = sizes[s - 1], sizes[s]
        my, mx = _linear_matrix(h1, h, h / h1), _linear_matrix(w1, w, w / w1)
        u1 = _resize(u1, my, mx) * inv
        u2 = _resize(u2, my, mx) * inv
    return ops.stack([u1, u2], axis=-1)


@functools.lru_cache(maxsize=32)
def _compiled(backend, items):
    params = dict(items)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(
            lambda a, b: tvl1_graph(a, b, **params), jit_compile=True, reduce_retracing=False
        )
    if backend == "jax":
        import jax

        return jax.jit(lambda a, b: tvl1_graph(a, b, **params))
    raise NotImplementedError(
        f"tvl1 is compiled with XLA on the tensorflow or jax backend. Received: backend={backend!r}"
    )


def tvl1(frames_a, frames_b, **params):
    """TV-L1 optical flow between batches of frame pairs, compiled by XLA.

    A port of OpenCV's `DualTVL1OpticalFlow` (see the module docstring) that runs as one
    XLA program per input shape, batched over pairs: `tf.function(jit_compile=True)` on
    the TensorFlow backend, `jax.jit` on JAX, so it runs on a GPU where the backend has
    one. Each new `(B, H, W)` (and parameter set) compiles once (seconds); keep the batch
    size fixed (pad the last batch) to reuse it.

    Args:
        frames_a: frames `t`: `[B, H, W]`, `[B, H, W, 1]` or RGB `[B, H, W, 3]`, uint8
            (0..255) or float (0..1, as OpenCV reads float images). RGB is converted to
            gray with OpenCV's `cvtColor` coefficients (bit-exact for uint8).
        frames_b: frames `t + 1`, same shape and dtype.
        **params: OpenCV's parameters and defaults: `tau=0.25`, `lambda_=0.15`,
            `theta=0.3`, `nscales=5`, `warps=5`, `epsilon=0.01`, `inner_iterations=30`,
            `outer_iterations=10`, `scale_step=0.8`, `gamma=0` (only 0 is implemented),
            `median_filtering=5` (or 0/1: off).

    Returns:
        float32 `[B, H, W, 2]` backend tensor: the displacement `(u, v)` in pixels of
        each pixel of `frames_a` (a pixel at `(x, y)` moves to `(x + u, y + v)`), like
        `cv2.optflow.DualTVL1OpticalFlow_create().calc(a, b, None)`.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.flow import tvl1
    >>> rng = np.random.default_rng(0)
    >>> a = (rng.random((2, 32, 32)) * 255).astype("uint8")
    >>> flow = tvl1(a, np.roll(a, 1, axis=2), warps=1, outer_iterations=2)
    >>> tuple(flow.shape)
    (2, 32, 32, 2)
    """
    import keras

    p = _check_params(params)
    function = _compiled(keras.backend.backend(), tuple(sorted(p.items())))
    return function(frames_a, frames_b)
