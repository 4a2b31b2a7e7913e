"""A tiny pseudo-3-D ResNet (P3D-A blocks of Qiu et al., ICCV 2017), the 3-D CMA model's branches.

The CMA paper's Sect. 5.6 inserts a 3-D CMA block into a P3D ResNet; `CMA3D`
(`keras_twostream.models.cma`) builds two of these branches (a 1x3x3 stem and
one P3D block per stage) and runs them in lockstep.
"""

import keras

TINY_3D_FILTERS = (8, 16, 32, 64)
_BN_EPSILON = 1.001e-5


def _conv_bn(x, filters, kernel, strides, name, synchronized, relu=True):
    x = keras.layers.Conv3D(
        filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = keras.layers.BatchNormalization(
        epsilon=_BN_EPSILON, synchronized=synchronized, name=f"{name}_bn"
    )(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def apply_p3d_block(x, filters, stride, name, synchronized=False):
    """A pseudo-3-D residual block (P3D-A of Qiu et al. 2017): a 1x3x3 spatial
    convolution followed by a 3x1x1 temporal one, plus the shortcut."""
    strides = (1, stride, stride)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, strides, f"{name}_0", synchronized, relu=False)
    else:
        shortcut = x
    x = _conv_bn(x, filters, (1, 3, 3), strides, f"{name}_1", synchronized)
    x = _conv_bn(x, filters, (3, 1, 1), 1, f"{name}_2", synchronized, relu=False)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


def apply_tiny_p3d_stem(x, prefix, synchronized=False):
    """Stem of the tiny P3D ResNet: 1x3x3 convolution (stride 2 in space) and a 1x3x3 max-pool."""
    x = _conv_bn(x, TINY_3D_FILTERS[0], (1, 3, 3), (1, 2, 2), f"{prefix}_stem", synchronized)
    # float32: TensorFlow registers no float16 MaxPool3D kernel on CPU (mixed_float16 would fail
    # there); a weightless pooling of an 8-channel map costs little to run in float32.
    return keras.layers.MaxPooling3D(
        (1, 3, 3), strides=(1, 2, 2), padding="same", dtype="float32", name=f"{prefix}_stem_pool"
    )(x)
