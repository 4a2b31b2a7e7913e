"""ResNet-50/101 v1 (He et al., CVPR 2016) cut into blocks, as keras.applications builds it.

Layer names, padding, biases and BatchNormalization epsilon follow
`keras.applications.ResNet50/101` exactly, so their ImageNet weights load by
layer name.
"""

import functools

import keras

STACKWISE_NUM_BLOCKS = {
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
}
STACKWISE_FILTERS = (64, 128, 256, 512)
BN_EPSILON = 1.001e-5


def batch_norm(name, synchronized=False, momentum=0.99):
    """The BatchNormalization of keras.applications' ResNet (epsilon 1.001e-5)."""
    return keras.layers.BatchNormalization(
        momentum=momentum, axis=-1, epsilon=BN_EPSILON, synchronized=synchronized, name=name
    )


def apply_stem(x, synchronized=False):
    """conv1 (7x7/2, 64) + BN + ReLU and the 3x3/2 max-pool of ResNet v1."""
    x = keras.layers.ZeroPadding2D(padding=((3, 3), (3, 3)), name="conv1_pad")(x)
    x = keras.layers.Conv2D(64, 7, strides=2, use_bias=True, name="conv1_conv")(x)
    x = batch_norm("conv1_bn", synchronized)(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = keras.layers.ZeroPadding2D(padding=((1, 1), (1, 1)), name="pool1_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)


def apply_bottleneck_block(x, filters, stride=1, conv_shortcut=True, synchronized=False, name=None):
    """One bottleneck residual block of ResNet v1 (1x1, 3x3, 1x1 convolutions).

    The stride sits on the first 1x1 convolution, as in keras.applications'
    `residual_block_v1` (and Caffe's original ResNet).
    """
    if conv_shortcut:
        shortcut = keras.layers.Conv2D(4 * filters, 1, strides=stride, name=f"{name}_0_conv")(x)
        shortcut = batch_norm(f"{name}_0_bn", synchronized)(shortcut)
    else:
        shortcut = x
    x = keras.layers.Conv2D(filters, 1, strides=stride, name=f"{name}_1_conv")(x)
    x = batch_norm(f"{name}_1_bn", synchronized)(x)
    x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = keras.layers.Conv2D(filters, 3, padding="SAME", name=f"{name}_2_conv")(x)
    x = batch_norm(f"{name}_2_bn", synchronized)(x)
    x = keras.layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = keras.layers.Conv2D(4 * filters, 1, name=f"{name}_3_conv")(x)
    x = batch_norm(f"{name}_3_bn", synchronized)(x)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


def apply_global_pool(x):
    return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)


def resnet_block_specs(architecture, synchronized=False, **unused):
    """Block specs `[(block_name, apply_fn)]` and stage ends of ResNet-50/101.

    Blocks: `"stem"`, `"conv2_block1"` ... `"conv5_block3"`, `"head"` (global
    average pool, 2048-d). Stages `"res2"` ... `"res5"` are the outputs of
    conv2_x ... conv5_x (strides 4, 8, 16, 32).
    """
    specs = [("stem", functools.partial(apply_stem, synchronized=synchronized))]
    stage_ends = {}
    stages = zip(STACKWISE_FILTERS, STACKWISE_NUM_BLOCKS[architecture], strict=True)
    for stage_index, (filters, num_blocks) in enumerate(stages, start=2):
        for block_index in range(1, num_blocks + 1):
            block_name = f"conv{stage_index}_block{block_index}"
            first = block_index == 1
            apply_fn = functools.partial(
                apply_bottleneck_block,
                filters=filters,
                stride=2 if first and stage_index > 2 else 1,
                conv_shortcut=first,
                synchronized=synchronized,
                name=block_name,
            )
            specs.append((block_name, apply_fn))
        stage_ends[f"res{stage_index}"] = f"conv{stage_index}_block{num_blocks}"
    specs.append(("head", apply_global_pool))
    return specs, stage_ends
