"""`keras-twostream train`: train any model of the library on a frame folder or a folder of videos.

    keras-twostream train DATA --model two_stream [--annotations SPLITS] [--output DIR] ...

DATA is a frame folder written by `keras-twostream extract` (with its
`rawframes.txt` and `classes.txt`) or a folder of videos, extracted first into
`DATA_frames`. The videos and their labels come from `--annotations` (UCF101
`ucfTrainTestlist`, HMDB51 split folder, rawframe/video list or CSV; see
`keras_twostream.data.load_annotations`) or from `rawframes.txt`.

Every setting defaults to the model's paper (`keras_twostream.commands.defaults`).
Training uses `model.fit` with progress bars and writes into the output folder:

- `best.keras` (best validation accuracy of the primary output, or lowest loss
  without validation data) and `last.keras`, each with its model card
  `best.json` / `last.json` (class names, data settings; see
  `keras_twostream.commands.common`), written atomically;
- `history.csv` (one row per epoch), `training_curves.png`, `logs/` (TensorBoard,
  when the `tensorboard` package is installed), `train.json` (every setting).

- `checkpoints/`: the whole training state (`keras_twostream.training.ResumableCheckpoint`),
  saved atomically at every epoch end and every `--save-every` batches. A run that was killed
  resumes exactly where it stopped when the same command is started again (`--restart` starts
  afresh).

`--strategy mirrored` trains under `tf.distribute.MirroredStrategy` with synchronised batch
normalisation, `--strategy multi-worker` on the JAX backend across processes
(docs/distributed.md), `--mixed-precision` in float16 (GPU) or bfloat16 (CPU).
"""

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path

from keras_twostream.commands import UserError, common
from keras_twostream.commands.defaults import training_defaults

COMMAND = "train"
STREAM_CHOICES = ("spatial", "temporal", "both")
# Backbones with keras.applications ImageNet weights (keras_twostream.backbones.weights).
IMAGENET_BACKBONES = ("resnet50", "resnet101", "vgg16")


def add_arguments(parser):
    """Adds `train`'s arguments to an `argparse` parser.

    Example:

    >>> import argparse
    >>> from keras_twostream.commands import train
    >>> parser = argparse.ArgumentParser()
    >>> train.add_arguments(parser)
    >>> parser.parse_args(["frames", "--model", "cma", "--epochs", "2"]).epochs
    2
    """
    parser.add_argument(
        "data",
        nargs="?",
        help="frame folder from `keras-twostream extract`, or a folder of videos (may come from "
        "--config)",
    )
    parser.add_argument(
        "--model",
        help="architecture: two_stream, stpn, cma, tclsta, mpa_sal (keras_twostream.models.MODELS); "
        "required unless --config gives it",
    )
    parser.add_argument(
        "--config",
        metavar="TRAIN_JSON",
        help="the train.json of an earlier run: its recorded arguments are the defaults of this "
        "one, and every option given on this command line overrides them",
    )
    group = parser.add_argument_group("data")
    group.add_argument(
        "--annotations", help="split folder or list file (default: DATA/rawframes.txt)"
    )
    group.add_argument("--format", default="auto", help="annotation format (default: detected)")
    group.add_argument("--split", type=int, default=1, help="UCF101/HMDB51 split (1, 2 or 3)")
    group.add_argument(
        "--val",
        default="test",
        help="validation videos: 'test' (the split's test list), 'none', or a fraction of the "
        "training videos held out, e.g. 0.1",
    )
    group.add_argument(
        "--skip-missing", action="store_true", help="leave out videos without a frame folder"
    )
    group.add_argument(
        "--frames-dir", help="where a folder of videos is extracted (default: DATA_frames)"
    )
    group.add_argument(
        "--flow", choices=["tvl1", "dis", "farneback"], default="tvl1", help="flow for videos"
    )
    group.add_argument("--short-side", type=int, default=256, help="frame short side for videos")
    group.add_argument("--workers", type=int, default=1, help="extraction processes for videos")
    group.add_argument(
        "--video-sampling",
        choices=["shuffle", "class_uniform"],
        help="which videos an epoch holds: every video once, shuffled, or videos drawn uniformly "
        "across the classes, as the two-stream paper samples them (Sect. 5); an epoch is as many "
        "samples either way (default: the model's paper: class_uniform for two_stream, else "
        "shuffle)",
    )
    common.add_on_error_argument(group)
    group = parser.add_argument_group(
        "multi-task learning (two_stream only; two-stream paper, Sect. 4, docs/cli.md)"
    )
    group.add_argument(
        "--extra-task",
        nargs="+",
        action="append",
        metavar="ARG",
        help="NAME FRAMES [ANNOTATIONS]: also train a softmax head for another dataset, on every "
        "video its annotations list for --split (FRAMES/rawframes.txt without ANNOTATIONS; the "
        "format is detected), e.g. --extra-task ucf101 ucf101_frames ucfTrainTestlist (repeatable); "
        "DATA stays the primary task: validation, best.keras and evaluate use it",
    )
    group.add_argument(
        "--task",
        metavar="NAME",
        help="the name of DATA's task (its outputs keep the plain names) in a multi-task run "
        "(default: the annotation format, ucf101 or hmdb51, else 'main')",
    )
    group = parser.add_argument_group("model (defaults: the model's paper)")
    group.add_argument(
        "--stream",
        choices=list(STREAM_CHOICES),
        help="two_stream only: train one net alone as the paper does (Sects. 5-6), then `evaluate` "
        "each run and `fuse` their scores. spatial: the RGB net, from ImageNet where the backbone "
        "has weights, fine-tuning schedule; temporal: the flow net from scratch, its own schedule "
        "(both scaled to --epochs). Default: both, jointly in one fit (docs/cli.md)",
    )
    group.add_argument(
        "--init-streams",
        nargs="+",
        metavar="RUN",
        help="stpn only, the paper's multistage training (Sect. 4.1): copy the backbones of "
        "separately trained two_stream runs (folders or .keras files: one joint run, or a "
        "--stream spatial run and a --stream temporal run) into the pyramid before training it",
    )
    group.add_argument(
        "--backbone",
        help="resnet50, resnet101, bn_inception, vgg16, cnn_m_2048, tiny, or a torchvision-layout "
        "resnet50_torch, resnet101_torch, tiny_torch",
    )
    group.add_argument("--image-size", type=int)
    group.add_argument("--segments", type=int, help="TSN segments K (TCLSTA: frames per clip T)")
    group.add_argument("--flow-length", type=int, help="stacked flow fields L")
    group.add_argument(
        "--weights",
        help="initialisation: imagenet, none, a backbone weights file, or a .keras model",
    )
    group.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other builder argument, VALUE in JSON (repeatable), e.g. fusion_dim=1024",
    )
    group = parser.add_argument_group("optimisation (defaults: the model's paper)")
    group.add_argument("--epochs", type=int)
    group.add_argument(
        "--batch-size", type=int, help="samples per optimizer update (the paper's batch)"
    )
    group.add_argument(
        "--accumulate",
        type=int,
        default=1,
        metavar="N",
        help="split each batch into N micro-batches and accumulate their gradients before one "
        "update, so the papers' batches (256, 128, 64) fit one device; --batch-size stays the "
        "batch of an update and must be a multiple of N",
    )
    group.add_argument("--lr", type=float, help="base learning rate")
    group.add_argument("--lr-schedule", choices=["step", "plateau", "constant"])
    group.add_argument(
        "--lr-boundaries",
        nargs="*",
        help="step schedule: optimizer steps, or epochs with an 'ep' suffix (e.g. 40ep 80ep)",
    )
    group.add_argument("--lr-factor", type=float, help="learning-rate factor at each decay")
    group.add_argument(
        "--plateau-patience", type=int, default=5, help="epochs without improvement (plateau)"
    )
    group.add_argument(
        "--augmentation",
        choices=["tsn", "two_stream"],
        help="training crops: TSN's multi-scale corner crops, or the two-stream paper's random "
        "crops anywhere in the frame with PCA lighting (Sect. 5). Default: the model's paper",
    )
    group.add_argument("--momentum", type=float)
    group.add_argument("--weight-decay", type=float)
    group.add_argument("--clipnorm", type=float, help="global gradient-norm clipping")
    group.add_argument(
        "--alternate-every",
        type=int,
        metavar="EPOCHS",
        help="branch-by-branch training, EPOCHS per branch (CMA: 30); 0 trains the branches jointly",
    )
    group.add_argument(
        "--pretrain-flow",
        type=int,
        metavar="EPOCHS",
        help="branch-by-branch training: first train the Flow branch alone for EPOCHS, its CMA "
        "blocks kept identities, then alternate from RGB (CMA Sect. 4.3; default: the length of "
        "one iteration, --alternate-every); 0 starts alternating at once",
    )
    group = parser.add_argument_group("run")
    group.add_argument(
        "--output",
        help="output folder (default: keras_twostream_outputs/train/MODEL, or MODEL_STREAM with "
        "--stream spatial|temporal)",
    )
    group.add_argument(
        "--seed", type=int, default=0, help="seeds Python, NumPy, the backend and the data order"
    )
    group.add_argument(
        "--verbose", type=int, default=1, choices=[0, 1, 2], help="Keras progress output"
    )
    group = parser.add_argument_group("scale and resumption (docs/training-at-scale.md)")
    group.add_argument(
        "--strategy",
        choices=["default", "mirrored", "multi-worker"],
        default="default",
        help="mirrored: tf.distribute.MirroredStrategy over this machine's GPUs, with synchronised "
        "batch normalisation (--batch-size is the global batch); multi-worker: the JAX backend's "
        "DataParallel across processes (KERAS_DISTRIBUTION_* variables, docs/distributed.md)",
    )
    group.add_argument(
        "--mixed-precision",
        action="store_true",
        help="float16 on GPU, bfloat16 on CPU/TPU (FFT layers stay float32)",
    )
    group.add_argument(
        "--save-every",
        type=int,
        metavar="STEPS",
        help="also save a resumable checkpoint every STEPS batches (default: at every epoch end)",
    )
    group.add_argument(
        "--restart",
        action="store_true",
        help="ignore OUTPUT/checkpoints and train from the start (by default a killed run, "
        "restarted with the same command, resumes where it stopped)",
    )
    parser.set_defaults(func=run)


# --------------------------------------------------------------------------
# Settings.
# --------------------------------------------------------------------------


def _parse_model_args(items):
    parsed = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise UserError(f"argument --model-arg: expected KEY=VALUE, got {item!r}")
        try:
            parsed[key] = json.loads(value)
        except ValueError:
            parsed[key] = value  # a bare string
    return parsed


def resolve_settings(model, args):
    """The paper defaults of `model`, with the fine-tuning values when starting from weights,
    overridden by every argument given on the command line.

    Example:

    >>> from keras_twostream.cli import build_parser
    >>> from keras_twostream.commands.train import resolve_settings
    >>> args = build_parser().parse_args(["train", "frames", "--model", "cma", "--lr", "0.001"])
    >>> settings = resolve_settings("cma", args)
    >>> settings["lr"], settings["batch_size"], settings["weight_decay"]
    (0.001, 128, 0.0005)
    """
    settings = training_defaults(model)
    finetune = settings.pop("finetune", {}) or {}
    stream = _check_stream(model, getattr(args, "stream", None))
    if stream in ("spatial", "temporal"):
        _stream_weights(settings, args, stream)
    overrides = {
        "backbone": args.backbone,
        "image_size": args.image_size,
        "segments": args.segments,
        "flow_length": args.flow_length,
        "weights": args.weights,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "lr_schedule": args.lr_schedule,
        "lr_boundaries": args.lr_boundaries,
        "lr_factor": args.lr_factor,
        "momentum": args.momentum,
        "weight_decay": args.weight_decay,
        "clipnorm": args.clipnorm,
        "augmentation": getattr(args, "augmentation", None),
        "video_sampling": getattr(args, "video_sampling", None),
    }
    if stream in ("spatial", "temporal"):
        overrides["weights"] = None  # chosen per stream by _stream_weights
    weights = overrides["weights"] if overrides["weights"] is not None else settings["weights"]
    if str(weights).lower() != "none":
        settings.update(finetune)
    settings["stream"] = stream
    # The paper's run length, for scaling its decay points to a shorter --epochs (per-stream runs).
    settings["paper_iterations"] = settings.get("iterations")
    settings.update({k: v for k, v in overrides.items() if v is not None})
    if args.epochs is not None:
        settings["epochs"], settings["iterations"] = args.epochs, None
    settings["plateau_patience"] = args.plateau_patience
    if args.alternate_every is not None:
        if args.alternate_every < 0:
            raise UserError(
                f"argument --alternate-every: expected >= 0 epochs, got {args.alternate_every}"
            )
        settings["alternating_epochs"] = args.alternate_every or None
        if settings.get("pretrain_flow_epochs") and args.pretrain_flow is None:
            # The pre-training lasts one iteration by default (Sect. 4.3 gives no length).
            settings["pretrain_flow_epochs"] = args.alternate_every or None
    if args.pretrain_flow is not None:
        if args.pretrain_flow < 0:
            raise UserError(
                f"argument --pretrain-flow: expected >= 0 epochs, got {args.pretrain_flow}"
            )
        settings["pretrain_flow_epochs"] = args.pretrain_flow or None
        if args.pretrain_flow and not settings.get("alternating_epochs"):
            raise UserError(
                "argument --pretrain-flow: the Flow pre-training comes before branch-by-branch "
                "training, which this run does not use (--alternate-every EPOCHS; CMA only)"
            )
    for key in ("batch_size", "image_size", "segments", "flow_length"):
        value = settings.get(key)
        if value is not None and value < 1:
            raise UserError(
                f"argument --{key.replace('_', '-')}: expected a positive integer, got {value}"
            )
    if settings.get("epochs") is not None and settings["epochs"] < 1:
        raise UserError(f"argument --epochs: expected a positive integer, got {settings['epochs']}")
    if not settings["lr"] > 0:
        raise UserError(f"argument --lr: expected a positive learning rate, got {settings['lr']}")
    settings["accumulate"] = _check_accumulate(model, getattr(args, "accumulate", 1), settings)
    init_streams = getattr(args, "init_streams", None)
    if init_streams:
        if model != "stpn":
            raise UserError(
                f"argument --init-streams: applies to --model stpn only (its multistage training, "
                f"Sect. 4.1); for {model} start from weights with --weights"
            )
        if len(init_streams) > 2:
            raise UserError(
                "argument --init-streams: expected one two_stream run (both streams) or two "
                f"(spatial, then temporal); got {len(init_streams)}"
            )
    settings["init_streams"] = list(init_streams) if init_streams else None
    return settings


def init_stpn_streams(model, runs):
    """STPN's multistage training (Sect. 4.1): the streams of trained two_stream models, copied in.

    Args:
        model: the `STPN` to initialise.
        runs: one `.keras` file or run folder of a two_stream model with both streams, or two
            (the spatial stream's, then the temporal stream's; e.g. `train --stream spatial`
            and `--stream temporal` runs).

    Returns:
        A list of `(stream, path)` that were copied.

    Raises:
        UserError: a run cannot be read, lacks the stream, or its backbone does not match.
    """
    sources = [common.load_model(run) for run in runs]
    wanted = {"spatial": sources[0], "temporal": sources[-1]}
    copied, kwargs = [], {}
    for stream, (source, path) in wanted.items():
        if stream not in model._stream_block_names:
            continue  # e.g. a Table 4 variant without the spatial stream
        backbone = getattr(source, f"{stream}_backbone", None)
        if backbone is None:
            raise UserError(
                f"argument --init-streams: {path} has no {stream} stream (expected a two_stream "
                f"model trained with --stream {stream} or both)"
            )
        kwargs[stream] = backbone
        copied.append((stream, path))
    try:
        model.load_stream_weights(**kwargs)
    except ValueError as error:
        raise UserError(f"argument --init-streams: {common.first_line(error)}") from None
    return copied


def _check_accumulate(model, accumulate, settings):
    """`--accumulate N`: N micro-batches of `batch_size / N` per optimizer update."""
    accumulate = 1 if accumulate is None else accumulate
    if accumulate < 1:
        raise UserError(f"argument --accumulate: expected a positive integer, got {accumulate}")
    if accumulate > 1 and settings["batch_size"] % accumulate:
        raise UserError(
            f"argument --accumulate: --batch-size {settings['batch_size']} is the batch of one "
            f"update and must split into {accumulate} equal micro-batches"
        )
    if accumulate > 1 and model == "mpa_sal":
        raise UserError(
            "argument --accumulate: mpa_sal alternates its discriminator and generator updates "
            "at every step (Algorithm 1), which gradient accumulation would change; leave it out"
        )
    return accumulate


def _check_stream(model, stream):
    """`--stream` applies to `two_stream` only; `None` there means `"both"`."""
    if stream is None:
        return "both" if model == "two_stream" else None
    if model != "two_stream":
        raise UserError(
            f"argument --stream: applies to --model two_stream only (the two-stream paper trains "
            f"its spatial and temporal nets separately); {model} trains its streams together in "
            "one model, so leave --stream out"
        )
    return stream


def _stream_weights(settings, args, stream):
    """The paper's initialisation of one stream (two-stream paper, Sects. 5-6).

    spatial: pre-trained on ImageNet (ILSVRC-2012) and fine-tuned, so `--weights`
    defaults to `imagenet` where the backbone has keras.applications weights
    (ResNets, VGG-16); the paper's CNN-M-2048 has none here, so it starts from
    scratch with a note. temporal: trained from scratch (Sect. 6), so `--weights
    imagenet` is not used for it (a note says so); a weights file is used as given.
    """
    backbone = str(args.backbone or settings.get("backbone") or "")
    weights = args.weights
    if stream == "spatial":
        if weights is None:
            weights = "imagenet" if backbone in IMAGENET_BACKBONES else "none"
            if weights == "none":
                common.say(
                    COMMAND,
                    f"--stream spatial: the paper pre-trains the spatial net on ImageNet, but "
                    f"{backbone} has no ImageNet weights here; training it from scratch (pass "
                    "--backbone resnet50 or --weights FILE)",
                )
    else:
        if weights is not None and str(weights).lower() == "imagenet":
            common.say(
                COMMAND,
                "--stream temporal: the temporal net trains from scratch (two-stream paper, "
                "Sect. 6); --weights imagenet applies to the spatial stream only",
            )
            weights = "none"
        weights = weights or "none"
    settings["weights"] = weights


def scale_boundaries(settings, epochs, steps_per_epoch):
    """The paper's decay points as fractions of its run length, applied to this run.

    A per-stream run (`--stream spatial|temporal`) with `--epochs` keeps its paper
    schedule's shape: the temporal net's 50K/70K of 80K iterations become 62.5% and
    87.5% of the run's steps. Nothing changes when the run has the paper's length,
    the boundaries were given on the command line, or are in epochs.

    Example:

    >>> from keras_twostream.commands.train import scale_boundaries
    >>> scale_boundaries({"lr_boundaries": ["50000", "70000"], "paper_iterations": 80000},
    ...                  epochs=8, steps_per_epoch=10)
    ['50', '70']
    """
    boundaries = settings.get("lr_boundaries") or []
    total = settings.get("paper_iterations")
    if not boundaries or not total or any(str(b).endswith("ep") for b in boundaries):
        return boundaries
    steps = epochs * steps_per_epoch
    scaled = [max(1, round(int(b) / total * steps)) for b in boundaries]
    if scaled != sorted(set(scaled)):  # too short a run to keep every decay apart
        scaled = sorted(set(scaled))
    return [str(b) for b in scaled]


def parse_boundaries(boundaries, steps_per_epoch):
    """Decay points in optimizer steps: `"14000"` is a step, `"40ep"` epoch 40.

    Example:

    >>> from keras_twostream.commands.train import parse_boundaries
    >>> parse_boundaries(["14000", "40ep"], steps_per_epoch=500)
    [14000, 20000]
    """
    steps = []
    for item in boundaries or []:
        text = str(item).strip().lower()
        try:
            value = int(text[:-2]) * steps_per_epoch if text.endswith("ep") else int(text)
        except ValueError:
            raise UserError(
                f"argument --lr-boundaries: expected steps (14000) or epochs (40ep), got {item!r}"
            ) from None
        steps.append(value)
    if steps != sorted(set(steps)) or any(s < 1 for s in steps):
        raise UserError(
            f"argument --lr-boundaries: expected increasing positive values, got {boundaries}"
        )
    return steps


def make_optimizer(settings, steps_per_epoch):
    """SGD with momentum, the learning-rate schedule, weight decay and clipping of `settings`.

    The weight decay is the papers' coupled L2 term inside the momentum
    (`keras_twostream.training.CoupledSGD`), not Keras' decoupled decay.

    Example:

    >>> from keras_twostream.commands.defaults import training_defaults
    >>> from keras_twostream.commands.train import make_optimizer
    >>> optimizer = make_optimizer(training_defaults("cma"), steps_per_epoch=100)
    >>> round(float(optimizer.weight_decay), 6)
    0.0005
    """
    import keras

    lr = settings["lr"]
    if settings["lr_schedule"] == "step":
        boundaries = parse_boundaries(settings["lr_boundaries"], steps_per_epoch)
        if boundaries:
            lr = keras.optimizers.schedules.PiecewiseConstantDecay(
                boundaries=boundaries,
                values=[
                    settings["lr"] * settings["lr_factor"] ** i for i in range(len(boundaries) + 1)
                ],
            )
    kwargs = {"learning_rate": lr, "momentum": settings["momentum"]}
    if settings.get("weight_decay"):
        kwargs["weight_decay"] = settings["weight_decay"]
    if settings.get("clipnorm"):
        kwargs["global_clipnorm"] = settings["clipnorm"]
    if settings.get("accumulate", 1) > 1:
        # Keras averages the N micro-batch gradients and updates once; `iterations` (and so
        # the schedule) counts updates, and the coupled decay is added once per update.
        kwargs["gradient_accumulation_steps"] = settings["accumulate"]
    from keras_twostream.training.coupled_sgd import CoupledSGD

    return CoupledSGD(**kwargs)


def _builder_parameters(builder):
    """Argument names the builder accepts: its explicit signature, and the former names it
    still takes with a DeprecationWarning (`keras_twostream.models.RENAMED_ARGUMENTS`: runs
    recorded before the renaming still rerun)."""
    import inspect

    from keras_twostream.models import RENAMED_ARGUMENTS

    signature = inspect.signature(builder)
    names = {n for n, p in signature.parameters.items() if p.kind != p.VAR_KEYWORD}
    return names | set(RENAMED_ARGUMENTS.get(builder.__name__, ()))


def build_kwargs(builder, settings, num_classes, model_args):
    """The builder's keyword arguments from the settings (only those the builder accepts).

    Example:

    >>> from keras_twostream import build_tclsta
    >>> from keras_twostream.commands.train import build_kwargs
    >>> build_kwargs(build_tclsta, {"segments": 4, "image_size": 112}, 9, {})
    {'num_classes': 9, 'image_size': 112, 'num_segments': 4}
    """
    accepted = _builder_parameters(builder)
    kwargs = {"num_classes": num_classes}
    if settings.get("backbone"):
        kwargs["backbone"] = settings["backbone"]
    for key, names in (
        ("image_size", ("image_size",)),
        ("segments", ("num_segments", "num_frames")),
        ("flow_length", ("flow_length",)),
    ):
        if settings.get(key) is None:
            continue
        name = next((n for n in names if n in accepted), None)
        if name is not None:
            kwargs[name] = settings[key]
    weights = settings.get("weights")
    if weights and str(weights).lower() != "none" and not str(weights).endswith(".keras"):
        weight_args = sorted(
            n
            for n in accepted
            if n.endswith("_weights") and n not in ("fusion_weights", "class_weights")
        )
        if not weight_args:
            raise UserError(f"--weights {weights}: this model takes no backbone weights")
        kwargs.update({name: weights for name in weight_args})
    unknown = sorted(set(model_args) - accepted)
    if unknown:
        raise UserError(
            f"argument --model-arg: the builder takes no argument {' or '.join(map(repr, unknown))}"
        )
    kwargs.update(model_args)
    return kwargs


# --------------------------------------------------------------------------
# Hook points (issue #9 adds --strategy, --mixed-precision and resumption here).
# --------------------------------------------------------------------------


def build_and_compile(builder, kwargs, make_optimizer_fn, strategy=None, init_from=None):
    """Builds the model, copies initial weights, and compiles it, inside `strategy.scope()` if given.

    Args:
        builder: a builder of `keras_twostream.models.MODELS`.
        kwargs: its keyword arguments.
        make_optimizer_fn: a function of no arguments returning the optimizer
            (called inside the scope, so its variables live there).
        strategy: a `tf.distribute.Strategy`, or `None`.
        init_from: a `.keras` model whose weights initialise the new one, or `None`.

    Returns:
        The compiled model.

    Example:

    >>> from keras_twostream import build_two_stream
    >>> from keras_twostream.commands.train import build_and_compile
    >>> import keras
    >>> model = build_and_compile(build_two_stream, {"num_classes": 5, "backbone": "tiny", "image_size": 32,
    ...     "flow_length": 2}, lambda: keras.optimizers.SGD(0.01))
    >>> model.optimizer.__class__.__name__
    'SGD'
    """
    import contextlib

    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        try:
            model = builder(**kwargs)
        except (ValueError, TypeError) as error:
            raise UserError(f"cannot build the model: {common.first_line(error)}") from None
        except Exception as error:  # noqa: BLE001 - e.g. an ImageNet download without network
            raise UserError(
                f"cannot build the model ({type(error).__name__}: {common.first_line(error)}); "
                "with --weights imagenet the weights are downloaded once into ~/.keras/models"
            ) from None
        if init_from is not None:
            _copy_weights(init_from, model, kwargs["num_classes"])
        model.compile(optimizer=make_optimizer_fn())
    return model


def _copy_weights(path, model, num_classes):
    source, path = common.load_model(path)
    theirs = common.num_classes_of(source)
    if isinstance(num_classes, dict):  # multi-task: the primary task's (heads are checked below)
        num_classes = next(iter(num_classes.values()))
    if theirs != num_classes:
        raise UserError(
            f"{path} predicts {theirs} classes but the data has {num_classes}; "
            "train on data with the same classes, or start from backbone weights"
        )
    ours, weights = model.weights, source.get_weights()
    if len(weights) != len(ours) or any(
        tuple(w.shape) != tuple(v.shape) for w, v in zip(weights, ours, strict=False)
    ):
        raise UserError(
            f"{path}: its weights do not fit this model (built with other architecture arguments); "
            "use the same --model, --backbone, --image-size, --segments and --flow-length"
        )
    model.set_weights(weights)
    preprocessing = {
        k: v
        for k, v in (source.get_config().get("data_config") or {}).items()
        if k != "class_names"
    }
    if preprocessing and hasattr(model, "set_data_config"):
        model.set_data_config(**preprocessing)


def checkpoint_callback(best_path, last_path, monitors, sidecar):
    """A callback saving `last.keras` every epoch and `best.keras` when the monitored value improves.

    Each file is written to a temporary name and renamed into place, with its
    model card (`common.write_sidecar`). The monitored value is the first of
    `monitors` present in the epoch's logs (a loss is minimised, anything else
    maximised); the callback's `monitor`, `best` and `best_epoch` tell the result.

    Example:

    >>> from keras_twostream.commands.train import checkpoint_callback
    >>> callback = checkpoint_callback("runs/best.keras", "runs/last.keras", ["val_fused_accuracy", "val_loss"], {})
    >>> callback.monitor is None  # chosen at the first epoch end
    True
    """
    import shutil

    import keras

    class AtomicCheckpoint(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.best = None
            self.best_epoch = None
            self.monitor = None

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            temp = Path(last_path).with_name(f".last.tmp-{os.getpid()}.keras")
            self.model.save(temp)
            os.replace(temp, last_path)
            common.write_sidecar(last_path, sidecar)
            if self.monitor is None:
                self.monitor = next((m for m in monitors if m in logs), None)
            if self.monitor is None:
                return
            value = float(logs[self.monitor])
            minimise = self.monitor.endswith("loss")
            if self.best is None or (value < self.best if minimise else value > self.best):
                self.best, self.best_epoch = value, epoch + 1
                # The same bytes as last.keras: copy instead of saving twice.
                temp = Path(best_path).with_name(f".best.tmp-{os.getpid()}.keras")
                shutil.copyfile(last_path, temp)
                os.replace(temp, best_path)
                common.write_sidecar(best_path, sidecar)

    return AtomicCheckpoint()


def make_callbacks(settings, output, model, has_validation, sidecar, primary):
    """The callbacks of a training run: checkpoints, CSV history, TensorBoard, schedules.

    Returns:
        `(callbacks, checkpoint)`: the list for `model.fit`, and the checkpoint
        callback (its `best`, `best_epoch` and `monitor` after training).

    Example:

    >>> from keras_twostream.commands.train import make_callbacks
    >>> callbacks, checkpoint = make_callbacks(settings, output, model, True, card, "fused")  # doctest: +SKIP
    """
    import importlib.util

    import keras

    prefix = "val_" if has_validation else ""
    # Keras names a single output's metric "accuracy", several outputs' "<output>_accuracy".
    accuracy = "accuracy" if len(model.outputs) == 1 else f"{primary}_accuracy"
    monitors = [f"{prefix}{accuracy}", f"{prefix}loss"]
    checkpoint = checkpoint_callback(
        output / "best.keras", output / "last.keras", monitors, sidecar
    )
    callbacks = [checkpoint, keras.callbacks.CSVLogger(str(output / "history.csv"))]
    if importlib.util.find_spec("tensorboard") is not None:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(output / "logs")))
    else:
        common.say(COMMAND, "TensorBoard logs skipped: the tensorboard package is not installed")
    plateau = []
    if settings["lr_schedule"] == "plateau":
        plateau.append(
            # CMA Sect. 4.4 / TCLSTA Sect. IV-B-1: decay when the (validation) accuracy stalls.
            keras.callbacks.ReduceLROnPlateau(
                monitor=f"{prefix}{accuracy}",
                mode="max",
                factor=settings["lr_factor"],
                patience=settings["plateau_patience"],
                verbose=1,
            )
        )
        callbacks.extend(plateau)
    if settings.get("alternating_epochs") and hasattr(model, "set_training_branch"):
        from keras_twostream.training import AlternatingSchedule

        # CMA Sect. 4.3: the Flow branch is trained first (alone, its CMA blocks identities),
        # then the iterations alternate from RGB.
        pretrain = settings.get("pretrain_flow_epochs") or 0
        if pretrain and "temporal" not in model.branches:
            raise UserError(
                f"--pretrain-flow: the model has no 'temporal' (Flow) branch (its branches: "
                f"{', '.join(model.branches)}); pass --pretrain-flow 0"
            )
        callbacks.append(
            AlternatingSchedule(
                settings["alternating_epochs"],
                reset_learning_rate=settings["lr_schedule"] != "step",
                reset_callbacks=plateau,  # Sect. 4.4: the plateau decay restarts each iteration
                pretrain_branch="temporal" if pretrain else None,
                pretrain_epochs=pretrain,
            )
        )
    return callbacks, checkpoint


# --------------------------------------------------------------------------
# The command.
# --------------------------------------------------------------------------


# Arguments that do not change what a run trains: a rerun may differ in them and still resume.
_RESUME_NEUTRAL = (
    "restart", "verbose", "func", "command", "save_every", "workers", "output", "config", "argv",
)  # fmt: skip


def explicit_options(argv):
    """The `train` arguments that `argv` (the words after `train`) gives, without defaults.

    Example:

    >>> from keras_twostream.commands.train import explicit_options
    >>> sorted(explicit_options(["frames", "--epochs", "3", "--config", "run/train.json"]))
    ['config', 'data', 'epochs']
    """
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    for action in parser._actions:  # every default suppressed: only what argv says remains
        action.default, action.required = argparse.SUPPRESS, False
    namespace, _ = parser.parse_known_args(argv)
    return set(vars(namespace)) - {"func"}  # set_defaults(func=...) is not an option


def _option_defaults():
    """Every `train` option's default, by its destination name."""
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    return {action.dest: action.default for action in parser._actions}


def apply_config(args, argv):
    """`train --config RUN/train.json`: the recorded `arguments` fill what `argv` leaves out.

    Args:
        args: the parsed `train` arguments.
        argv: the command-line words after `train` (what the user gave explicitly).

    Returns:
        `args`, updated in place.

    Raises:
        UserError: the file cannot be read or records no arguments.
    """
    path = Path(args.config)
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("arguments")
    except (OSError, ValueError) as error:
        raise UserError(f"argument --config: cannot read {path}: {error}") from None
    if not isinstance(recorded, dict):
        raise UserError(
            f"argument --config: {path} records no training arguments (expected the train.json "
            "that `keras-twostream train` writes, with an 'arguments' entry)"
        )
    explicit = explicit_options(argv)
    known = vars(args)
    for key, value in recorded.items():
        if key in known and key not in explicit and key != "config":
            setattr(args, key, value)
    return args


def run_arguments(args):
    """The arguments that define a training run (recorded in `train.json`, compared on a rerun).

    Example:

    >>> import argparse
    >>> from keras_twostream.commands.train import run_arguments
    >>> run_arguments(argparse.Namespace(data="frames", epochs=2, restart=False, verbose=1))
    {'data': 'frames', 'epochs': 2}
    """
    return {
        k: v for k, v in sorted(vars(args).items()) if k not in _RESUME_NEUTRAL and not callable(v)
    }


def finished_epochs(output):
    """Epochs recorded in `OUTPUT/history.csv` (0 when there is none)."""
    path = Path(output) / "history.csv"
    if not path.is_file():
        return 0
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return max(0, len(lines) - 1)


def check_rerun(output, arguments, restart):
    """Refuses to resume a run in `output` that was started with other arguments.

    A folder with a resumable state (`checkpoints/`) or a history resumes only when the
    command's arguments equal those in its `train.json`, or differ only by a larger
    `--epochs` than the epochs finished (extending the run). Issue 15 item 3: `--epochs 1`
    after a 2-epoch run silently "resumed at epoch 3" and trained nothing.

    Raises:
        UserError: the arguments differ; the message names the folder, the epochs it has
            finished, the first differing arguments and `--restart`.
    """
    output = Path(output)
    info_path = output / "train.json"
    if restart or not info_path.is_file():
        return
    checkpoints = output / "checkpoints"
    if not ((checkpoints.is_dir() and any(checkpoints.iterdir())) or finished_epochs(output)):
        return  # nothing trained yet (e.g. the first run failed on its data): start afresh
    try:
        previous = json.loads(info_path.read_text(encoding="utf-8")).get("arguments")
    except (OSError, ValueError):
        previous = None
    current = json.loads(json.dumps(arguments, default=str))
    finished = finished_epochs(output)
    if previous is None:
        differ = "its train.json records no arguments"
    else:
        keys = sorted(set(previous) | set(current))
        # An option that an older version did not record had its default then.
        defaults = json.loads(json.dumps(_option_defaults(), default=str))
        changed = [
            k for k in keys if previous.get(k, defaults.get(k)) != current.get(k, defaults.get(k))
        ]
        # Choice: a larger --epochs extends the run (it resumes and trains the extra
        # epochs); any other difference, a smaller or equal --epochs included, is refused.
        epochs = current.get("epochs")
        if not changed or (changed == ["epochs"] and epochs is not None and epochs > finished):
            return
        differ = "; ".join(
            f"--{k.replace('_', '-')} {previous.get(k, defaults.get(k))!r} -> "
            f"{current.get(k, defaults.get(k))!r}"
            for k in changed[:5]
        )
    raise UserError(
        f"{output} holds a run finished up to epoch {finished} with other "
        f"arguments ({differ}); rerun with the same arguments to resume it, pass --restart to "
        "train afresh in it, or choose another --output"
    )


def _val_source(val, val_table):
    if val_table is None:
        return "none"
    return "test" if str(val).strip().lower() == "test" else "held-out"


def _split_tables(table, args, source):
    train = common.subset(table, "train")
    if train.empty:
        raise UserError(f"{source}: no training videos (split 'train') in split {args.split}")
    val_mode = str(args.val).strip().lower()
    if val_mode == "none":
        return train, None
    if val_mode == "test":
        test = common.subset(table, "test")
        if test is train or test.empty:
            common.say(COMMAND, f"no test list in {source}: training without validation data")
            return train, None
        common.say(
            COMMAND,
            "validating on the test split, as the papers' code does (best.keras is chosen on it); "
            "pass --val 0.1 to hold out training videos instead",
        )
        return train, test
    try:
        fraction = float(val_mode)
    except ValueError:
        raise UserError(
            f"argument --val: expected 'test', 'none' or a fraction, got {args.val!r}"
        ) from None
    if not 0 < fraction < 1:
        raise UserError(f"argument --val: expected a fraction between 0 and 1, got {args.val!r}")
    import numpy as np

    order = np.random.default_rng(args.seed).permutation(len(train))
    count = max(1, round(fraction * len(train)))
    if count >= len(train):
        raise UserError(
            f"argument --val: holding out {count} of {len(train)} training videos leaves none"
        )
    return train.iloc[np.sort(order[count:])], train.iloc[np.sort(order[:count])]


def _extra_tasks(args, model, source_table):
    """The `--extra-task` datasets: `[(task, frames, table, classes, source)]`, and the
    primary task's name (`--task`); `([], None)` for a one-task run."""
    items = getattr(args, "extra_task", None) or []
    primary = getattr(args, "task", None)
    if not items:
        if primary is not None:
            raise UserError(
                "argument --task: names DATA's task in a multi-task run; give the other "
                "datasets with --extra-task NAME FRAMES [ANNOTATIONS]"
            )
        return [], None
    if model != "two_stream":
        raise UserError(
            f"argument --extra-task: applies to --model two_stream only (the two-stream paper's "
            f"multi-task learning, Sect. 4: one softmax head per dataset); {model} has one head"
        )
    if primary is None:
        fmt = source_table.attrs.get("format")
        primary = fmt if fmt in ("ucf101", "hmdb51") else "main"
    if not primary.isidentifier():
        raise UserError(f"argument --task: expected an identifier, got {primary!r}")
    names = [primary]
    tasks = []
    for item in items:
        if not 2 <= len(item) <= 3:
            raise UserError(
                f"argument --extra-task: expected NAME FRAMES [ANNOTATIONS], got {' '.join(item)!r}"
            )
        task, data, annotations = item[0], item[1], item[2] if len(item) == 3 else None
        if not task.isidentifier():
            raise UserError(
                "argument --extra-task: the task name must be an identifier (it names the "
                f"model's outputs, e.g. temporal_ucf101); got {task!r}"
            )
        if task in names:
            raise UserError(
                f"argument --extra-task: task {task!r} is given twice (DATA's task is "
                f"{primary!r}; rename it with --task)"
            )
        names.append(task)
        frames = common.resolve_data(
            data,
            COMMAND,
            flow=args.flow,
            short_side=args.short_side,
            workers=args.workers,
        )
        table, classes, source = common.load_table(frames, annotations, args.split)
        # Every video the annotations list: the paper adds "the full HMDB-51 data (all splits
        # combined)" to UCF-101 training (Sect. 6); its test videos are another dataset's.
        table = common.check_missing(table, frames, source, COMMAND, skip=args.skip_missing)
        if len(classes) < 2:
            raise UserError(f"{source}: {len(classes)} class; classification needs at least 2")
        tasks.append((task, frames, table, classes, source))
    return tasks, primary


def _rgb_normalization(settings, model):
    # keras.applications' ImageNet ResNet and VGG weights expect Caffe preprocessing;
    # PyTorch checkpoints (torchvision, MMAction2) the ImageNet mean/std ("torch").
    if str(settings.get("weights") or "").endswith(".pth"):
        return "torch"
    backbone = str(settings.get("backbone") or model.get_config().get("backbone") or "")
    if str(settings.get("weights")).lower() == "imagenet" and (
        backbone.startswith("resnet") or backbone.startswith("vgg")
    ):
        return "caffe"
    return "unit"


def run(args):
    """Runs `keras-twostream train` (see the module docstring).

    Example:

    >>> from keras_twostream.cli import main
    >>> main(["train", "ucf101_frames", "--annotations", "ucfTrainTestlist", "--model", "two_stream"])  # doctest: +SKIP
    0
    """
    import keras

    from keras_twostream.data import make_dataset
    from keras_twostream.models import MODELS
    from keras_twostream.training import (
        ResumableCheckpoint,
        initialize_multi_worker,
        set_mixed_precision,
        set_seed,
    )

    if args.config:
        apply_config(args, getattr(args, "argv", None) or [])
    for value, what in ((args.data, "DATA"), (args.model, "--model")):
        if value is None:
            raise UserError(
                f"the following arguments are required: {what} (or --config TRAIN_JSON)"
            )
    name = args.model
    if name not in MODELS:
        raise UserError(
            f"argument --model: invalid choice: {name!r} (choose from {', '.join(sorted(MODELS))})"
        )
    settings = resolve_settings(name, args)
    model_args = {**settings.pop("model_args", {}), **_parse_model_args(args.model_arg)}
    stream = settings.get("stream")
    if stream in ("spatial", "temporal"):
        # One net of the two-stream paper, trained alone; `fuse` combines the runs' scores.
        model_args.setdefault("streams", [stream])
    run_name = f"{name}_{stream}" if stream in ("spatial", "temporal") else name
    output = Path(args.output or Path("keras_twostream_outputs") / "train" / run_name)
    arguments = run_arguments(args)
    check_rerun(output, arguments, args.restart)
    # One seed fixes initialisation, sampling and augmentation (issue #9).
    set_seed(args.seed)
    if args.mixed_precision:
        set_mixed_precision(True)  # before any model is built
    strategy = None
    if args.strategy == "multi-worker":
        if keras.backend.backend() != "jax":
            raise UserError(
                "--strategy multi-worker runs on the JAX backend (KERAS_BACKEND=jax); "
                "see docs/distributed.md"
            )
        initialize_multi_worker(seed=args.seed)  # reads the KERAS_DISTRIBUTION_* variables
    elif args.strategy == "mirrored":
        if keras.backend.backend() != "tensorflow":
            raise UserError("--strategy mirrored needs the TensorFlow backend")
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy()

    # === Data: checked before any model is built ===
    from keras_twostream.commands import video_data

    if video_data.trains_from_videos(name, args.data, args.frames_dir):
        # RGB-only model on a folder of videos: read the videos, write no frames (issue 17).
        common.say(
            COMMAND, f"{args.data}: reading RGB straight from the videos (no frames written)"
        )
        root = Path(args.data)
        table, classes, source = video_data.load_video_table(
            root, args.annotations, args.split, args.format
        )
    else:
        root = common.resolve_data(
            args.data,
            COMMAND,
            frames_dir=args.frames_dir,
            flow=args.flow,
            short_side=args.short_side,
            workers=args.workers,
        )
        table, classes, source = common.load_table(root, args.annotations, args.split, args.format)
    train_table, val_table = _split_tables(table, args, source)
    train_table = common.check_missing(train_table, root, source, COMMAND, skip=args.skip_missing)
    if val_table is not None:
        val_table = common.check_missing(val_table, root, source, COMMAND, skip=args.skip_missing)
    num_classes = len(classes)
    if num_classes < 2:
        raise UserError(f"{source}: {num_classes} class; classification needs at least 2")
    # Multi-task learning (two-stream paper, Sect. 4): one softmax head per dataset.
    extra_tasks, primary_task = _extra_tasks(args, name, table)
    if extra_tasks:
        num_classes = {primary_task: len(classes), **{t[0]: len(t[3]) for t in extra_tasks}}
    train_videos = len(train_table) + sum(len(t[2]) for t in extra_tasks)

    # === Model ===
    accumulate = settings.get("accumulate", 1)
    batch_size = settings["batch_size"] // accumulate  # the micro-batch the pipeline serves
    # Schedules count optimizer updates: N micro-batches make one (--accumulate N).
    steps_per_epoch = max(1, math.ceil(train_videos / batch_size) // accumulate)
    epochs = settings.get("epochs") or max(1, math.ceil(settings["iterations"] / steps_per_epoch))
    if not settings.get("epochs"):
        common.say(
            COMMAND,
            f"{settings['iterations']} iterations (the paper's) = {epochs} epochs of {steps_per_epoch} steps",
        )
    if stream in ("spatial", "temporal") and args.epochs is not None and args.lr_boundaries is None:
        scaled = scale_boundaries(settings, epochs, steps_per_epoch)
        if scaled != settings["lr_boundaries"]:
            common.say(
                COMMAND,
                f"--stream {stream}: the paper's decay points {', '.join(settings['lr_boundaries'])} "
                f"of {settings['paper_iterations']} iterations scaled to this run's "
                f"{epochs * steps_per_epoch} steps: {', '.join(scaled)}",
            )
            settings["lr_boundaries"] = scaled
    weights = settings.get("weights")
    init_from = weights if weights and str(weights).endswith(".keras") else None
    if weights and str(weights).lower() not in ("none", "imagenet") and not os.path.isfile(weights):
        raise UserError(
            f"argument --weights: {weights}: no such file (expected imagenet, none or a file)"
        )
    kwargs = build_kwargs(MODELS[name], settings, num_classes, model_args)
    if strategy is not None and "synchronized" in _builder_parameters(MODELS[name]):
        # Batch statistics over the global batch, as the CMA paper trains (Sect. 4.4).
        kwargs.setdefault("synchronized", True)
    model = build_and_compile(
        MODELS[name],
        kwargs,
        lambda: make_optimizer(settings, steps_per_epoch),
        strategy=strategy,
        init_from=init_from,
    )
    if settings.get("init_streams"):
        for stream, path in init_stpn_streams(model, settings["init_streams"]):
            common.say(COMMAND, f"multistage training: the {stream} stream starts from {path}")
    spec = common.model_spec(model)
    outputs = [n for n, _ in common.score_outputs(model)]
    primary = common.primary_output(outputs)

    # The model owns its data contract (saved in the .keras file): the pipelines below,
    # evaluate, predict and export all read model.data_config().
    extraction = common.extraction_settings(train_table)
    inherited = (model.get_config().get("data_config") or {}).get("rgb_normalization")
    model.set_data_config(
        # --weights MODEL.keras keeps the input range the weights were trained on.
        rgb_normalization=inherited or _rgb_normalization(settings, model),
        flow_normalization=settings["flow_normalization"],
        mean_subtract_flow=settings["mean_subtract_flow"],
        # Divided by the bound, flow means something else under another bound: record it.
        flow_bound=(
            extraction.get("bound")
            if settings["flow_normalization"] == "bound" and "flow" in spec.modalities
            else None
        ),
        class_names=(
            list(classes)
            if isinstance(num_classes, int)
            else {primary_task: list(classes), **{t[0]: list(t[3]) for t in extra_tasks}}
        ),
    )
    config = model.data_config()
    data_settings = {
        "modalities": list(spec.modalities),
        "image_size": spec.image_size,
        "segments": spec.segments,
        "flow_length": spec.flow_length,
        "diff_length": spec.diff_length,
        "num_paths": spec.num_paths,
        "rgb_normalization": config["rgb_normalization"],
        "flow_normalization": config["flow_normalization"],
        "mean_subtract_flow": config["mean_subtract_flow"],
        **extraction,
    }
    pipeline_args = dict(
        data_config={k: v for k, v in config.items() if k != "class_names"},
        num_classes=num_classes,
    )
    from keras_twostream.data import DatasetErrors

    errors = DatasetErrors()  # --on-error skip: every sample left out, train and validation
    pipeline_args.update(on_error=args.on_error, errors=errors)
    training_args = dict(
        training=True,
        batch_size=batch_size,
        seed=args.seed,
        augmentation=settings.get("augmentation", "tsn"),
        video_sampling=settings.get("video_sampling", "shuffle"),
    )
    import tensorflow as tf

    if extra_tasks:
        from keras_twostream.data import make_multi_task_dataset

        train_ds = make_multi_task_dataset(
            {primary_task: train_table, **{t[0]: t[2] for t in extra_tasks}},
            **training_args,
            **pipeline_args,
        )
    else:
        train_ds = make_dataset(train_table, **training_args, **pipeline_args)
    val_ds = None
    if val_table is not None:
        val_args = {**pipeline_args, "num_classes": len(classes)}
        val_ds = make_dataset(val_table, training=False, batch_size=batch_size, **val_args)
        if extra_tasks:
            # Validation videos are the primary task's: -1 (no loss, no accuracy) elsewhere.
            others = [t[0] for t in extra_tasks]

            def per_task(x, y):
                return x, {primary_task: y, **{t: tf.fill(tf.shape(y), -1) for t in others}}

            val_ds = val_ds.map(per_task)

    # === Outputs ===
    output.mkdir(parents=True, exist_ok=True)
    sidecar = {
        "model": name,
        "classes": classes,
        "outputs": outputs,
        "data": data_settings,
        "test": {
            "frames": settings["test_frames"],
            "crops": settings["test_crops"],
            "views": settings["test_views"],
        },
        "training": {k: v for k, v in settings.items()},
        "builder_args": {k: v for k, v in kwargs.items() if k not in ("num_classes",)},
    }
    if extra_tasks:
        # Multi-task run: "classes" and "outputs" are the primary task's (evaluate, predict).
        sidecar["tasks"] = {primary_task: list(classes), **{t[0]: list(t[3]) for t in extra_tasks}}
    run_info = {
        **sidecar,
        "command": sys.argv,
        "data_root": str(root),
        "annotations": str(source),
        "split": args.split,
        "train_videos": len(train_table),
        "extra_tasks": [
            {"task": t, "data_root": str(f), "annotations": str(src), "train_videos": len(tab)}
            for t, f, tab, _, src in extra_tasks
        ],
        "val_videos": 0 if val_table is None else len(val_table),
        "epochs": epochs,
        "seed": args.seed,
        "arguments": arguments,
        # The videos of each role, so that `evaluate` scores the held-out ones by default
        # and says whether any video it scores was seen in training (issue 15 item 4).
        "videos": {
            "train": common.video_ids(train_table, root),
            "val": [] if val_table is None else common.video_ids(val_table, root),
            "val_source": _val_source(args.val, val_table),
        },
    }
    common.atomic_write_text(output / "train.json", json.dumps(run_info, indent=2, default=str))
    callbacks, checkpoint = make_callbacks(
        settings, output, model, val_ds is not None, sidecar, primary
    )
    resume_dir = output / "checkpoints"
    if args.restart and resume_dir.exists():
        shutil.rmtree(resume_dir)
    if resume_dir.exists():
        for callback in callbacks:  # a resumed run adds its epochs to the history
            if isinstance(callback, keras.callbacks.CSVLogger):
                callback.append = True
    # Saves the whole training state atomically; a restarted command resumes from it exactly.
    callbacks.append(
        ResumableCheckpoint(resume_dir, save_every_n_steps=args.save_every, dataset=train_ds)
    )

    common.say(
        COMMAND,
        f"{name}: {train_videos} training and {0 if val_table is None else len(val_table)} validation "
        f"videos, {num_classes} classes; {epochs} epochs of {steps_per_epoch} steps (batch "
        f"{settings['batch_size']}"
        f"{f' = {accumulate} micro-batches of {batch_size}' if accumulate > 1 else ''}, "
        f"lr {settings['lr']:g}, {settings['lr_schedule']} schedule)",
    )
    try:
        history = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            callbacks=callbacks,
            verbose=args.verbose,
            shuffle=False,
        )
    except tf.errors.OpError as error:
        user_error = common.data_error(error)
        if user_error is None:
            raise
        raise user_error from None
    skipped = common.skipped_summary(errors)
    run_info["skipped"] = skipped
    common.atomic_write_text(output / "train.json", json.dumps(run_info, indent=2, default=str))
    common.report_skipped(COMMAND, skipped)

    from keras_twostream.evaluation.report import plot_training_curves

    curves = output / "training_curves.png"
    if not any(history.history.values()):
        # Same arguments, run already complete: ResumableCheckpoint resumed after the last
        # epoch and fit trained nothing. Nothing new to plot (issue 15 item 3).
        common.say(
            COMMAND,
            f"{output} already holds the finished run ({finished_epochs(output)} epochs); "
            "nothing trained (pass --restart to train again)",
        )
        return 0
    plot_training_curves(history.history, curves, title=f"{name} on {Path(args.data).name}")
    if checkpoint.monitor:
        common.say(
            COMMAND,
            f"best {checkpoint.monitor} = {checkpoint.best:.4f} at epoch {checkpoint.best_epoch}",
        )
    common.say(COMMAND, f"checkpoints: {output / 'best.keras'}, {output / 'last.keras'}")
    common.say(COMMAND, f"history: {output / 'history.csv'}; curves: {curves}")
    return 0
