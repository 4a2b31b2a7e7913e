"""Loading torchvision / MMAction2 ResNet checkpoints into a torchvision-layout `Backbone`.

Reads the `.pth` file with NumPy (`torch_checkpoint.read_torch_checkpoint`, no
PyTorch needed, no pickled code run) and maps it onto the layers of a
`resnet50_torch` / `resnet101_torch` / `tiny_torch` backbone, whose layer names
are torchvision's state-dict names, by a table:

| checkpoint key (torchvision)  | MMAction2 (`backbone.` prefix)  | Keras weights                      |
|-------------------------------|---------------------------------|------------------------------------|
| `conv1.weight` (O, I, kh, kw) | `conv1.conv.weight`             | `conv1` kernel (kh, kw, I, O)      |
| `bn1.{weight,bias,running_mean,running_var}` | `conv1.bn.*`     | `bn1` gamma, beta, moving mean/var |
| `layerS.B.convN.weight`       | `layerS.B.convN.conv.weight`    | `layerS.B.convN` kernel            |
| `layerS.B.bnN.*`              | `layerS.B.convN.bn.*`           | `layerS.B.bnN`                     |
| `layerS.B.downsample.0.weight` | `layerS.B.downsample.conv.weight` | `layerS.B.downsample.0` kernel   |
| `layerS.B.downsample.1.*`     | `layerS.B.downsample.bn.*`      | `layerS.B.downsample.1`            |
| `fc.weight` (out, in), `fc.bias` | `cls_head.fc_cls.*`          | a classifier `Dense` (in, out)     |

MMAction2's ResNet wraps every convolution and its BatchNorm in an mmcv
`ConvModule` (`.conv`, `.bn`); its own `_load_torchvision_checkpoint` uses
the same correspondence. `num_batches_tracked` counters have no Keras
counterpart and are ignored.

Flow checkpoints: MMAction2's TSN flow models (`in_channels=10`, 5 flow
fields) stack channels `x1, y1, x2, y2, ...` (its `FormatShape("NCHW_Flow")`:
"C' = T x C" with C = (x, y)), the order of this library's pipeline (Eq. (1)
of the two-stream paper), so conv1's 2L input channels are copied in order.
An RGB conv1 (3 channels) loaded into a 2L-channel backbone is adapted by
TSN's cross-modality averaging (`adapt_input_channels`).
"""

import dataclasses
import os
import re

import keras
import numpy as np

from keras_twostream.backbones.torch_checkpoint import read_torch_checkpoint
from keras_twostream.backbones.weights import adapt_input_channels, leaf_layers

# MMAction2 (mmcv ConvModule) names -> torchvision names, applied in order.
_MMACTION2_RENAMES = (
    (re.compile(r"^conv1\.conv\."), "conv1."),
    (re.compile(r"^conv1\.bn\."), "bn1."),
    (re.compile(r"^(layer\d+\.\d+)\.conv(\d)\.conv\."), r"\1.conv\2."),
    (re.compile(r"^(layer\d+\.\d+)\.conv(\d)\.bn\."), r"\1.bn\2."),
    (re.compile(r"^(layer\d+\.\d+)\.downsample\.conv\."), r"\1.downsample.0."),
    (re.compile(r"^(layer\d+\.\d+)\.downsample\.bn\."), r"\1.downsample.1."),
)
_CLASSIFIER_KEYS = {"cls_head.fc_cls.weight": "fc.weight", "cls_head.fc_cls.bias": "fc.bias"}
_BN_FIELDS = ("weight", "bias", "running_mean", "running_var")

# Input normalisation of the checkpoints, as names of the pipeline's presets.
# MMAction2's TSN: RGB mean [123.675, 116.28, 103.53], std [58.395, 57.12, 57.375] on
# 0..255 RGB (= torchvision's ImageNet mean/std on [0, 1]: the "torch" preset); flow mean
# 128, std 128 on the quantised 0..255 values, no per-field mean subtraction.
MMACTION2_NORMALIZATION = {
    "spatial": {"rgb_normalization": "torch"},
    "temporal": {"flow_normalization": "mmaction", "mean_subtract_flow": False},
}


@dataclasses.dataclass
class TorchWeightsReport:
    """What `load_torch_weights` did.

    Attributes:
        path: the checkpoint.
        layout: `"mmaction2"` (`backbone.` / `cls_head.` keys) or
            `"torchvision"` (a plain state dict).
        mapped: checkpoint keys copied into the model, in the file's spelling.
        missing: model weights the checkpoint lacks (as torchvision keys).
        unexpected: checkpoint keys that map to nothing in the model.
        skipped: classifier keys not loaded (no `classifier` was given).
        adapted: keys adapted to another number of input channels.
        normalization: the input normalisation the weights expect, as
            pipeline settings (`rgb_normalization`, or `flow_normalization` and
            `mean_subtract_flow`).

    Example:

    >>> import keras_twostream
    >>> backbone = keras_twostream.backbones.get_backbone("tiny_torch", input_shape=(64, 64, 10))
    >>> report = keras_twostream.backbones.load_torch_weights(  # doctest: +SKIP
    ...     backbone, "tests/data/torch_checkpoints/tiny_flow_mmaction2.pth")
    >>> report.layout, report.missing, report.normalization["flow_normalization"]  # doctest: +SKIP
    ('mmaction2', [], 'mmaction')
    """

    path: str
    layout: str
    mapped: list
    missing: list
    unexpected: list
    skipped: list
    adapted: list
    normalization: dict

    def summary(self):
        """A few lines for a log: counts, and every missing / unexpected / skipped key."""
        lines = [
            f"{self.path}: {self.layout} checkpoint, {len(self.mapped)} tensors mapped"
            + (
                f" ({', '.join(self.adapted)} adapted to the input channels)"
                if self.adapted
                else ""
            )
        ]
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            lines.append(f"{len(keys)} {label}" + (f": {', '.join(keys)}" if keys else ""))
        if self.skipped:
            lines.append(
                f"{len(self.skipped)} not loaded (no classifier): {', '.join(self.skipped)}"
            )
        return "\n".join(lines)


def _state_dict(checkpoint, path):
    """The tensor dict of a checkpoint: MMAction2's `state_dict`, a `model` entry, or itself."""
    state = checkpoint
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not state:
        raise ValueError(
            f"{path}: expected a state dict (a dict of tensors), or an MMAction2 checkpoint "
            f"holding one under 'state_dict'. Received: {type(checkpoint).__name__}"
        )
    bad = [
        str(k) for k, v in state.items() if not (isinstance(k, str) and isinstance(v, np.ndarray))
    ]
    if bad:
        raise ValueError(f"{path}: entries of the state dict are not tensors: {bad[:10]}")
    if all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _torchvision_keys(state):
    """Renames a state dict to torchvision's keys; returns (layout, {tv_key: (orig_key, array)})."""
    mmaction = any(k.startswith("backbone.") for k in state)
    renamed, unexpected = {}, []
    for key, value in state.items():
        name = key
        if mmaction:
            if key in _CLASSIFIER_KEYS:
                name = _CLASSIFIER_KEYS[key]
            elif key.startswith("backbone."):
                name = key[len("backbone.") :]
                for pattern, replacement in _MMACTION2_RENAMES:
                    name = pattern.sub(replacement, name)
            else:
                unexpected.append(key)
                continue
        renamed[name] = (key, value)
    return ("mmaction2" if mmaction else "torchvision"), renamed, unexpected


def _expected_weights(backbone, classifier):
    """torchvision key -> (keras variable, converter from the torch array)."""
    expected = {}
    for layer in leaf_layers(backbone):
        if isinstance(layer, keras.layers.Conv2D):
            expected[f"{layer.name}.weight"] = (layer.kernel, _conv_kernel)
        elif isinstance(layer, keras.layers.BatchNormalization):
            variables = (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance)
            for field, variable in zip(_BN_FIELDS, variables, strict=True):
                expected[f"{layer.name}.{field}"] = (variable, None)
        elif layer.weights:
            raise ValueError(f"Layer {layer.name!r} of {backbone.name!r} has no torch mapping")
    if classifier is not None:
        expected["fc.weight"] = (classifier.kernel, np.transpose)  # (out, in) -> (in, out)
        expected["fc.bias"] = (classifier.bias, None)
    return expected


def _conv_kernel(weight):
    return np.transpose(weight, (2, 3, 1, 0))  # OIHW -> HWIO


def load_torch_weights(backbone, path, classifier=None, strict=True):
    """Loads a torchvision or MMAction2 ResNet checkpoint into a torchvision-layout backbone.

    Reads the `.pth` file without PyTorch and without running any code it
    holds (see `keras_twostream.backbones.torch_checkpoint`). Accepts plain
    torchvision state dicts (`torchvision.models.resnet50().state_dict()`),
    MMAction2 0.x and 1.x recognizer checkpoints (`{"state_dict":
    {"backbone.conv1.conv.weight": ..., "cls_head.fc_cls.weight": ...},
    "meta": ...}`), and dicts holding the state dict under `"model"`. Convolution
    kernels go from OIHW to HWIO, BatchNorm weight/bias/running mean/variance
    to gamma/beta/moving mean/variance, the fc layer from (out, in) to (in,
    out). An RGB conv1 loaded into a backbone with other input channels is
    adapted by TSN's cross-modality averaging; a 2L-channel flow conv1 is
    copied channel by channel (MMAction2's flow order x1, y1, x2, ... is this
    library's).

    The backbone records the input normalisation the weights expect in
    `backbone.torch_normalization` (also in the returned report): MMAction2's
    and torchvision's RGB mean/std (the pipeline's `rgb_normalization="torch"`
    preset) for a spatial backbone, and `(q - 128) / 128` on quantised flow
    (`flow_normalization="mmaction"`, no mean subtraction) for a temporal one.
    `keras-twostream convert` writes it into the model card, from which
    `predict`, `evaluate` and `train` take it.

    Args:
        backbone: a `Backbone` with architecture `"resnet50_torch"`,
            `"resnet101_torch"` or `"tiny_torch"`.
        path: the `.pth` checkpoint.
        classifier: optional `keras.layers.Dense` that receives `fc.*` /
            `cls_head.fc_cls.*` (its units must be the checkpoint's classes).
            Without it those keys are reported as skipped.
        strict: raise on checkpoint keys that map to nothing (`unexpected`);
            with `False` they are only reported. Missing weights always raise.

    Returns:
        A `TorchWeightsReport`.

    Raises:
        ValueError: the backbone is not torchvision-layout; the file is not a
            checkpoint; weights are missing or unexpected (listed by name); a
            tensor's shape does not fit (key and both shapes named).
        keras_twostream.backbones.torch_checkpoint.UnsafeCheckpointError: the
            pickle refers to a callable other than tensor rebuilding.

    Example:

    >>> import keras_twostream
    >>> backbone = keras_twostream.backbones.get_backbone("resnet50_torch", input_shape=(224, 224, 3))
    >>> report = keras_twostream.backbones.load_torch_weights(  # doctest: +SKIP
    ...     backbone, "tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb_20220906-cd10898e.pth")
    >>> print(report.summary())  # doctest: +SKIP
    """
    from keras_twostream.backbones.backbone import Backbone

    if not isinstance(backbone, Backbone) or not backbone.architecture.endswith("_torch"):
        raise ValueError(
            "Expected backbone to be a torchvision-layout Backbone ('resnet50_torch', "
            "'resnet101_torch', 'tiny_torch'). Received: "
            + (
                f"architecture={backbone.architecture!r}"
                if isinstance(backbone, Backbone)
                else repr(backbone)
            )
        )
    if classifier is not None and not isinstance(classifier, keras.layers.Dense):
        raise ValueError(
            f"Expected classifier to be None or a Dense layer. Received: {classifier!r}"
        )
    path = os.fspath(path)
    state = _state_dict(read_torch_checkpoint(path), path)
    layout, renamed, unexpected = _torchvision_keys(state)
    expected = _expected_weights(backbone, classifier)

    skipped, ignored = [], []
    for name, (key, _) in renamed.items():
        if name.endswith(".num_batches_tracked"):
            ignored.append(key)
        elif name in ("fc.weight", "fc.bias") and classifier is None:
            skipped.append(key)
        elif name not in expected:
            unexpected.append(key)
    missing = [name for name in expected if name not in renamed]
    if missing:
        raise ValueError(
            f"{path}: the checkpoint lacks {len(missing)} weights of the "
            f"{backbone.architecture} backbone {backbone.name!r}"
            + (" and its classifier" if classifier is not None else "")
            + f" (torchvision names): {', '.join(missing)}"
            + (
                f". Its keys that map to nothing: {', '.join(unexpected[:20])}"
                if unexpected
                else ""
            )
        )
    if unexpected and strict:
        raise ValueError(
            f"{path}: {len(unexpected)} checkpoint keys map to nothing in the "
            f"{backbone.architecture} backbone {backbone.name!r}: {', '.join(unexpected)} "
            "(pass strict=False to load the rest)"
        )

    values, adapted = [], []
    channels = backbone.input_shape[-1]
    for name, (variable, convert) in expected.items():
        key, array = renamed[name]
        array = np.asarray(array, dtype=np.float32)
        if convert is not None:
            array = convert(array)
        want = tuple(variable.shape)
        if name == "conv1.weight" and array.shape != want and array.shape[2] == 3:
            if array.shape[:2] + array.shape[3:] == want[:2] + want[3:]:
                array = adapt_input_channels(array, channels)  # TSN cross-modality init
                adapted.append(key)
        if tuple(array.shape) != want:
            torch_shape = tuple(renamed[name][1].shape)
            raise ValueError(
                f"{path}: {key} has shape {torch_shape} (Keras {tuple(array.shape)}); "
                f"{variable.path} of the {backbone.architecture} backbone {backbone.name!r} "
                f"expects {want}"
            )
        values.append((variable, array))
    for variable, array in values:  # only once everything fits
        variable.assign(array.astype(variable.dtype))

    # A flow backbone may have been built with the default stream="spatial": 2L channels
    # (anything but 3) also mean flow.
    stream = "spatial" if backbone.stream == "spatial" and channels == 3 else "temporal"
    normalization = dict(MMACTION2_NORMALIZATION[stream])
    backbone.torch_normalization = normalization
    return TorchWeightsReport(
        path=path,
        layout=layout,
        mapped=[renamed[name][0] for name in expected],
        missing=missing,
        unexpected=unexpected,
        skipped=skipped,
        adapted=adapted,
        normalization=normalization,
    )
