"""The up-front check of an annotation table's videos, for the pipelines (no TensorFlow).

`_scan` checks every row once before a dataset is built (one directory listing per
video) and returns the validity table the sampling plan reads: per usable video its
folder, RGB/flow counts, offset, flow bound and, where stored, the flow field means.
Frame folders are checked by the one frame-folder validator,
`keras_twostream.data.frames.inspect_frame_folder` (also behind `check_frame_folder`,
`keras-twostream scan` and the commands' `check_missing`); video files by
`keras_twostream.data.video_source`. A problem raises (`on_error="raise"`) an error naming
the file and the row, or is recorded in a `DatasetErrors` (`"skip"`).
"""

import os

import numpy as np
import pandas as pd

from keras_twostream.data import frames, video_source


def _video_dir(path, root):
    path = os.fspath(path)
    if root is not None and not os.path.isabs(path):
        path = os.path.join(os.fspath(root), path)
    return os.path.normpath(path)


def _frame_name(prefix, index):
    return f"{prefix}{index:0{frames.INDEX_DIGITS}d}{frames.FRAME_SUFFIX}"


def _inspect_video(
    directory, total_frames, offset, need_rgb, need_flow, flow_bound, stored_means=False
):
    """Counts `(R, F, bound, centres)` of one frame folder, or raises `_VideoProblem`.

    Frame folders go through the one frame-folder validator,
    `keras_twostream.data.frames.inspect_frame_folder(complete=False)`: only the range a
    sample can read must be there; its first problem is raised. `centres` is `None`, or
    with `stored_means` and a `flow_means.npy` beside `meta.json`, float64
    `[flow_frames, 2]`: each field's mean in quantised units (0..255), the value the
    whole-field path would take with `tf.reduce_mean`.
    """
    if video_source.is_video_file(directory):
        return _inspect_video_file(directory, total_frames, offset, need_flow)
    modality = (("rgb",) if need_rgb else ()) + (("flow",) if need_flow else ())
    found = frames.inspect_frame_folder(
        directory,
        modality,
        frames=total_frames,
        offset=offset,
        complete=False,
        flow_bound=flow_bound,
        stored_means=stored_means,
    )
    if found.problems:
        first = found.problems[0]
        raise _VideoProblem(first.file, first.problem, missing=first.missing)
    return found.rgb_frames, found.flow_frames, found.bound, found.centres


def _inspect_video_file(path, total_frames, offset, need_flow):
    """`_inspect_video` for a video file (`keras_twostream.data.video_source`)."""
    if need_flow:
        raise _VideoProblem(
            None,
            "is a video file: the 'flow' modality reads extracted flow; extract its frames "
            "first (keras-twostream extract), or train an RGB-only model ('rgb', 'rgb_diff')",
        )
    if not os.path.exists(path):
        raise _VideoProblem(None, "video file not found", missing=True)
    try:
        count, _ = video_source.verified_frame_count(path)
    except video_source.VideoDecodeError as error:
        raise _VideoProblem(None, error.reason) from None
    num_rgb = min(count - offset, total_frames) if total_frames > 0 else count - offset
    if num_rgb < 1:
        raise _VideoProblem(None, f"no frames after offset {offset} ({count} frames decode)")
    return num_rgb, 0, frames.DEFAULT_BOUND, None


class _VideoProblem(Exception):
    def __init__(self, file, problem, missing=False):
        super().__init__(problem)
        self.file = file
        self.problem = problem
        self.missing = missing


def _scan(table, root, modalities, flow_bound, on_error, errors, stored_means=False):
    """The validity table: one entry per usable video, in table order.

    With `stored_means`, `"centre"` holds the stored field means of all videos
    end to end (float32 `[sum of flow counts, 2]`, quantised units) and
    `"centre_start"` each video's first row in it, or -1 for a video without
    `flow_means.npy`.
    """
    need_rgb = "rgb" in modalities or "rgb_diff" in modalities
    need_flow = "flow" in modalities
    keep, dirs, num_rgb, num_flow, offsets, bounds, is_video = [], [], [], [], [], [], []
    centres, centre_start, stored_rows = [], [], 0
    totals = table["frames"] if "frames" in table.columns else [-1] * len(table)
    offs = table["offset"] if "offset" in table.columns else [0] * len(table)
    for i, (row, path, total, offset) in enumerate(
        zip(table.index, table["path"], totals, offs, strict=True)
    ):
        directory = _video_dir(path, root)
        total = -1 if pd.isna(total) else int(total)
        offset = 0 if pd.isna(offset) else int(offset)
        if offset < 0:
            raise ValueError(
                f"Row {row} of the annotation table: offset must be >= 0, got {offset}"
            )
        try:
            r, f, bound, centre = _inspect_video(
                directory, total, offset, need_rgb, need_flow, flow_bound, stored_means
            )
        except _VideoProblem as problem:
            where = problem.file or directory
            if on_error == "raise":
                error_type = (
                    FileNotFoundError
                    if "not found" in problem.problem or "missing" in problem.problem
                    else ValueError
                )
                raise error_type(
                    f"{where}: {problem.problem} (row {row} of the annotation table; "
                    "pass on_error='skip' to leave such videos out)"
                ) from None
            errors.add(directory, problem.file, problem.problem, row=row)
            continue
        keep.append(i)
        is_video.append(video_source.is_video_file(directory))
        dirs.append(directory)
        num_rgb.append(r)
        num_flow.append(f)
        offsets.append(offset)
        bounds.append(bound)
        if centre is None:
            centre_start.append(-1)
        else:
            centre_start.append(stored_rows)
            centres.append(centre)
            stored_rows += len(centre)
    if not keep:
        raise ValueError(
            f"No usable video in the annotation table ({errors.count} problems recorded; "
            f"first: {errors.records[0] if errors.records else None})."
        )
    if any(is_video) and not all(is_video):
        raise ValueError(
            f"The annotation table mixes video files ({dirs[is_video.index(True)]}) and frame "
            f"folders ({dirs[is_video.index(False)]}); use one kind per table."
        )
    return {
        "video_files": bool(is_video[0]),
        "keep": np.asarray(keep, np.int64),
        "dir": np.asarray(dirs, object),
        "num_rgb": np.asarray(num_rgb, np.int64),
        "num_flow": np.asarray(num_flow, np.int64),
        "offset": np.asarray(offsets, np.int64),
        "bound": np.asarray(bounds, np.float32),
        "row": np.asarray(table.index)[keep],
        "centre": (
            np.concatenate(centres).astype(np.float32) if centres else np.zeros((0, 2), np.float32)
        ),
        "centre_start": np.asarray(centre_start, np.int64),
    }


def _check_backward_flow(videos, on_error, errors):
    """Raises (or records) for folders without backward flow; returns a bool mask of those with.

    (With bidirectional flow no stored means are used, so `videos["centre"]` is empty and
    every other entry of `videos` is per video.)
    """
    has = np.ones(len(videos["dir"]), bool)
    for i, (directory, row) in enumerate(zip(videos["dir"], videos["row"], strict=True)):
        first = frames.backward_flow_frame_paths(directory, 1)[0]
        if not os.path.exists(first):
            problem = (
                "no backward flow (bidirectional_flow=True reads bx_/by_ files; extract "
                "with keras-twostream extract --flow tvl1-xla --backward-flow)"
            )
            if on_error == "raise":
                raise FileNotFoundError(f"{first}: {problem} (row {row} of the annotation table)")
            errors.add(directory, first, problem, row=row)
            has[i] = False
    return has
