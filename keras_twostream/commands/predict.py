"""`keras-twostream predict`: the top classes of video files, and an optional annotated preview.

    keras-twostream predict MODEL VIDEO [VIDEO ...] [--top 5] [--preview out.gif|out.mp4]

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
    parser.add_argument("videos", nargs="+", help="video files")
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
    parser.set_defaults(func=run)


def _extract(video, folder, info, args, needs_flow):
    from keras_twostream.data.extract import extract_video

    data = info.get("data", {})
    flow = (args.flow or data.get("flow") or "tvl1") if needs_flow else "none"
    short_side = args.short_side or data.get("short_side") or 256
    bound = data.get("bound") or 20.0
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
    model, model_path = common.load_model(args.model)
    info = common.read_sidecar(model_path)
    outputs = [name for name, _ in common.score_outputs(model)]
    num_classes = common.num_classes_of(model)
    classes = info.get("classes") or [f"class_{i}" for i in range(num_classes)]
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
                flow, short_side = _extract(video, folder, info, args, "flow" in spec.modalities)
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
