"""Per-sample decoding of frame folders inside `tf.data` (TensorFlow): JPEGs, crops, flow views.

* JPEG reading and checking: `_read`, `_checked_jpeg` (whole-file SOI/EOI check),
  `jpeg_problem` (the same rules in Python, to name a dropped sample's bad file),
  `_decode` with `DCT_METHOD` (libjpeg's accurate IDCT);
* RGB views: `_decode_views` decodes one sample's frames and cuts every view (crop
  window, flip, resize: `_cut`, `_resize`), then colour jitter, normalisation and RGB
  differences;
* flow views: `_flow_views` (mean flow subtraction from stored or decoded field means,
  trajectory stacking, bi-directional flow) and `_cut_flow`/`_fused_flow`, one XLA kernel
  that crops, mirrors, resizes and dequantises the flow planes (`_resize_axis` gives
  `tf.image.resize`'s indices and weights).

The crop and flip parameters come from `keras_twostream.data.augment` (training) or
`keras_twostream.data.views` (test-time views); what to read comes from the sampling
plan (`keras_twostream.data.sampling._Sampling`).
"""

import re

import tensorflow as tf

from keras_twostream.data import augment, frames, video_source
from keras_twostream.data.modalities import MMACTION2_FLOW_MEAN, MMACTION2_FLOW_STD
from keras_twostream.data.trajectory import trajectory_planes

# libjpeg's accurate integer IDCT: the pixels OpenCV, PIL and MMAction2's loaders get, and
# those the stored flow means of `keras_twostream.data.extract` are taken on (tested equal,
# byte for byte). TensorFlow's default ("INTEGER_FAST") differs from them by up to 13
# levels on a quality-95 flow JPEG (0.3 on average; a field's mean moves by up to 0.46
# levels) and decodes no faster (measured: 0.108 vs 0.116 ms per 340x256 field).
DCT_METHOD = "INTEGER_ACCURATE"


def _read(files, count):
    flat = tf.reshape(files, [-1])
    return [tf.io.read_file(flat[i]) for i in range(count)]


_SOI = b"\xff\xd8"  # JPEG start-of-image marker
_EOI = b"\xff\xd9"  # JPEG end-of-image marker


def _checked_jpeg(contents):
    """`contents`, after asserting that it is a whole JPEG file (issue 20).

    TensorFlow's decoders are not strict on their own (measured, TF 2.21):
    `decode_jpeg` decodes a PNG renamed `.jpg`, and `decode_and_crop_jpeg`
    returns a crop window of a truncated JPEG without error when the window
    lies in the part before the cut (libjpeg only warns "Premature end of JPEG
    data"). So every frame must start with the SOI marker and end with the EOI
    marker before it is decoded, whatever decoder or window follows; random
    bytes with a JPEG header then still fail in libjpeg. Choice: trailing bytes
    after EOI (no writer this project reads produces them) count as corrupt.
    """
    n = tf.strings.length(contents)
    whole = tf.logical_and(
        tf.equal(tf.strings.substr(contents, 0, 2), _SOI),
        tf.equal(tf.strings.substr(contents, tf.maximum(n - 2, 0), 2), _EOI),
    )
    whole = tf.logical_and(whole, n >= 4)
    check = tf.debugging.Assert(whole, ["not a whole JPEG file (SOI/EOI markers)"])
    with tf.control_dependencies([check]):
        return tf.identity(contents)


def jpeg_problem(contents):
    """What is wrong with the bytes of a frame file, by the pipeline's rules, or `None`.

    The same checks as the `tf.data` decoding (`_checked_jpeg`, then libjpeg with the
    accurate integer IDCT), so the diagnosis of a dropped sample names exactly what
    the pipeline refused.

    Args:
        contents: the file's bytes.

    Returns:
        `None` when the file decodes as a whole JPEG, else a description such as
        `"is not a valid JPEG (it starts with 0x89 0x50; ...)"`.

    Example:

    >>> from keras_twostream.data.decoding import jpeg_problem
    >>> jpeg_problem(b"")
    'is not a valid JPEG (an empty file)'
    """
    contents = bytes(contents)
    if not contents:
        return "is not a valid JPEG (an empty file)"
    if contents[:2] != _SOI:
        head = " ".join(f"0x{b:02x}" for b in contents[:2])
        return f"is not a valid JPEG (it starts with {head}; a JPEG starts with 0xff 0xd8)"
    if len(contents) < 4 or contents[-2:] != _EOI:
        return (
            f"is not a valid JPEG (truncated: {len(contents)} bytes, no end-of-image "
            "marker 0xff 0xd9)"
        )
    try:
        tf.io.decode_jpeg(contents, dct_method=DCT_METHOD)
    except tf.errors.OpError as error:
        return f"is not a valid JPEG ({_op_message(error)})"
    return None


def _decode(contents, channels, window):
    contents = [_checked_jpeg(c) for c in contents]
    if window is None:
        return [tf.io.decode_jpeg(c, channels=channels, dct_method=DCT_METHOD) for c in contents]
    return [
        tf.io.decode_and_crop_jpeg(c, window, channels=channels, dct_method=DCT_METHOD)
        for c in contents
    ]


def _cut(frames, window, flip, size):
    """One view of uint8 `(T, H, W, C)` frames: crop `window` (or none), flip, resize.

    The flip is applied to the uint8 crop before the float resize: bilinear
    resizing with half-pixel centres commutes with a horizontal mirror, and
    mirroring bytes is cheaper than mirroring the float result.
    """
    if window is not None:
        frames = frames[:, window[0] : window[0] + window[2], window[1] : window[1] + window[3], :]
    frames = augment.flip_frames(frames, flip)
    return _resize(frames, size)


def _resize(images, size):
    """Bilinear resize of `[N, h, w, C]` to float32 `[N, *size, C]`; a cast when h, w == size.

    The resize reads uint8 directly (its kernel converts each pixel to float, so
    the result is bit-identical to casting first) and saves a pass.
    """
    same = tf.reduce_all(tf.equal(tf.shape(images)[1:3], tf.constant(size)))
    resized = tf.cond(
        same,
        lambda: tf.cast(images, tf.float32),
        lambda: tf.image.resize(images, size, method="bilinear"),
    )
    return tf.ensure_shape(resized, [images.shape[0], size[0], size[1], images.shape[-1]])


def _stack(views):
    """`tf.stack`, without its copy for a single view (the training case)."""
    return views[0][None] if len(views) == 1 else tf.stack(views)


def _windows(contents, crops):
    shape = tf.io.extract_jpeg_shape(contents)
    return [
        augment.crop_window(
            shape[0], shape[1], c["scale_h"], c["scale_w"], c["quarter_y"], c["quarter_x"]
        )
        for c in crops
    ]


def _decode_views(
    cfg, directory, rgb_index, flow_index, bound, crops, jitter=None, centre=None, has_centre=None
):
    """Decodes one sample's frames and cuts `len(crops)` views out of them.

    Args:
        cfg: the `_Sampling` configuration.
        directory: scalar string, the frame folder.
        rgb_index: int32 `(G, Dr)` RGB file indices (`Dr = D + 1` with rgb_diff).
        flow_index: int32 `(Gf, L)` flow file indices.
        bound: scalar float, the flow quantisation bound.
        crops: list of dicts `scale_h, scale_w, quarter_y, quarter_x, flip`
            (tensors or Python values); one crop decodes only the windows.
        jitter: optional dict with `brightness, contrast, saturation` scalars
            and/or `lighting`, AlexNet's PCA coefficients `(3,)`.
        centre: float32 `(Gf, 2L)` stored field means in quantised units (with
            `cfg.stored_means` "all" or "mixed"), else `None`.
        has_centre: scalar bool, whether `centre` holds this video's means
            (read with `cfg.stored_means == "mixed"`).

    Returns:
        A dict modality -> float32 `(len(crops), G, H, W, C)`.
    """
    size = cfg.image_size
    out = {}
    single = len(crops) == 1
    if cfg.need_rgb:
        groups, span = rgb_index.shape
        if cfg.video_files:
            # Frame i of a folder (img_{i:05d}.jpg, 1-based) is frame i - 1 of the video.
            decoded = video_source.frames_op(
                directory, tf.reshape(rgb_index, [-1]) - 1, cfg.video_short_side
            )  # [G*Dr, h, w, 3]
            shape = tf.shape(decoded)
            windows = [
                augment.crop_window(
                    shape[1], shape[2], c["scale_h"], c["scale_w"], c["quarter_y"], c["quarter_x"]
                )
                for c in crops
            ]
            decoded_windowed = False
        else:
            names = tf.strings.as_string(rgb_index, width=frames.INDEX_DIGITS, fill="0")
            files = tf.strings.join([directory, "/", frames.RGB_PREFIX, names, frames.FRAME_SUFFIX])
            contents = _read(files, groups * span)
            windows = _windows(contents[0], crops)
            # One view: decode only the window (tf.io.decode_and_crop_jpeg).
            decoded = tf.stack(_decode(contents, 3, windows[0] if single else None))
            decoded_windowed = single
        rgb_views, diff_views = [], []
        for crop, window in zip(crops, windows, strict=True):
            x = _cut(decoded, None if decoded_windowed else window, crop["flip"], size)
            if jitter is not None:
                x = x / 255.0
                if "brightness" in jitter:
                    x = augment.adjust_color(
                        x, jitter["brightness"], jitter["contrast"], jitter["saturation"]
                    )
                if "lighting" in jitter:
                    x = augment.adjust_lighting(x, jitter["lighting"])
                x = 255.0 * x
            x = augment.normalize_rgb(x, cfg.rgb_normalization)
            if span == 1:  # a reshape, not a strided copy
                rgb_views.append(tf.reshape(x, [groups, size[0], size[1], 3]))
                continue
            x = tf.reshape(x, [groups, span, size[0], size[1], 3])
            rgb_views.append(x[:, 0])
            if "rgb_diff" in cfg.modalities:
                diff = x[:, 1:] - x[:, :-1]  # [G, D, h, w, 3]
                diff = tf.transpose(diff, [0, 2, 3, 1, 4])  # [G, D, h, w, 3] -> [G, h, w, D, 3]
                diff_views.append(tf.reshape(diff, [groups, size[0], size[1], 3 * (span - 1)]))
        if "rgb" in cfg.modalities:
            out["rgb"] = _stack(rgb_views)
        if diff_views:
            out["rgb_diff"] = _stack(diff_views)
    if cfg.need_flow:
        out["flow"] = _flow_views(cfg, directory, flow_index, bound, crops, centre, has_centre)
    return out


def _flow_views(cfg, directory, flow_index, bound, crops, centre, has_centre):
    """The flow part of `_decode_views`: float32 `(len(crops), Gf, H, W, 2L)`.

    Two-stream paper Sect. 3.1, "Mean flow subtraction": each displacement
    field's mean vector, over the whole field, is subtracted. Where the frame
    folder stores those means (`flow_means.npy`, written at extraction) they are
    read from `centre` and a single view decodes only its crop window of each
    field; otherwise (older extractions, other tools) whole fields are decoded
    and averaged here. Both give the same values (tested).
    """
    groups, length = flow_index.shape
    names = tf.strings.as_string(flow_index, width=frames.INDEX_DIGITS, fill="0")
    x_files = tf.strings.join([directory, "/", frames.FLOW_X_PREFIX, names, frames.FRAME_SUFFIX])
    y_files = tf.strings.join([directory, "/", frames.FLOW_Y_PREFIX, names, frames.FRAME_SUFFIX])
    chains = None
    if cfg.bidirectional_flow:
        # Sect. 3.1: the snippet's L indices s..s+L-1 around tau = s + L/2 give the L/2
        # forward fields tau..tau+L/2-1 and the L/2 backward fields tau-1, .., tau-L/2
        # (backward pair i: frame i+1 -> i), in that order (keras_twostream.data.trajectory).
        half = length // 2
        back = names[:, :half][:, ::-1]
        bx = tf.strings.join([directory, "/", frames.BACKWARD_X_PREFIX, back, frames.FRAME_SUFFIX])
        by = tf.strings.join([directory, "/", frames.BACKWARD_Y_PREFIX, back, frames.FRAME_SUFFIX])
        x_files = tf.concat([x_files[:, half:], bx], axis=1)
        y_files = tf.concat([y_files[:, half:], by], axis=1)
        chains = [half, half]
    trajectory = cfg.flow_stacking == "trajectory"
    x_contents = _read(x_files, groups * length)
    y_contents = _read(y_files, groups * length)
    windows = _windows(x_contents[0], crops)
    single = len(crops) == 1

    def decode(window):
        # Eq. (1) of the two-stream paper: channels 2k-1, 2k hold d^x, d^y of field
        # k. The planes are stacked on a leading axis in (segment, field, x/y)
        # order; `_fused_flow` moves that axis last.
        xs = _decode(x_contents, 1, window)
        ys = _decode(y_contents, 1, window)
        planes = [t for i in range(groups * length) for t in (xs[i], ys[i])]
        return tf.stack(planes)[..., 0]  # [2*G*L, H, W] uint8

    def cut(planes, means, decoded_window):
        if decoded_window:  # `planes` holds the one view's window, at the origin
            origins = [tf.zeros([2], tf.int32)]
        else:  # whole fields; each view reads its window out of them
            origins = [w[:2] for w in windows]
        planes = _pad_to_bucket(planes)
        return _cut_flow(cfg, planes, origins, windows, crops, means, bound, groups, length)

    def along_trajectories(planes):
        # Eq. (2), on whole fields at their stored resolution, before any crop.
        return trajectory_planes(planes, bound, groups, length, chains)

    def whole_fields():
        if not cfg.mean_subtract_flow:
            if trajectory:
                return cut(along_trajectories(decode(None)), None, False)
            # No mean needed: one view decodes only its window.
            return cut(decode(windows[0] if single else None), None, single)
        planes = decode(None)
        # Each whole field's mean, in quantised units: the dequantisation
        # d = (q - 127.5) * 2b/255 is affine and bilinear resizing preserves
        # constants, so (q - mean(q)) * 2b/255 on the resized window is exact.
        # (An XLA reduction here measured 7x slower than TensorFlow's.)
        means = tf.reduce_mean(tf.cast(planes, tf.float32), axis=[1, 2])
        if trajectory:
            # The raw fields' means: sampling a field minus its mean (bilinear weights
            # sum to 1) equals the sampled field minus that mean.
            planes = along_trajectories(planes)
        return cut(planes, tf.reshape(means, [groups, 2 * length]), False)

    def stored_means():
        return cut(decode(windows[0] if single else None), centre, single)

    if cfg.stored_means == "all":
        return stored_means()
    if cfg.stored_means == "mixed":
        return tf.cond(tf.cast(has_centre, tf.bool), stored_means, whole_fields)
    return whole_fields()


_BUCKET = 64


def _pad_to_bucket(planes):
    """Pads `[P, h, w]` on the bottom and right to multiples of 64 pixels.

    `_fused_flow` is compiled once per input shape; padding the crop windows
    (TSN's four scales give ten window sizes per frame size) and whole frames
    (whose widths vary with the aspect ratio) to a few bucket sizes bounds the
    compilations. The padding is never read.
    """
    shape = tf.shape(planes)
    pad_h = -shape[1] % _BUCKET
    pad_w = -shape[2] % _BUCKET
    return tf.pad(planes, [[0, 0], [0, pad_h], [0, pad_w]])


def _resize_axis(in_size, out_size, origin, flip=None):
    """Source indices and weights of `tf.image.resize` (bilinear) along one axis.

    TensorFlow's ResizeBilinear with half-pixel centres: output `i` samples the
    input at `p = (i + 0.5) * (in_size / out_size) - 0.5`, between pixels
    `lower = max(floor(p), 0)` and `upper = min(ceil(p), in_size - 1)` with
    weight `lerp = p - floor(p)` on `upper`. The same float32 operations as the
    kernel, so the indices and weights are bit-identical (tested). `flip`
    mirrors the input (index `k` reads `in_size - 1 - k`: exactly the resize of
    the mirrored image); `origin` offsets the indices into a larger array.

    Returns:
        `(lower, upper, lerp)`: int32, int32, float32 vectors of `out_size`.
    """
    in_size = tf.cast(in_size, tf.int32)
    scale = tf.cast(in_size, tf.float32) / float(out_size)
    position = (tf.range(out_size, dtype=tf.float32) + 0.5) * scale - 0.5
    low = tf.floor(position)
    lerp = position - low
    lower = tf.maximum(tf.cast(low, tf.int32), 0)
    upper = tf.minimum(tf.cast(tf.math.ceil(position), tf.int32), in_size - 1)
    if flip is not None:
        flip = tf.cast(flip, tf.bool)
        lower = tf.where(flip, in_size - 1 - lower, lower)
        upper = tf.where(flip, in_size - 1 - upper, upper)
    return lower + origin, upper + origin, lerp


@tf.function(jit_compile=True)
def _fused_flow(planes, rows, cols, centre, factor):
    """Crop, flip, resize, channels-last and dequantise flow planes in one pass.

    One XLA kernel instead of five TensorFlow ops (mirror, transpose, resize,
    subtract, multiply), each a pass over the frames: the output is written
    once. The interpolation is TensorFlow's (same indices and weights, see
    `_resize_axis`, and the kernel's order of operations: along x in the upper
    and lower rows, then along y); XLA may fuse a multiply-add, which moves a
    value by at most 3e-5 quantisation levels.

    Args:
        planes: uint8 `[G*2L, H, W]` flow planes in (segment, field, x/y) order.
        rows: `(lower, upper, lerp)` of the `S0` output rows (`_resize_axis`).
        cols: `(lower, upper, lerp)` of the `S1` output columns.
        centre: float32 `[G, 2L]`, subtracted per plane (quantised units).
        factor: float32 `[2L]`, multiplied per channel.

    Returns:
        float32 `[G, S0, S1, 2L]`: `(resized planes - centre) * factor`.
    """
    groups, channels = centre.shape
    y0, y1, wy = rows
    x0, x1, wx = cols
    q = tf.cast(planes, tf.float32)
    top = tf.gather(q, y0, axis=1)  # [P, S0, W]
    bottom = tf.gather(q, y1, axis=1)
    top_left = tf.gather(top, x0, axis=2)  # [P, S0, S1]
    top = top_left + (tf.gather(top, x1, axis=2) - top_left) * wx
    bottom_left = tf.gather(bottom, x0, axis=2)
    bottom = bottom_left + (tf.gather(bottom, x1, axis=2) - bottom_left) * wx
    q = top + (bottom - top) * wy[:, None]
    size = (y0.shape[0], x0.shape[0])
    # [G*2L, S0, S1] -> [G, S0, S1, 2L]
    q = tf.transpose(tf.reshape(q, [groups, channels, size[0], size[1]]), [0, 2, 3, 1])
    return (q - centre[:, None, None, :]) * factor


def _cut_flow(cfg, planes, origins, windows, crops, centre, bound, groups, length):
    """Views of uint8 flow planes: crop, flip, resize, dequantise.

    Args:
        planes: uint8 `[2GL, H, W]`, whole fields or one view's decoded window
            (padded: only the windows are read).
        origins: per view, int32 `[y, x]` of its window in `planes`.
        windows: per view, its window `[y, x, h, w]` (its size is used).
        centre: float32 `[G, 2L]` field means in quantised units, or `None`
            (no mean subtraction: the quantisation midpoint 127.5).

    Returns:
        float32 `(len(crops), G, H, W, 2L)`: `(q - centre) * 2b/255` (divided by
        `b` with `flow_normalization="bound"`; `(q - centre) / 128` with
        `"mmaction"`, whose centre without mean subtraction is 128, not the
        quantisation midpoint), flow-x negated in mirrored views.
    """
    size = cfg.image_size
    bound = tf.cast(bound, tf.float32)
    scale = 2.0 * bound / 255.0
    midpoint = 127.5
    if cfg.flow_normalization == "bound":
        scale = scale / bound
    elif cfg.flow_normalization == "mmaction":
        scale = tf.constant(1.0 / MMACTION2_FLOW_STD)
        midpoint = MMACTION2_FLOW_MEAN
    if centre is None:
        centre = tf.fill([groups, 2 * length], midpoint)
    flip_sign = tf.constant([-1.0, 1.0] * length)  # a mirror negates flow-x
    views = []
    for crop, origin, window in zip(crops, origins, windows, strict=True):
        flip = tf.cast(crop["flip"], tf.bool)
        rows = _resize_axis(window[2], size[0], origin[0])
        cols = _resize_axis(window[3], size[1], origin[1], flip)
        factor = scale * tf.where(flip, flip_sign, tf.ones_like(flip_sign))
        views.append(_fused_flow(planes, rows, cols, centre, factor))
    return _stack(views)


def _op_message(error):
    """A TensorFlow error's message without the function-node prefix and op suffix."""
    message = getattr(error, "message", None) or str(error)
    message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", message)
    return re.sub(r"\s*\[Op:\w+\]", "", message).strip()
