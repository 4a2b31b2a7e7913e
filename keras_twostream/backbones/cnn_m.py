"""CNN-M-2048, the network of both streams of the two-stream paper, cut into blocks.

Two-stream paper (Simonyan and Zisserman, NIPS 2014), Fig. 1 and Sect. 5; the
architecture is CNN-M of Chatfield et al. (BMVC 2014, Table 1) with a
2048-wide full7:

    conv1  96 x 7x7, stride 2, pad 0   ReLU  LRN    max-pool 3x3/2
    conv2 256 x 5x5, stride 2, pad 1   ReLU  LRN*   max-pool 3x3/2
    conv3 512 x 3x3, stride 1, pad 1   ReLU
    conv4 512 x 3x3, stride 1, pad 1   ReLU
    conv5 512 x 3x3, stride 1, pad 1   ReLU         max-pool 3x3/2
    full6 4096  ReLU  dropout
    full7 2048  ReLU  dropout

(*) the temporal stream drops the second normalisation layer (Sect. 5). LRN
uses AlexNet's settings (size 5, alpha 1e-4, beta 0.75, k 2; "the same
settings as [15]").

Padding. The paper's figure gives filter sizes and strides only; the
paddings (0 for conv1, 1 for conv2 to conv5) are Chatfield et al.'s and the
max-pools round their output size up like Caffe's (`ceil((n - 3) / 2) + 1`).
Caffe's rounding is reproduced exactly by zero-padding the bottom/right edge
by one pixel when the pooled size is even (inputs are >= 0 after ReLU and
LRN, so a zero pad never wins the max) and pooling with "valid" padding.
With a 224x224 input the feature maps are:

    conv1 109x109x96 -> pool1 54x54x96
    conv2 26x26x256  -> pool2 13x13x256   (Caffe rounding; floor would give 12)
    conv3, conv4, conv5 13x13x512 -> pool5 6x6x512 (18432 inputs to full6)

so the paper's 13x13x512 is the conv5 map before pool5. Stage outputs
`"conv1"` ... `"conv5"` are the blocks' outputs, after their max-pool where
there is one (like VGG-16's stages).
"""

import functools

import keras

from keras_twostream.backbones.vgg import apply_fc_head
from keras_twostream.layers.local_response_normalization import LocalResponseNormalization


def caffe_pool_size(size):
    """Output size of Caffe's 3x3/2 max-pool (rounding up) on `size` pixels."""
    return -(-(size - 3) // 2) + 1


def _caffe_pool_padding(size):
    # Bottom/right padding that makes a "valid" 3x3/2 pool round up like Caffe.
    return (caffe_pool_size(size) - 1) * 2 + 3 - size


def cnn_m_feature_sizes(size):
    """Spatial sizes after conv1, pool1, conv2, pool2, conv5, pool5 for an input side `size`.

    Returns `None` when `size` is too small for the network.
    """
    conv1 = (size - 7) // 2 + 1
    if conv1 < 2:
        return None
    pool1 = caffe_pool_size(conv1)
    conv2 = (pool1 + 2 - 5) // 2 + 1
    if conv2 < 2:
        return None
    pool2 = caffe_pool_size(conv2)
    if pool2 < 2:
        return None
    pool5 = caffe_pool_size(pool2)
    return {
        "conv1": conv1,
        "pool1": pool1,
        "conv2": conv2,
        "pool2": pool2,
        "conv5": pool2,
        "pool5": pool5,
    }


MIN_INPUT_SIZE = next(n for n in range(1, 1000) if cnn_m_feature_sizes(n) is not None)


def apply_caffe_max_pool(x, name):
    """3x3/2 max-pool with Caffe's round-up output size (inputs must be >= 0)."""
    pad_h = _caffe_pool_padding(x.shape[1])
    pad_w = _caffe_pool_padding(x.shape[2])
    if pad_h or pad_w:
        x = keras.layers.ZeroPadding2D(((0, pad_h), (0, pad_w)), name=f"{name}_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, padding="valid", name=name)(x)


def lrn(name):
    # AlexNet Sect. 3.3 settings, as the two-stream paper's Sect. 5 prescribes.
    return LocalResponseNormalization(size=5, alpha=1e-4, beta=0.75, k=2.0, name=name)


def apply_cnn_m_conv1(x):
    x = keras.layers.Conv2D(96, 7, strides=2, padding="valid", activation="relu", name="conv1")(x)
    x = lrn("norm1")(x)
    return apply_caffe_max_pool(x, "pool1")


def apply_cnn_m_conv2(x, normalize=True):
    x = keras.layers.ZeroPadding2D(1, name="conv2_pad")(x)
    x = keras.layers.Conv2D(256, 5, strides=2, padding="valid", activation="relu", name="conv2")(x)
    if normalize:
        x = lrn("norm2")(x)
    return apply_caffe_max_pool(x, "pool2")


def apply_cnn_m_conv(x, index, pool=False):
    # 3x3, stride 1, pad 1 == "same".
    x = keras.layers.Conv2D(
        512, 3, strides=1, padding="same", activation="relu", name=f"conv{index}"
    )(x)
    if pool:
        x = apply_caffe_max_pool(x, f"pool{index}")
    return x


def cnn_m_2048_block_specs(
    architecture="cnn_m_2048", input_shape=None, stream="spatial", dropout=0.0, **unused
):
    """Block specs and stage ends of CNN-M-2048.

    Blocks (= stages) `"conv1"` ... `"conv5"` and `"head"` (flatten -> full6
    (4096) -> full7 (2048)).
    """
    for axis, size in zip(("height", "width"), input_shape[:2], strict=True):
        if cnn_m_feature_sizes(size) is None:
            raise ValueError(
                f"cnn_m_2048 needs an input {axis} of at least {MIN_INPUT_SIZE} pixels. "
                f"Received: input_shape={tuple(input_shape)}"
            )
    specs = [
        ("conv1", apply_cnn_m_conv1),
        # Sect. 5: the temporal ConvNet has no second normalisation layer.
        ("conv2", functools.partial(apply_cnn_m_conv2, normalize=stream != "temporal")),
        ("conv3", functools.partial(apply_cnn_m_conv, index=3)),
        ("conv4", functools.partial(apply_cnn_m_conv, index=4)),
        ("conv5", functools.partial(apply_cnn_m_conv, index=5, pool=True)),
        (
            "head",
            functools.partial(
                apply_fc_head, units=(4096, 2048), names=("full6", "full7"), dropout=dropout
            ),
        ),
    ]
    return specs, {f"conv{i}": f"conv{i}" for i in range(1, 6)}
