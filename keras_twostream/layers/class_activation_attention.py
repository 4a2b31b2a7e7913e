"""Spatial-level attention by class activation mapping (TCLSTA, Peng et al. 2018, Sect. III-A-2)."""

import numbers

import keras
from keras import ops

ATTENTION_CLASSES = ("predicted", "expected")


def _is_positive_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


@keras.saving.register_keras_serializable(package="keras_twostream")
class ClassActivationAttention(keras.layers.Layer):
    """CAM branch of TCLSTA: class scores and the normalised spatial attention map.

    The spatial-level attention network of Peng et al., "Two-Stream
    Collaborative Learning with Spatial-Temporal Attention for Video
    Classification" (IEEE TCSVT 2018), Sect. III-A-2 and Table III, after the
    class activation mapping (CAM) of Zhou et al. (CVPR 2016). On the last
    feature map of a backbone it runs a convolution ("CAM conv", 3x3, 1024
    filters, ReLU as in CAM), global average pooling and a linear classifier
    (the input of the softmax layer), then builds for one class `c`

        m_c(x, y) = sum_k w_k^c a_k(x, y)                       (Eq. 2)
        m~_c(x, y) = g * exp(m_c(x, y)) / sum_xy exp(m_c(x, y))  (Eq. 3)

    where `a_k` are the CAM conv activations, `w^c` the classifier weights of
    class `c` and `g` the number of locations, so that `m~_c` sums to `g` over
    the map and a uniform map is all ones. The classifier's bias is constant
    over locations and drops out of Eq. (3).

    The paper does not say which class `c` gives the map during training and
    at inference (labels are not an input of a video classifier at test
    time). `attention_class="predicted"` (the default) uses, for every frame,
    the class the CAM classifier scores highest, in training and at inference
    alike, so the model computes the same function in both and needs no
    labels; `"expected"` uses the expectation of `m_c` under the CAM softmax,
    `sum_c p_c m_c`, which is differentiable with respect to the class choice.

    Args:
        num_classes: number of classes of the CAM classifier.
        filters: filters of the CAM conv layer (1024 in the paper).
        kernel_size: kernel size of the CAM conv layer (3 in the paper).
        attention_class: `"predicted"` or `"expected"`, see above.
        kernel_initializer: initializer of the convolution and classifier kernels.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: a feature map `(batch, height, width, channels)`.

    Returns:
        A tuple `(logits, attention)`: the CAM classifier's logits
        `(batch, num_classes)` (apply a softmax for its cross-entropy loss)
        and the attention map `m~_c` of Eq. (3), `(batch, height, width)`.

    Example:

    >>> import numpy as np
    >>> import keras_twostream
    >>> cam = keras_twostream.layers.ClassActivationAttention(num_classes=5, filters=16)
    >>> logits, attention = cam(np.random.rand(2, 7, 7, 32).astype("float32"))
    >>> tuple(logits.shape), tuple(attention.shape)
    ((2, 5), (2, 7, 7))
    >>> np.round(np.asarray(attention).sum(axis=(1, 2)), 3).tolist()  # g = 49
    [49.0, 49.0]
    """

    def __init__(
        self,
        num_classes,
        filters=1024,
        kernel_size=3,
        attention_class="predicted",
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        for arg, value in (
            ("num_classes", num_classes),
            ("filters", filters),
            ("kernel_size", kernel_size),
        ):
            if not _is_positive_int(value):
                raise ValueError(
                    f"Expected {arg} to be a positive integer. Received: {arg}={value!r}"
                )
        if attention_class not in ATTENTION_CLASSES:
            raise ValueError(
                f"Expected attention_class to be one of {ATTENTION_CLASSES}. "
                f"Received: attention_class={attention_class!r}"
            )
        self.num_classes = int(num_classes)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.attention_class = attention_class
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                "ClassActivationAttention expects a feature map (batch, height, width, channels). "
                f"Received input shape: {tuple(input_shape)}"
            )
        self.cam_conv = keras.layers.Conv2D(
            self.filters,
            self.kernel_size,
            padding="same",
            activation="relu",
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="cam_conv",
        )
        self.cam_conv.build(input_shape)
        self.classifier = keras.layers.Dense(
            self.num_classes,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="cam_classifier",
        )
        self.classifier.build((input_shape[0], self.filters))

    def call(self, inputs):
        activations = self.cam_conv(inputs)  # a_k(x, y): [B, h, w, K]
        logits = self.classifier(ops.mean(activations, axis=(1, 2)))  # GAP -> s_c (Eq. 1): [B, N]
        if self.attention_class == "predicted":
            choice = ops.one_hot(
                ops.argmax(logits, axis=-1), self.num_classes, dtype=activations.dtype
            )
        else:
            choice = ops.softmax(logits, axis=-1)
        kernel = ops.cast(self.classifier.kernel, activations.dtype)  # [K, N]
        class_weights = ops.matmul(
            choice, ops.transpose(kernel)
        )  # w^c_k of the chosen class: [B, K]
        maps = ops.einsum("bxyk,bk->bxy", activations, class_weights)  # Eq. (2): m_c(x, y)
        shape = ops.shape(maps)
        flat = ops.reshape(maps, (shape[0], -1))  # [B, h, w] -> [B, g]
        locations = ops.cast(ops.shape(flat)[1], flat.dtype)
        # Eq. (3): g * softmax over the g locations (written out: ops.softmax warns when g = 1).
        exp = ops.exp(flat - ops.max(flat, axis=-1, keepdims=True))
        attention = locations * exp / ops.sum(exp, axis=-1, keepdims=True)
        return logits, ops.reshape(attention, shape)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes), tuple(input_shape[:3])

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "attention_class": self.attention_class,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }
