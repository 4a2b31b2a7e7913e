"""Local response normalisation across channels (AlexNet, Sect. 3.3)."""

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="keras_twostream")
class LocalResponseNormalization(keras.layers.Layer):
    """Normalises each activation by the energy of its neighbouring channels.

    The "brightness normalisation" of Krizhevsky et al. (AlexNet, NIPS 2012,
    Sect. 3.3), used by CNN-M-2048 of the two-stream paper (Simonyan and
    Zisserman 2014, Sect. 5: "local response normalisation uses the same
    settings as [15]"):

        b[..., i] = a[..., i] / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a[..., j]^2)^beta

    with N channels and a window of n = `size` channels centred on channel i,
    clipped at the channel edges. `alpha` multiplies the plain sum of squares, as
    in the AlexNet paper and `tf.nn.local_response_normalization` (with
    `depth_radius=size // 2`, `bias=k`); Caffe's LRN divides alpha by `size`, so a
    Caffe prototxt's `alpha` is `size` times this one (VGG's CNN-M prototxt has
    `alpha: 0.0005`, `k: 2`, which is this layer's default).

    The normaliser is computed in float32 whatever the layer's compute dtype,
    since squared activations overflow float16; the result is cast back.

    Args:
        size: n, the odd number of channels in the window. Defaults to `5`.
        alpha: the scale of the sum of squares. Defaults to `1e-4`.
        beta: the exponent. Defaults to `0.75`.
        k: the additive constant, `> 0`. Defaults to `2.0`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a channels-last tensor of rank >= 2 with a known number of
            channels.

    Returns:
        A tensor of the same shape as `inputs`.

    Example:

    >>> import numpy as np
    >>> import keras_twostream
    >>> layer = keras_twostream.layers.LocalResponseNormalization(size=3, alpha=1.0, beta=1.0, k=1.0)
    >>> x = np.array([[1.0, 2.0, 0.0]], "float32")
    >>> np.round(np.asarray(layer(x)), 4).tolist()  # 1/(1+1+4), 2/(1+1+4+0), 0
    [[0.1667, 0.3333, 0.0]]
    """

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=2.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % 2 == 0:
            raise ValueError(f"Expected size to be a positive odd integer. Received: size={size!r}")
        if not alpha >= 0:
            raise ValueError(f"Expected alpha >= 0. Received: alpha={alpha!r}")
        if not beta >= 0:
            raise ValueError(f"Expected beta >= 0. Received: beta={beta!r}")
        if not k > 0:
            raise ValueError(f"Expected k > 0. Received: k={k!r}")
        self.size = size
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.k = float(k)

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                "LocalResponseNormalization expects a channels-last input of rank >= 2 "
                f"with a known number of channels. Received: input_shape={input_shape}"
            )
        channels = input_shape[-1]
        half = self.size // 2
        index = np.arange(channels)
        # band[j, i] = 1 when channel j lies in the window of channel i (clipped at the edges).
        self._band = (np.abs(index[:, None] - index[None, :]) <= half).astype("float32")
        self.built = True

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        # sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a_j^2 as one matmul with the 0/1 band
        # matrix: faster forward and backward than summing n shifted slices.
        window_sum = ops.matmul(ops.square(x), ops.convert_to_tensor(self._band))
        # AlexNet Sect. 3.3: a_i / (k + alpha * sum) ** beta, written as exp(-beta * log(.))
        # (the base is >= k > 0), whose gradient is cheaper than that of a general power.
        scale = ops.exp(-self.beta * ops.log(self.k + self.alpha * window_sum))
        return ops.cast(x * scale, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "size": self.size,
            "alpha": self.alpha,
            "beta": self.beta,
            "k": self.k,
        }
