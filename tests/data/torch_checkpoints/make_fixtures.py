"""Writes the PyTorch checkpoints and reference outputs of tests/data/torch_checkpoints (run once, with torch).

Not part of the library or its tests (which never import torch): run it with an
interpreter that has PyTorch and torchvision, e.g.

    python3 -m venv /work/torchvenv
    /work/torchvenv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /work/torchvenv/bin/python tests/data/torch_checkpoints/make_fixtures.py

It writes, with fixed seeds:

* `tiny_rgb_mmaction2.pth`: an MMAction2 1.x-style recognizer checkpoint
  (`{"meta": ..., "state_dict": {"backbone.conv1.conv.weight": ...,
  "cls_head.fc_cls.weight": ...}}`) of a torchvision-layout ResNet with one
  torchvision `Bottleneck` per stage and 8/16/32/64 planes, 5 classes, random
  weights and random non-trivial BatchNorm statistics;
* `tiny_rgb_torchvision.pth`: the same network as a plain torchvision state
  dict (`conv1.weight`, `layer1.0.downsample.0.weight`, ..., `fc.weight`);
* `tiny_flow_mmaction2.pth`: an MMAction2 0.x-style checkpoint of the 10-channel
  (5 flow fields) variant, other weights;
* `dtypes.pth`: tensors in float16, bfloat16, float64 and int64, a transposed
  (non-contiguous) tensor and a view at a storage offset;
* `tiny_outputs.npz`: for each network, its eval-mode outputs on a fixed input
  (`{name}_input` NCHW, `{name}_layer1` ... `{name}_layer4` NCHW stage outputs,
  `{name}_features` the pooled vector, `{name}_logits`).

With `--resnet50 DIR` it writes a full-size torchvision ResNet-50 (random
weights and BatchNorm statistics) and its outputs into DIR instead, for the
full-size check (`tests/backbones/test_torch_weights.py`, and the report's
figures).

MMAction2's names are those of its ResNet, whose convolutions are mmcv
`ConvModule`s (`conv1.conv`, `conv1.bn`, `layer1.0.conv1.conv`,
`layer1.0.conv1.bn`, `layer1.0.downsample.conv`, `layer1.0.downsample.bn`).
"""

import argparse
import collections
import os
import re

import numpy as np
import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet, resnet50

HERE = os.path.dirname(os.path.abspath(__file__))
TINY_PLANES = (8, 16, 32, 64)
NUM_CLASSES = 5
CLASSES = ["archery", "bowling", "diving", "fencing", "juggling"]


class TinyResNet(ResNet):
    """torchvision's ResNet (its `_make_layer`, `Bottleneck` and `forward`) with 8..64 planes."""

    def __init__(self, in_channels=3, num_classes=NUM_CLASSES, planes=TINY_PLANES):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = planes[0]
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        self.conv1 = nn.Conv2d(in_channels, planes[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(Bottleneck, planes[0], 1)
        self.layer2 = self._make_layer(Bottleneck, planes[1], 1, stride=2)
        self.layer3 = self._make_layer(Bottleneck, planes[2], 1, stride=2)
        self.layer4 = self._make_layer(Bottleneck, planes[3], 1, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(planes[3] * Bottleneck.expansion, num_classes)


def randomize(model, seed):
    """Random weights (torchvision's init, reseeded) and random BatchNorm statistics."""
    torch.manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            with torch.no_grad():
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.2)
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(1000)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.1)
            nn.init.normal_(module.bias, std=0.1)
    return model.eval()


def mmaction2_key(key):
    """torchvision state-dict key -> MMAction2's (ConvModule names, `backbone.` prefix)."""
    if key.startswith("fc."):
        return "cls_head.fc_cls." + key[len("fc.") :]
    for pattern, replacement in (
        (r"^conv1\.", "conv1.conv."),
        (r"^bn1\.", "conv1.bn."),
        (r"^(layer\d+\.\d+)\.conv(\d)\.", r"\1.conv\2.conv."),
        (r"^(layer\d+\.\d+)\.bn(\d)\.", r"\1.conv\2.bn."),
        (r"^(layer\d+\.\d+)\.downsample\.0\.", r"\1.downsample.conv."),
        (r"^(layer\d+\.\d+)\.downsample\.1\.", r"\1.downsample.bn."),
    ):
        key, count = re.subn(pattern, replacement, key)
        if count:
            break
    return "backbone." + key


def mmaction2_checkpoint(model, meta):
    state = collections.OrderedDict(
        (mmaction2_key(k), v.detach().clone()) for k, v in model.state_dict().items()
    )
    return {"meta": meta, "state_dict": state}


@torch.no_grad()
def outputs(model, x):
    """Eval-mode stage outputs, pooled features and logits (torchvision's forward, unrolled)."""
    h = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    result = {}
    for index in range(1, 5):
        h = getattr(model, f"layer{index}")(h)
        result[f"layer{index}"] = h.numpy()
    features = torch.flatten(model.avgpool(h), 1)
    result["features"] = features.numpy()
    result["logits"] = model.fc(features).numpy()
    np.testing.assert_allclose(result["logits"], model(x).numpy(), rtol=1e-5, atol=1e-6)
    return result


def write_tiny():
    arrays = {}
    rgb = randomize(TinyResNet(in_channels=3), seed=0)
    flow = randomize(TinyResNet(in_channels=10), seed=1)
    generator = torch.Generator().manual_seed(2)
    # Inputs on the scale of normalised frames; 64x72 (non-square) catches transposed axes,
    # and an odd size after the stem catches asymmetric padding.
    inputs = {
        "rgb": torch.randn(2, 3, 64, 72, generator=generator),
        "flow": torch.randn(2, 10, 64, 72, generator=generator),
    }
    torch.save(
        mmaction2_checkpoint(
            rgb,
            {
                "mmengine_version": "0.10.4",
                "dataset_meta": {"classes": CLASSES},
                "seed": 0,
                "experiment_name": "tsn_tiny_rgb",
                "epoch": 100,
                "best_score": np.float64(0.5),  # MMEngine metadata holds NumPy scalars
            },
        ),
        os.path.join(HERE, "tiny_rgb_mmaction2.pth"),
    )
    torch.save(rgb.state_dict(), os.path.join(HERE, "tiny_rgb_torchvision.pth"))
    torch.save(
        mmaction2_checkpoint(
            flow, {"mmcv_version": "1.3.1", "epoch": 110, "iter": 1000, "config": "flow"}
        ),
        os.path.join(HERE, "tiny_flow_mmaction2.pth"),
    )
    for name, model in (("rgb", rgb), ("flow", flow)):
        arrays[f"{name}_input"] = inputs[name].numpy()
        for key, value in outputs(model, inputs[name]).items():
            arrays[f"{name}_{key}"] = value
    np.savez_compressed(os.path.join(HERE, "tiny_outputs.npz"), **arrays)

    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 8
    torch.save(
        collections.OrderedDict(
            half=base.half(),
            bfloat16=base.bfloat16(),
            double=base.double(),
            long=torch.arange(5, dtype=torch.int64) - 2,
            transposed=base.t(),  # strides (1, 6)
            offset=base[1:3, 2:5],  # a view at storage offset 8
        ),
        os.path.join(HERE, "dtypes.pth"),
    )


def write_resnet50(directory):
    os.makedirs(directory, exist_ok=True)
    model = randomize(resnet50(weights=None, num_classes=400), seed=3)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    torch.save(mmaction2_checkpoint(model, {"epoch": 100}), os.path.join(directory, "resnet50.pth"))
    arrays = {"input": x.numpy(), **outputs(model, x)}
    np.savez(os.path.join(directory, "resnet50_outputs.npz"), **arrays)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resnet50", metavar="DIR", help="write a full-size ResNet-50 into DIR")
    args = parser.parse_args()
    if args.resnet50:
        write_resnet50(args.resnet50)
    else:
        write_tiny()


if __name__ == "__main__":
    main()
