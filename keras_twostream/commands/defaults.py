"""Paper-default training and test settings of every model, with the section each value comes from.

`keras-twostream train --model NAME` starts from `PAPER_DEFAULTS[NAME]`; every
value can be overridden on the command line. The architecture's own defaults
(dropout, fusion weights, attention sizes, ...) are those of the model's
builder and are not repeated here. `markdown_table()` renders the table the
README lists.

Fields:

- `backbone`, `image_size`, `segments` (TSN segments `K`, or TCLSTA's `T`
  frames per clip), `flow_length` (`L`): builder arguments;
- `weights`: `"imagenet"` or `"none"` (the initialisation of both streams);
- `batch_size`, `momentum`, `lr` (base learning rate), `weight_decay`,
  `clipnorm` (global gradient norm, `None` for none);
- `lr_schedule`: `"step"` (the rate times `lr_factor` at each of
  `lr_boundaries`: optimizer steps, or epochs with an `ep` suffix),
  `"plateau"` (times `lr_factor` when the monitored validation metric stops
  improving for `plateau_patience` epochs) or `"constant"`;
- `iterations` (optimizer steps, converted to epochs at the batch size used)
  or `epochs`;
- `alternating_epochs`: epochs per iteration of CMA's branch-by-branch
  training (`AlternatingSchedule`), `None` for joint training;
- `pretrain_flow_epochs`: epochs of Flow-branch pre-training before the
  alternating iterations (CMA, Sect. 4.3; its CMA blocks stay identities),
  `None` or 0 for none; `--alternate-every N` alone also sets it to `N`;
- `flow_normalization`, `mean_subtract_flow`, `augmentation` (`"tsn"` or
  `"two_stream"`): see `keras_twostream.data.make_dataset`;
- `test_frames`, `test_crops`: the test protocol of `keras-twostream evaluate`;
- `model_args`: other builder arguments (`--model-arg` overrides them);
- `test_views`: `"frame"` scores one snippet per view (the model rebuilt with
  one segment) or `"clip"` scores clips of `segments` frames (models whose
  temporal modelling needs several frames).

`finetune` holds the values that change when the streams start from
pretrained weights (`--weights imagenet` or a weights file).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Default:
    """One default value and where it comes from.

    Example:

    >>> from keras_twostream.commands.defaults import Default
    >>> Default(0.9, "Sect. 5").value
    0.9
    """

    value: object
    source: str


_SILENT = "not given in the paper"

PAPER_DEFAULTS = {
    "two_stream": {
        "paper": Default("Simonyan & Zisserman, NIPS 2014", ""),
        "backbone": Default("cnn_m_2048", "Sect. 5, Fig. 1 (CNN-M-2048, both streams)"),
        "image_size": Default(224, "Sect. 5, Training (224x224 crops of 256-pixel frames)"),
        "segments": Default(1, "Sect. 5, Training (one frame per video and step)"),
        "flow_length": Default(10, "Sect. 6 (L = 10)"),
        "weights": Default(
            "none",
            "Sect. 6: the temporal net from scratch; the paper pre-trains the spatial net on "
            "ILSVRC-2012, for which no CNN-M-2048 weights are available here",
        ),
        "batch_size": Default(256, "Sect. 5, Training"),
        "momentum": Default(0.9, "Sect. 5, Training"),
        "lr": Default(1e-2, "Sect. 5, Training"),
        "weight_decay": Default(0.0, _SILENT),
        "clipnorm": Default(None, _SILENT),
        "lr_schedule": Default("step", "Sect. 5, Training"),
        "lr_boundaries": Default(["50000", "70000"], "Sect. 5, Training (from scratch)"),
        "lr_factor": Default(0.1, "Sect. 5, Training (1e-2 -> 1e-3 -> 1e-4)"),
        "iterations": Default(80000, "Sect. 5, Training (from scratch)"),
        "epochs": Default(None, ""),
        "alternating_epochs": Default(None, ""),
        "pretrain_flow_epochs": Default(None, ""),
        "flow_normalization": Default("pixels", "Sect. 3.1 (displacements in pixels)"),
        "mean_subtract_flow": Default(True, "Sect. 3.1, Table 1b (mean displacement subtraction)"),
        "augmentation": Default(
            "two_stream", "Sect. 5, Training (random crops of the whole frame, flips, RGB jitter)"
        ),
        "video_sampling": Default(
            "class_uniform", "Sect. 5, Training (videos sampled uniformly across the classes)"
        ),
        "test_frames": Default(25, "Sect. 5, Testing"),
        "test_crops": Default(10, "Sect. 5, Testing (4 corners + centre, flipped)"),
        "test_views": Default("frame", "Sect. 5, Testing"),
        "finetune": Default(
            {"lr_boundaries": ["14000"], "iterations": 20000},
            "Sect. 5, Training (fine-tuning: 1e-3 after 14K, stop at 20K)",
        ),
    },
    "stpn": {
        "paper": Default("Wang, Long, Wang & Yu, CVPR 2017", ""),
        "backbone": Default(
            "resnet50",
            "Tables 2 and 7 (one of the paper's base networks; its ablations use BN-Inception, --backbone bn_inception, which has no ImageNet weights in Keras)",
        ),
        "image_size": Default(224, "not given; the backbones' ImageNet size"),
        "segments": Default(1, "Sect. 3.2 (one snippet: an RGB frame and P flow chunks)"),
        "flow_length": Default(10, "Sect. 3.2 (L = 10; P = 3 paths, Table 6 D)"),
        "weights": Default("imagenet", "Sect. 4.1 (both streams from ImageNet, cross-modality)"),
        "batch_size": Default(32, "Sect. 4.1"),
        "momentum": Default(0.9, "not given; Caffe's usual 0.9"),
        "lr": Default(1e-3, "Sect. 4.1 (ResNets; 1e-2 for VGG-16)"),
        "weight_decay": Default(0.0, _SILENT),
        "clipnorm": Default(None, _SILENT),
        "lr_schedule": Default("step", "Sect. 4.1"),
        "lr_boundaries": Default(["10000"], "Sect. 4.1 (divided by 10 every 10,000 iterations)"),
        "lr_factor": Default(0.1, "Sect. 4.1"),
        "iterations": Default(20000, "Sect. 4.1 (ResNets; 30,000 for VGG-16)"),
        "epochs": Default(None, ""),
        "alternating_epochs": Default(None, ""),
        "pretrain_flow_epochs": Default(None, ""),
        "flow_normalization": Default("pixels", _SILENT),
        "mean_subtract_flow": Default(True, "not given; the two-stream paper's Sect. 3.1"),
        "augmentation": Default("tsn", "Sect. 4.1 (scale jittering, flipping, cropping)"),
        "video_sampling": Default("shuffle", _SILENT + "; every video once per epoch"),
        "test_frames": Default(10, "Sect. 4.7 (10 snippets per video)"),
        "test_crops": Default(10, "Sect. 4.7 (crops and flips, as the two-stream paper)"),
        "test_views": Default("frame", "Sect. 4.7"),
        "finetune": Default({}, ""),
    },
    "cma": {
        "paper": Default("Chi, Tian, Mu & Tian, 2019 (cross-modality attention)", ""),
        "backbone": Default("resnet50", "Sect. 4.1, Implementation"),
        "image_size": Default(224, "Sect. 4.4, Input"),
        "segments": Default(3, "Sect. 4.4, Input (TSN, K = 3)"),
        "flow_length": Default(5, "Sect. 4.1 and 4.4 (five flow fields)"),
        "weights": Default("imagenet", "Sect. 4.1, Implementation"),
        "batch_size": Default(128, "Sect. 4.4, Training"),
        "momentum": Default(0.9, "not given; TSN's 0.9"),
        "lr": Default(1e-2, "Sect. 4.4, Training"),
        "weight_decay": Default(5e-4, "Sect. 4.4, Training"),
        "clipnorm": Default(None, _SILENT),
        "lr_schedule": Default(
            "plateau", "Sect. 4.4 (divided by 10 on a plateau, reset each iteration)"
        ),
        "lr_boundaries": Default([], ""),
        "lr_factor": Default(0.1, "Sect. 4.4, Training"),
        "iterations": Default(None, ""),
        "epochs": Default(
            90,
            "Sect. 4.3 (Flow pre-training, then 30 epochs per iteration; iterations 1-2: RGB, "
            "then Flow)",
        ),
        "alternating_epochs": Default(30, "Sect. 4.3"),
        "pretrain_flow_epochs": Default(
            30,
            "Sect. 4.3 (the Flow branch is trained first, its CMA blocks identities; the epochs "
            "are not given: one iteration's length)",
        ),
        "flow_normalization": Default(
            "bound", "Sect. 4.4, Input (truncated to +-20, scaled to [-1, 1])"
        ),
        "mean_subtract_flow": Default(False, "Sect. 4.4, Input (no mean subtraction mentioned)"),
        "augmentation": Default(
            "tsn", "Sect. 4.4, Input (flips, cropping, scale jittering of TSN)"
        ),
        "video_sampling": Default("shuffle", _SILENT + "; every video once per epoch (TSN)"),
        "test_frames": Default(25, "Sect. 4.4, Testing"),
        "test_crops": Default(10, "Sect. 4.4, Testing"),
        "test_views": Default("frame", "Sect. 4.4, Testing"),
        "finetune": Default({}, ""),
    },
    "tclsta": {
        "paper": Default("Peng, Zhao & Zhang, IEEE TCSVT 2018", ""),
        "backbone": Default("resnet50", "Sect. IV-B-1, Table II"),
        "image_size": Default(224, "Sect. IV-B-1"),
        "segments": Default(8, "not given (frames per clip T); the model's default"),
        "flow_length": Default(10, "Sect. IV-B-1 (L = 10)"),
        "weights": Default("imagenet", "Sect. IV-B-1 (ResNet-50 connection network)"),
        "batch_size": Default(8, "Sect. IV-B-1 (64 frames per mini-batch = 8 clips of T = 8)"),
        "momentum": Default(0.9, "Sect. IV-B-1"),
        "lr": Default(1e-3, "Sect. IV-B-1"),
        "weight_decay": Default(1e-4, "Sect. IV-B-1"),
        "clipnorm": Default(None, _SILENT),
        "lr_schedule": Default(
            "plateau", "Sect. IV-B-1 (divided by 10 when validation accuracy saturates)"
        ),
        "lr_boundaries": Default([], ""),
        "lr_factor": Default(0.1, "Sect. IV-B-1"),
        "iterations": Default(
            60000, "Sect. IV-B-1 (30K frame / 60K flow iterations; joint: the longer)"
        ),
        "epochs": Default(None, ""),
        "alternating_epochs": Default(None, ""),
        "pretrain_flow_epochs": Default(None, ""),
        "flow_normalization": Default("pixels", "Sect. IV-B-1 (flow as in the two-stream paper)"),
        "mean_subtract_flow": Default(
            True, "the two-stream paper's Sect. 3.1, which TCLSTA follows"
        ),
        "augmentation": Default("tsn", _SILENT + "; TSN's multi-scale crops"),
        "video_sampling": Default("shuffle", _SILENT + "; every video once per epoch"),
        "test_frames": Default(24, "not given; 3 clips of T = 8 equally spaced frames"),
        "test_crops": Default(10, "not given; the two-stream protocol"),
        "test_views": Default("clip", "the LSTM attends over the T frames of a clip"),
        "finetune": Default({}, ""),
    },
    "mpa_sal": {
        "paper": Default("MPA + SAL (RGB-only two-stream: RGB and RGB differences)", ""),
        "backbone": Default("resnet101", "the builder's reading of the paper"),
        "image_size": Default(224, "TSN, which the paper compares with (Tables 1-2)"),
        "segments": Default(3, "TSN's K = 3 (frames consensus G, Sect. 3)"),
        "flow_length": Default(None, "no optical flow: RGB differences of adjacent frames"),
        "weights": Default("imagenet", "not given; TSN's ImageNet initialisation"),
        "batch_size": Default(64, "Implementation details"),
        "momentum": Default(0.9, "Implementation details"),
        "lr": Default(1e-3, "Implementation details"),
        "weight_decay": Default(0.0, _SILENT),
        "clipnorm": Default(
            None,
            "Implementation details: 20 spatial, 40 temporal, clipped by the model itself per stream",
        ),
        "lr_schedule": Default("step", "Implementation details (x0.1 every 40 epochs)"),
        "lr_boundaries": Default(["40ep", "80ep"], "Implementation details"),
        "lr_factor": Default(0.1, "Implementation details"),
        "iterations": Default(None, ""),
        "epochs": Default(120, "Implementation details (80 spatial / 120 temporal: the longer)"),
        "alternating_epochs": Default(None, ""),
        "pretrain_flow_epochs": Default(None, ""),
        "flow_normalization": Default("pixels", "unused"),
        "mean_subtract_flow": Default(True, "unused"),
        "augmentation": Default("tsn", "TSN's (the paper compares with TSN, Tables 1-2)"),
        "video_sampling": Default("shuffle", "TSN's (every video once per epoch)"),
        "test_frames": Default(25, "TSN's protocol"),
        "test_crops": Default(10, "TSN's protocol"),
        "test_views": Default("frame", "TSN's protocol"),
        "model_args": Default({}, "the builder's: both streams, RGB and RGB differences, fused"),
        "finetune": Default({}, ""),
    },
}
# The 3-D CMA variant (Sect. 5.6) trains like CMA; its clips are scored whole.
PAPER_DEFAULTS["cma_3d"] = {
    **PAPER_DEFAULTS["cma"],
    "paper": Default("Chi et al., 2019, Sect. 5.6 (3-D CMA on a pseudo-3-D ResNet)", ""),
    "backbone": Default(None, "the builder's tiny P3D ResNet"),
    "image_size": Default(112, "the builder's default"),
    "segments": Default(8, "the builder's default (T frames per clip)"),
    "flow_length": Default(1, "one flow field per frame"),
    "weights": Default("none", "no pretrained P3D weights"),
    "test_frames": Default(24, "not given; 3 clips of T = 8 equally spaced frames"),
    "test_views": Default("clip", "3-D convolutions over the T frames of a clip"),
}

# Fields of a defaults entry that the table shows, in order, with their headings.
_TABLE_FIELDS = (
    ("backbone", "backbone"),
    ("image_size", "image size"),
    ("segments", "segments"),
    ("flow_length", "flow fields L"),
    ("weights", "initialisation"),
    ("batch_size", "batch size"),
    ("momentum", "SGD momentum"),
    ("lr", "learning rate"),
    ("lr_schedule", "schedule"),
    ("lr_boundaries", "decay points"),
    ("iterations", "iterations"),
    ("epochs", "epochs"),
    ("weight_decay", "weight decay"),
    ("clipnorm", "gradient clipping"),
    ("alternating_epochs", "epochs per branch iteration"),
    ("pretrain_flow_epochs", "Flow pre-training epochs"),
    ("flow_normalization", "flow scaling"),
    ("mean_subtract_flow", "flow mean subtraction"),
    ("augmentation", "training augmentation"),
    ("video_sampling", "video sampling"),
    ("test_frames", "test frames"),
    ("test_crops", "test crops"),
)


def training_defaults(model):
    """The default values for `model` (a `PAPER_DEFAULTS` key) as a plain dict.

    Models without an entry (a builder added to `keras_twostream.models.MODELS`
    later) get generic defaults: the builder's architecture, SGD 0.01 with
    momentum 0.9, 30 epochs, the two-stream test protocol.

    Example:

    >>> from keras_twostream.commands.defaults import training_defaults
    >>> training_defaults("cma")["flow_length"]
    5
    """
    entry = PAPER_DEFAULTS.get(model)
    if entry is None:
        entry = {
            **PAPER_DEFAULTS["two_stream"],
            "backbone": Default(None, ""),
            "image_size": Default(224, ""),
            "segments": Default(3, ""),
            "flow_length": Default(None, ""),
            "batch_size": Default(32, ""),
            "lr_schedule": Default("constant", ""),
            "lr_boundaries": Default([], ""),
            "iterations": Default(None, ""),
            "epochs": Default(30, ""),
            "finetune": Default({}, ""),
        }
    values = {key: default.value for key, default in entry.items()}
    values.setdefault("model_args", {})
    return values


def _format(value):
    if value is None or value == []:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def markdown_table(models=None):
    """The paper defaults as a Markdown table: one row per setting, one column per model.

    Each cell is the value and, in parentheses, where it comes from.

    Example:

    >>> from keras_twostream.commands.defaults import markdown_table
    >>> print(markdown_table(["two_stream"]).splitlines()[0])
    | setting | two_stream |
    """
    models = list(models or [m for m in PAPER_DEFAULTS if m != "cma_3d"])
    lines = [
        "| setting | " + " | ".join(models) + " |",
        "|---|" + "---|" * len(models),
        "| paper | " + " | ".join(PAPER_DEFAULTS[m]["paper"].value for m in models) + " |",
    ]
    for key, heading in _TABLE_FIELDS:
        cells = []
        for model in models:
            default = PAPER_DEFAULTS[model][key]
            cell = _format(default.value)
            if default.source:
                cell += f" ({default.source})"
            cells.append(cell)
        lines.append(f"| {heading} | " + " | ".join(cells) + " |")
    finetune = [PAPER_DEFAULTS[m]["finetune"] for m in models]
    if any(d.value for d in finetune):
        cells = [
            (", ".join(f"{k}={_format(v)}" for k, v in d.value.items()) + f" ({d.source})")
            if d.value
            else "-"
            for d in finetune
        ]
        lines.append("| from pretrained weights | " + " | ".join(cells) + " |")
    return "\n".join(lines)
