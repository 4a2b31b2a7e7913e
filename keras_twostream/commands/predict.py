"""`keras-twostream predict`: the top classes of video files, and an optional annotated preview.

    keras-twostream predict MODEL VIDEO [VIDEO ...] [--top 5] [--preview out.gif|out.mp4]
    keras-twostream predict MODEL long.mp4 --window 2 --stride 1 [--timeline-dir DIR]
    keras-twostream predict MODEL --stream 0|rtsp://...|file.mp4 [--window 2 --stride 1]

Each video is decoded and its frames, and optical flow if the model takes flow
(computed with `keras_twostream.data.flow`, the algorithm and frame size the
model was trained with, from its model card), are written to a temporary frame
folder exactly as `keras-twostream extract` writes them; the test protocol of
`keras-twostream evaluate` (equally spaced frames x crops, scores averaged)
then scores it, so a prediction sees the same preprocessing as training.
Models that take RGB differences need no flow. Class names come from the model
card (`best.json` next to `best.keras`), else `class_<i>`.

`--preview` writes the video (at most `--preview-frames` frames, evenly
subsampled) with the top label and its score drawn on every frame, as a GIF or
an MP4 file; with several videos, each gets its own file (`out_<video>.gif`).

`--window W --stride S` (seconds) scores each window of each video on its own
(`keras_twostream.predict_video`) and writes `<video>_timeline.csv` (start, end,
top class, score, one probability column per class) and `<video>_timeline.png`
into `--timeline-dir` (default: the current folder). `--stream SOURCE` classifies
a camera (`0`), an RTSP/HTTP URL or a file with a rolling window of `--window`
seconds, printing the top class every `--stride` seconds until the stream ends or
Ctrl-C (RGB-only models; `keras_twostream.predict_stream`). `--overlay out.mp4`
writes every frame read with the latest top class drawn on it, `--csv out.csv` one
row per prediction; both appear under their names, complete, when the stream stops
(end of stream or Ctrl-C: the first Ctrl-C ends it after the current frame, a second
one at once). `--realtime` replays a file at its frame rate, as a live source.
"""

import os
import shutil
import tempfile
from pathlib import Path

from keras_twostream.commands import UserError, common

COMMAND = "predict"


def add_arguments(parser):
    """Adds `predict`'s arguments to an `argparse` parser.

    Example:

    >>> import argparse
    >>> from keras_twostream.commands import predict
    >>> parser = argparse.ArgumentParser()
    >>> predict.add_arguments(parser)
    >>> parser.parse_args(["best.keras", "a.mp4", "b.mp4"]).videos
    ['a.mp4', 'b.mp4']
    """
    parser.add_argument("model", help="a .keras model or a training output folder")
    parser.add_argument("videos", nargs="*", help="video files")
    parser.add_argument("--top", type=int, default=5, help="classes to print per video")
    parser.add_argument(
        "--output-name", help="which model output to rank (default: fused, else the only one)"
    )
    parser.add_argument(
        "--frames", type=int, help="equally spaced frames per video (default: the paper's)"
    )
    parser.add_argument(
        "--crops", type=int, choices=[1, 3, 10], help="crops per frame (default: the paper's)"
    )
    parser.add_argument(
        "--flow", choices=["tvl1", "dis", "farneback"], help="flow algorithm (default: training's)"
    )
    parser.add_argument("--short-side", type=int, help="frame short side (default: training's)")
    parser.add_argument(
        "--batch-views", type=int, help="score at most this many views per call (memory)"
    )
    parser.add_argument("--preview", help="write an annotated preview: a .gif or .mp4 path")
    parser.add_argument("--preview-frames", type=int, default=48, help="frames in the preview")
    parser.add_argument(
        "--window", type=float, help="seconds per window: per-window scores, CSV and PNG timeline"
    )
    parser.add_argument("--stride", type=float, help="seconds between windows (default: --window)")
    parser.add_argument(
        "--timeline-dir", default=".", help="where --window writes <video>_timeline.csv/.png"
    )
    parser.add_argument(
        "--stream", help="classify a live capture: a camera index (0), an RTSP/HTTP URL or a file"
    )
    parser.add_argument(
        "--overlay", help="with --stream: write the frames with the top class drawn (.mp4/.avi)"
    )
    parser.add_argument("--csv", help="with --stream: write one CSV row per prediction")
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="with --stream: read a file no faster than its frame rate (as a live source)",
    )
    parser.set_defaults(func=run)


def _extract(video, folder, info, args, needs_flow, flow_bound=None):
    from keras_twostream.data.extract import extract_video

    data = info.get("data", {})
    flow = (args.flow or data.get("flow") or "tvl1") if needs_flow else "none"
    short_side = args.short_side or data.get("short_side") or 256
    bound = flow_bound or data.get("bound") or 20.0  # the model's data config first
    extract_video(video, folder, flow=flow, short_side=short_side, bound=bound)
    return flow, short_side


def _draw_label(frame, text):
    """Draws `text` in white on a dark band at the top of an RGB uint8 frame (in place)."""
    import cv2

    height, width = frame.shape[:2]
    scale = max(0.35, width / 640)
    thickness = max(1, round(scale * 1.5))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    band = th + base + 8
    frame[:band] = (frame[:band] * 0.35).astype(frame.dtype)
    cv2.putText(
        frame,
        text,
        (6, th + 4),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (255, 255, 255),
        thickness,
        cv2.LINE_AA,
    )
    return frame


def write_preview(video, path, text, max_frames=48, short_side=240):
    """Writes `video` with `text` drawn on each frame as a GIF or MP4 (atomically).

    Returns:
        The path written.

    Example:

    >>> from keras_twostream.commands.predict import write_preview
    >>> write_preview("clip.mp4", "preview.gif", "Biking 87%")  # doctest: +SKIP
    PosixPath('preview.gif')
    """
    import cv2
    import numpy as np

    from keras_twostream.data.video import VideoReader

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise UserError(f"--preview {path}: expected a .gif or .mp4 file name")
    with VideoReader(video, short_side=short_side) as reader:
        frames = list(reader)
        fps = reader.fps or 25.0
    step = max(1, int(np.ceil(len(frames) / max_frames)))
    frames = [_draw_label(np.ascontiguousarray(f), text) for f in frames[::step]]
    fps = max(1.0, fps / step)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{suffix}")
    if suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        images[0].save(
            temp, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0
        )
    else:
        height, width = frames[0].shape[:2]
        writer = cv2.VideoWriter(str(temp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise UserError(
                f"--preview {path}: OpenCV cannot write MP4 files here; use a .gif name"
            )
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
    os.replace(temp, path)
    return path


def _preview_path(preview, video, many, used):
    preview = Path(preview)
    if not many:
        return preview
    path = preview.with_name(f"{preview.stem}_{Path(video).stem}{preview.suffix}")
    if path in used:  # clip.mp4 and clip.avi
        path = preview.with_name(f"{preview.stem}_{Path(video).stem}_{len(used)}{preview.suffix}")
    used.add(path)
    return path


def run(args):
    """Runs `keras-twostream predict` (see the module docstring).

    Example:

    >>> from keras_twostream.cli import main
    >>> main(["predict", "runs/two_stream", "clip.mp4", "--preview", "clip.gif"])  # doctest: +SKIP
    0
    """
    import numpy as np
    import pandas as pd

    from keras_twostream.commands.evaluate import _test_settings, score_videos, scoring_model

    if args.top < 1:
        raise UserError(f"argument --top: expected a positive integer, got {args.top}")
    for name in ("window", "stride"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise UserError(f"argument --{name}: expected seconds > 0, got {value}")
    if args.stride is not None and args.window is None and not args.stream:
        raise UserError("argument --stride: needs --window (seconds)")
    for name in ("overlay", "csv", "realtime"):
        if getattr(args, name) and args.stream is None:
            raise UserError(f"argument --{name}: needs --stream SOURCE")
    if args.stream is not None:
        if args.videos:
            raise UserError("--stream classifies one capture: give no video files with it")
        return _run_stream(args)
    if not args.videos:
        raise UserError("give video files to classify, or --stream SOURCE")
    if args.window is not None:
        return _run_windows(args)
    model, model_path = common.load_model(args.model)
    info = common.read_sidecar(model_path)
    outputs = [name for name, _ in common.score_outputs(model)]
    num_classes = common.num_classes_of(model)
    config = common.data_config_of(model, info)
    known = config.get("class_names")
    classes = known if isinstance(known, list) else [f"class_{i}" for i in range(num_classes)]
    if len(classes) != num_classes:
        raise UserError(
            f"{common.sidecar_path(model_path)} names {len(classes)} classes but the model predicts {num_classes}"
        )
    output_name = args.output_name or common.primary_output(outputs)
    if output_name not in outputs:
        raise UserError(
            f"argument --output-name: the model has no output {output_name!r}; it has {', '.join(outputs)}"
        )
    spec = common.model_spec(model)
    frames, crops, views = _test_settings(info, common.model_name_of(model, info), args)
    scorer = scoring_model(model, spec, views)
    failed, used = 0, set()
    for video in args.videos:
        if not os.path.isfile(video):
            print(f"{video}: error: no such file", flush=True)
            failed += 1
            continue
        workdir = tempfile.mkdtemp(prefix="keras_twostream_predict_")
        try:
            folder = os.path.join(workdir, "video")
            try:
                flow, short_side = _extract(
                    video, folder, info, args, "flow" in spec.modalities, config["flow_bound"]
                )
            except ValueError as error:  # VideoDecodeError: unreadable, truncated, too short
                print(f"{video}: error: {common.first_line(error)}", flush=True)
                failed += 1
                continue
            table = pd.DataFrame({"path": [folder]})
            scores, _ = score_videos(
                model, info, table, frames, crops, views, args.batch_views, desc=None, scorer=scorer
            )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        values = scores[output_name][0]
        order = np.argsort(-values, kind="stable")[: min(args.top, num_classes)]
        print(
            f"{video} ({output_name}; {frames} frames x {crops} crops"
            f"{', ' + flow + ' flow' if flow != 'none' else ''}, short side {short_side}):"
        )
        for rank, index in enumerate(order, start=1):
            print(f"  {rank}. {classes[index]:<32} {values[index]:.4f}")
        others = [n for n in outputs if n != output_name]
        if others:
            print(
                "  other outputs, top-1: "
                + "; ".join(
                    f"{n}: {classes[int(scores[n][0].argmax())]} {float(scores[n][0].max()):.4f}"
                    for n in others
                )
            )
        if args.preview:
            text = f"{classes[order[0]]} {100 * values[order[0]]:.0f}%"
            path = write_preview(
                video,
                _preview_path(args.preview, video, len(args.videos) > 1, used),
                text,
                max_frames=args.preview_frames,
            )
            print(f"  preview: {path}")
        print(flush=True)
    if failed:
        common.say(COMMAND, f"{failed} of {len(args.videos)} videos failed")
        return 1
    return 0


def _load_with_card(args):
    model, model_path = common.load_model(args.model)
    return model, common.read_sidecar(model_path)


def write_timeline_csv(path, prediction):
    """Writes a windowed `VideoPrediction` as CSV (atomically): one row per window.

    Columns: `start`, `end` (seconds), `top_class`, `top_score`, then one probability
    column per class, named after the class.

    Example:

    >>> from keras_twostream.commands.predict import write_timeline_csv
    >>> write_timeline_csv("long_timeline.csv", prediction)  # doctest: +SKIP
    """
    import pandas as pd

    probs = pd.DataFrame(prediction.window_probabilities, columns=prediction.classes)
    table = pd.concat([prediction.windows.reset_index(drop=True), probs], axis=1)
    common.atomic_write_text(path, table.to_csv(index=False, float_format="%.6f"))


def _run_windows(args):
    from keras_twostream.inference import predict_video
    from keras_twostream.visualization.timeline import plot_timeline

    model, info = _load_with_card(args)
    out_dir = Path(args.timeline_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for video in args.videos:
        try:
            result = predict_video(
                model,
                video,
                top_k=args.top,
                window=args.window,
                stride=args.stride,
                num_frames=args.frames,
                crops=args.crops,
                output_name=args.output_name,
                max_views_per_call=args.batch_views,
                model_card=info,
            )
        except (OSError, ValueError) as error:  # VideoDecodeError, a missing file
            print(f"{video}: error: {common.first_line(error)}", flush=True)
            failed += 1
            continue
        stem = Path(video).stem
        csv_path = out_dir / f"{stem}_timeline.csv"
        png_path = out_dir / f"{stem}_timeline.png"
        write_timeline_csv(csv_path, result)
        plot_timeline(result, png_path, top=min(args.top, len(result.classes)))
        print(
            f"{video} ({result.output_name}; {len(result.windows)} windows of {args.window:g} s):"
        )
        for row in result.windows.itertuples():
            print(f"  {row.start:8.2f}-{row.end:8.2f} s  {row.top_class:<32} {row.top_score:.4f}")
        print(f"  timeline: {csv_path}, {png_path}", flush=True)
    if failed:
        common.say(COMMAND, f"{failed} of {len(args.videos)} videos failed")
        return 1
    return 0


class _StreamCSV:
    """Stream predictions as CSV rows, flushed as they come, renamed into place at the end.

    Columns: `time`, `frame`, `top_class`, `top_score`, one probability column per class.
    Rows go to `.<name>.tmp-<pid>` beside `path`; `close()` renames it, so a file under
    `path` always ends with a complete row (a killed process leaves only the temporary file).
    """

    def __init__(self, path, classes):
        import csv

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.temp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.file = open(self.temp, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self.writer = csv.writer(self.file)
        self.writer.writerow(["time", "frame", "top_class", "top_score", *classes])
        self.file.flush()

    def write(self, step):
        self.writer.writerow(
            [
                f"{step['time']:.3f}",
                step["frame"],
                step["top_class"],
                f"{step['top_score']:.6f}",
                *(f"{p:.6f}" for p in step["probabilities"]),
            ]
        )
        self.file.flush()

    def close(self, keep=True):
        """Renames the rows into place (`keep=False`: removes them, e.g. the stream never opened)."""
        if self.file is not None:
            self.file.close()
            self.file = None
            if keep:
                os.replace(self.temp, self.path)
            else:
                os.remove(self.temp)


def _stop_on_sigint():
    """A `threading.Event` set by the first Ctrl-C (the stream then ends after the frame it is
    on); a second Ctrl-C interrupts at once. Returns `(event, restore)`."""
    import signal
    import threading

    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        return stop, lambda: None

    def handler(signum, frame):
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, handler)
    return stop, lambda: signal.signal(signal.SIGINT, previous)


def _run_stream(args):
    from keras_twostream.inference import _classes, predict_stream

    window = args.window or 2.0
    stride = args.stride or 1.0
    if args.overlay and Path(args.overlay).suffix.lower() not in (".mp4", ".avi"):
        raise UserError(f"--overlay {args.overlay}: expected a .mp4 or .avi file name")
    model, info = _load_with_card(args)
    table = _StreamCSV(args.csv, _classes(model, info, None)) if args.csv else None
    stop, restore = _stop_on_sigint()
    steps, how = 0, "end of stream"
    stream = predict_stream(
        model,
        args.stream,
        window=window,
        stride=stride,
        num_frames=args.frames,
        output_name=args.output_name,
        model_card=info,
        overlay=args.overlay,
        stop=stop,
        realtime=args.realtime,
    )
    try:
        for step in stream:
            steps += 1
            if table is not None:
                table.write(step)
            print(
                f"{step['time']:8.2f} s  {step['top_class']:<32} {step['top_score']:.4f}",
                flush=True,
            )
            if stop.is_set():
                break
    except ValueError as error:
        if table is not None and steps == 0:
            table.close(keep=False)  # no header-only CSV for a stream that never ran
        raise UserError(f"--stream {args.stream}: {common.first_line(error)}") from None
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the handler was set
        stop.set()
    finally:
        stream.close()  # releases the capture and finishes the overlay
        restore()
        if table is not None:
            table.close()
    if stop.is_set():
        how = "stopped (Ctrl-C)"
    written = [f"{n} {p}" for n, p in (("CSV", args.csv), ("overlay", args.overlay)) if p]
    common.say(
        COMMAND,
        f"{how} after {steps} predictions" + (f"; wrote {', '.join(written)}" if written else ""),
    )
    return 0
