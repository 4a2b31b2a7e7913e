"""Video data: decoding, optical flow, the `extract` tool, annotation formats and tf.data pipelines.

Imports nothing of the model side. TensorFlow is imported only by the pipeline module, and lazily
from here, so extraction worker processes start with OpenCV and NumPy alone.
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
    "load_annotations": "keras_twostream.data.annotations",
    "scan_dataset": "keras_twostream.data.scan",
    # tf.data pipelines and the test-time protocol (TensorFlow)
    "make_dataset": "keras_twostream.data.pipeline",
    "make_test_dataset": "keras_twostream.data.pipeline",
    "predict_video_scores": "keras_twostream.data.pipeline",
    "DatasetErrors": "keras_twostream.data.pipeline",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_twostream.data' has no attribute {name!r}")


def __dir__():
    return __all__
