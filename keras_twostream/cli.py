"""The `keras-twostream` command.

Sub-commands are plain functions registered in `COMMANDS`; heavy imports happen
inside them so `keras-twostream --help` answers at once.
"""

import argparse
import os
import sys

# Defined in a module of its own: `python -m keras_twostream.cli` runs this file as `__main__`,
# and the commands must raise the very class `main` catches.
from keras_twostream.commands import UserError  # noqa: F401 - re-exported


def _add_demo(sub):
    p = sub.add_parser(
        "demo", help="generate the synthetic dataset, train both streams, evaluate, save"
    )
    p.add_argument("--output", default="keras_twostream_outputs/demo", help="output folder")
    p.add_argument(
        "--cache", default=None, help="dataset cache folder (default: ~/.cache/keras_twostream)"
    )
    p.add_argument("--epochs", type=int, default=None, help="training epochs per stream")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a tiny run for smoke tests")
    p.set_defaults(func=_run_demo)


def _run_demo(args):
    from keras_twostream.demo import run_demo

    run_demo(
        output=args.output, cache=args.cache, epochs=args.epochs, seed=args.seed, quick=args.quick
    )


def _add_extract(sub):
    p = sub.add_parser(
        "extract",
        help="decode videos into RGB JPEGs and quantised optical flow (TSN/MMAction2 layout)",
    )
    p.add_argument("videos_dir", help="folder of videos (searched recursively)")
    p.add_argument(
        "out_dir", help="output folder: OUT_DIR/<video>/img_00001.jpg, x_00001.jpg, y_00001.jpg"
    )
    p.add_argument(
        "--flow",
        choices=["tvl1", "tvl1-xla", "dis", "farneback", "none"],
        default="tvl1",
        help="tvl1-xla: the same TV-L1 compiled by XLA, pairs batched across videos (GPU-ready)",
    )
    p.add_argument(
        "--backward-flow",
        action="store_true",
        help="with --flow tvl1-xla: also store the backward flow (bx_/by_ files)",
    )
    p.add_argument(
        "--batch-size", type=int, default=None, help="with --flow tvl1-xla: pairs per call (4)"
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="OpenCV/FFmpeg threads per worker (default: all cores with 1 worker, 1 with more)",
    )
    p.add_argument(
        "--short-side", type=int, default=256, help="resize so the short side has this size"
    )
    p.add_argument(
        "--bound", type=float, default=20.0, help="flow is clipped to +-bound before quantisation"
    )
    p.set_defaults(func=_run_extract)


def _run_extract(args):
    from keras_twostream.data.extract import extract_videos

    summary = extract_videos(
        args.videos_dir,
        args.out_dir,
        flow=args.flow,
        workers=args.workers,
        threads=args.threads,
        short_side=args.short_side,
        bound=args.bound,
        backward_flow=args.backward_flow,
        batch_size=args.batch_size,
    )
    return 0 if not summary.failed else 1


def _add_reencode(sub):
    p = sub.add_parser(
        "reencode",
        help="re-encode videos with short GOPs (all-intra H.264) for fast training from videos",
    )
    p.add_argument("videos", nargs="+", help="video files")
    p.add_argument("out_dir", help="output folder: OUT_DIR/<video stem>.mp4")
    p.add_argument("--gop", type=int, default=1, help="frames per keyframe (1: all-intra)")
    p.add_argument(
        "--short-side", type=int, default=256, help="resize so the short side has this size"
    )
    p.add_argument("--crf", type=float, default=18, help="x264 quality (0 lossless, 23 default)")
    p.set_defaults(func=_run_reencode)


def _run_reencode(args):
    from pathlib import Path

    from keras_twostream.data.reencode import reencode_video
    from keras_twostream.data.video import VideoDecodeError

    if args.gop < 1:
        raise UserError(f"argument --gop: expected an integer >= 1, got {args.gop}")
    out_dir = Path(args.out_dir)
    failed = 0
    for video in args.videos:
        target = out_dir / f"{Path(video).stem}.mp4"
        try:
            frames = reencode_video(
                video, target, gop=args.gop, short_side=args.short_side, crf=args.crf
            )
        except (OSError, VideoDecodeError) as error:
            print(f"{video}: error: {error}", flush=True)
            failed += 1
            continue
        print(f"{video} -> {target} ({frames} frames, GOP {args.gop})", flush=True)
    if failed:
        print(f"keras-twostream reencode: {failed} of {len(args.videos)} videos failed")
        return 1
    return 0


def _add_scan(sub):
    from keras_twostream.data import scan

    p = sub.add_parser(
        "scan", help="report every unreadable video or incomplete frame folder of a dataset"
    )
    scan.add_arguments(p)
    p.set_defaults(func=scan.run)


def _add_command(module_name, help):
    """A parser adder for `keras_twostream.commands.<module_name>` (its `add_arguments` and `run`)."""

    def add(sub):
        import importlib

        module = importlib.import_module(f"keras_twostream.commands.{module_name}")
        parser = sub.add_parser(module_name, help=help, description=module.__doc__.split("\n\n")[0])
        module.add_arguments(parser)

    return add


def _start_tensorflow_quietly():
    """Imports TensorFlow and initialises its devices with C++ start-up logs silenced.

    TensorFlow 2.21 prints oneDNN/CUDA notices through absl before `TF_CPP_MIN_LOG_LEVEL` is read;
    a command-line user should not have to read them. Python errors still surface normally.
    """
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow" or "tensorflow" in sys.modules:
        return
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    sys.stderr.flush()
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_logical_devices()
    except Exception:  # noqa: BLE001 - reported again, loudly, when the command imports it
        pass
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# Commands that only touch files (OpenCV, NumPy) and should not wait for TensorFlow.
_FILE_COMMANDS = {"extract", "scan", "fuse", "reencode"}

COMMANDS = {
    "demo": _add_demo,
    "extract": _add_extract,
    "scan": _add_scan,
    "reencode": _add_reencode,
    "train": _add_command("train", "train a model (paper defaults) on a frame folder or videos"),
    "evaluate": _add_command(
        "evaluate", "the papers' test protocol: accuracy, confusion matrix, scores"
    ),
    "fuse": _add_command(
        "fuse", "fuse saved per-video scores of several streams (average, weighted, SVM, adaptive)"
    ),
    "predict": _add_command("predict", "top-5 classes of videos, optionally an annotated preview"),
    "export": _add_command("export", "export a model as a SavedModel (named inputs) or ONNX"),
    "convert": _add_command(
        "convert", "a PyTorch TSN checkpoint (MMAction2, torchvision) as a two-stream .keras model"
    ),
}


def build_parser():
    from keras_twostream.version import __version__

    parser = argparse.ArgumentParser(
        prog="keras-twostream", description="Two-stream video classification with Keras 3."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS.values():
        add(sub)
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    argv = sys.argv[1:] if argv is None else [str(word) for word in argv]
    args = build_parser().parse_args(argv)
    # The words after the command: what the user gave explicitly (`train --config` needs it).
    args.argv = argv[argv.index(args.command) + 1 :] if args.command in argv else []
    if args.command not in _FILE_COMMANDS:
        _start_tensorflow_quietly()
    try:
        status = args.func(args)
    except (UserError, OSError, ValueError) as error:
        print(f"keras-twostream {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"keras-twostream {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
