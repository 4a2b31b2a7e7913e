"""Datasets: the embedded synthetic appearance x motion action dataset.

Imports only NumPy, OpenCV and the standard library (no Keras, no TensorFlow), so worker
processes can import it cheaply; `extract_synthetic_frames` imports `keras_twostream.data`
(pandas) when called.
"""

from keras_twostream.datasets.synthetic import (
    SYNTHETIC_APPEARANCES,
    SYNTHETIC_CLASSES,
    SYNTHETIC_MOTIONS,
    SyntheticFrames,
    extract_synthetic_frames,
    generate_synthetic_dataset,
    render_synthetic_video,
    synthetic_dataset_path,
)

__all__ = [
    "SYNTHETIC_APPEARANCES",
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_MOTIONS",
    "SyntheticFrames",
    "extract_synthetic_frames",
    "generate_synthetic_dataset",
    "render_synthetic_video",
    "synthetic_dataset_path",
]
