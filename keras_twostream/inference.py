"""One call from a video to classes: `predict_video`, sliding windows over long videos, live streams.

`predict_video` runs a trained model's test protocol (the equally spaced frames x
crops of `keras-twostream evaluate`, scores averaged) on one video file. RGB-only
models (`"rgb"`, `"rgb_diff"` inputs) read the video directly
(`keras_twostream.data.video_source`); models that take flow get the video extracted
to a temporary frame folder first, with the flow algorithm of their model card.

With `window` and `stride` (seconds) the protocol runs on each window
`[start, start + window)`, `start = 0, stride, 2 * stride, ...`: each window is a row
of the annotation table with `offset` = its first frame and `frames` = its length, so
the windows are sampled exactly as whole videos are.

`predict_stream` classifies a live capture (a camera index, an RTSP/HTTP URL or a file)
with a rolling window of the last `window` seconds, scored every `stride` seconds on
the centre crop of equally spaced frames; it ends at the end of the stream, after
`max_steps` predictions, when `stop` is set (the CLI sets it on Ctrl-C) or when the
caller stops iterating. With `overlay` it writes every frame it read, with the latest
top class drawn on it, to a video file that is complete up to where the stream stopped.
"""

import collections
import os
import shutil
import tempfile
from dataclasses import dataclass, field

import numpy as np

__all__ = ["VideoPrediction", "predict_video", "predict_stream", "StreamOverlay"]


@dataclass
class VideoPrediction:
    """What `predict_video` returns.

    Attributes:
        path: the video.
        classes: class names, indexed like the model's outputs.
        probabilities: float32 `(C,)`, the model's scores averaged over the whole
            video's views (or over the windows' with `window`).
        top: `[(class_name, probability)]`, the `top_k` best, best first.
        output_name: the model output these scores come from.
        windows: with `window`, a pandas DataFrame with one row per window:
            `start`, `end` (seconds), `top_class`, `top_score`; else `None`.
        window_probabilities: with `window`, float32 `(W, C)`; else `None`.
    """

    path: str
    classes: list
    probabilities: np.ndarray
    top: list
    output_name: str
    windows: object = None
    window_probabilities: np.ndarray = field(default=None, repr=False)


def _load(model, model_card=None):
    from keras_twostream.commands import common

    if isinstance(model, (str, os.PathLike)):
        model, model_path = common.load_model(os.fspath(model))
        return model, common.read_sidecar(model_path)
    return model, dict(model_card or {})


def _protocol(model, info, num_frames, crops):
    from keras_twostream.commands import common
    from keras_twostream.commands.defaults import training_defaults
    from keras_twostream.evaluation.protocol import resolve_protocol

    defaults = training_defaults(common.model_name_of(model, info))
    return resolve_protocol(info.get("test", {}), defaults, num_frames, crops)


def _classes(model, info, classes):
    from keras_twostream.commands import common

    num_classes = common.num_classes_of(model)
    known = common.data_config_of(model, info).get("class_names")
    known = known if isinstance(known, list) else None
    classes = list(classes or known or [f"class_{i}" for i in range(num_classes)])
    if len(classes) != num_classes:
        raise ValueError(
            f"Expected {num_classes} class names (the model predicts {num_classes} classes). "
            f"Received: {len(classes)} names"
        )
    return classes


def _windows(num_frames, fps, window, stride):
    """`(offsets, lengths, starts_s, ends_s)` of the windows over `num_frames` frames."""
    if window is None:
        if stride is not None:
            raise ValueError(f"stride={stride!r} needs a window (seconds). Received: window=None")
        return None
    if not window > 0:
        raise ValueError(f"Expected window > 0 (seconds). Received: window={window!r}")
    stride = window if stride is None else stride
    if not stride > 0:
        raise ValueError(f"Expected stride > 0 (seconds). Received: stride={stride!r}")
    if not fps > 0:
        raise ValueError("The video reports no frame rate: windows in seconds need one")
    length = max(1, int(round(window * fps)))
    step = max(1, int(round(stride * fps)))
    # Windows start every `stride` while they fit; a video shorter than one window is one
    # window over all its frames (the paper gives no rule; partial windows would be scored
    # on repeated edge frames).
    last = max(0, num_frames - length)
    offsets = np.arange(0, last + 1, step, dtype=np.int64)
    lengths = np.minimum(length, num_frames - offsets)
    return offsets, lengths, offsets / fps, (offsets + lengths) / fps


def predict_video(
    model,
    path,
    top_k=5,
    window=None,
    stride=None,
    num_frames=None,
    crops=None,
    classes=None,
    output_name=None,
    max_views_per_call=None,
    model_card=None,
):
    """Class probabilities of one video file with the model's test protocol.

    Args:
        model: a trained Keras model of this library, or the path of a `.keras` file
            or training output folder (its model card then gives class names and data
            settings).
        path: the video file.
        top_k: how many classes `top` lists.
        window: `None` scores the whole video; else the window length in seconds, each
            window scored on its own (see the module docstring).
        stride: seconds between window starts (default: `window`, no overlap).
        num_frames: snippets per video or window (default: the paper's protocol).
        crops: 1, 3 or 10 crops per snippet (default: the paper's protocol).
        classes: class names (default: the model card's, else `class_<i>`).
        output_name: the output to rank (default: `"fused"`, else the only one).
        max_views_per_call: score at most this many views per model call (memory).
        model_card: with a loaded `model`, its model card (the `best.json` dict
            `keras-twostream train` writes): class names, data settings, protocol.

    Returns:
        A `VideoPrediction`.

    Raises:
        FileNotFoundError: no such video.
        keras_twostream.data.video.VideoDecodeError: the video does not decode.
        ValueError: a bad argument, or classes that do not match the model.

    Example:

    >>> import keras_twostream
    >>> result = keras_twostream.predict_video("runs/mpa_sal", "clip.mp4", top_k=3)  # doctest: +SKIP
    >>> result.top  # doctest: +SKIP
    [('Biking', 0.91), ('HorseRiding', 0.04), ('Skiing', 0.02)]
    >>> result = keras_twostream.predict_video(model, "long.mp4", window=2, stride=1)  # doctest: +SKIP
    >>> result.windows.head()  # doctest: +SKIP
    """
    import pandas as pd

    from keras_twostream.commands import common
    from keras_twostream.commands.evaluate import score_videos, scoring_model
    from keras_twostream.data.extract import extract_video
    from keras_twostream.data.video_source import verified_frame_count

    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"Expected top_k to be a positive integer. Received: top_k={top_k!r}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Video not found: {path}")
    model, info = _load(model, model_card)
    names = _classes(model, info, classes)
    outputs = [name for name, _ in common.score_outputs(model)]
    output_name = output_name or common.primary_output(outputs)
    if output_name not in outputs:
        raise ValueError(
            f"Expected output_name among {outputs}. Received: output_name={output_name!r}"
        )
    frames, crops, views = _protocol(model, info, num_frames, crops)
    spec = common.model_spec(model)
    count, fps = verified_frame_count(path)
    spans = _windows(count, fps, window, stride)
    workdir = None
    try:
        source = os.path.abspath(path)
        if "flow" in spec.modalities:
            # Flow is still read from extracted frames (the flow issue's fast flow aside).
            data = info.get("data", {})
            workdir = tempfile.mkdtemp(prefix="keras_twostream_predict_")
            source = os.path.join(workdir, "video")
            extract_video(
                path,
                source,
                flow=data.get("flow") or "tvl1",
                short_side=data.get("short_side") or 256,
                bound=common.data_config_of(model, info)["flow_bound"] or data.get("bound") or 20.0,
            )
        if spans is None:
            table = pd.DataFrame({"path": [source]})
        else:
            # With flow a window of n frames has n - 1 fields; `frames` bounds both.
            table = pd.DataFrame(
                {"path": [source] * len(spans[0]), "offset": spans[0], "frames": spans[1]}
            )
        scorer = scoring_model(model, spec, views)
        scores, _ = score_videos(
            model, info, table, frames, crops, views, max_views_per_call, desc=None, scorer=scorer
        )
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    per_row = scores[output_name].astype(np.float32)  # (rows, C)
    probabilities = per_row.mean(axis=0)
    order = np.argsort(-probabilities, kind="stable")[: min(top_k, len(names))]
    result = VideoPrediction(
        path=path,
        classes=names,
        probabilities=probabilities,
        top=[(names[i], float(probabilities[i])) for i in order],
        output_name=output_name,
    )
    if spans is not None:
        best = per_row.argmax(axis=1)
        result.windows = pd.DataFrame(
            {
                "start": spans[2],
                "end": spans[3],
                "top_class": [names[i] for i in best],
                "top_score": per_row[np.arange(len(best)), best],
            }
        )
        result.window_probabilities = per_row
    return result


def _stream_views(frames, spec, num_frames, rgb_normalization, scale_size=None):
    """Centre-crop views of a buffer of uint8 frames: the test protocol with `crops=1`."""
    import tensorflow as tf

    from keras_twostream.data import augment, sampling
    from keras_twostream.data.decoding import _cut
    from keras_twostream.evaluation.protocol import test_crop_params

    size = augment._pair(spec.image_size, "image_size")
    span = spec.diff_length + 1 if "rgb_diff" in spec.modalities else 1
    starts = sampling.segment_starts(len(frames), num_frames, span=span, training=False)
    index = sampling.snippet_positions(starts[None], span, np.asarray([[len(frames)]]))[0]
    clip = np.stack([frames[i] for i in index.reshape(-1)])  # [N*Dr, h, w, 3]
    c = test_crop_params(1, spec.image_size, scale_size)[0]  # the centre crop
    window = augment.crop_window(clip.shape[1], clip.shape[2], c[0], c[1], c[2], c[3])
    x = _cut(tf.constant(clip), window, False, size)
    x = augment.normalize_rgb(x, rgb_normalization)
    x = tf.reshape(x, [num_frames, span, size[0], size[1], 3])
    inputs = {}
    if "rgb" in spec.modalities:
        inputs["rgb"] = x[:, :1]  # (V, 1, H, W, 3)
    if "rgb_diff" in spec.modalities:
        diff = x[:, 1:] - x[:, :-1]  # [N, D, h, w, 3]
        diff = tf.transpose(diff, [0, 2, 3, 1, 4])  # [N, D, h, w, 3] -> [N, h, w, D, 3]
        inputs["rgb_diff"] = tf.reshape(diff, [num_frames, 1, size[0], size[1], 3 * (span - 1)])
    return {k: np.asarray(v) for k, v in inputs.items()}


class StreamOverlay:
    """An annotated copy of a stream, written frame by frame, complete under its name only.

    Frames go to a temporary file next to `path` (`.<stem>.tmp-<pid><suffix>`);
    `close()` releases the writer and renames it to `path`, so a file under `path` is
    always a finished video (a process killed before `close()` leaves only the
    temporary file). `.mp4` is written with the `mp4v` codec, `.avi` with MJPEG.

    Args:
        path: the video to write, `.mp4` or `.avi`.
        fps: its frame rate.

    Example:

    >>> from keras_twostream.inference import StreamOverlay
    >>> with StreamOverlay("out.mp4", 25.0) as overlay:  # doctest: +SKIP
    ...     overlay.write(rgb_frame, "Biking 0.87")
    """

    CODECS = {".mp4": "mp4v", ".avi": "MJPG"}

    def __init__(self, path, fps):
        self.path = os.fspath(path)
        stem, suffix = os.path.splitext(os.path.basename(self.path))
        if suffix.lower() not in self.CODECS:
            raise ValueError(f"overlay {self.path}: expected a .mp4 or .avi file name")
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        self.temp = os.path.join(folder, f".{stem}.tmp-{os.getpid()}{suffix}")
        self.fps = float(fps)
        self.codec = self.CODECS[suffix.lower()]
        self.writer = None
        self.frames = 0

    def write(self, frame, text=None):
        """Appends an RGB uint8 frame with `text` drawn at the top (none: the frame as is)."""
        import cv2

        from keras_twostream.commands.predict import _draw_label

        frame = np.array(frame, np.uint8)  # a copy: the caller's frame stays clean
        if text:
            _draw_label(frame, text)
        height, width = frame.shape[:2]
        if self.writer is None:
            fourcc = cv2.VideoWriter_fourcc(*self.codec)
            self.writer = cv2.VideoWriter(self.temp, fourcc, self.fps, (width, height))
            if not self.writer.isOpened():
                self.writer = None
                raise ValueError(f"overlay {self.path}: OpenCV cannot write {self.codec} here")
            self.size = (width, height)
        if (width, height) != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self):
        """Finishes the file and moves it to `path` (nothing is written without a frame)."""
        if self.writer is not None:
            self.writer.release()
            self.writer = None
            os.replace(self.temp, self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def predict_stream(
    model,
    source,
    window=2.0,
    stride=1.0,
    num_frames=None,
    classes=None,
    output_name=None,
    fps=None,
    max_steps=None,
    model_card=None,
    overlay=None,
    stop=None,
    realtime=False,
):
    """Classifies a live capture with a rolling window; yields one result per stride.

    Args:
        model: a trained RGB-only model (or its `.keras` path / training folder).
        source: a camera index (`0`), an RTSP/HTTP URL or a video file.
        window: seconds of video each prediction sees.
        stride: seconds between predictions.
        num_frames: equally spaced frames scored per window (default: the protocol's,
            at most the frames in the window).
        classes: class names (default: the model card's).
        output_name: the output to rank.
        fps: frame rate to assume when the capture reports none (cameras often do not).
        max_steps: stop after this many predictions (`None`: at the end of the stream).
        model_card: with a loaded `model`, its model card (see `predict_video`).
        overlay: a `.mp4`/`.avi` path: every frame read (short side 256), with the
            latest top class and score drawn on it, is written there (`StreamOverlay`:
            the file appears, complete, when the stream stops for any reason).
        stop: an object with `is_set()` (a `threading.Event`), checked before each
            frame: once set, the stream ends as at its end.
        realtime: read no faster than the capture's frame rate (a file replayed as a
            live source; a camera or URL already delivers frames in real time).

    Yields:
        Dicts `{"time", "frame", "top_class", "top_score", "probabilities"}`: seconds
        and frame number of the window's end, the best class and its score.

    Raises:
        ValueError: the model takes flow, or the capture does not open.

    Example:

    >>> from keras_twostream.inference import predict_stream
    >>> for step in predict_stream("runs/mpa_sal", 0):  # doctest: +SKIP
    ...     print(f"{step['time']:.1f}s {step['top_class']} {step['top_score']:.2f}")
    """
    import time

    import cv2

    from keras_twostream.commands import common
    from keras_twostream.commands.evaluate import scoring_model
    from keras_twostream.data.video import resized_size
    from keras_twostream.data.video_source import SHORT_SIDE

    model, info = _load(model, model_card)
    names = _classes(model, info, classes)
    spec = common.model_spec(model)
    if "flow" in spec.modalities:
        raise ValueError(
            f"{model.name} takes optical flow; stream prediction needs an RGB-only model "
            "('rgb' / 'rgb_diff' inputs)"
        )
    outputs = [name for name, _ in common.score_outputs(model)]
    output_name = output_name or common.primary_output(outputs)
    frames_wanted, _, views = _protocol(model, info, num_frames, 1)
    scorer = scoring_model(model, spec, "frame")
    rgb_normalization = common.data_config_of(model, info)["rgb_normalization"]
    if isinstance(source, str) and source.isdigit():
        source = int(source)
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        capture.release()
        raise ValueError(f"{source}: the capture does not open (no camera, URL or video there)")
    writer = None
    try:
        rate = float(capture.get(cv2.CAP_PROP_FPS) or 0.0) or float(fps or 25.0)
        length = max(1, int(round(window * rate)))
        step = max(1, int(round(stride * rate)))
        if overlay is not None:
            writer = StreamOverlay(overlay, rate)
        buffer = collections.deque(maxlen=length)
        count, done, label = 0, 0, None
        started = time.monotonic()
        while max_steps is None or done < max_steps:
            if stop is not None and stop.is_set():
                break
            if realtime:
                time.sleep(max(0.0, started + count / rate - time.monotonic()))
            ok, frame = capture.read()
            if not ok:
                break  # end of stream
            height, width = frame.shape[:2]
            size = resized_size(width, height, SHORT_SIDE)
            if size != (width, height):
                frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            buffer.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            count += 1
            result = None
            if len(buffer) == length and (count - length) % step == 0:
                n = min(frames_wanted, len(buffer))
                inputs = _stream_views(list(buffer), spec, n, rgb_normalization)
                out = scorer.predict_on_batch(inputs)
                if isinstance(out, dict):
                    scores = np.asarray(out[output_name], np.float32)
                else:
                    scores = np.asarray(out, np.float32)
                probabilities = scores.mean(axis=0)
                best = int(probabilities.argmax())
                done += 1
                label = f"{names[best]} {probabilities[best]:.2f}"
                result = {
                    "time": count / rate,
                    "frame": count,
                    "top_class": names[best],
                    "top_score": float(probabilities[best]),
                    "probabilities": probabilities,
                }
            if writer is not None:
                writer.write(buffer[-1], label)
            if result is not None:
                yield result
    finally:
        capture.release()
        if writer is not None:
            writer.close()
