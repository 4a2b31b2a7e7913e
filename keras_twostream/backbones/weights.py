"""Pretrained weights for backbones: loading by layer name and cross-modality initialisation."""

import os
import warnings

import keras
import numpy as np

_WEIGHT_SUFFIXES = (".weights.h5", ".h5", ".keras")


def adapt_input_channels(kernel, channels, rescale=False):
    """Adapts a first-convolution kernel trained on RGB to `channels` input channels.

    The cross-modality pre-training of Temporal Segment Networks (Wang et
    al., ECCV 2016, Sect. 3.2: "average the weights across the RGB channels
    and replicate this average by the channel number of temporal network
    input"), also used by the cross-modality attention paper (Chi et al.,
    Sect. 4.1, Implementation: "replicating the means of the pre-trained
    weights across channels") for the flow branch, and by STPN (Wang et al.
    2017, Sect. 4.1) following TSN.

    By default the mean is replicated without rescaling, as TSN and CMA do:
    the first layer's response to an input whose channels all equal v is then
    `channels / 3` times the RGB network's response to a grey image of value v.
    `rescale=True` multiplies by `in_channels / channels` (timm's
    `adapt_input_conv`), which keeps that response unchanged; the BatchNorm
    after the first convolution of ResNets absorbs the difference during
    fine-tuning either way.

    Args:
        kernel: the kernel `(kh, kw, in_channels, filters)`, a NumPy array or
            tensor (typically `in_channels=3`).
        channels: the new number of input channels, a positive integer
            (2L for L stacked flow fields).
        rescale: multiply the replicated mean by `in_channels / channels`.
            Defaults to `False` (TSN/CMA).

    Returns:
        A NumPy array `(kh, kw, channels, filters)` of the kernel's dtype.

    Example:

    >>> import numpy as np
    >>> import keras_twostream
    >>> kernel = np.arange(6, dtype="float32").reshape(1, 1, 3, 2)
    >>> adapted = keras_twostream.backbones.adapt_input_channels(kernel, 4)
    >>> adapted.shape, adapted[0, 0, :, 0].tolist(), adapted[0, 0, :, 1].tolist()
    ((1, 1, 4, 2), [2.0, 2.0, 2.0, 2.0], [3.0, 3.0, 3.0, 3.0])
    """
    kernel = np.asarray(keras.ops.convert_to_numpy(kernel))
    if kernel.ndim != 4:
        raise ValueError(
            "Expected kernel to be a 2-D convolution kernel (kh, kw, in_channels, filters). "
            f"Received: kernel with shape {kernel.shape}"
        )
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1:
        raise ValueError(
            f"Expected channels to be a positive integer. Received: channels={channels!r}"
        )
    mean = kernel.mean(axis=2, keepdims=True, dtype="float64")  # [kh, kw, 1, F]
    adapted = np.repeat(mean, channels, axis=2)  # [kh, kw, channels, F]
    if rescale:
        adapted = adapted * (kernel.shape[2] / channels)
    return adapted.astype(kernel.dtype)


def leaf_layers(model):
    """All non-model layers of `model`, depth first, in order."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from leaf_layers(layer)
        else:
            yield layer


def _application(architecture):
    return {
        "resnet50": keras.applications.ResNet50,
        "resnet101": keras.applications.ResNet101,
        "vgg16": keras.applications.VGG16,
    }[architecture]


def _candidate_references(backbone, weights):
    """Yields `(description, build_fn)` for models that may hold the weights file."""
    from keras_twostream.backbones.backbone import Backbone

    architecture = backbone.architecture
    height, width = backbone.input_shape[1:3]
    if architecture in ("resnet50", "resnet101"):
        app = _application(architecture)
        for include_top in (False, True):
            yield (
                f"keras.applications.{app.__name__}(include_top={include_top})",
                lambda app=app, top=include_top: app(include_top=top, weights=None),
            )
    elif architecture == "vgg16":
        for include_top in (True, False):
            yield (
                f"keras.applications.VGG16(include_top={include_top}, input_shape={(height, width, 3)})",
                lambda top=include_top: keras.applications.VGG16(
                    include_top=top, weights=None, input_shape=(height, width, 3)
                ),
            )
    else:
        shapes = [(height, width, 3)]
        if backbone.input_shape[-1] != 3:
            shapes.append(tuple(backbone.input_shape[1:]))
        for shape in shapes:
            yield (
                f"Backbone({architecture!r}, input_shape={shape})",
                lambda shape=shape: Backbone(
                    architecture, input_shape=shape, stream=backbone.stream, name="reference"
                ),
            )


def _load_reference(backbone, weights):
    if weights == "imagenet":
        architecture = backbone.architecture
        if architecture in ("resnet50", "resnet101"):
            # Downloads through keras' cache (~/.keras/models) on first use.
            return _application(architecture)(include_top=False, weights="imagenet"), "imagenet"
        if architecture == "vgg16":
            if tuple(backbone.input_shape[1:3]) != (224, 224):
                raise ValueError(
                    "The ImageNet fc1/fc2 weights of VGG-16 were trained on 224x224 inputs. "
                    f"Received: a backbone with input_shape={tuple(backbone.input_shape[1:])}"
                )
            return keras.applications.VGG16(include_top=True, weights="imagenet"), "imagenet"
        raise ValueError(
            f"{architecture} has no keras.applications ImageNet weights, so "
            "weights='imagenet' is not available for it. Pass the path of a .weights.h5 file "
            f"saved from a Backbone({architecture!r}, ...) with 3 input channels instead."
        )
    path = os.fspath(weights)
    if not path.endswith(_WEIGHT_SUFFIXES):
        raise ValueError(
            f"Expected weights to be None, 'imagenet' or the path of a {_WEIGHT_SUFFIXES} file. "
            f"Received: weights={weights!r}"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Weights file not found: {path!r}")
    errors = []
    for description, build in _candidate_references(backbone, weights):
        reference = build()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                reference.load_weights(path)
            except (ValueError, KeyError, TypeError) as error:
                errors.append(f"{description}: {str(error).splitlines()[0][:300]}")
                continue
        # Keras warns (and keeps fresh weights) when parts of the model are not in the file.
        skipped = [str(w.message) for w in caught if "freshly-initialized" in str(w.message)]
        if skipped:
            errors.append(f"{description}: {skipped[0][:300]}")
            continue
        for warning in caught:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
        return reference, f"{path!r} (read as {description})"
    raise ValueError(
        f"Could not read weights file {path!r} for a {backbone.architecture} backbone. "
        "Expected keras.applications weights (.h5 or .weights.h5) for ResNets and VGG-16, "
        "or weights saved from a Backbone of the same architecture. Attempts:\n  "
        + "\n  ".join(errors)
    )


def load_imagenet_weights(backbone, weights):
    """Loads pretrained weights into a `Backbone` by layer name.

    Builds the matching `keras.applications` model (ResNet50, ResNet101,
    VGG16 with its top for fc1/fc2), loads `weights` into it and copies every
    weight-bearing layer into the backbone by name. When the backbone has
    `C != 3` input channels, the first convolution's kernel goes through
    `adapt_input_channels` (TSN's cross-modality initialisation, no
    rescaling); its bias is copied unchanged.

    CNN-M-2048 and the tiny net have no keras.applications weights:
    `weights="imagenet"` raises, and a path must hold weights saved (with
    `save_weights`) from a `Backbone` of the same architecture and input size
    with 3 input channels (adapted like above) or with the backbone's own
    number of channels (copied as is).

    Args:
        backbone: a `keras_twostream.backbones.Backbone`.
        weights: `"imagenet"` (downloaded through keras' cache on first use;
            ResNets and VGG-16 only), or the path of a `.h5`/`.weights.h5` file
            (keras.applications' files, with or without their top) or of a
            `.weights.h5` file saved from a `Backbone`. `None` does nothing.

    Returns:
        The backbone, with its weights replaced.

    Example:

    >>> import keras_twostream
    >>> backbone = keras_twostream.backbones.get_backbone("resnet50", input_shape=(224, 224, 20))  # doctest: +SKIP
    >>> keras_twostream.backbones.load_imagenet_weights(backbone, "imagenet")  # doctest: +SKIP
    """
    from keras_twostream.backbones.backbone import Backbone

    if not isinstance(backbone, Backbone):
        raise ValueError(
            f"Expected backbone to be a keras_twostream.backbones.Backbone. Received: {backbone!r}"
        )
    if weights is None:
        return backbone
    reference, source = _load_reference(backbone, weights)
    return transfer_weights(reference, backbone, source)


def transfer_weights(reference, backbone, source):
    """Copies `reference`'s weights into `backbone` by layer name (`load_imagenet_weights`,
    and a model built from a `Backbone` instance, `keras_twostream.models.contract`).

    Every weight-bearing layer of `backbone` takes the weights of the `reference` layer of
    the same name (the `keras.applications` / torchvision names every backbone of an
    architecture shares); an RGB first convolution going into `C != 3` input channels is
    adapted by `adapt_input_channels`. Every layer is checked before any is written, so a
    mismatch leaves the backbone as it was.

    Args:
        reference: a model holding the weights (a `keras.applications` model, a `Backbone`).
        backbone: the `Backbone` to write.
        source: how errors name the reference (a path, `"imagenet"`, a model name).

    Returns:
        `backbone`.

    Raises:
        ValueError: naming the layers the reference lacks, or a layer and both shapes.
    """
    theirs = {layer.name: layer for layer in leaf_layers(reference) if layer.weights}
    ours = [layer for layer in leaf_layers(backbone) if layer.weights]
    first_conv = next(
        layer for layer in leaf_layers(backbone) if isinstance(layer, keras.layers.Conv2D)
    )
    missing = [layer.name for layer in ours if layer.name not in theirs]
    if missing:
        raise ValueError(
            f"Layers {missing} of the {backbone.architecture} backbone {backbone.name!r} "
            f"have no weights in {source}."
        )
    channels = backbone.input_shape[-1]
    updates = []
    for layer in ours:
        values = [np.asarray(v) for v in theirs[layer.name].get_weights()]
        expected = [tuple(v.shape) for v in layer.weights]
        if layer is first_conv and values[0].shape != expected[0] and values[0].shape[2] == 3:
            values[0] = adapt_input_channels(values[0], channels)
        if [v.shape for v in values] != expected:
            raise ValueError(
                f"Weights of layer {layer.name!r} in {source} have shapes "
                f"{[v.shape for v in values]}; the backbone expects {expected}."
            )
        updates.append((layer, values))
    for layer, values in updates:  # nothing is written before every layer fits
        layer.set_weights(values)
    return backbone
