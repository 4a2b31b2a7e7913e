"""`keras-twostream fuse`: fuse saved per-video scores of separately trained (or evaluated) streams.

    keras-twostream fuse SCORES [SCORES ...] [--method average|weighted|svm|adaptive] [--fit SCORES ...]

Each SCORES is a score file written by `keras-twostream evaluate`, optionally
followed by `:OUTPUT[,OUTPUT]` to pick outputs (`rgb.npz:spatial
flow.npz:temporal`); without it every output of the file except the fused ones
is a stream, so one two-stream model's file fuses its own two streams. The
files must cover the same videos (in any order) with the same labels and
classes; the command says which differ.

Methods (`keras_twostream.evaluation.fusion`): `average` (two-stream paper);
`weighted` with `--weights` or with weights grid-searched on `--fit`; `svm`
(two-stream paper: linear multi-class SVM on stacked L2-normalised softmax
scores) and `adaptive` (TCLSTA's per-class weights, Eqs. 10-14), both fitted on
`--fit`: the score files of other, labelled videos (the training or a
validation split: `keras-twostream evaluate --subset train`), given with the
same streams in the same order.
"""

import os
from pathlib import Path

from keras_twostream.commands import UserError, common

COMMAND = "fuse"


def add_arguments(parser):
    """Adds `fuse`'s arguments to an `argparse` parser.

    Example:

    >>> import argparse
    >>> from keras_twostream.commands import fuse
    >>> parser = argparse.ArgumentParser()
    >>> fuse.add_arguments(parser)
    >>> parser.parse_args(["a.npz", "b.npz", "--method", "svm", "--fit", "c.npz", "d.npz"]).method
    'svm'
    """
    parser.add_argument(
        "scores", nargs="+", help="score files from `keras-twostream evaluate`, FILE[:OUTPUT,...]"
    )
    parser.add_argument(
        "--method", choices=["average", "weighted", "svm", "adaptive"], default="average"
    )
    parser.add_argument("--weights", type=float, nargs="+", help="one weight per stream (weighted)")
    parser.add_argument(
        "--fit",
        nargs="+",
        metavar="SCORES",
        help="score files of labelled training/validation videos, same streams (weighted search, svm, adaptive)",
    )
    parser.add_argument("--step", type=float, default=0.05, help="grid step of the weight search")
    parser.add_argument("--svm-c", type=float, default=1.0, help="C of the SVM")
    parser.add_argument(
        "--negative-weight", type=float, default=5e-3, help="lambda of adaptive fusion"
    )
    parser.add_argument(
        "--min-weight", type=float, default=0.0, help="smallest per-class weight (adaptive)"
    )
    parser.add_argument(
        "--output", help="write the fused scores (and the streams) to this .npz score file"
    )
    parser.set_defaults(func=run)


def parse_spec(spec):
    """`"a.npz:spatial,temporal"` -> `("a.npz", ["spatial", "temporal"])`; a bare path selects nothing.

    Example:

    >>> from keras_twostream.commands.fuse import parse_spec
    >>> parse_spec("rgb.npz:spatial,fused")
    ('rgb.npz', ['spatial', 'fused'])
    """
    if os.path.exists(spec) or ":" not in spec:
        return spec, None
    path, _, outputs = spec.rpartition(":")
    if not path or "/" in outputs or "\\" in outputs:
        return spec, None
    return path, [o for o in outputs.split(",") if o]


def load_streams(specs, what="SCORES"):
    """Reads score files and picks their streams.

    Returns:
        `(streams, reference)`: a dict stream name -> `(file, output)` and the
        first `ScoreFile`, whose video order the others are aligned to.

    Example:

    >>> from keras_twostream.commands.fuse import load_streams
    >>> streams, reference = load_streams(["rgb.npz:spatial", "flow.npz:temporal"])  # doctest: +SKIP
    >>> list(streams)  # doctest: +SKIP
    ['spatial', 'temporal']
    """
    from keras_twostream.evaluation.scores import load_scores

    files, picks = [], []
    for spec in specs:
        path, outputs = parse_spec(spec)
        try:
            score_file = load_scores(path)
        except (FileNotFoundError, ValueError) as error:
            raise UserError(f"{what}: {error}") from None
        available = list(score_file.scores)
        if outputs is None:
            outputs = [o for o in available if not o.startswith("fused")] or available
        unknown = [o for o in outputs if o not in available]
        if unknown:
            raise UserError(
                f"{path} has no output {', '.join(map(repr, unknown))}; it has {', '.join(available)}"
            )
        files.append(score_file)
        picks.append(outputs)
    reference = files[0]
    for other in files[1:]:
        _check_same(reference, other)
    streams = {}
    all_names = [o for outputs in picks for o in outputs]
    for score_file, outputs in zip(files, picks, strict=True):
        aligned = score_file.select(reference.videos)
        for output in outputs:
            name = (
                output if all_names.count(output) == 1 else f"{Path(score_file.path).stem}:{output}"
            )
            if name in streams:
                raise UserError(f"{what}: the stream {name!r} is given twice")
            streams[name] = aligned.scores[output]
    return streams, reference


def _check_same(a, b):
    """Refuses files that differ in classes, videos or labels, naming what differs."""
    if a.classes != b.classes:
        if len(a.classes) != len(b.classes):
            detail = f"{len(a.classes)} classes in {a.path}, {len(b.classes)} in {b.path}"
        else:
            i = next(i for i, (x, y) in enumerate(zip(a.classes, b.classes, strict=True)) if x != y)
            detail = f"class {i} is {a.classes[i]!r} in {a.path} and {b.classes[i]!r} in {b.path}"
        raise UserError(f"the score files have different classes: {detail}")
    only_a = sorted(set(a.videos.tolist()) - set(b.videos.tolist()))
    only_b = sorted(set(b.videos.tolist()) - set(a.videos.tolist()))
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} only in {a.path} ({common.listing(only_a, 3)})")
        if only_b:
            parts.append(f"{len(only_b)} only in {b.path} ({common.listing(only_b, 3)})")
        raise UserError("the score files cover different videos: " + "; ".join(parts))
    if len(set(a.videos.tolist())) != len(a.videos):
        raise UserError(f"{a.path}: a video appears twice")
    aligned = b.select(a.videos)
    differ = [
        v for v, x, y in zip(a.videos.tolist(), a.labels, aligned.labels, strict=True) if x != y
    ]
    if differ:
        raise UserError(
            f"{a.path} and {b.path} give {len(differ)} videos different labels: {common.listing(differ, 3)}"
        )


def run(args):
    """Runs `keras-twostream fuse` (see the module docstring).

    Example:

    >>> from keras_twostream.cli import main
    >>> main(["fuse", "rgb/scores.npz:spatial", "flow/scores.npz:temporal", "--method", "average"])  # doctest: +SKIP
    0
    """
    import numpy as np

    from keras_twostream.evaluation.fusion import fuse_scores
    from keras_twostream.evaluation.metrics import classification_summary
    from keras_twostream.evaluation.report import accuracy_table
    from keras_twostream.evaluation.scores import save_scores

    streams, reference = load_streams(args.scores)
    if len(streams) < 2:
        raise UserError(
            f"fusion needs at least two streams; got {list(streams)}: give more files, or FILE:OUT1,OUT2"
        )
    fit_streams = fit_labels = None
    if args.fit:
        fit_streams, fit_reference = load_streams(args.fit, "--fit")
        if list(fit_streams) != list(streams):
            raise UserError(
                f"--fit gives the streams {list(fit_streams)}, expected the same as SCORES: {list(streams)}"
            )
        if fit_reference.classes != reference.classes:
            raise UserError("--fit scores have other classes than SCORES")
        fit_labels = fit_reference.labels
        if (fit_labels < 0).any():
            raise UserError("--fit: some videos have no label (-1); fitting needs labelled videos")
    if args.weights is not None and args.method != "weighted":
        raise UserError(f"--weights applies to --method weighted, not {args.method}")
    try:
        fused, info = fuse_scores(
            args.method,
            streams,
            weights=args.weights,
            fit_scores=fit_streams,
            fit_labels=fit_labels,
            step=args.step,
            svm_c=args.svm_c,
            negative_weight=args.negative_weight,
            min_weight=args.min_weight,
        )
    except ValueError as error:
        raise UserError(f"--method {args.method}: {common.first_line(error)}") from None

    labels = reference.labels
    labelled = labels >= 0
    rows = []
    for name, values in {**streams, f"fused ({args.method})": fused}.items():
        summary = classification_summary(np.asarray(values)[labelled], labels[labelled])
        summary.pop("confusion_matrix")
        rows.append({"output": name, **summary})
    print(
        f"\n{labelled.sum()} videos, {len(reference.classes)} classes, fusion: {args.method}",
        end="",
    )
    if "weights" in info:
        print(
            f", weights {', '.join(f'{n}={w:.3f}' for n, w in zip(streams, info['weights'], strict=True))}",
            end="",
        )
    print(f"\n{accuracy_table(rows)}\n", flush=True)
    if args.output:
        fused_name = f"fused_{args.method}"
        scores = {
            **{name.replace(":", "_"): values for name, values in streams.items()},
            fused_name: fused,
        }
        if (
            args.method == "svm"
        ):  # decision values, not probabilities: keep them finite for the file
            scores[fused_name] = np.where(np.isfinite(fused), fused, np.finfo(np.float32).min)
        meta = {"fusion": info, "sources": args.scores, "fit": args.fit}
        save_scores(args.output, scores, reference.videos, labels, reference.classes, meta)
        common.say(COMMAND, f"fused scores: {args.output}")
    return 0
