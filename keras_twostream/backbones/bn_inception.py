"""BN-Inception (Ioffe & Szegedy, ICML 2015), the network of TSN and of STPN's ablations.

The layout is the one TSN (Wang et al., ECCV 2016) released as Caffe's
`bn_inception` and the one the STPN paper's Tables 2-7 use ("inception5b in
BN-Inception", a 1024 x 7 x 7 last feature map, Sect. 3.3 and 4.3): the Inception
v2 network of Ioffe & Szegedy's Fig. 5 / Table 1 with batch normalisation after
every convolution, 5x5 convolutions replaced by two 3x3 ones, and
stride-2 modules (3c, 4e) whose pooling branch is a pass-through max-pool.

| module | 1x1 | 3x3 reduce -> 3x3 | double 3x3 reduce -> 3x3 -> 3x3 | pool -> proj | out |
|--------|-----|-------------------|---------------------------------|--------------|-----|
| 3a     | 64  | 64 -> 64          | 64 -> 96 -> 96                  | avg -> 32    | 256 |
| 3b     | 64  | 64 -> 96          | 64 -> 96 -> 96                  | avg -> 64    | 320 |
| 3c /2  | -   | 128 -> 160        | 64 -> 96 -> 96                  | max, pass    | 576 |
| 4a     | 224 | 64 -> 96          | 96 -> 128 -> 128                | avg -> 128   | 576 |
| 4b     | 192 | 96 -> 128         | 96 -> 128 -> 128                | avg -> 128   | 576 |
| 4c     | 160 | 128 -> 160        | 128 -> 160 -> 160               | avg -> 128   | 608 |
| 4d     | 96  | 128 -> 192        | 160 -> 192 -> 192               | avg -> 128   | 608 |
| 4e /2  | -   | 128 -> 192        | 192 -> 256 -> 256               | max, pass    | 1056 |
| 5a     | 352 | 192 -> 320        | 160 -> 224 -> 224               | avg -> 128   | 1024 |
| 5b     | 352 | 192 -> 320        | 192 -> 224 -> 224               | max -> 128   | 1024 |

The stem is conv1 (7x7/2, 64), a 3x3/2 max-pool, conv2 (1x1, 64, then 3x3, 192)
and a 3x3/2 max-pool. Every convolution has a bias and is followed by
BatchNormalization (epsilon 1e-5, Caffe's) and ReLU.

Choices where the Caffe definition does not carry over exactly:

- Caffe pools with `ceil` rounding and no padding; here the pools use "same"
  padding, which gives the same output sizes for even inputs (224 -> 112 -> 56
  -> 28 -> 14 -> 7) and differs only in which border pixels enter a window.
- The 3x3 average pools of the modules exclude the padding from their count
  (TensorFlow's and JAX's "same" average pooling); Caffe counts it.

Stages, named after the modules, end before each downsampling module, as the
ResNets' stages do: `"conv2"` (stride 4, 192 channels), `"inception3"` (3b,
stride 8, 320), `"inception4"` (4d, stride 16, 608), `"inception5"` (5b,
stride 32, 1024); `"head"` is the global average pool (1024-d features).
No ImageNet weights ship with Keras for this network: it trains from scratch
here or loads a weights file.
"""

import functools

import keras

from keras_twostream.backbones.resnet import apply_global_pool

BN_EPSILON = 1e-5

# (1x1, (3x3 reduce, 3x3), (double reduce, double 3x3), (pool type, projection)); a stride-2
# module has no 1x1 branch and a pass-through max-pool.
MODULES = {
    "3a": (64, (64, 64), (64, 96), ("avg", 32)),
    "3b": (64, (64, 96), (64, 96), ("avg", 64)),
    "3c": (None, (128, 160), (64, 96), ("max", None)),
    "4a": (224, (64, 96), (96, 128), ("avg", 128)),
    "4b": (192, (96, 128), (96, 128), ("avg", 128)),
    "4c": (160, (128, 160), (128, 160), ("avg", 128)),
    "4d": (96, (128, 192), (160, 192), ("avg", 128)),
    "4e": (None, (128, 192), (192, 256), ("max", None)),
    "5a": (352, (192, 320), (160, 224), ("avg", 128)),
    "5b": (352, (192, 320), (192, 224), ("max", 128)),
}
STAGE_ENDS = {
    "conv2": "stem",
    "inception3": "inception_3b",
    "inception4": "inception_4d",
    "inception5": "inception_5b",
}


def conv_bn_relu(x, filters, kernel_size, name, strides=1, synchronized=False):
    """Convolution (with bias) + BatchNormalization (epsilon 1e-5) + ReLU, "same" padding."""
    x = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same", name=name)(x)
    x = keras.layers.BatchNormalization(
        epsilon=BN_EPSILON, synchronized=synchronized, name=f"{name}_bn"
    )(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def apply_stem(x, synchronized=False):
    """conv1 (7x7/2, 64), pool1 (3x3/2), conv2 (1x1, 64 -> 3x3, 192): stride 4."""
    x = conv_bn_relu(x, 64, 7, "conv1_7x7_s2", strides=2, synchronized=synchronized)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1_3x3_s2")(x)
    x = conv_bn_relu(x, 64, 1, "conv2_3x3_reduce", synchronized=synchronized)
    return conv_bn_relu(x, 192, 3, "conv2_3x3", synchronized=synchronized)


def apply_inception_module(x, module, synchronized=False, downsample_input=False):
    """One Inception module of BN-Inception; `downsample_input` applies pool2 first (3a)."""
    if downsample_input:
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool2_3x3_s2")(x)
    one, (reduce3, out3), (reduce_d, out_d), (pool, projection) = MODULES[module]
    name = f"inception_{module}"
    stride = 2 if one is None else 1
    conv = functools.partial(conv_bn_relu, synchronized=synchronized)
    branches = []
    if one is not None:
        branches.append(conv(x, one, 1, f"{name}_1x1"))
    y = conv(x, reduce3, 1, f"{name}_3x3_reduce")
    branches.append(conv(y, out3, 3, f"{name}_3x3", strides=stride))
    y = conv(x, reduce_d, 1, f"{name}_double_3x3_reduce")
    y = conv(y, out_d, 3, f"{name}_double_3x3_1")
    branches.append(conv(y, out_d, 3, f"{name}_double_3x3_2", strides=stride))
    pooling = keras.layers.AveragePooling2D if pool == "avg" else keras.layers.MaxPooling2D
    y = pooling(3, strides=stride, padding="same", name=f"{name}_pool")(x)
    if projection is not None:
        y = conv(y, projection, 1, f"{name}_pool_proj")
    branches.append(y)
    return keras.layers.Concatenate(name=f"{name}_output")(branches)


def bn_inception_block_specs(synchronized=False, **unused):
    """Block specs `[(block_name, apply_fn)]` and stage ends of BN-Inception.

    Blocks: `"stem"`, `"inception_3a"` ... `"inception_5b"` (pool2 opens
    `"inception_3a"`), `"head"` (global average pool, 1024-d).
    """
    specs = [("stem", functools.partial(apply_stem, synchronized=synchronized))]
    for module in MODULES:
        apply_fn = functools.partial(
            apply_inception_module,
            module=module,
            synchronized=synchronized,
            downsample_input=module == "3a",
        )
        specs.append((f"inception_{module}", apply_fn))
    specs.append(("head", apply_global_pool))
    return specs, dict(STAGE_ENDS)
