"""Dense optical flow (TV-L1, DIS, Farneback), its 8-bit quantisation, and a colour coding.

The temporal stream of the two-stream network takes stacked horizontal and vertical
displacement fields `d_t^x, d_t^y` between consecutive frames (Simonyan & Zisserman 2014,
Sect. 3, Eq. (1)). The flow is pre-computed and, "to avoid storing the displacement fields
as floats, the horizontal and vertical components of the flow were linearly rescaled to a
[0, 255] range and compressed using JPEG" (same paper, Sect. 5). Following TSN and
MMAction2 (denseflow), the rescaling clips the flow to `[-bound, bound]` (bound 20 pixels):

    q = round((clip(d, -bound, bound) + bound) * 255 / (2 * bound))        (quantize_flow)
    d = q * 2 * bound / 255 - bound                                         (dequantize_flow)

so the round-trip error of an unclipped value is at most `bound / 255` (half a step).

Algorithms, all on 8-bit grayscale frames at the resized size (flow from `prev` to `next`:
a pixel at `(x, y)` in `prev` moves to `(x + u, y + v)` in `next`):

- `"tvl1"`: `cv2.optflow.DualTVL1OpticalFlow_create()` with OpenCV's defaults, which are
  those of the GPU TV-L1 used by TSN's denseflow: tau=0.25, lambda=0.15, theta=0.3,
  nscales=5, warps=5, epsilon=0.01, innerIterations=30, outerIterations=10, scaleStep=0.8,
  gamma=0, medianFiltering=5 (Zach, Pock & Bischof 2007; the TCLSTA paper uses TV-L1).
  Accurate and slow (about 1.4 frame pairs/s at 340x256 on 2 cores).
- `"dis"`: `cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)` (Kroeger et al.
  2016): patch size 8, stride 3, 25 gradient-descent iterations, 5 variational refinement
  iterations, finest scale 1. About 100x faster than TV-L1.
- `"farneback"`: `cv2.calcOpticalFlowFarneback` (Farneback 2003) with pyr_scale=0.5,
  levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0 (OpenCV's
  reference parameters).

Any of these can be overridden with keyword arguments to `OpticalFlow`.
"""

import numpy as np

FLOW_ALGORITHMS = ("tvl1", "dis", "farneback")

TVL1_DEFAULTS = {
    "tau": 0.25,
    "lambda_": 0.15,
    "theta": 0.3,
    "nscales": 5,
    "warps": 5,
    "epsilon": 0.01,
    "innnerIterations": 30,  # (sic) OpenCV's keyword name
    "outerIterations": 10,
    "scaleStep": 0.8,
    "gamma": 0.0,
    "medianFiltering": 5,
}
DIS_DEFAULTS = {"preset": "medium"}
FARNEBACK_DEFAULTS = {
    "pyr_scale": 0.5,
    "levels": 3,
    "winsize": 15,
    "iterations": 3,
    "poly_n": 5,
    "poly_sigma": 1.2,
    "flags": 0,
}
_DEFAULTS = {"tvl1": TVL1_DEFAULTS, "dis": DIS_DEFAULTS, "farneback": FARNEBACK_DEFAULTS}


def _to_gray(image, name):
    import cv2

    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    elif image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim != 2:
        raise ValueError(
            f"Expected {name} to be a grayscale [H, W] or RGB [H, W, 3] image. "
            f"Received: {name}.shape={image.shape}"
        )
    if image.dtype != np.uint8:
        raise ValueError(f"Expected {name} to be uint8. Received: {name}.dtype={image.dtype}")
    return np.ascontiguousarray(image)


class OpticalFlow:
    """Dense optical flow between two frames with one of OpenCV's algorithms.

    The OpenCV object is created once and reused for every pair (creating a TV-L1 solver
    per pair costs time). See the module docstring for the parameters of each algorithm.

    Args:
        algorithm: `"tvl1"`, `"dis"` or `"farneback"`.
        **params: overrides of the algorithm's parameters (`TVL1_DEFAULTS`,
            `DIS_DEFAULTS` with `preset` in `"ultrafast" | "fast" | "medium"`,
            `FARNEBACK_DEFAULTS`).

    Call arguments:
        prev: uint8 grayscale `[H, W]` (or RGB `[H, W, 3]`, converted) frame `t`.
        next: the same for frame `t + 1`.

    Returns:
        float32 `[H, W, 2]`: the displacement `(u, v)` in pixels of each pixel of `prev`.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.data.flow import OpticalFlow
    >>> rng = np.random.default_rng(0)
    >>> prev = (rng.random((64, 64)) * 255).astype("uint8")
    >>> flow = OpticalFlow("dis")(prev, np.roll(prev, 2, axis=1))
    >>> flow.shape, flow.dtype
    ((64, 64, 2), dtype('float32'))
    """

    def __init__(self, algorithm="tvl1", **params):
        if algorithm not in FLOW_ALGORITHMS:
            raise ValueError(
                f"Expected algorithm to be one of {list(FLOW_ALGORITHMS)}. Received: algorithm={algorithm!r}"
            )
        unknown = sorted(set(params) - set(_DEFAULTS[algorithm]))
        if unknown:
            raise ValueError(
                f"Unknown parameters {unknown} for algorithm={algorithm!r}; "
                f"expected some of {sorted(_DEFAULTS[algorithm])}"
            )
        self.algorithm = algorithm
        self.params = {**_DEFAULTS[algorithm], **params}
        self._solver = None

    def _build(self):
        import cv2

        if self.algorithm == "tvl1":
            if not hasattr(cv2, "optflow"):
                raise ImportError(
                    "TV-L1 optical flow needs cv2.optflow from opencv-contrib-python-headless "
                    "(uninstall opencv-python / opencv-python-headless, which shadow it)"
                )
            self._solver = cv2.optflow.DualTVL1OpticalFlow_create(**self.params)
        elif self.algorithm == "dis":
            presets = {
                "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
                "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
            }
            preset = self.params["preset"]
            if preset not in presets:
                raise ValueError(
                    f"Expected preset to be one of {list(presets)}. Received: preset={preset!r}"
                )
            self._solver = cv2.DISOpticalFlow_create(presets[preset])

    def __call__(self, prev, next):
        import cv2

        prev = _to_gray(prev, "prev")
        next = _to_gray(next, "next")
        if prev.shape != next.shape:
            raise ValueError(
                f"Expected prev and next to have the same shape. Received: {prev.shape} and {next.shape}"
            )
        if self.algorithm == "farneback":
            flow = cv2.calcOpticalFlowFarneback(prev, next, None, **self.params)
        else:
            if self._solver is None:
                self._build()
            flow = self._solver.calc(prev, next, None)
        return np.asarray(flow, dtype=np.float32)

    def __getstate__(self):
        # OpenCV solvers do not pickle; they are rebuilt on first use.
        return {**self.__dict__, "_solver": None}


def compute_flow(prev, next, algorithm="tvl1", **params):
    """Optical flow from `prev` to `next`; a one-off form of `OpticalFlow(algorithm)(prev, next)`.

    Args:
        prev: uint8 grayscale `[H, W]` or RGB `[H, W, 3]` frame.
        next: the following frame, same shape.
        algorithm: `"tvl1"`, `"dis"` or `"farneback"`.
        **params: parameter overrides, see `OpticalFlow`.

    Returns:
        float32 `[H, W, 2]` displacement `(u, v)` in pixels.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.data.flow import compute_flow
    >>> prev = np.zeros((32, 32), "uint8")
    >>> compute_flow(prev, prev, "farneback").shape
    (32, 32, 2)
    """
    return OpticalFlow(algorithm, **params)(prev, next)


def _check_bound(bound):
    if isinstance(bound, bool) or not np.isfinite(bound) or bound <= 0:
        raise ValueError(f"Expected bound to be a finite number > 0. Received: bound={bound!r}")
    return float(bound)


def quantize_flow(flow, bound=20.0):
    """Linearly maps flow in `[-bound, bound]` to uint8 `[0, 255]` (values beyond are clipped).

    `q = round((clip(d, -bound, bound) + bound) * 255 / (2 * bound))`, the rescaling of
    the two-stream paper (Sect. 5) with TSN's clipping bound; rounding is to the nearest
    integer, ties to even, as OpenCV's `saturate_cast` in denseflow.

    Args:
        flow: float array of displacements, any shape (usually `[H, W, 2]`).
        bound: clipping bound in pixels (20 in TSN and MMAction2).

    Returns:
        uint8 array of the same shape.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.data.flow import quantize_flow
    >>> quantize_flow(np.array([-30.0, -20.0, 0.0, 20.0]), bound=20)
    array([  0,   0, 128, 255], dtype=uint8)
    """
    bound = _check_bound(bound)
    flow = np.asarray(flow, dtype=np.float32)
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2.0 * bound))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def dequantize_flow(quantized, bound=20.0):
    """Inverse of `quantize_flow`: `d = q * 2 * bound / 255 - bound`, as float32.

    Args:
        quantized: uint8 (or integer-valued) array from `quantize_flow` or a flow JPEG.
        bound: the bound used when quantising.

    Returns:
        float32 array of the same shape, in pixels.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.data.flow import dequantize_flow
    >>> dequantize_flow(np.array([0, 255], "uint8"), bound=20)
    array([-20.,  20.], dtype=float32)
    """
    bound = _check_bound(bound)
    quantized = np.asarray(quantized, dtype=np.float32)
    return (quantized * (2.0 * bound / 255.0) - bound).astype(np.float32)


def _color_wheel():
    """The Middlebury colour wheel (Baker et al., IJCV 2011): 55 hues, RGB in [0, 255]."""
    segments = [
        (15, (255, 0, 0), (255, 255, 0)),  # red -> yellow
        (6, (255, 255, 0), (0, 255, 0)),  # yellow -> green
        (4, (0, 255, 0), (0, 255, 255)),  # green -> cyan
        (11, (0, 255, 255), (0, 0, 255)),  # cyan -> blue
        (13, (0, 0, 255), (255, 0, 255)),  # blue -> magenta
        (6, (255, 0, 255), (255, 0, 0)),
    ]  # magenta -> red
    rows = []
    for n, start, end in segments:
        t = np.arange(n, dtype=np.float64)[:, None] / n
        rows.append(np.floor(np.array(start) + t * (np.array(end) - np.array(start))))
    return np.concatenate(rows, axis=0)


def flow_to_color(flow, max_magnitude=None):
    """Colour-codes a flow field with the Middlebury colour wheel (for figures and tutorials).

    Hue encodes the direction (in image coordinates: right is red, down yellow, left
    cyan-blue, up violet),
    saturation the magnitude relative to `max_magnitude`; zero flow is white. Vectors
    longer than `max_magnitude` are drawn darker (x0.75), as in the Middlebury code.

    Args:
        flow: float `[H, W, 2]` displacement `(u, v)`.
        max_magnitude: magnitude drawn fully saturated; defaults to the largest in `flow`.

    Returns:
        uint8 `[H, W, 3]` RGB image.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.data.flow import flow_to_color
    >>> flow_to_color(np.zeros((2, 2, 2)))[0, 0]
    array([255, 255, 255], dtype=uint8)
    """
    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise ValueError(f"Expected flow of shape [H, W, 2]. Received: flow.shape={flow.shape}")
    u = np.nan_to_num(flow[..., 0])
    v = np.nan_to_num(flow[..., 1])
    magnitude = np.hypot(u, v)
    if max_magnitude is None:
        max_magnitude = float(magnitude.max())
    elif not max_magnitude > 0:
        raise ValueError(f"Expected max_magnitude > 0. Received: max_magnitude={max_magnitude!r}")
    scale = max(max_magnitude, np.finfo(np.float64).eps)
    radius = magnitude / scale
    wheel = _color_wheel()
    n_colors = wheel.shape[0]
    angle = np.arctan2(-v, -u) / np.pi  # in [-1, 1]
    position = (angle + 1.0) / 2.0 * (n_colors - 1)
    k0 = np.floor(position).astype(np.int64)
    k1 = (k0 + 1) % n_colors
    fraction = (position - k0)[..., None]
    color = ((1.0 - fraction) * wheel[k0] + fraction * wheel[k1]) / 255.0
    inside = (radius <= 1.0)[..., None]
    color = np.where(inside, 1.0 - radius[..., None] * (1.0 - color), color * 0.75)
    return np.floor(255.0 * color).astype(np.uint8)
