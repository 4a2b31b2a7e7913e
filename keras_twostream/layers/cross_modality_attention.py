"""The cross-modality attention (CMA) block of Chi et al., "Two-Stream Video
Classification with Cross-Modality Attention" (ICCV Workshops 2019)."""

import math
import numbers

import keras
from keras import ops


def _is_positive_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def _pooled_size(size, pool_size):
    """Length of an axis after a `padding="same"` max-pool of stride `pool_size`."""
    if size is None:
        return None
    return -(-size // pool_size)


def _num_positions(sizes):
    if any(s is None for s in sizes):
        return None
    return math.prod(sizes)


@keras.saving.register_keras_serializable(package="keras_twostream")
class CrossModalityAttention(keras.layers.Layer):
    """Cross-modality attention block: queries from `x`, keys and values from `y`.

    The CMA block of Chi et al. (2019), Sect. 3. Every position `i` of the
    feature map `x` (one modality, e.g. the RGB branch) attends over all
    positions `j` of the feature map `y` (the other modality, e.g. the flow
    branch):

        z_i = sum_j softmax_j(q(x_i) . k(y_j) / sqrt(d_k)) v(y_j)   (Eqs. 1-4)
        out_i = BN(W_out z_i) + x_i                                  (Eq. 5)

    `q`, `k`, `v` and `W_out` are 1x1 (1x1x1 for 3-D maps) convolutions; `q`,
    `k` and `v` have `d_k` output channels, half of `x`'s by default
    (Sect. 3.2). A spatial max-pooling of stride 2 is applied to `y` before `k`
    and `v`. `W_out` is followed by batch normalisation whose scale (gamma) is
    initialised to zero, so a freshly built block returns `x` exactly and can
    be inserted into a pretrained network without changing it.

    `x` and `y` may differ in spatial size and number of channels; the output
    has `x`'s shape. Called with `y=None` (or `y` being `x`), the block is the
    non-local block of Wang et al. (CVPR 2018), the paper's Table 4 baseline.

    Notes on choices the paper leaves open: Eq. (3) prints the `1/sqrt(d_k)`
    outside the exponential, where the normalisation of Eq. (4) would cancel
    it; the block uses Eq. (1)'s scaled dot product inside the softmax. The
    max-pooling is applied to `y` before the key and value convolutions, as
    Sect. 3.2 states (the non-local block pools after them), with
    `padding="same"` so that no position of `y` is dropped on odd sizes; 3-D
    maps are pooled in space only. Convolution kernels use He initialisation
    (Sect. 4.1: "the same scheme in [9]"); `W_out` has no bias (the
    normalisation that follows absorbs it).

    Args:
        inter_channels: `d_k`, the channels of the queries, keys and values.
            `None` (the default) uses half of `x`'s channels (Sect. 3.2).
        pool_size: the window and stride of the spatial max-pooling applied to
            `y` before the keys and values; 2 in the paper. `None` attends
            over every position of `y` without pooling.
        use_bias: whether the query, key and value convolutions have biases.
        kernel_initializer: initializer of the four convolution kernels.
        bias_initializer: initializer of the query, key and value biases.
        momentum: momentum of the normalisation's moving statistics.
        epsilon: epsilon of the normalisation.
        synchronized: synchronised batch normalisation across replicas
            (TensorFlow `tf.distribute` only), as the paper trains (Sect. 4.4).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        x: the query feature map, `(batch, height, width, channels_x)` or
            `(batch, time, height, width, channels_x)`.
        y: the key/value feature map of the other modality, of the same rank
            and batch as `x`; its spatial size and channels may differ. `None`
            means `x` (self-attention, the non-local block).
        training: whether the normalisation runs in training mode.
        return_attention_scores: also return the attention weights.

    Returns:
        A tensor of `x`'s shape. With `return_attention_scores=True`, a tuple
        `(output, scores)` where `scores` has shape
        `(batch, positions_x, positions_y)`: row `i` holds the softmax weights
        of query position `i` over the (pooled) positions of `y`, both
        flattened in row-major `(time,) height, width` order. The pooled grid
        of `y` is `ceil(size / pool_size)` along each spatial axis.

    Example:

    >>> import numpy as np
    >>> import keras_twostream
    >>> cma = keras_twostream.layers.CrossModalityAttention()
    >>> rgb = np.random.rand(2, 14, 14, 64).astype("float32")
    >>> flow = np.random.rand(2, 14, 14, 32).astype("float32")
    >>> out, scores = cma(rgb, flow, return_attention_scores=True)
    >>> tuple(out.shape), tuple(scores.shape)
    ((2, 14, 14, 64), (2, 196, 49))
    >>> bool(np.array_equal(np.asarray(out), rgb))  # a new block is an identity
    True
    """

    def __init__(
        self,
        inter_channels=None,
        pool_size=2,
        use_bias=True,
        kernel_initializer="he_normal",
        bias_initializer="zeros",
        momentum=0.9,
        epsilon=1e-5,
        synchronized=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if inter_channels is not None and not _is_positive_int(inter_channels):
            raise ValueError(
                "Expected inter_channels to be None or a positive integer. "
                f"Received: inter_channels={inter_channels!r}"
            )
        if pool_size is not None and not _is_positive_int(pool_size):
            raise ValueError(
                "Expected pool_size to be None or a positive integer. "
                f"Received: pool_size={pool_size!r}"
            )
        if not isinstance(use_bias, bool):
            raise ValueError(f"Expected use_bias to be a bool. Received: use_bias={use_bias!r}")
        if not isinstance(synchronized, bool):
            raise ValueError(
                f"Expected synchronized to be a bool. Received: synchronized={synchronized!r}"
            )
        if (
            isinstance(momentum, bool)
            or not isinstance(momentum, numbers.Real)
            or not 0 <= momentum < 1
        ):
            raise ValueError(f"Expected 0 <= momentum < 1. Received: momentum={momentum!r}")
        if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or epsilon <= 0:
            raise ValueError(f"Expected epsilon > 0. Received: epsilon={epsilon!r}")
        self.inter_channels = None if inter_channels is None else int(inter_channels)
        self.pool_size = None if pool_size is None else int(pool_size)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.synchronized = synchronized
        self.supports_masking = False

    def _check_shapes(self, x_shape, y_shape):
        x_shape = tuple(x_shape)
        y_shape = x_shape if y_shape is None else tuple(y_shape)
        if len(x_shape) not in (4, 5):
            raise ValueError(
                "CrossModalityAttention expects x of shape (batch, height, width, channels) or "
                f"(batch, time, height, width, channels). Received: x with shape {x_shape}"
            )
        if len(y_shape) != len(x_shape):
            raise ValueError(
                "CrossModalityAttention expects x and y of the same rank (both 2-D or both 3-D "
                f"feature maps). Received: x with shape {x_shape}, y with shape {y_shape}"
            )
        if x_shape[-1] is None or y_shape[-1] is None:
            raise ValueError(
                "CrossModalityAttention needs the channel axis of x and y to be known. "
                f"Received: x with shape {x_shape}, y with shape {y_shape}"
            )
        return x_shape, y_shape

    def _key_channels(self, x_channels):
        return self.inter_channels or max(int(x_channels) // 2, 1)

    def _pooled_shape(self, y_shape):
        if self.pool_size is None:
            return tuple(y_shape)
        spatial = y_shape[-3:-1]  # pool height and width only (Sect. 3.2: "spatial max-pooling")
        return (
            tuple(y_shape[:-3])
            + tuple(_pooled_size(s, self.pool_size) for s in spatial)
            + (y_shape[-1],)
        )

    def build(self, x_shape, y_shape=None):
        x_shape, y_shape = self._check_shapes(x_shape, y_shape)
        channels = int(x_shape[-1])
        key_channels = self._key_channels(channels)
        three_d = len(x_shape) == 5
        conv = keras.layers.Conv3D if three_d else keras.layers.Conv2D

        def conv1x1(filters, name, use_bias):
            return conv(
                filters,
                1,
                use_bias=use_bias,
                kernel_initializer=self.kernel_initializer,
                bias_initializer=self.bias_initializer,
                dtype=self.dtype_policy,
                name=name,
            )

        # conv_q, conv_k, conv_v of Sect. 3.2: 1x1 (x1) convolutions to d_k channels.
        self.query_conv = conv1x1(key_channels, "query", self.use_bias)
        self.key_conv = conv1x1(key_channels, "key", self.use_bias)
        self.value_conv = conv1x1(key_channels, "value", self.use_bias)
        # W_out of Eq. (5), followed by BN with zero-initialised scale.
        self.output_conv = conv1x1(channels, "output", False)
        self.output_norm = keras.layers.BatchNormalization(
            momentum=self.momentum,
            epsilon=self.epsilon,
            gamma_initializer="zeros",
            synchronized=self.synchronized,
            dtype=self.dtype_policy,
            name="output_norm",
        )
        if self.pool_size is None:
            self.key_pool = None
        elif three_d:
            window = (1, self.pool_size, self.pool_size)
            # float32: TensorFlow has no float16 MaxPool3D kernel on CPU (mixed_float16 fails
            # there); the key convolution casts the pooled map back to the compute dtype.
            self.key_pool = keras.layers.MaxPooling3D(
                window, strides=window, padding="same", dtype="float32", name="key_pool"
            )
        else:
            self.key_pool = keras.layers.MaxPooling2D(
                self.pool_size,
                strides=self.pool_size,
                padding="same",
                dtype=self.dtype_policy,
                name="key_pool",
            )

        pooled = self._pooled_shape(y_shape)
        self.query_conv.build(x_shape)
        if self.key_pool is not None:
            self.key_pool.build(y_shape)
        self.key_conv.build(pooled)
        self.value_conv.build(pooled)
        self.output_conv.build(tuple(x_shape[:-1]) + (key_channels,))
        self.output_norm.build(x_shape)

    def call(self, x, y=None, training=None, return_attention_scores=False):
        if y is None:
            y = x  # the non-local block: self-attention within one modality
        key_channels = self.query_conv.filters
        query_map = self.query_conv(x)  # [B, (T,) Hx, Wx, d_k]
        if self.key_pool is not None:
            y = self.key_pool(y)  # [B, (T,) Hy, Wy, Cy] -> [B, (T,) Hy/2, Wy/2, Cy]
        batch = ops.shape(x)[0]
        # Flatten positions: [B, (T,) H, W, d_k] -> [B, N, d_k]
        query = ops.reshape(query_map, (batch, -1, key_channels))
        key = ops.reshape(self.key_conv(y), (batch, -1, key_channels))
        value = ops.reshape(self.value_conv(y), (batch, -1, key_channels))
        # Eq. (1): softmax(Q K^T / sqrt(d_k)); the softmax is the f / C(x, y) of Eqs. (2)-(4).
        query = query * ops.cast(1.0 / math.sqrt(key_channels), query.dtype)
        logits = ops.matmul(query, ops.transpose(key, (0, 2, 1)))  # [B, Nx, Ny]
        scores = ops.softmax(ops.cast(logits, "float32"), axis=-1)
        z = ops.matmul(ops.cast(scores, value.dtype), value)  # Eq. (2): [B, Nx, d_k]
        z = ops.reshape(z, ops.shape(query_map))  # -> [B, (T,) Hx, Wx, d_k]
        # Eq. (5): out = W_out z + x, with BN after W_out (Sect. 3.2).
        out = self.output_norm(self.output_conv(z), training=training) + x
        if return_attention_scores:
            return out, scores
        return out

    def compute_output_shape(self, x_shape, y_shape=None):
        x_shape, _ = self._check_shapes(x_shape, y_shape)
        return x_shape

    def compute_output_spec(self, x, y=None, training=None, return_attention_scores=False):
        x_shape, y_shape = self._check_shapes(x.shape, None if y is None else y.shape)
        output = keras.KerasTensor(x_shape, dtype=self.compute_dtype)
        if not return_attention_scores:
            return output
        pooled = self._pooled_shape(y_shape)
        scores_shape = (x_shape[0], _num_positions(x_shape[1:-1]), _num_positions(pooled[1:-1]))
        return output, keras.KerasTensor(scores_shape, dtype="float32")

    def get_config(self):
        return {
            **super().get_config(),
            "inter_channels": self.inter_channels,
            "pool_size": self.pool_size,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "synchronized": self.synchronized,
        }
