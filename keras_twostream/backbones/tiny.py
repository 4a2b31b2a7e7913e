"""A tiny ResNet-like network for tests and CPU demos.

Same layout and layer-naming scheme as ResNet v1 (stem, four stages "res2" ...
"res5" with overall strides 4, 8, 16, 32, global average pool), but 3x3 stem,
one basic residual block (two 3x3 convolutions, He et al. 2016 Fig. 5 left)
per stage and 8/16/32/64 channels: under 0.1M parameters; a 112x112 input
ends at 4x4 in res5.
"""

import functools

import keras

from keras_twostream.backbones.resnet import apply_global_pool
from keras_twostream.backbones.resnet import batch_norm as _resnet_batch_norm


def batch_norm(name, synchronized=False):
    # A tiny network trains from scratch for a few hundred steps: with Keras' default
    # momentum 0.99 the moving statistics still carry ~10% of their initial (0, 1) after
    # 200 steps, far from the small variances of an untrained net, and inference-mode
    # accuracy collapses to chance. Momentum 0.9 converges within a few dozen steps.
    return _resnet_batch_norm(name, synchronized, momentum=0.9)


TINY_FILTERS = (8, 16, 32, 64)


def apply_tiny_stem(x, synchronized=False):
    x = keras.layers.Conv2D(
        TINY_FILTERS[0], 3, strides=2, padding="same", use_bias=False, name="conv1_conv"
    )(x)
    x = batch_norm("conv1_bn", synchronized)(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    return keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1_pool")(x)


def apply_basic_block(x, filters, stride=1, synchronized=False, name=None):
    """A basic residual block: 3x3 conv, BN, ReLU, 3x3 conv, BN, add, ReLU."""
    if stride != 1 or x.shape[-1] != filters:
        # The projection shortcut, a 1x1 convolution with stride 2, written as the identical
        # subsample-then-1x1-convolution: TensorFlow 2.21's oneDNN kernel for an 8->16 channel
        # strided 1x1 convolution corrupts the heap in training when the batch is odd (measured
        # here: batch 3 or 9 crashes with "corrupted size vs. prev_size"; batch 4 is fine).
        if stride != 1:
            x_sub = keras.layers.MaxPooling2D(1, strides=stride, name=f"{name}_0_subsample")(x)
        else:
            x_sub = x
        shortcut = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_0_conv")(x_sub)
        shortcut = batch_norm(f"{name}_0_bn", synchronized)(shortcut)
    else:
        shortcut = x
    x = keras.layers.Conv2D(
        filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_1_conv"
    )(x)
    x = batch_norm(f"{name}_1_bn", synchronized)(x)
    x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(x)
    x = batch_norm(f"{name}_2_bn", synchronized)(x)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


def tiny_block_specs(architecture="tiny", synchronized=False, **unused):
    """Block specs and stage ends of the tiny network.

    Blocks: `"stem"`, `"conv2_block1"` ... `"conv5_block1"`, `"head"`.
    """
    specs = [("stem", functools.partial(apply_tiny_stem, synchronized=synchronized))]
    stage_ends = {}
    for stage_index, filters in enumerate(TINY_FILTERS, start=2):
        block_name = f"conv{stage_index}_block1"
        apply_fn = functools.partial(
            apply_basic_block,
            filters=filters,
            stride=1 if stage_index == 2 else 2,
            synchronized=synchronized,
            name=block_name,
        )
        specs.append((block_name, apply_fn))
        stage_ends[f"res{stage_index}"] = block_name
    specs.append(("head", apply_global_pool))
    return specs, stage_ends
