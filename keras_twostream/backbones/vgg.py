"""VGG-16 (Simonyan and Zisserman, ICLR 2015, configuration D) cut into blocks.

Layer names follow `keras.applications.VGG16` (`block1_conv1` ... `block5_pool`,
`flatten`, `fc1`, `fc2`) so its ImageNet weights load by layer name. The head
adds dropout after fc1 and fc2 (0.5 in VGG's own training, 0.5/0.9 for the
spatial/temporal streams of the two-stream paper, Sect. 6).
"""

import functools

import keras

VGG16_CONVS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def apply_vgg_block(x, filters, num_convs, name):
    for index in range(1, num_convs + 1):
        x = keras.layers.Conv2D(
            filters, 3, activation="relu", padding="same", name=f"{name}_conv{index}"
        )(x)
    return keras.layers.MaxPooling2D(2, strides=2, name=f"{name}_pool")(x)


def apply_fc_head(x, units, names, dropout=0.0):
    """Flatten, then `Dense(units[i], relu)` + dropout for every fully connected layer."""
    x = keras.layers.Flatten(name="flatten")(x)
    for width, name in zip(units, names, strict=True):
        x = keras.layers.Dense(width, activation="relu", name=name)(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


def vgg16_block_specs(architecture="vgg16", dropout=0.0, **unused):
    """Block specs and stage ends of VGG-16.

    Blocks (= stages) `"block1"` ... `"block5"` end with their max-pool
    (strides 2 ... 32); `"head"` is flatten -> fc1 (4096) -> fc2 (4096).
    """
    specs = []
    for index, (filters, num_convs) in enumerate(VGG16_CONVS, start=1):
        name = f"block{index}"
        specs.append(
            (
                name,
                functools.partial(apply_vgg_block, filters=filters, num_convs=num_convs, name=name),
            )
        )
    head = functools.partial(
        apply_fc_head, units=(4096, 4096), names=("fc1", "fc2"), dropout=dropout
    )
    specs.append(("head", head))
    return specs, {f"block{i}": f"block{i}" for i in range(1, 6)}
