"""ResNet-50/101 v1.5 in torchvision's layout (He et al., CVPR 2016), cut into blocks.

The network of `torchvision.models.resnet50/101`, which MMAction2's `ResNet`
backbone (`style="pytorch"`) also builds, so PyTorch checkpoints load as a
table (`keras_twostream.backbones.load_torch_weights`). It differs from the
keras.applications layout of `resnet.py` in four places:

* the stride of a bottleneck sits on its 3x3 convolution, not the first 1x1;
* convolutions pad symmetrically like PyTorch (`padding=k // 2` on every
  side), written as `ZeroPadding2D` + a `"valid"` convolution: TensorFlow's
  `"same"` puts the extra row of an even input at the bottom/right only, which
  shifts every strided layer by one pixel against PyTorch;
* convolutions have no bias; BatchNormalization has PyTorch's epsilon 1e-5 and
  momentum 0.1 (Keras `momentum=0.9`);
* layer names are the state-dict names: `conv1`, `bn1`, `layer1.0.conv1`,
  `layer1.0.bn1`, ..., `layer4.2.downsample.0` / `.1`.

Blocks are `"stem"`, `"layer1.0"` ... `"layer4.2"`, `"head"`; stages `"res2"`
... `"res5"` are the outputs of `layer1` ... `layer4` (strides 4 ... 32), as
in the keras.applications layout, so every architecture that runs blocks one
by one (CMA inserts blocks after res3/res4 blocks) works unchanged.

`tiny_torch` is the same layout with one bottleneck per stage and 8/16/32/64
planes (outputs 32 ... 256 channels): the network of the committed test
checkpoints (`tests/data/torch_checkpoints`), small enough for CPU tests.
"""

import functools

import keras

# architecture -> (blocks per stage, planes of the first stage).
TORCH_RESNETS = {
    "resnet50_torch": ((3, 4, 6, 3), 64),
    "resnet101_torch": ((3, 4, 23, 3), 64),
    "tiny_torch": ((1, 1, 1, 1), 8),
}
EXPANSION = 4  # torchvision's Bottleneck.expansion
BN_EPSILON = 1e-5  # torch.nn.BatchNorm2d's default
BN_MOMENTUM = 0.9  # torch's momentum=0.1 in Keras' convention (weight of the old value)


def batch_norm(name, synchronized=False):
    """`torch.nn.BatchNorm2d` defaults in Keras terms (epsilon 1e-5, momentum 0.1)."""
    return keras.layers.BatchNormalization(
        momentum=BN_MOMENTUM,
        axis=-1,
        epsilon=BN_EPSILON,
        synchronized=synchronized,
        name=name,
    )


def conv(x, filters, kernel_size, stride=1, name=None):
    """`torch.nn.Conv2d(..., padding=kernel_size // 2, bias=False)`, padded like PyTorch."""
    pad = kernel_size // 2
    if pad:
        x = keras.layers.ZeroPadding2D(padding=((pad, pad), (pad, pad)), name=f"{name}_pad")(x)
    if kernel_size == 1 and stride != 1:
        # A strided 1x1 convolution reads pixels 0, s, 2s, ...: the same as subsampling
        # then a 1x1 convolution, which avoids TensorFlow 2.21's oneDNN heap corruption on
        # strided 1x1 convolutions with odd training batches (see backbones/tiny.py).
        x = keras.layers.MaxPooling2D(1, strides=stride, name=f"{name}_subsample")(x)
        stride = 1
    return keras.layers.Conv2D(
        filters, kernel_size, strides=stride, padding="valid", use_bias=False, name=name
    )(x)


def apply_torch_stem(x, planes=64, synchronized=False):
    """conv1 (7x7/2, pad 3) + bn1 + ReLU and maxpool (3x3/2, pad 1)."""
    x = conv(x, planes, 7, stride=2, name="conv1")
    x = batch_norm("bn1", synchronized)(x)
    x = keras.layers.Activation("relu", name="relu")(x)
    # PyTorch pads the max-pool with -inf; after the ReLU zeros change nothing.
    x = keras.layers.ZeroPadding2D(padding=((1, 1), (1, 1)), name="maxpool_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, name="maxpool")(x)


def apply_torch_bottleneck(x, planes, stride=1, downsample=False, synchronized=False, name=None):
    """torchvision's `Bottleneck` (v1.5): 1x1, 3x3 (strided), 1x1 and the projection."""
    if downsample:
        shortcut = conv(x, planes * EXPANSION, 1, stride=stride, name=f"{name}.downsample.0")
        shortcut = batch_norm(f"{name}.downsample.1", synchronized)(shortcut)
    else:
        shortcut = x
    x = conv(x, planes, 1, name=f"{name}.conv1")
    x = batch_norm(f"{name}.bn1", synchronized)(x)
    x = keras.layers.Activation("relu", name=f"{name}.relu1")(x)
    x = conv(x, planes, 3, stride=stride, name=f"{name}.conv2")
    x = batch_norm(f"{name}.bn2", synchronized)(x)
    x = keras.layers.Activation("relu", name=f"{name}.relu2")(x)
    x = conv(x, planes * EXPANSION, 1, name=f"{name}.conv3")
    x = batch_norm(f"{name}.bn3", synchronized)(x)
    x = keras.layers.Add(name=f"{name}.add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}.out")(x)


def apply_global_pool(x):
    return keras.layers.GlobalAveragePooling2D(name="avgpool")(x)


def torch_resnet_block_specs(architecture, synchronized=False, **unused):
    """Block specs `[(block_name, apply_fn)]` and stage ends of a torchvision-layout ResNet.

    Blocks: `"stem"`, `"layer1.0"` ... `"layer4.{n-1}"`, `"head"` (global
    average pool). Stages `"res2"` ... `"res5"` end at the last block of
    `layer1` ... `layer4`.
    """
    num_blocks, base = TORCH_RESNETS[architecture]
    specs = [("stem", functools.partial(apply_torch_stem, planes=base, synchronized=synchronized))]
    stage_ends = {}
    for layer_index, count in enumerate(num_blocks, start=1):
        planes = base * 2 ** (layer_index - 1)
        for block_index in range(count):
            block_name = f"layer{layer_index}.{block_index}"
            first = block_index == 0
            apply_fn = functools.partial(
                apply_torch_bottleneck,
                planes=planes,
                stride=2 if first and layer_index > 1 else 1,
                # torchvision adds a projection where the shape changes: the first block
                # of every layer (layer1's too, 64 -> 256 channels).
                downsample=first,
                synchronized=synchronized,
                name=block_name,
            )
            specs.append((block_name, apply_fn))
        stage_ends[f"res{layer_index + 1}"] = f"layer{layer_index}.{count - 1}"
    specs.append(("head", apply_global_pool))
    return specs, stage_ends
