"""`keras-twostream convert`: a PyTorch TSN checkpoint (MMAction2, torchvision) as a two-stream model.

    keras-twostream convert CHECKPOINT.pth OUT.keras [--model two_stream]
        [--stream spatial|temporal] [--other-stream CHECKPOINT2.pth]
        [--backbone resnet50_torch] [--image-size 224] [--segments 3]
        [--flow-length L] [--classes FILE] [--overwrite]

Reads the checkpoint with NumPy (no PyTorch needed, no pickled code run;
`keras_twostream.backbones.load_torch_weights`), builds a two-stream model
with the torchvision-layout backbone the checkpoint holds (`resnet50_torch`,
`resnet101_torch`, or the test checkpoints' `tiny_torch`; from its blocks per
stage), and loads it into the `--stream` backbone and, from `fc` /
`cls_head.fc_cls`, that stream's classifier. `--other-stream` loads a second
checkpoint (e.g. the flow model next to the RGB one) into the other stream.
An RGB checkpoint given for the temporal stream is adapted to 2L channels
(TSN's cross-modality averaging). The report lists the tensors mapped and
every missing, unexpected or skipped key by name.

Defaults come from the checkpoint: the number of classes from its classifier
(`--num-classes` without one), class names from MMAction2 1.x metadata
(`meta.dataset_meta.classes`) or `--classes FILE` (one name per line), L from
a flow conv1's 2L input channels (else 5, MMAction2's TSN flow length). With
one stream converted the other keeps random weights and `fused` is the
converted stream alone (fusion weights 1:0); with both, `fused` is their 1:1
average as MMAction2 reports its two-stream TSN.

Next to OUT.keras it writes OUT.json, the model card, with the input
normalisation the weights expect (MMAction2's RGB mean/std, the `torch`
preset; flow `(q - 128) / 128` without mean subtraction, the `mmaction`
preset; TV-L1 flow with bound 20 as MMAction2 extracts it) and the TSN test
protocol (25 frames, 10 crops). `predict`, `evaluate`, and `train --weights
OUT.keras` read it from there.
"""

import os
import re
from pathlib import Path

from keras_twostream.commands import UserError, common

COMMAND = "convert"
STREAMS = ("spatial", "temporal")
# MMAction2's TSN flow models stack 5 flow fields (in_channels=10).
DEFAULT_FLOW_LENGTH = 5


def add_arguments(parser):
    """Adds `convert`'s arguments to an `argparse` parser.

    Example:

    >>> import argparse
    >>> from keras_twostream.commands import convert
    >>> parser = argparse.ArgumentParser()
    >>> convert.add_arguments(parser)
    >>> parser.parse_args(["tsn_flow.pth", "tsn.keras", "--stream", "temporal"]).stream
    'temporal'
    """
    parser.add_argument("checkpoint", help="a PyTorch .pth file (MMAction2 TSN or torchvision)")
    parser.add_argument("out", help="the .keras file to write (its model card OUT.json beside it)")
    parser.add_argument(
        "--model", choices=["two_stream"], default="two_stream", help="the architecture to build"
    )
    parser.add_argument(
        "--stream",
        choices=STREAMS,
        default=None,
        help="the stream CHECKPOINT goes into (default: temporal for a flow conv1, else spatial)",
    )
    parser.add_argument(
        "--other-stream", metavar="CHECKPOINT", help="a second checkpoint, for the other stream"
    )
    parser.add_argument(
        "--backbone",
        choices=["resnet50_torch", "resnet101_torch", "tiny_torch"],
        help="default: the one the checkpoint holds",
    )
    parser.add_argument("--image-size", type=int, default=224, help="input height and width")
    parser.add_argument("--segments", type=int, default=3, help="TSN segments K (MMAction2: 3)")
    parser.add_argument("--flow-length", type=int, help="L flow fields (default: from conv1, or 5)")
    parser.add_argument("--num-classes", type=int, help="classes, for checkpoints without fc")
    parser.add_argument("--classes", help="a text file of class names, one per line")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(func=run)


def _state(path):
    """The checkpoint's state dict in torchvision names, and its class names from the metadata."""
    from keras_twostream.backbones.torch_checkpoint import read_torch_checkpoint
    from keras_twostream.backbones.torch_weights import _state_dict, _torchvision_keys

    if not os.path.isfile(path):
        raise UserError(f"{path}: no such checkpoint")
    checkpoint = read_torch_checkpoint(path)
    _, renamed, _ = _torchvision_keys(_state_dict(checkpoint, path))
    classes = None
    meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
    if isinstance(meta, dict) and isinstance(meta.get("dataset_meta"), dict):
        names = meta["dataset_meta"].get("classes")
        if isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names):
            classes = list(names)
    return {name: array for name, (_, array) in renamed.items()}, classes


def _architecture(state, path):
    """The torch-layout backbone whose blocks per stage and widths the state dict has."""
    from keras_twostream.backbones.resnet_torch import TORCH_RESNETS

    blocks = []
    for layer in range(1, 5):
        indices = {int(m.group(1)) for k in state if (m := re.match(rf"layer{layer}\.(\d+)\.", k))}
        blocks.append(len(indices))
    width = state["conv1.weight"].shape[0] if "conv1.weight" in state else None
    for name, (num_blocks, planes) in TORCH_RESNETS.items():
        if tuple(blocks) == num_blocks and width == planes:
            return name
    raise UserError(
        f"{path}: a ResNet with {blocks} bottleneck blocks per stage and a {width}-channel "
        f"conv1, not one of {sorted(TORCH_RESNETS)} (torchvision / MMAction2 ResNet-50/101)"
    )


def _read_classes(path, count):
    try:
        names = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    except OSError as error:
        raise UserError(f"argument --classes: {common.first_line(error)}") from None
    names = [n for n in names if n]
    if count is not None and len(names) != count:
        raise UserError(
            f"argument --classes: {path} names {len(names)} classes; the model has {count}"
        )
    return names


def run(args):
    """Runs `keras-twostream convert` (see the module docstring).

    Example:

    >>> from keras_twostream.cli import main
    >>> main(["convert", "tsn_r50_rgb.pth", "tsn.keras", "--other-stream", "tsn_r50_flow.pth"])  # doctest: +SKIP
    0
    """
    from keras_twostream.backbones import load_torch_weights
    from keras_twostream.backbones.torch_weights import MMACTION2_NORMALIZATION
    from keras_twostream.models import MODELS

    out = Path(args.out)
    if out.suffix != ".keras":
        raise UserError(f"{out}: the output must be a .keras file")
    if out.exists() and not args.overwrite:
        raise UserError(f"{out} exists; pass --overwrite to replace it")
    for name in ("image_size", "segments", "flow_length", "num_classes"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"argument --{name.replace('_', '-')}: expected a positive integer")

    state, classes = _state(args.checkpoint)
    in_channels = state["conv1.weight"].shape[1] if "conv1.weight" in state else 3
    stream = args.stream or ("spatial" if in_channels == 3 else "temporal")
    if stream == "spatial" and in_channels != 3:
        raise UserError(
            f"{args.checkpoint}: its conv1 takes {in_channels} channels (a flow model); "
            "convert it with --stream temporal"
        )
    checkpoints = {stream: args.checkpoint}
    other_state = None
    if args.other_stream:
        other = STREAMS[1 - STREAMS.index(stream)]
        checkpoints[other] = args.other_stream
        other_state, other_classes = _state(args.other_stream)
        classes = classes or other_classes
    architecture = args.backbone or _architecture(state, args.checkpoint)

    flow_length = args.flow_length
    temporal_state = state if stream == "temporal" else other_state
    if flow_length is None:
        channels = temporal_state["conv1.weight"].shape[1] if temporal_state is not None else 3
        flow_length = channels // 2 if channels != 3 else DEFAULT_FLOW_LENGTH
    num_classes = args.num_classes
    for path, st in ((args.checkpoint, state), (args.other_stream, other_state)):
        if st is not None and "fc.weight" in st:
            found = int(st["fc.weight"].shape[0])
            if num_classes is not None and found != num_classes:
                raise UserError(
                    f"{path}: its classifier has {found} classes, not {num_classes} "
                    "(--num-classes or the other checkpoint)"
                )
            num_classes = found
    if num_classes is None:
        raise UserError(f"{args.checkpoint}: no classifier (fc) in it; give --num-classes")
    if args.classes:
        classes = _read_classes(args.classes, num_classes)
    if not classes or len(classes) != num_classes:
        classes = [f"class_{i}" for i in range(num_classes)]

    # === Model ===
    fusion = (
        (1.0, 1.0) if len(checkpoints) == 2 else ((1.0, 0.0) if stream == "spatial" else (0.0, 1.0))
    )
    try:
        model = MODELS[args.model](
            num_classes=num_classes,
            backbone=architecture,
            image_size=args.image_size,
            num_segments=args.segments,
            flow_length=flow_length,
            fusion_weights=fusion,
        )
    except ValueError as error:
        raise UserError(f"cannot build the model: {common.first_line(error)}") from None
    converted = {}
    for name, path in checkpoints.items():
        backbone = getattr(model, f"{name}_backbone")
        classifier = model.get_layer(f"{name}_classifier")
        has_fc = "fc.weight" in (state if path == args.checkpoint else other_state)
        try:
            report = load_torch_weights(backbone, path, classifier=classifier if has_fc else None)
        except ValueError as error:
            raise UserError(str(error)) from None
        for line in report.summary().splitlines():
            common.say(COMMAND, f"{name}: {line}")
        converted[name] = {
            "checkpoint": os.path.abspath(path),
            "layout": report.layout,
            "mapped": len(report.mapped),
            "adapted": report.adapted,
            "skipped": report.skipped,
        }

    # The model carries MMAction2's input normalisation and the class names.
    model.set_data_config(
        **MMACTION2_NORMALIZATION["spatial"],
        **MMACTION2_NORMALIZATION["temporal"],
        class_names=list(classes),
    )

    # === Outputs ===
    spec = common.model_spec(model)
    outputs = [n for n, _ in common.score_outputs(model)]
    data = {
        "modalities": list(spec.modalities),
        "image_size": spec.image_size,
        "segments": spec.segments,
        "flow_length": spec.flow_length,
        "diff_length": spec.diff_length,
        "num_paths": spec.num_paths,
        **MMACTION2_NORMALIZATION["spatial"],
        **MMACTION2_NORMALIZATION["temporal"],
        # MMAction2 extracts TV-L1 flow (denseflow) quantised with bound 20.
        "flow": "tvl1",
        "bound": 20.0,
    }
    info = {
        "model": args.model,
        "classes": classes,
        "outputs": outputs,
        "data": data,
        "test": {"frames": 25, "crops": 10, "views": "frame"},  # MMAction2's TSN test protocol
        "builder_args": {
            "backbone": architecture,
            "image_size": args.image_size,
            "num_segments": args.segments,
            "flow_length": flow_length,
            "fusion_weights": list(fusion),
        },
        "converted": converted,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f"{out.stem}.tmp-{os.getpid()}.keras")
    model.save(temp)
    os.replace(temp, out)
    common.write_sidecar(out, info)
    pretrained = " and ".join(converted)
    common.say(
        COMMAND,
        f"wrote {out} ({architecture}, {num_classes} classes, {pretrained} stream"
        f"{'s' if len(converted) == 2 else ''} converted) and its model card {common.sidecar_path(out)}",
    )
    return 0
