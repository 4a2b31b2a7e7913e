"""Backbone builder functions and the `BACKBONES` dict that names them."""

from keras_twostream.backbones.backbone import Backbone
from keras_twostream.backbones.weights import load_imagenet_weights

STYLES = ("keras", "pytorch")


def _load_weights(backbone, weights):
    if weights is None:
        return
    if backbone.architecture.endswith("_torch"):
        from keras_twostream.backbones.torch_weights import load_torch_weights

        if isinstance(weights, str) and weights == "imagenet":
            raise ValueError(
                f"{backbone.architecture} (torchvision layout) loads PyTorch checkpoints, not "
                "keras.applications' ImageNet weights. Pass the path of a .pth file (a "
                "torchvision state dict or an MMAction2 checkpoint), or use the keras layout "
                f"({backbone.architecture[: -len('_torch')]!r}) with weights='imagenet'."
            )
        load_torch_weights(backbone, weights)
        return
    load_imagenet_weights(backbone, weights)


def _torch_architecture(architecture, style):
    if style not in STYLES:
        raise ValueError(f"Expected style to be one of {STYLES}. Received: style={style!r}")
    return f"{architecture}_torch" if style == "pytorch" else architecture


def _build(architecture, input_shape, weights, stream, dropout, synchronized, name):
    backbone = Backbone(
        architecture,
        input_shape=input_shape,
        stream=stream,
        dropout=dropout,
        synchronized=synchronized,
        name=name,
    )
    _load_weights(backbone, weights)
    return backbone


def resnet50(
    input_shape=(224, 224, 3),
    weights=None,
    stream="spatial",
    dropout=0.0,
    synchronized=False,
    name=None,
    style="keras",
):
    """ResNet-50 v1 backbone (stages res2..res5, 2048-d features); see `get_backbone`.

    `style="keras"` is keras.applications' layout (stride on the first 1x1
    convolution, ImageNet weights by layer name); `style="pytorch"` is
    torchvision's and MMAction2's (`"resnet50_torch"`, see `resnet_torch.py`),
    which loads `.pth` checkpoints (`load_torch_weights`).

    Example:

    >>> import keras_twostream
    >>> backbone = keras_twostream.backbones.resnet50(input_shape=(224, 224, 20))  # L = 10 flows
    >>> backbone.output["features"].shape
    (None, 2048)
    """
    architecture = _torch_architecture("resnet50", style)
    return _build(architecture, input_shape, weights, stream, dropout, synchronized, name)


def resnet101(
    input_shape=(224, 224, 3),
    weights=None,
    stream="spatial",
    dropout=0.0,
    synchronized=False,
    name=None,
    style="keras",
):
    """ResNet-101 v1 backbone (stages res2..res5, 2048-d features); see `get_backbone`.

    `style` as for `resnet50`: `"pytorch"` builds `"resnet101_torch"`.

    Example:

    >>> import keras_twostream
    >>> keras_twostream.backbones.resnet101(input_shape=(224, 224, 3)).output["res4"].shape
    (None, 14, 14, 1024)
    """
    architecture = _torch_architecture("resnet101", style)
    return _build(architecture, input_shape, weights, stream, dropout, synchronized, name)


def bn_inception(
    input_shape=(224, 224, 3),
    weights=None,
    stream="spatial",
    dropout=0.0,
    synchronized=False,
    name=None,
):
    """BN-Inception (TSN's network, STPN's ablations; 1024-d features); see `get_backbone`.

    Stages `"conv2"`, `"inception3"`, `"inception4"`, `"inception5"` (strides 4
    to 32). No ImageNet weights ship with Keras for it: `weights` is `None` or
    the path of a weights file.

    Example:

    >>> import keras_twostream
    >>> keras_twostream.backbones.bn_inception(input_shape=(224, 224, 3)).output["inception5"].shape
    (None, 7, 7, 1024)
    """
    return _build("bn_inception", input_shape, weights, stream, dropout, synchronized, name)


def vgg16(
    input_shape=(224, 224, 3),
    weights=None,
    stream="spatial",
    dropout=0.0,
    synchronized=False,
    name=None,
):
    """VGG-16 backbone (stages block1..block5, 4096-d fc2 features); see `get_backbone`.

    Example:

    >>> import keras_twostream
    >>> keras_twostream.backbones.vgg16(input_shape=(224, 224, 3)).output["features"].shape
    (None, 4096)
    """
    return _build("vgg16", input_shape, weights, stream, dropout, synchronized, name)


def cnn_m_2048(
    input_shape=(224, 224, 3),
    weights=None,
    stream="spatial",
    dropout=0.0,
    synchronized=False,
    name=None,
):
    """CNN-M-2048 of the two-stream paper (stages conv1..conv5, 2048-d full7); see `get_backbone`.

    Example:

    >>> import keras_twostream
    >>> net = keras_twostream.backbones.cnn_m_2048(input_shape=(224, 224, 20), stream="temporal")
    >>> net.output["features"].shape
    (None, 2048)
    """
    return _build("cnn_m_2048", input_shape, weights, stream, dropout, synchronized, name)


def tiny(
    input_shape=(112, 112, 3),
    weights=None,
    stream="spatial",
    dropout=0.0,
    synchronized=False,
    name=None,
):
    """Tiny ResNet-like backbone for tests and CPU demos (64-d features); see `get_backbone`.

    Example:

    >>> import keras_twostream
    >>> keras_twostream.backbones.tiny(input_shape=(64, 64, 3)).output["res5"].shape
    (None, 2, 2, 64)
    """
    return _build("tiny", input_shape, weights, stream, dropout, synchronized, name)


def resnet50_torch(
    input_shape=(224, 224, 3),
    weights=None,
    stream="spatial",
    dropout=0.0,
    synchronized=False,
    name=None,
):
    """ResNet-50 in torchvision's layout (MMAction2's TSN backbone); see `get_backbone`.

    `weights` may be the path of a `.pth` file: a torchvision state dict or an
    MMAction2 checkpoint (`load_torch_weights`).

    Example:

    >>> import keras_twostream
    >>> backbone = keras_twostream.backbones.resnet50_torch(input_shape=(224, 224, 10))
    >>> backbone.output["res4"].shape, backbone.blocks[1][0]
    ((None, 14, 14, 1024), 'layer1.0')
    """
    return _build("resnet50_torch", input_shape, weights, stream, dropout, synchronized, name)


def resnet101_torch(
    input_shape=(224, 224, 3),
    weights=None,
    stream="spatial",
    dropout=0.0,
    synchronized=False,
    name=None,
):
    """ResNet-101 in torchvision's layout; see `resnet50_torch` and `get_backbone`.

    Example:

    >>> import keras_twostream
    >>> backbone = keras_twostream.backbones.resnet101_torch(input_shape=(224, 224, 3))
    >>> backbone.output["features"].shape, len(backbone.blocks)
    ((None, 2048), 35)
    """
    return _build("resnet101_torch", input_shape, weights, stream, dropout, synchronized, name)


def tiny_torch(
    input_shape=(112, 112, 3),
    weights=None,
    stream="spatial",
    dropout=0.0,
    synchronized=False,
    name=None,
):
    """A torchvision-layout ResNet with one bottleneck per stage, 8..64 planes (256-d features).

    The network of the committed test checkpoints (`tests/data/torch_checkpoints`); for
    tests and CPU demos of `load_torch_weights`. See `get_backbone`.

    Example:

    >>> import keras_twostream
    >>> keras_twostream.backbones.tiny_torch(input_shape=(64, 64, 3)).output["res5"].shape
    (None, 2, 2, 256)
    """
    return _build("tiny_torch", input_shape, weights, stream, dropout, synchronized, name)


BACKBONES = {
    "resnet50": resnet50,
    "resnet101": resnet101,
    "bn_inception": bn_inception,
    "vgg16": vgg16,
    "cnn_m_2048": cnn_m_2048,
    "tiny": tiny,
    "resnet50_torch": resnet50_torch,
    "resnet101_torch": resnet101_torch,
    "tiny_torch": tiny_torch,
}


def get_backbone(
    architecture,
    input_shape=(224, 224, 3),
    weights=None,
    stream="spatial",
    dropout=0.0,
    synchronized=False,
    name=None,
):
    """Builds a stream feature extractor by architecture name.

    Args:
        architecture: one of `"resnet50"`, `"resnet101"`, `"bn_inception"`,
            `"vgg16"`, `"cnn_m_2048"`, `"tiny"`, `"resnet50_torch"`,
            `"resnet101_torch"`, `"tiny_torch"` (the keys of
            `keras_twostream.backbones.BACKBONES`; `*_torch` are torchvision's
            layout). Usually passed positionally.
        input_shape: `(height, width, channels)`; channels 3 for RGB, 2L for
            L stacked flow fields, 3L for RGB differences.
        weights: `None` (random initialisation), `"imagenet"` (ResNets and
            VGG-16, downloaded through keras' cache) or the path of a weights
            file; see `keras_twostream.backbones.load_imagenet_weights`. The
            `*_torch` backbones take the path of a PyTorch `.pth` checkpoint
            instead (`keras_twostream.backbones.load_torch_weights`). With
            `channels != 3` the first convolution is initialised by TSN's
            cross-modality averaging (`adapt_input_channels`).
        stream: `"spatial"` or `"temporal"`; only CNN-M-2048 uses it (the
            temporal net drops the second LRN, two-stream paper Sect. 5).
        dropout: dropout after each fully connected layer of the VGG-16 and
            CNN-M-2048 heads (two-stream paper: 0.5 spatial, 0.9 temporal);
            unused by the ResNets and tiny.
        synchronized: synchronised BatchNormalization (TensorFlow backend
            only; ResNets, BN-Inception and tiny).
        name: the model's name; its blocks are named `f"{name}_{block}"`.
            Defaults to the architecture name, made unique.

    Returns:
        A `keras_twostream.backbones.Backbone`.

    Example:

    >>> import keras_twostream
    >>> backbone = keras_twostream.backbones.get_backbone("tiny", input_shape=(64, 64, 10), name="flow")
    >>> sorted(backbone.output), backbone.blocks[1][1].name
    (['features', 'res2', 'res3', 'res4', 'res5'], 'flow_conv2_block1')
    """
    if architecture not in BACKBONES:
        raise ValueError(f"Unknown backbone {architecture!r}. Expected one of {sorted(BACKBONES)}.")
    return BACKBONES[architecture](
        input_shape=input_shape,
        weights=weights,
        stream=stream,
        dropout=dropout,
        synchronized=synchronized,
        name=name,
    )
