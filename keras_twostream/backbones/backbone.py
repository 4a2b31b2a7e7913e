"""The `Backbone` model: a stream feature extractor exposing its stages and blocks."""

import functools
import numbers

import keras

from keras_twostream.backbones.blocks import chain_blocks
from keras_twostream.backbones.bn_inception import bn_inception_block_specs
from keras_twostream.backbones.cnn_m import cnn_m_2048_block_specs
from keras_twostream.backbones.resnet import resnet_block_specs
from keras_twostream.backbones.resnet_torch import TORCH_RESNETS, torch_resnet_block_specs
from keras_twostream.backbones.tiny import tiny_block_specs
from keras_twostream.backbones.vgg import vgg16_block_specs

# Architecture name -> function returning ([(block_name, apply_fn)], {stage: last block}).
ARCHITECTURES = {
    "resnet50": functools.partial(resnet_block_specs, architecture="resnet50"),
    "resnet101": functools.partial(resnet_block_specs, architecture="resnet101"),
    "bn_inception": bn_inception_block_specs,
    "vgg16": vgg16_block_specs,
    "cnn_m_2048": cnn_m_2048_block_specs,
    "tiny": tiny_block_specs,
    **{
        name: functools.partial(torch_resnet_block_specs, architecture=name)
        for name in TORCH_RESNETS
    },
}
# Architectures ending in fully connected layers need a fixed height and width.
FIXED_SIZE_ARCHITECTURES = ("vgg16", "cnn_m_2048")
STREAMS = ("spatial", "temporal")


def _is_size(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def _validate_input_shape(architecture, input_shape):
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = ()
    if not (
        len(shape) == 3
        and _is_size(shape[2])
        and all(size is None or _is_size(size) for size in shape[:2])
    ):
        raise ValueError(
            "Expected input_shape to be (height, width, channels) with positive integers "
            f"(height and width may be None). Received: input_shape={input_shape!r}"
        )
    shape = tuple(None if size is None else int(size) for size in shape)
    if architecture in FIXED_SIZE_ARCHITECTURES and None in shape[:2]:
        raise ValueError(
            f"{architecture} ends in fully connected layers and needs a fixed height and "
            f"width. Received: input_shape={shape}"
        )
    # VGG-16's five 2x2 "valid" max-pools need 32 pixels; CNN-M-2048 checks its own
    # minimum; the ResNets and tiny pad every layer and take any size.
    if architecture == "vgg16" and min(shape[:2]) < 32:
        raise ValueError(
            "vgg16 needs an input height and width of at least 32 pixels (five 2x2 "
            f"max-pools). Received: input_shape={shape}"
        )
    return shape


def _default_name(architecture):
    uid = keras.backend.get_uid(architecture)
    return architecture if uid == 1 else f"{architecture}_{uid - 1}"


@keras.saving.register_keras_serializable(package="keras_twostream")
class Backbone(keras.Model):
    """A stream feature extractor: an image network exposing every stage and block.

    Runs one image tensor `(batch, height, width, channels)` through a
    ResNet-50/101 v1 (keras.applications or torchvision layout), BN-Inception,
    VGG-16, CNN-M-2048 or tiny network and returns a dict of
    every stage's feature map plus `"features"`, the final feature vector.
    `channels` is free: 3 for RGB frames, 2L for L stacked optical flow fields
    (two-stream paper, Sect. 3.1), 3L for RGB differences. Preprocessing
    (scaling, mean subtraction) is not part of the model.

    The network is a chain of small functional models, `backbone.blocks`, whose
    composition is the whole network; layers inside keep the
    `keras.applications` names (`conv1_conv`, `conv2_block1_1_conv`, ...,
    `block1_conv1`, `fc1`) so ImageNet weights load by name; the
    torchvision-layout ResNets (`*_torch`, `resnet_torch.py`) use PyTorch's
    state-dict names (`conv1`, `layer1.0.conv1`, ...) so MMAction2 and
    torchvision checkpoints load as a table (`load_torch_weights`). Architectures
    that insert layers between residual blocks of two branches running in
    lockstep (cross-modality attention after blocks of res3/res4, pyramid
    attention after each stage) iterate over `blocks` themselves; the block
    models are named `f"{backbone.name}_{block_name}"` so that the blocks of
    two backbones can live in one functional model.

    | architecture | blocks                                    | stages (stride)         | features |
    |--------------|-------------------------------------------|-------------------------|----------|
    | resnet50     | stem, conv2_block1 .. conv5_block3, head  | res2 (4) .. res5 (32)   | 2048     |
    | resnet101    | the same with 23 blocks in conv4          | res2 (4) .. res5 (32)   | 2048     |
    | bn_inception | stem, inception_3a .. inception_5b, head  | conv2 (4) .. inception5 (32) | 1024 |
    | vgg16        | block1 .. block5, head                    | block1 (2) .. block5 (32) | 4096   |
    | cnn_m_2048   | conv1 .. conv5, head                      | conv1 (4) .. conv5 (37) | 2048     |
    | tiny         | stem, conv2_block1 .. conv5_block1, head  | res2 (4) .. res5 (32)   | 64       |
    | resnet50_torch | stem, layer1.0 .. layer4.2, head        | res2 (4) .. res5 (32)   | 2048     |
    | resnet101_torch | the same with 23 blocks in layer3      | res2 (4) .. res5 (32)   | 2048     |
    | tiny_torch   | stem, layer1.0 .. layer4.0, head          | res2 (4) .. res5 (32)   | 256      |

    Args:
        architecture: one of `"resnet50"`, `"resnet101"`, `"bn_inception"`,
            `"vgg16"`, `"cnn_m_2048"`, `"tiny"`, or a torchvision-layout ResNet
            `"resnet50_torch"`, `"resnet101_torch"`, `"tiny_torch"`.
        input_shape: `(height, width, channels)`. Height and width may be
            `None` for the ResNets, BN-Inception and the tiny net; VGG-16 and CNN-M-2048 end
            in fully connected layers and need them fixed.
        stream: `"spatial"` or `"temporal"`. Only CNN-M-2048 uses it: the
            temporal network has no second LRN layer (two-stream paper, Sect. 5).
        dropout: dropout rate after each fully connected layer of the VGG-16
            and CNN-M-2048 heads (0.5 for the spatial and 0.9 for the temporal
            stream in the two-stream paper, Sect. 6). Unused by ResNets and tiny.
        synchronized: passed to every `BatchNormalization` (ResNets,
            BN-Inception and tiny):
            synchronised batch statistics across replicas under a
            `tf.distribute` strategy, as CMA trains (Chi et al., Sect. 4.4).
            TensorFlow backend only.
        **kwargs: `keras.Model` keyword arguments such as `name` (defaults to
            the architecture name, made unique) and `trainable`.

    Call arguments:
        inputs: a float tensor of shape `(batch, height, width, channels)`.
        training: whether BatchNormalization and Dropout run in training mode.

    Returns:
        A dict mapping every stage name (`"res2"` ... `"res5"`, `"conv2"` ...
            `"inception5"`, `"block1"` ...
        `"block5"` or `"conv1"` ... `"conv5"`) to its feature map and
        `"features"` to the feature vector `(batch, features)`.

    Example:

    >>> import numpy as np
    >>> import keras_twostream
    >>> backbone = keras_twostream.backbones.Backbone("tiny", input_shape=(64, 64, 20))
    >>> outputs = backbone(np.zeros((2, 64, 64, 20), "float32"))
    >>> tuple(outputs["res5"].shape), tuple(outputs["features"].shape)
    ((2, 2, 2, 64), (2, 64))
    >>> [name for name, _ in backbone.blocks]
    ['stem', 'conv2_block1', 'conv3_block1', 'conv4_block1', 'conv5_block1', 'head']
    """

    def __init__(
        self,
        architecture,
        input_shape=(224, 224, 3),
        stream="spatial",
        dropout=0.0,
        synchronized=False,
        **kwargs,
    ):
        if architecture not in ARCHITECTURES:
            raise ValueError(
                f"Expected architecture to be one of {sorted(ARCHITECTURES)}. "
                f"Received: architecture={architecture!r}"
            )
        input_shape = _validate_input_shape(architecture, input_shape)
        if stream not in STREAMS:
            raise ValueError(f"Expected stream to be one of {STREAMS}. Received: stream={stream!r}")
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not 0 <= dropout < 1
        ):
            raise ValueError(f"Expected 0 <= dropout < 1. Received: dropout={dropout!r}")
        if not isinstance(synchronized, bool):
            raise ValueError(
                f"Expected synchronized to be a bool. Received: synchronized={synchronized!r}"
            )
        if synchronized and keras.backend.backend() != "tensorflow":
            raise ValueError(
                "synchronized=True (synchronised BatchNormalization) needs the TensorFlow "
                f"backend. Received: synchronized=True with the {keras.backend.backend()!r} backend"
            )
        name = kwargs.pop("name", None) or _default_name(architecture)

        # === Layers ===
        specs, stage_ends = ARCHITECTURES[architecture](
            input_shape=input_shape,
            stream=stream,
            dropout=float(dropout),
            synchronized=synchronized,
        )
        blocks = chain_blocks(specs, input_shape, prefix=name)

        # === Functional Model ===
        inputs = keras.Input(shape=input_shape, name="images")
        stage_of_block = {block: stage for stage, block in stage_ends.items()}
        outputs = {}
        x = inputs
        for block_name, block in blocks:
            x = block(x)
            if block_name in stage_of_block:
                outputs[stage_of_block[block_name]] = x
        outputs["features"] = x
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        # === Config ===
        self.architecture = architecture
        self.stream = stream
        self.dropout = float(dropout)
        self.synchronized = synchronized
        self._block_model_names = [(block_name, block.name) for block_name, block in blocks]
        self._stage_ends = dict(stage_ends)

    @property
    def blocks(self):
        """Ordered `(block_name, keras.Model)` pairs whose composition is the network."""
        return [
            (block_name, self.get_layer(model_name))
            for block_name, model_name in self._block_model_names
        ]

    @property
    def stage_ends(self):
        """Dict mapping each stage name to the name of its last block."""
        return dict(self._stage_ends)

    def run_blocks(self, inputs, after_block=None, training=None):
        """Runs the blocks one by one, optionally transforming the tensor after each.

        Args:
            inputs: an image tensor `(batch, height, width, channels)`.
            after_block: `None` or a function `(block_name, x) -> x` applied
                after every block; what it returns feeds the next block (and is
                the stage output when the block ends a stage).
            training: passed to every block.

        Returns:
            The same dict as calling the backbone: stage outputs and `"features"`.
        """
        stage_of_block = {block: stage for stage, block in self._stage_ends.items()}
        outputs = {}
        x = inputs
        for block_name, block in self.blocks:
            x = block(x, training=training)
            if after_block is not None:
                x = after_block(block_name, x)
            if block_name in stage_of_block:
                outputs[stage_of_block[block_name]] = x
        outputs["features"] = x
        return outputs

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "architecture": self.architecture,
            "input_shape": tuple(self.input_shape[1:]),
            "stream": self.stream,
            "dropout": self.dropout,
            "synchronized": self.synchronized,
        }
