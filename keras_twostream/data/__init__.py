"""Video data: decoding, optical flow, the `extract` tool, annotation formats and tf.data pipelines.

Imports nothing of the model side. TensorFlow is imported only by the modules that run in
`tf.data` (`pipeline`, `decoding`, `guard`, `augment`, `trajectory`), and lazily from here, so
extraction worker processes start with OpenCV and NumPy alone.

What lives where (the data side of a training run, files to batches): `frames` (the frame-folder
layout and its one validator), `modalities` (what each model input reads), `table` (the
annotation table), `folders` (the up-front check of a table's videos), `sampling` (frame
indices and the sampling plan), `augment` (crops, flips, colour), `views` (test-time view
geometry and the average over views), `decoding` (JPEG and flow decoding in `tf.data`),
`guard` (epoch source, dropped-sample diagnosis, `DatasetErrors`), `pipeline` (the builders
`make_dataset`, `make_test_dataset`) and `multi_task` (`make_multi_task_dataset`: several
datasets, one label per task).
"""

import importlib

_LAZY = {
    # decoding and flow (OpenCV, NumPy)
    "read_video": "keras_twostream.data.video",
    "probe_video": "keras_twostream.data.video",
    # video files as a pipeline source (seek reader, verified frame counts)
    "read_frames": "keras_twostream.data.video_source",
    "verified_frame_count": "keras_twostream.data.video_source",
    "close_videos": "keras_twostream.data.video_source",
    "reencode_video": "keras_twostream.data.reencode",
    "compute_flow": "keras_twostream.data.flow",
    "quantize_flow": "keras_twostream.data.flow",
    "dequantize_flow": "keras_twostream.data.flow",
    "flow_to_color": "keras_twostream.data.flow",
    "OpticalFlow": "keras_twostream.data.flow",
    # extraction, frame folders, annotations, scanning
    "extract_videos": "keras_twostream.data.extract",
    "ExtractionSummary": "keras_twostream.data.extract",
    "read_meta": "keras_twostream.data.frames",
    "read_flow_means": "keras_twostream.data.frames",
    "rgb_frame_path": "keras_twostream.data.frames",
    "flow_frame_paths": "keras_twostream.data.frames",
    "check_frame_folder": "keras_twostream.data.frames",
    "inspect_frame_folder": "keras_twostream.data.frames",
    "load_annotations": "keras_twostream.data.annotations",
    "scan_dataset": "keras_twostream.data.scan",
    # tf.data pipelines and the test-time protocol (TensorFlow)
    "make_dataset": "keras_twostream.data.pipeline",
    "make_test_dataset": "keras_twostream.data.pipeline",
    "make_multi_task_dataset": "keras_twostream.data.multi_task",
    "predict_video_scores": "keras_twostream.data.views",
    "DatasetErrors": "keras_twostream.data.guard",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_twostream.data' has no attribute {name!r}")


def __dir__():
    return __all__
