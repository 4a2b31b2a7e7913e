"""Multi-scale pyramid attention (MPA), Figure 3 and Eqs. (6)-(7) of the RGB-only two-stream paper."""

import numbers

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_twostream")
class PyramidAttention(keras.layers.Layer):
    """Multi-scale pyramid attention over the feature map of one backbone stage.

    The MPA unit of the RGB-only two-stream paper with multi-scale pyramid
    attention and semantic adversarial learning (MPA+SAL), Figure 3 and
    Eqs. (6)-(7). On a stage's feature map `f`, T extractors
    `l_t` see the map at T scales; their outputs are summed with learned
    weights `beta_t` and merged by a 1x1 convolution `tau` into attention
    weights `h` of the same shape as `f`:

        h = tau(sum_t beta_t * l_t(f; W_att^t))                   (Eq. 6)
        output = h * f                                            (Eq. 7)

    The paper leaves `l_t`, the combination and `tau`'s activation open;
    this layer chooses:

    - `l_t` is a pyramid-pooling branch (as PSPNet's pyramid pooling
      module): average pooling with window and stride `scales[t]` (scale 1
      is the map itself), a 1x1 convolution `W_att^t` to `filters` channels
      with ReLU, and nearest-neighbour upsampling back to the map's size.
      Pooling with stride `s` sees context `s` times wider at no extra
      weights, cheaply (a dilated 3x3 convolution of the same reach costs 9x
      the weights), and nearest upsampling is exact on every backend.
    - `beta_t` are free scalars initialised to `1/T`, so the initial sum is
      the mean of the branches; Eq. (6) sums the branches, and Figure 3's
      "concatenate then 1x1 convolution" is the same map with tied kernels.
    - `tau` is a 1x1 convolution back to the input channels with a sigmoid,
      so `h` is an elementwise weight in (0, 1) per location and channel, as
      in the residual attention networks the paper builds on.
    - `residual=True` returns `(1 + h) * f` (the attention residual learning
      of Wang et al., CVPR 2017) instead of Eq. (7)'s `h * f`, which keeps
      a pretrained backbone's features intact when the unit is plugged in.

    Args:
        scales: pooling factors of the T extractors, positive integers
            (1 = full resolution). A factor at least the map size pools the
            whole map (global context). Defaults to `(1, 2, 4)`.
        filters: channels of each extractor's 1x1 convolution `W_att^t`.
            `None` (the default) uses `max(1, channels // 4)`.
        activation: activation of `tau`, anything `keras.activations.get`
            accepts. Defaults to `"sigmoid"`.
        residual: return `(1 + h) * f` instead of `h * f`. Defaults to
            `False` (Eq. 7).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a feature map `(batch, height, width, channels)`.
        return_attention_scores: also return the attention weights `h`.

    Returns:
        The refined map `h * f` (or `(1 + h) * f`), shaped as `inputs`; with
        `return_attention_scores=True` a tuple `(refined, h)`.

    Example:

    >>> import numpy as np
    >>> import keras_twostream
    >>> layer = keras_twostream.layers.PyramidAttention(scales=(1, 2, 4))
    >>> refined, h = layer(np.random.rand(2, 7, 7, 16).astype("float32"),
    ...                    return_attention_scores=True)
    >>> tuple(refined.shape), tuple(h.shape)
    ((2, 7, 7, 16), (2, 7, 7, 16))
    """

    def __init__(
        self, scales=(1, 2, 4), filters=None, activation="sigmoid", residual=False, **kwargs
    ):
        super().__init__(**kwargs)
        if isinstance(scales, numbers.Integral) or not hasattr(scales, "__iter__"):
            raise ValueError(
                f"Expected scales to be a list of positive integers. Received: scales={scales!r}"
            )
        scales = tuple(scales)
        if not scales or any(
            not isinstance(s, numbers.Integral) or isinstance(s, bool) or s < 1 for s in scales
        ):
            raise ValueError(
                f"Expected scales to be a non-empty list of positive integers. Received: scales={scales!r}"
            )
        if len(set(scales)) != len(scales):
            raise ValueError(f"Expected scales to be distinct. Received: scales={scales!r}")
        if filters is not None and (
            not isinstance(filters, numbers.Integral) or isinstance(filters, bool) or filters < 1
        ):
            raise ValueError(
                f"Expected filters to be None or a positive integer. Received: filters={filters!r}"
            )
        if not isinstance(residual, bool):
            raise ValueError(
                f"Expected residual to be True or False. Received: residual={residual!r}"
            )
        self.scales = tuple(int(s) for s in scales)
        self.filters = None if filters is None else int(filters)
        self.activation = keras.activations.get(activation)
        self.residual = residual

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                "PyramidAttention expects a feature map (batch, height, width, channels) with known "
                f"channels. Received input shape: {tuple(input_shape)}"
            )
        channels = input_shape[-1]
        width = self.filters if self.filters is not None else max(1, channels // 4)
        self.branch_convs = []
        for t in range(len(self.scales)):
            conv = keras.layers.Conv2D(
                width, 1, activation="relu", dtype=self.dtype_policy, name=f"branch_{t}_conv"
            )  # W_att^t of Eq. (6)
            conv.build(tuple(input_shape))
            self.branch_convs.append(conv)
        self.beta = self.add_weight(
            name="beta",
            shape=(len(self.scales),),
            initializer=keras.initializers.Constant(1.0 / len(self.scales)),
        )  # beta_t of Eq. (6)
        self.tau = keras.layers.Conv2D(channels, 1, dtype=self.dtype_policy, name="tau")
        self.tau.build(tuple(input_shape[:3]) + (width,))

    def _extract(self, inputs, scale, conv):
        # l_t(f): pool by `scale`, 1x1 conv + ReLU, nearest upsampling to the input size.
        if scale == 1:
            return conv(inputs)
        shape = ops.shape(inputs)
        height, width = shape[1], shape[2]
        # [B, H, W, C] -> [B, ceil(H/s), ceil(W/s), C]
        pooled = ops.average_pool(inputs, scale, strides=scale, padding="same")
        branch = conv(pooled)
        # [B, ceil(H/s), ceil(W/s), F] -> [B, s*ceil(H/s), s*ceil(W/s), F]
        branch = ops.repeat(ops.repeat(branch, scale, axis=1), scale, axis=2)
        # "same" pooling pads (s*ceil(H/s) - H) // 2 rows before the map: drop as many to re-align.
        top = ((-height) % scale) // 2
        left = ((-width) % scale) // 2
        return branch[:, top : top + height, left : left + width, :]

    def call(self, inputs, return_attention_scores=False):
        beta = ops.cast(self.beta, self.compute_dtype)
        merged = 0.0
        for t, (scale, conv) in enumerate(zip(self.scales, self.branch_convs, strict=True)):
            # Eq. (6): sum_t beta_t l_t(f; W_att^t)
            merged = merged + beta[t] * self._extract(inputs, scale, conv)
        h = self.activation(self.tau(merged))  # Eq. (6): tau, [B, H, W, C]
        refined = (1.0 + h) * inputs if self.residual else h * inputs  # Eq. (7): h . f
        if return_attention_scores:
            return refined, h
        return refined

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, inputs, return_attention_scores=False):
        refined = keras.KerasTensor(tuple(inputs.shape), dtype=self.compute_dtype)
        if return_attention_scores:
            return refined, keras.KerasTensor(tuple(inputs.shape), dtype=self.compute_dtype)
        return refined

    def get_config(self):
        return {
            **super().get_config(),
            "scales": list(self.scales),
            "filters": self.filters,
            "activation": keras.activations.serialize(self.activation),
            "residual": self.residual,
        }
