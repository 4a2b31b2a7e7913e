"""`keras-twostream evaluate`: the papers' test protocol, metrics, per-video scores and a report.

    keras-twostream evaluate MODEL DATA [--annotations SPLITS] [--frames 25] [--crops 10]

"At test time, given a video, we sample a fixed number of frames (25 in our
experiments) with equal temporal spacing between them. From each of the frames
we then obtain 10 ConvNet inputs by cropping and flipping four corners and the
center of the frame. The class scores for the whole video are then obtained by
averaging the scores across the sampled frames and crops" (two-stream paper,
Sect. 5; CMA Sect. 4.4, STPN Sect. 4.7 likewise). Each view is scored by the
model rebuilt with one segment (`VideoClassifier.rebuild`); models whose
temporal modelling needs a clip (TCLSTA's LSTM, 3-D CMA) score clips of their
`T` frames instead: the `N` equally spaced frames are dealt into `N // T`
interleaved clips, clip `g` holding frames `g, g + N/T, g + 2N/T, ...`, so each
clip spans the whole video as the training clips do.

Every output of the model (each stream and the fusion) is scored. Written into
the output folder (default: next to the model, `eval_split<N>/`):

- `scores.npz`: per-video scores of every output (`keras_twostream.evaluation.scores`),
  the input of `keras-twostream fuse`; `predictions.csv`: top-1 per output;
- `confusion_<output>.png` / `.csv` (rows: true class), `recall_<output>.png`
  (per-class recall, Fig. 6 of the two-stream paper);
- `report.md` linking them, `results.json`.

`--splits 1 2 3` evaluates one model per split (write the model path with
`{split}`, e.g. `runs/split{split}/best.keras`) and reports the mean over the
splits, the UCF101/HMDB51 convention.
"""

import csv
import io
import json
import os
from pathlib import Path

from keras_twostream.commands import UserError, common
from keras_twostream.evaluation.protocol import regroup_clips, resolve_protocol

COMMAND = "evaluate"


def add_arguments(parser):
    """Adds `evaluate`'s arguments to an `argparse` parser.

    Example:

    >>> import argparse
    >>> from keras_twostream.commands import evaluate
    >>> parser = argparse.ArgumentParser()
    >>> evaluate.add_arguments(parser)
    >>> parser.parse_args(["best.keras", "frames", "--splits", "1", "2", "3"]).splits
    [1, 2, 3]
    """
    parser.add_argument(
        "model", help="a .keras model or a training output folder; with --splits, contains {split}"
    )
    parser.add_argument(
        "data", help="frame folder from `keras-twostream extract`, or a folder of videos"
    )
    parser.add_argument(
        "--annotations", help="split folder or list file (default: DATA/rawframes.txt)"
    )
    parser.add_argument("--format", default="auto", help="annotation format (default: detected)")
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--split", type=int, default=1, help="UCF101/HMDB51 split (1, 2 or 3)")
    split.add_argument(
        "--splits", type=int, nargs="+", help="evaluate every split and average (e.g. 1 2 3)"
    )
    parser.add_argument(
        "--subset",
        default=None,
        choices=["test", "train", "val", "all", "heldout"],
        help="which videos of the split to score (train: scores to fit an SVM fusion on; "
        "heldout: those `train --val FRACTION` held out, recorded in the run's train.json). "
        "Default: heldout for a run trained with --val FRACTION, else test",
    )
    parser.add_argument(
        "--frames", type=int, help="equally spaced frames per video (default: the paper's, 25)"
    )
    parser.add_argument(
        "--crops", type=int, choices=[1, 3, 10], help="crops per frame (default: the paper's, 10)"
    )
    parser.add_argument(
        "--snippets",
        choices=["uniform", "random"],
        default="uniform",
        help="equally spaced test snippets, or STPN's randomly sampled ones (Sect. 4.7; seeded)",
    )
    parser.add_argument(
        "--batch-views", type=int, help="score at most this many views per call (memory)"
    )
    parser.add_argument(
        "--skip-missing", action="store_true", help="leave out videos without a frame folder"
    )
    parser.add_argument(
        "--frames-dir", help="where a folder of videos is extracted (default: DATA_frames)"
    )
    parser.add_argument("--output", help="output folder (default: MODEL_DIR/eval_split<N>)")
    common.add_on_error_argument(parser)
    parser.set_defaults(func=run)


def scoring_model(model, spec, views):
    """The model that scores one view: rebuilt with one segment, or the model itself for clips.

    A model built with `logits=True` is rebuilt with `logits=False` (same weights): the test
    protocol averages softmax probabilities over the views (two-stream paper, Sect. 5).

    Example:

    >>> from keras_twostream import build_two_stream
    >>> from keras_twostream.commands.common import model_spec
    >>> from keras_twostream.commands.evaluate import scoring_model
    >>> model = build_two_stream(5, backbone="tiny", image_size=32, num_segments=3, flow_length=2)
    >>> scoring_model(model, model_spec(model), "frame").num_segments
    1
    """
    overrides = {"logits": False} if getattr(model, "logits", False) else {}
    if not (views == "clip" or spec.segment_arg is None or spec.segments == 1):
        overrides[spec.segment_arg] = 1
    if not overrides:
        return model
    if not hasattr(model, "rebuild"):
        raise UserError(
            f"{model.name}: cannot rebuild the model with one segment to score single views"
        )
    return model.rebuild(**overrides)


def _test_settings(info, model_name, args):
    from keras_twostream.commands.defaults import training_defaults

    return resolve_protocol(
        info.get("test", {}), training_defaults(model_name), args.frames, args.crops
    )


def score_videos(
    model,
    info,
    table,
    frames,
    crops,
    views,
    batch_views=None,
    desc="scoring",
    scorer=None,
    on_error="raise",
    errors=None,
    snippets="uniform",
):
    """Runs the test protocol on the videos of `table`.

    Args:
        model: the trained model (its inputs decide the data).
        info: its model card (data settings), or `{}`.
        table: annotation table of the videos (absolute frame-folder paths).
        frames, crops, views: the protocol (`views`: `"frame"` or `"clip"`).
        batch_views: score at most this many views per call.
        desc: progress bar label; `None` shows none.
        scorer: the view-scoring model (`scoring_model(model, ...)`), built
            once by callers that score many tables.
        on_error: `"raise"` or `"skip"` for videos with missing or corrupt frame
            files (`keras_twostream.data.make_test_dataset`); skipped videos are
            absent from the results and recorded in `errors`.
        errors: a `keras_twostream.data.DatasetErrors` to record them into.
        snippets: `"uniform"` or `"random"` (STPN's protocol), see
            `keras_twostream.data.make_test_dataset`.

    Returns:
        `(scores, labels)`: dict output name -> `(n, C)` per-video mean scores,
        and the labels `(n,)`.

    Example:

    >>> from keras_twostream.commands.evaluate import score_videos
    >>> scores, labels = score_videos(model, {}, test_table, frames=25, crops=10, views="frame")  # doctest: +SKIP
    >>> sorted(scores)  # doctest: +SKIP
    ['fused', 'spatial', 'temporal']
    """
    from tqdm.auto import tqdm

    from keras_twostream.data import make_test_dataset, predict_video_scores

    spec = common.model_spec(model)
    # The model's data contract; evaluate checks the class names itself (a warning).
    config = {k: v for k, v in common.data_config_of(model, info).items() if k != "class_names"}
    if views == "clip" and frames < spec.segments:
        raise UserError(
            f"--frames {frames}: this model scores clips of {spec.segments} frames; give at least {spec.segments}"
        )
    dataset = make_test_dataset(
        table,
        data_config=config,
        num_frames=frames,
        crops=crops,
        on_error=on_error,
        errors=errors,
        snippets=snippets,
    )
    if views == "clip" and spec.segments > 1:
        dataset = dataset.map(lambda x, y: (regroup_clips(x, frames, crops, spec.segments), y))
    if scorer is None:
        scorer = scoring_model(model, spec, views)
    names = {name for name, _ in common.score_outputs(model)}
    if desc is not None:
        dataset = tqdm(dataset, total=len(table), desc=desc, unit="video", leave=False)
    import tensorflow as tf

    try:
        scores, labels = predict_video_scores(
            scorer, dataset, max_views_per_call=batch_views, return_labels=True
        )
    except tf.errors.OpError as error:
        user_error = common.data_error(error)
        if user_error is None:
            raise
        raise user_error from None
    return {k: v for k, v in scores.items() if k in names}, labels


def _write_predictions(path, ids, labels, scores, classes):
    out = io.StringIO()
    writer = csv.writer(out)
    names = list(scores)
    writer.writerow(
        ["video", "label", *[f"{n}_prediction" for n in names], *[f"{n}_score" for n in names]]
    )
    for i, video in enumerate(ids):
        top = [int(scores[n][i].argmax()) for n in names]
        writer.writerow(
            [
                video,
                classes[labels[i]] if labels[i] >= 0 else "",
                *[classes[t] for t in top],
                *[f"{scores[n][i, t]:.6f}" for n, t in zip(names, top, strict=True)],
            ]
        )
    common.atomic_write_text(path, out.getvalue())


def evaluate_split(model_path, args, split):
    """Evaluates one model on one split; writes the files and returns the results dict.

    Example:

    >>> from keras_twostream.commands.evaluate import evaluate_split
    >>> results, output = evaluate_split("runs/best.keras", args, split=1)  # doctest: +SKIP
    """
    from keras_twostream.evaluation import report
    from keras_twostream.evaluation.metrics import classification_summary, per_class_recall
    from keras_twostream.evaluation.scores import save_scores

    model, model_path = common.load_model(model_path)
    info = common.read_sidecar(model_path)
    if not info:
        common.say(
            COMMAND,
            f"{model_path} has no model card ({common.sidecar_path(model_path).name}): "
            "library defaults for the data settings, classes from the data",
        )
    model_name = common.model_name_of(model, info)
    extraction = info.get("data", {})
    root = common.resolve_data(
        args.data,
        COMMAND,
        frames_dir=args.frames_dir,
        flow=extraction.get("flow") or "tvl1",
        short_side=extraction.get("short_side") or 256,
        bound=extraction.get("bound") or 20.0,
    )
    table, classes, source = common.load_table(root, args.annotations, split, args.format)
    run_videos = _run_videos(model_path)
    subset = args.subset or ("heldout" if run_videos.get("val_source") == "held-out" else "test")
    if subset == "heldout":
        if run_videos.get("val_source") != "held-out":
            raise UserError(
                f"--subset heldout: {model_path.parent / 'train.json'} records no held-out videos "
                "(the run was not trained with --val FRACTION)"
            )
        wanted = set(run_videos["val"])
        table = table[[v in wanted for v in common.video_ids(table, root)]]
        if len(table) != len(wanted):
            common.say(
                COMMAND,
                f"warning: {len(wanted) - len(table)} of the {len(wanted)} held-out videos "
                f"recorded in train.json are not in {source}",
            )
    else:
        table = common.subset(table, subset)
    if table.empty:
        raise UserError(f"{source}: no {subset} videos in split {split}")
    table = common.check_missing(table, root, source, COMMAND, skip=args.skip_missing)
    num_classes = common.num_classes_of(model)
    if num_classes != len(classes):
        raise UserError(
            f"{model_path} predicts {num_classes} classes but the data has {len(classes)} ({source}); "
            "evaluate on data with the classes the model was trained on"
        )
    known = common.data_config_of(model, info).get("class_names")
    if isinstance(known, list) and list(known) != list(classes):
        differ = [i for i, (a, b) in enumerate(zip(known, classes, strict=True)) if a != b]
        common.say(
            COMMAND,
            f"warning: the data names its classes differently from the model card "
            f"(first difference: label {differ[0]} is {classes[differ[0]]!r} here, {known[differ[0]]!r} "
            "in training); accuracy assumes the labels mean the same",
        )
    frames, crops, views = _test_settings(info, model_name, args)
    common.say(
        COMMAND,
        f"{model_name} on {len(table)} {subset} videos of split {split}: "
        f"{frames} {'random ' if args.snippets == 'random' else ''}frames x {crops} crops per video "
        f"({'clips' if views == 'clip' else 'one view each'})",
    )
    from keras_twostream.data import DatasetErrors

    errors = DatasetErrors()
    scores, labels = score_videos(
        model,
        info,
        table,
        frames,
        crops,
        views,
        args.batch_views,
        on_error=args.on_error,
        errors=errors,
        snippets=args.snippets,
    )
    labels = labels.astype("int64")
    skipped = common.skipped_summary(errors)
    bad = {os.path.abspath(r["video"]) for r in skipped["records"]}
    table = table[[os.path.abspath(p) not in bad for p in table["path"]]]
    ids = common.video_ids(table, root)
    common.report_skipped(COMMAND, skipped)
    # Issue 15 item 4: say which videos were scored and whether training saw any of them.
    seen = sorted(set(ids) & set(run_videos.get("train", ()))) if run_videos else None
    if seen:
        common.say(
            COMMAND,
            f"warning: {len(seen)} of the {len(ids)} scored videos were training videos of this "
            f"run (e.g. {seen[0]}); their accuracy is not a test accuracy",
        )

    output = Path(args.output) if args.output else model_path.parent / f"eval_split{split}"
    if args.splits and args.output:
        output = output / f"split{split}"
    output.mkdir(parents=True, exist_ok=True)
    meta = {
        "model": str(model_path),
        "model_name": model_name,
        "data": str(root),
        "annotations": str(source),
        "split": split,
        "subset": subset,
        "videos_scored": ids,
        "seen_in_training": seen,
        "skipped": skipped,
        "frames": frames,
        "crops": crops,
        "views": views,
        "snippets": args.snippets,
    }
    save_scores(output / "scores.npz", scores, ids, labels, classes, meta)
    _write_predictions(output / "predictions.csv", ids, labels, scores, classes)

    rows, sections = [], []
    for name, values in scores.items():
        summary = classification_summary(values, labels)
        matrix = summary.pop("confusion_matrix")
        rows.append({"output": name, **summary})
        report.write_confusion_csv(matrix, classes, output / f"confusion_{name}.csv")
        report.plot_confusion_matrix(
            matrix,
            classes,
            output / f"confusion_{name}.png",
            title=f"{model_name} {name}: confusion matrix (split {split})",
        )
        report.plot_per_class_recall(
            per_class_recall(matrix),
            classes,
            output / f"recall_{name}.png",
            title=f"{model_name} {name}: per-class recall (split {split})",
        )
        sections.append(
            f"### {name}\n\n"
            f"![confusion matrix of {name}](confusion_{name}.png)\n\n"
            f"Counts: [confusion_{name}.csv](confusion_{name}.csv) (rows: true class, columns: predicted).\n\n"
            f"![per-class recall of {name}](recall_{name}.png)\n"
        )
    table_md = report.accuracy_table(rows)
    text = (
        f"# Evaluation of {model_name}\n\n"
        f"- model: `{model_path}`\n- data: `{root}` ({subset} videos of split {split}, "
        f"annotations `{source}`)\n- videos: {len(ids)}, classes: {len(classes)} (chance "
        f"{100 / len(classes):.1f}%)\n"
        f"- {_seen_line(seen, len(ids))}\n"
        f"{_skipped_line(skipped)}"
        f"- protocol: {frames} "
        f"{'randomly sampled (seeded, STPN)' if args.snippets == 'random' else 'equally spaced'} "
        f"frames x {crops} crops per video"
        f"{' (clips of ' + str(common.model_spec(model).segments) + ' frames)' if views == 'clip' else ''}, "
        "softmax scores averaged per video\n\n"
        f"{table_md}\n\n"
        "Per-video scores of every output: [scores.npz](scores.npz) (`keras_twostream.evaluation.scores`; "
        "fuse them with `keras-twostream fuse`), top-1 per video: [predictions.csv](predictions.csv).\n\n"
        "## Confusion matrices and per-class recall\n\n" + "\n".join(sections)
    )
    report.write_text(output / "report.md", text)
    results = {**meta, "videos": len(ids), "classes": len(classes), "metrics": rows}
    common.atomic_write_text(output / "results.json", json.dumps(results, indent=2))
    print(f"\nSplit {split}, {len(ids)} videos, {len(classes)} classes:\n{table_md}\n", flush=True)
    common.say(COMMAND, f"report: {output / 'report.md'}; scores: {output / 'scores.npz'}")
    return results, output


def _run_videos(model_path):
    """The `videos` record of the training run that wrote `model_path` (its train.json), or `{}`."""
    path = Path(model_path).parent / "train.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("videos") or {}
    except (OSError, ValueError):
        return {}


def _seen_line(seen, count):
    if seen is None:
        return "seen in training: unknown (no train.json with the run's videos next to the model)"
    if not seen:
        return f"seen in training: none of the {count} scored videos (train.json of the run)"
    return (
        f"seen in training: **{len(seen)} of the {count} scored videos were training videos** "
        f"({', '.join(seen[:5])}{', ...' if len(seen) > 5 else ''})"
    )


def _skipped_line(skipped):
    if not skipped["count"]:
        return ""
    listed = "; ".join(
        f"`{r['file'] or r['video']}` {r['problem']}" for r in skipped["records"][:5]
    )
    return f"- skipped (--on-error skip): {skipped['count']} video(s): {listed}\n"


def run(args):
    """Runs `keras-twostream evaluate` (see the module docstring).

    Example:

    >>> from keras_twostream.cli import main
    >>> main(["evaluate", "runs/split{split}", "ucf101_frames", "--annotations", "ucfTrainTestlist",
    ...       "--splits", "1", "2", "3"])  # doctest: +SKIP
    0
    """
    from keras_twostream.evaluation import report

    if args.frames is not None and args.frames < 1:
        raise UserError(f"argument --frames: expected a positive integer, got {args.frames}")
    splits = args.splits or [args.split]
    if len(splits) > 1 and "{split}" not in args.model:
        raise UserError(
            "--splits evaluates one model per split: write the model path with {split}, "
            "e.g. runs/split{split}/best.keras"
        )
    all_results = []
    for split in splits:
        results, output = evaluate_split(args.model.replace("{split}", str(split)), args, split)
        all_results.append((results, output))
    if len(splits) == 1:
        return 0
    # The UCF101/HMDB51 convention: accuracy averaged over the splits.
    names = [row["output"] for row in all_results[0][0]["metrics"]]
    rows = []
    for name in names:
        per_split = [
            next(r for r in res["metrics"] if r["output"] == name) for res, _ in all_results
        ]
        rows.append(
            {
                "output": name,
                **{
                    k: sum(r[k] for r in per_split) / len(per_split)
                    for k in ("top1", "top5", "mean_class_accuracy")
                },
            }
        )
    table_md = report.accuracy_table(rows)
    import os

    base = (
        Path(args.output)
        if args.output
        else Path(os.path.commonpath([str(Path(o).parent) for _, o in all_results]))
    )
    lines = [f"# Mean over splits {', '.join(map(str, splits))}\n", table_md, "", "Per split:"]
    for (_, out), split in zip(all_results, splits, strict=True):
        link = Path(os.path.relpath(Path(out) / "report.md", base)).as_posix()
        lines.append(f"- split {split}: [{link}]({link})")
    report.write_text(base / "report_mean.md", "\n".join(lines) + "\n")
    print(f"\nMean over splits {', '.join(map(str, splits))}:\n{table_md}\n", flush=True)
    common.say(COMMAND, f"mean report: {base / 'report_mean.md'}")
    return 0
