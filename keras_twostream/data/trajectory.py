"""Trajectory stacking and bi-directional flow stacks (two-stream paper, Sect. 3.1, Eq. (2)).

Optical flow stacking (Eq. (1)) samples the `L` displacement fields `d_tau .. d_tau+L-1`
at the same point `(u, v)`. Trajectory stacking (Eq. (2)) samples them along the point's
trajectory instead:

    I_tau(u, v, 2k-1) = d^x_{tau+k-1}(p_k),   I_tau(u, v, 2k) = d^y_{tau+k-1}(p_k),
    p_1 = (u, v),   p_k = p_{k-1} + d_{tau+k-2}(p_{k-1}),  k > 1.

Choices where the paper is silent (documented here and in docs/data.md):

- `p_k` is not on the pixel grid after the first step: fields are sampled there by
  bilinear interpolation (the flow is sub-pixel; rounding would make trajectories
  stick to pixels and jump);
- a trajectory that leaves the frame is clamped to the border: its point is kept at the
  nearest border pixel (sampling there replicates the border), so it goes on sampling
  the flow there rather than zeros;
- trajectories are followed on the stored fields at their stored resolution (before
  cropping, flipping and resizing): the same motion in pixels as at extraction.
  Mirroring commutes with trajectory stacking (x is mirrored and d^x negated in both).
- mean flow subtraction (Sect. 3.1) subtracts each field's mean from the sampled
  values; trajectories follow the raw displacements (bilinear weights sum to one, so
  sampling then subtracting the mean equals sampling the mean-subtracted field).

Bi-directional flow (Sect. 3.1): `L/2` forward fields between frames `tau` and
`tau + L/2` and `L/2` backward fields between `tau - L/2` and `tau`. Channel order
(the paper gives none): the forward fields `d_tau .. d_tau+L/2-1`, then the backward
fields going back in time from `tau`, `b_tau-1, b_tau-2, .., b_tau-L/2` (backward field
`b_i` is the flow from frame `i + 1` to frame `i`), so that with trajectory stacking
both halves are trajectories starting at `(u, v)` in frame `tau`.
"""

import tensorflow as tf


def trajectory_stack(fields, chains=None):
    """Samples stacked flow fields along their trajectories (Eq. (2) of the two-stream paper).

    Args:
        fields: float32 `[..., L, H, W, 2]` displacement fields in pixels, `(d^x, d^y)`,
            in the order the trajectory visits them (`d_tau, d_tau+1, ...`).
        chains: lengths of consecutive runs of fields that each form one trajectory
            starting again at the pixel grid, summing to `L` (default: one run of `L`).
            The bi-directional stack uses `[L/2, L/2]`: forward, then backward.

    Returns:
        float32 `[..., L, H, W, 2]`: field `k` of each run sampled (bilinearly, with
        trajectories clamped to the frame) at the point `p_k` of the trajectory that
        starts at each pixel.

    Example:

    >>> import numpy as np
    >>> from keras_twostream.data.trajectory import trajectory_stack
    >>> fields = np.zeros((2, 4, 5, 2), "float32")
    >>> fields[0, ..., 0] = 1.0  # everything moves 1 px right, then
    >>> fields[1, :, 2, 1] = 7.0  # only column 2 of the second field moves down
    >>> out = trajectory_stack(fields).numpy()
    >>> float(out[1, 0, 1, 1]), float(out[1, 0, 2, 1])  # the point from column 1 is at 2
    (7.0, 0.0)
    """
    fields = tf.convert_to_tensor(fields, tf.float32)
    if len(fields.shape) < 4 or fields.shape[-1] != 2:
        raise ValueError(
            f"Expected fields of shape [..., L, H, W, 2]. Received: shape={fields.shape}"
        )
    length = fields.shape[-4]
    chains = [length] if chains is None else [int(c) for c in chains]
    if sum(chains) != length or min(chains) < 1:
        raise ValueError(
            f"Expected chains of lengths >= 1 summing to L={length}. Received: chains={chains}"
        )
    shape = tf.shape(fields)
    flat = tf.reshape(fields, tf.concat([[-1], shape[-4:]], 0))  # [N, L, H, W, 2]
    flat.set_shape([None, length, None, None, 2])
    return tf.reshape(_trajectory_dynamic(flat, chains), shape)


def trajectory_planes(planes, bound, groups, length, chains=None):
    """Trajectory stacking of quantised flow planes, as the pipeline decodes them.

    Args:
        planes: uint8 `[2*G*L, H, W]` planes in (segment, field, x/y) order.
        bound: the quantisation bound (`d = q * 2b/255 - b`).
        groups: `G`.
        length: `L`.
        chains: see `trajectory_stack`.

    Returns:
        float32 `[2*G*L, H, W]` in quantised units (`q = (d + b) * 255/(2b)`, not rounded),
        the same layout, ready for the pipeline's crop/resize/dequantise step.
    """
    bound = tf.cast(bound, tf.float32)
    scale = 2.0 * bound / 255.0
    height, width = tf.shape(planes)[1], tf.shape(planes)[2]
    q = tf.cast(planes, tf.float32)
    # [2GL, H, W] -> [G, L, 2, H, W] -> [G, L, H, W, 2]
    d = tf.transpose(tf.reshape(q, [groups, length, 2, height, width]), [0, 1, 3, 4, 2])
    d = d * scale - bound
    d.set_shape([groups, length, planes.shape[1], planes.shape[2], 2])
    sampled = _trajectory_dynamic(d, chains)
    q = (sampled + bound) / scale
    # [G, L, H, W, 2] -> [G, L, 2, H, W] -> [2GL, H, W]
    return tf.reshape(tf.transpose(q, [0, 1, 4, 2, 3]), [2 * groups * length, height, width])


def _trajectory_dynamic(fields, chains):
    """`trajectory_stack` for fields whose height and width are known only at run time."""
    length = fields.shape[1]
    chains = [length] if chains is None else list(chains)
    height, width = tf.shape(fields)[2], tf.shape(fields)[3]
    max_x = tf.cast(width - 1, tf.float32)
    max_y = tf.cast(height - 1, tf.float32)
    grid_y, grid_x = tf.meshgrid(
        tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij"
    )
    groups = tf.shape(fields)[0]
    grid_x = tf.broadcast_to(grid_x, [groups, height, width])
    grid_y = tf.broadcast_to(grid_y, [groups, height, width])

    def sample(field, x, y):
        x = tf.clip_by_value(x, 0.0, max_x)
        y = tf.clip_by_value(y, 0.0, max_y)
        x0, y0 = tf.floor(x), tf.floor(y)
        wx, wy = (x - x0)[..., None], (y - y0)[..., None]
        x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
        x1, y1 = tf.minimum(x0 + 1, width - 1), tf.minimum(y0 + 1, height - 1)

        def at(yy, xx):
            return tf.gather_nd(field, tf.stack([yy, xx], axis=-1), batch_dims=1)

        top = at(y0, x0) * (1.0 - wx) + at(y0, x1) * wx
        bottom = at(y1, x0) * (1.0 - wx) + at(y1, x1) * wx
        return top * (1.0 - wy) + bottom * wy

    out, k = [], 0
    for chain in chains:
        x, y = grid_x, grid_y
        for _ in range(chain):
            sampled = sample(fields[:, k], x, y)
            out.append(sampled)
            x = tf.clip_by_value(x + sampled[..., 0], 0.0, max_x)
            y = tf.clip_by_value(y + sampled[..., 1], 0.0, max_y)
            k += 1
    return tf.stack(out, axis=1)
