"""Sample-consistent augmentation and normalisation for video clips (tf ops).

Keras image-preprocessing layers reject 5-D video tensors and, with time
folded into the batch, draw a new transformation for every frame (see
docs/PITFALLS). Here the random draw happens once per sample, in NumPy, before
decoding (`draw_crop_params`, `draw_flips`, `draw_color_jitter`), and the tf
ops below apply that one draw to every frame and every modality of the sample:
the same crop window to RGB and flow, the same flip (which also negates flow-x),
the same colour factors to every RGB frame. All tensors are `(T, H, W, C)`, time
first, as decoded in a `tf.data` map.

Crops follow TSN's `GroupMultiScaleCrop` (Wang et al., ECCV 2016, Sect. 4,
"scale jittering"): crop height and width are drawn independently from the
scales {1, .875, .75, .66} of the short side with at most one scale step
between them (`max_distort=1`), the window is placed at one of five fixed
positions (four corners and the centre) and resized to the network input size.

The two-stream paper's augmentation (Simonyan & Zisserman 2014, Sect. 5,
"Training"; `draw_random_crop_params`, `draw_lighting`) is the alternative: a
fixed-size crop (224 of a 256-pixel short side) "randomly cropped from the
selected frame ... sampled from the whole frame, not just its 256x256 center",
random horizontal flipping, and RGB jittering, which the paper takes from
Krizhevsky et al. [15]: AlexNet's PCA lighting noise (`adjust_lighting`).
"""

import numpy as np
import tensorflow as tf

# The pure geometry of the test-time views and the (height, width) check live in modules
# without TensorFlow (data/views.py, data/_validation.py); re-exported here.
from keras_twostream.data._validation import _pair  # noqa: F401
from keras_twostream.data.views import FIVE_POSITIONS, test_crop_params

__all__ = [
    "FIVE_POSITIONS",
    "RGB_PRESETS",
    "TSN_SCALES",
    "adjust_color",
    "adjust_lighting",
    "crop_and_resize",
    "crop_window",
    "dequantize_flow",
    "draw_color_jitter",
    "draw_crop_params",
    "draw_flips",
    "draw_lighting",
    "draw_random_crop_params",
    "flip_flow",
    "flip_frames",
    "normalize_rgb",
    "scale_pairs",
    "test_crop_params",
]

TSN_SCALES = (1.0, 0.875, 0.75, 0.66)


# ImageNet statistics used by torchvision and keras.applications.
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# The principal components of ImageNet's RGB pixel covariance (pixels in [0, 1]), as
# fb.resnet.torch and timm use for AlexNet's "fancy PCA" lighting: eigenvalues and the
# eigenvectors as columns.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)

RGB_PRESETS = ("unit", "torch", "caffe", "tf", "none")


# --------------------------------------------------------------------------
# NumPy draws: one per sample, made before decoding.
# --------------------------------------------------------------------------


def scale_pairs(scales=TSN_SCALES, max_distort=1):
    """The (height, width) scale pairs TSN's multi-scale crop chooses from.

    Args:
        scales: fractions of the short side.
        max_distort: the largest index difference between the height scale and
            the width scale (TSN: 1; 0 gives square crops only).

    Returns:
        A list of `(scale_h, scale_w)` tuples, in TSN's order.

    Example:

    >>> from keras_twostream.data.augment import scale_pairs
    >>> scale_pairs((1.0, 0.5), max_distort=0)
    [(1.0, 1.0), (0.5, 0.5)]
    """
    scales = tuple(float(s) for s in scales)
    if not scales or any(not 0.0 < s <= 1.0 for s in scales):
        raise ValueError(f"Expected scales in (0, 1]. Received: scales={scales!r}")
    if isinstance(max_distort, bool) or not isinstance(max_distort, int) or max_distort < 0:
        raise ValueError(f"Expected max_distort >= 0. Received: max_distort={max_distort!r}")
    return [
        (sh, sw)
        for i, sh in enumerate(scales)
        for j, sw in enumerate(scales)
        if abs(i - j) <= max_distort
    ]


def draw_crop_params(rng, size, scales=TSN_SCALES, max_distort=1, positions=FIVE_POSITIONS):
    """Draws TSN multi-scale corner-crop parameters for `size` samples.

    Args:
        rng: a `numpy.random.Generator`.
        size: number of samples.
        scales: fractions of the short side (TSN: 1, .875, .75, .66).
        max_distort: see `scale_pairs`.
        positions: `(quarter_y, quarter_x)` choices, default the five TSN positions.

    Returns:
        A dict of arrays of shape `(size,)`: `"scale_h"`, `"scale_w"` (float64,
        fractions of the short side), `"quarter_y"`, `"quarter_x"` (int32,
        0..4: the window's offset in quarters of the slack).

    Example:

    >>> import numpy as np
    >>> from keras_twostream.data.augment import draw_crop_params
    >>> p = draw_crop_params(np.random.default_rng(0), 4)
    >>> sorted(p)
    ['quarter_x', 'quarter_y', 'scale_h', 'scale_w']
    """
    pairs = np.asarray(scale_pairs(scales, max_distort), np.float64)
    positions = np.asarray(positions, np.int32)
    pair = rng.integers(0, len(pairs), size=size)
    where = rng.integers(0, len(positions), size=size)
    return {
        "scale_h": pairs[pair, 0],
        "scale_w": pairs[pair, 1],
        "quarter_y": positions[where, 0],
        "quarter_x": positions[where, 1],
    }


def draw_random_crop_params(rng, size, scale):
    """Draws the two-stream paper's crops: one square size, anywhere in the frame.

    The window is `scale` (a fraction, or `(height, width)` fractions) of the
    short side (224 / 256 = 0.875 for the
    paper's 224 crops of frames rescaled to a short side of 256), at a
    position uniform over every offset of the whole frame (Sect. 5). The
    positions are float "quarters" in `[0, 4]`, which `crop_window` reads
    as continuous positions.

    Returns:
        The dict of `draw_crop_params`, with float64 `"quarter_y"`,
        `"quarter_x"`.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.data.augment import draw_random_crop_params
    >>> p = draw_random_crop_params(np.random.default_rng(0), 3, 0.875)
    >>> p["scale_h"].tolist(), p["quarter_y"].dtype.name
    ([0.875, 0.875, 0.875], 'float64')
    """
    scale_h, scale_w = (scale, scale) if np.ndim(scale) == 0 else scale
    if not (0.0 < scale_h <= 1.0 and 0.0 < scale_w <= 1.0):
        raise ValueError(f"Expected 0 < scale <= 1. Received: scale={scale!r}")
    return {
        "scale_h": np.full((size,), float(scale_h), np.float64),
        "scale_w": np.full((size,), float(scale_w), np.float64),
        "quarter_y": rng.uniform(0.0, 4.0, size=size),
        "quarter_x": rng.uniform(0.0, 4.0, size=size),
    }


def draw_lighting(rng, size, std=0.1):
    """Draws AlexNet's PCA lighting coefficients, `alpha ~ N(0, std)`, `(size, 3)` float32.

    Krizhevsky et al. 2012, Sect. 4.1: "a random variable drawn from a Gaussian
    with mean zero and standard deviation 0.1", one per principal component
    and image (here per sample: every frame of a sample gets the same draw).

    Example:

    >>> import numpy as np
    >>> from keras_twostream.data.augment import draw_lighting
    >>> draw_lighting(np.random.default_rng(0), 2).shape
    (2, 3)
    """
    if not std >= 0:
        raise ValueError(f"Expected std >= 0. Received: std={std!r}")
    return rng.normal(0.0, std, size=(size, 3)).astype(np.float32)


def draw_flips(rng, size, probability=0.5):
    """Draws one horizontal-flip decision per sample (bool array `(size,)`).

    Example:

    >>> import numpy as np
    >>> from keras_twostream.data.augment import draw_flips
    >>> draw_flips(np.random.default_rng(0), 3, probability=0.0).tolist()
    [False, False, False]
    """
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"Expected 0 <= probability <= 1. Received: probability={probability!r}")
    return rng.random(size) < probability


def draw_color_jitter(rng, size, brightness=0.0, contrast=0.0, saturation=0.0):
    """Draws one brightness/contrast/saturation factor triple per sample.

    Each factor is uniform in `[max(0, 1 - x), 1 + x]` (torchvision's
    `ColorJitter` convention); `x = 0` gives the factor 1 (no change).

    Returns:
        A dict of float32 arrays of shape `(size,)`: `"brightness"`,
        `"contrast"`, `"saturation"`.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.data.augment import draw_color_jitter
    >>> draw_color_jitter(np.random.default_rng(0), 2)["contrast"].tolist()
    [1.0, 1.0]
    """
    out = {}
    for name, amount in (
        ("brightness", brightness),
        ("contrast", contrast),
        ("saturation", saturation),
    ):
        if not amount >= 0:
            raise ValueError(f"Expected {name} >= 0. Received: {name}={amount!r}")
        out[name] = rng.uniform(max(0.0, 1.0 - amount), 1.0 + amount, size=size).astype(np.float32)
    return out


# --------------------------------------------------------------------------
# tf ops: apply one draw to every frame of a sample.
# --------------------------------------------------------------------------


def crop_window(height, width, scale_h, scale_w, quarter_y, quarter_x):
    """The crop window `(y, x, h, w)` of a frame, TSN style.

    `h = int(short * scale_h)`, `w = int(short * scale_w)` with `short =
    min(height, width)` (clipped to the frame), and the offset is
    `quarter * ((side - crop) // 4)` as in TSN's `fill_fix_offset`. Float
    quarters (`draw_random_crop_params`) are continuous positions instead:
    `floor(quarter / 4 * (side - crop + 1))`, clipped to `side - crop`, so a
    uniform quarter in `[0, 4]` gives every offset the same chance.

    Args:
        height: frame height (int or scalar tensor).
        width: frame width.
        scale_h: crop height as a fraction of the short side.
        scale_w: crop width as a fraction of the short side.
        quarter_y: vertical position, 0 (top) .. 4 (bottom); an integer
            (TSN's five positions) or a float (continuous).
        quarter_x: horizontal position, 0 (left) .. 4 (right).

    Returns:
        An int32 tensor `[y, x, h, w]`, usable as the `crop_window` of
        `tf.io.decode_and_crop_jpeg`.

    Example:

    >>> from keras_twostream.data.augment import crop_window
    >>> crop_window(256, 340, 0.875, 0.75, 4, 2).numpy().tolist()
    [32, 74, 224, 192]
    """
    height = tf.cast(height, tf.int32)
    width = tf.cast(width, tf.int32)
    short = tf.cast(tf.minimum(height, width), tf.float64)
    # float64 like TSN's Python int(base * scale); the epsilon keeps products such
    # as 48 * (40 / 48) from flooring to 39.
    crop_h = tf.cast(tf.floor(short * _float64(scale_h) + 1e-6), tf.int32)
    crop_w = tf.cast(tf.floor(short * _float64(scale_w) + 1e-6), tf.int32)
    crop_h = tf.clip_by_value(crop_h, 1, height)
    crop_w = tf.clip_by_value(crop_w, 1, width)
    y = _offset(quarter_y, height - crop_h)
    x = _offset(quarter_x, width - crop_w)
    return tf.stack([y, x, crop_h, crop_w])


def _offset(quarter, slack):
    quarter = tf.convert_to_tensor(quarter)
    if not quarter.dtype.is_floating:  # TSN's fixed positions
        return tf.cast(quarter, tf.int32) * (slack // 4)
    continuous = tf.floor(tf.cast(quarter, tf.float64) / 4.0 * tf.cast(slack + 1, tf.float64))
    return tf.minimum(tf.cast(continuous, tf.int32), slack)


def _float64(value):
    if isinstance(value, (tf.Tensor, tf.Variable)):
        return tf.cast(value, tf.float64)
    return tf.constant(value, tf.float64)  # not via float32, which rounds 40/48 down


def crop_and_resize(frames, window, size):
    """Cuts one window out of every frame and resizes it (bilinear).

    Args:
        frames: `(T, H, W, C)` tensor, any real dtype.
        window: int32 `[y, x, h, w]` from `crop_window`.
        size: output `(height, width)`.

    Returns:
        float32 `(T, height, width, C)`.
    """
    y, x, h, w = window[0], window[1], window[2], window[3]
    crop = frames[:, y : y + h, x : x + w, :]
    return tf.image.resize(tf.cast(crop, tf.float32), size, method="bilinear")


def flip_frames(frames, flip):
    """Mirrors `(..., H, W, C)` frames left-right when the scalar `flip` is true."""
    frames = tf.convert_to_tensor(frames)
    return tf.cond(tf.cast(flip, tf.bool), lambda: tf.reverse(frames, axis=[-2]), lambda: frames)


def flip_flow(flow, flip):
    """Mirrors `(..., H, W, 2)` flow (x, y channels) and negates flow-x when `flip`.

    A horizontal flip maps a displacement `(dx, dy)` to `(-dx, dy)`: in
    quantised terms `q -> 255 - q`; here it is a negation of the dequantised
    (and mean-subtracted) x component.
    """
    flow = tf.convert_to_tensor(flow)

    def _flip():
        mirrored = tf.reverse(flow, axis=[-2])
        return tf.concat([-mirrored[..., :1], mirrored[..., 1:]], axis=-1)

    return tf.cond(tf.cast(flip, tf.bool), _flip, lambda: flow)


def dequantize_flow(quantized, bound):
    """`d = q * 2 * bound / 255 - bound`: 8-bit flow JPEG values to pixels.

    The inverse of the TSN/denseflow quantisation `q = round((clip(d, -b, b) +
    b) * 255 / (2 b))` (two-stream paper Sect. 6: flow "linearly rescaled to a
    [0, 255] range and compressed using JPEG").
    """
    bound = tf.cast(bound, tf.float32)
    return tf.cast(quantized, tf.float32) * (2.0 * bound / 255.0) - bound


def adjust_color(images, brightness, contrast, saturation):
    """Applies one brightness/contrast/saturation draw to every frame.

    In this order, on RGB values in `[0, 1]`: `x * b`; `(x - m) * c + m` with
    `m` the mean grey level of each frame; `(x - g) * s + g` with `g` the
    per-pixel grey `0.299 R + 0.587 G + 0.114 B`; then clipped to `[0, 1]`.

    Args:
        images: float `(T, H, W, 3)` RGB in `[0, 1]`.
        brightness: scalar factor (1 = unchanged).
        contrast: scalar factor.
        saturation: scalar factor.

    Returns:
        float32 `(T, H, W, 3)` in `[0, 1]`.
    """
    weights = tf.constant([0.299, 0.587, 0.114], tf.float32)
    x = tf.clip_by_value(images * brightness, 0.0, 1.0)
    grey_mean = tf.reduce_mean(tf.reduce_sum(x * weights, axis=-1), axis=[-2, -1], keepdims=True)
    x = tf.clip_by_value((x - grey_mean[..., None]) * contrast + grey_mean[..., None], 0.0, 1.0)
    grey = tf.reduce_sum(x * weights, axis=-1, keepdims=True)
    return tf.clip_by_value((x - grey) * saturation + grey, 0.0, 1.0)


def adjust_lighting(images, alpha):
    """AlexNet's PCA lighting noise, one draw for every frame: the two-stream paper's RGB jitter.

    Adds `sum_i alpha_i lambda_i p_i` to every pixel (Krizhevsky et al. 2012,
    Sect. 4.1), with `p_i`, `lambda_i` the principal components of ImageNet's
    RGB covariance (`IMAGENET_EIGVEC`, `IMAGENET_EIGVAL`, pixels in `[0, 1]`),
    then clips to `[0, 1]`.

    Args:
        images: float `(T, H, W, 3)` RGB in `[0, 1]`.
        alpha: float `(3,)`, from `draw_lighting`.

    Returns:
        float32 `(T, H, W, 3)` in `[0, 1]`.
    """
    eigvec = tf.constant(IMAGENET_EIGVEC, tf.float32)
    shift = tf.linalg.matvec(eigvec, tf.cast(alpha, tf.float32) * tf.constant(IMAGENET_EIGVAL))
    return tf.clip_by_value(tf.cast(images, tf.float32) + shift, 0.0, 1.0)


def normalize_rgb(images, preset="unit"):
    """Normalises RGB values in `[0, 255]` for a backbone.

    Presets:
    * `"unit"`: `x / 255`, in `[0, 1]`.
    * `"torch"`: `(x / 255 - mean) / std` with the ImageNet mean
      (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) (torchvision,
      timm and Keras' `imagenet_utils` "torch" mode).
    * `"caffe"`: RGB -> BGR, then minus the ImageNet BGR means
      (103.939, 116.779, 123.68) on 0..255, as `keras.applications` ResNet50
      and VGG16/19 expect.
    * `"tf"`: `x / 127.5 - 1`, in `[-1, 1]` (Inception, MobileNet, Xception).
    * `"none"`: values unchanged, 0..255 floats.

    Args:
        images: `(..., 3)` RGB tensor on 0..255.
        preset: one of `RGB_PRESETS`.

    Returns:
        float32 tensor of the input's shape.
    """
    x = tf.cast(images, tf.float32)
    if preset == "unit":
        return x / 255.0
    if preset == "torch":
        return (x / 255.0 - tf.constant(_TORCH_MEAN)) / tf.constant(_TORCH_STD)
    if preset == "caffe":
        return tf.reverse(x, axis=[-1]) - tf.constant(_CAFFE_MEAN_BGR)
    if preset == "tf":
        return x / 127.5 - 1.0
    if preset == "none":
        return x
    raise ValueError(f"Expected rgb_normalization to be one of {RGB_PRESETS}. Received: {preset!r}")
