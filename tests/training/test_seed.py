"""One seed fixes sampling, augmentation and initialisation: two runs with the same seed give
identical histories and weights; another seed gives others."""

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from keras_twostream.data import make_dataset
from keras_twostream.models import build_two_stream
from keras_twostream.training import set_seed

FRAMES = Path(__file__).resolve().parent.parent / "data" / "mmaction2" / "imgs"


def _run(seed):
    set_seed(seed)
    # Dropout on, random crops, scale jittering, flips and colour jitter on, shuffling on.
    model = build_two_stream(3, backbone="tiny", image_size=32, num_segments=2, flow_length=1)
    model.compile(run_eagerly=True)  # eager: tracing would dominate these few steps
    table = pd.DataFrame({"path": [str(FRAMES)] * 6, "label": [0, 1, 2, 0, 1, 2]})
    dataset = make_dataset(
        table,
        num_segments=2,
        flow_length=1,
        image_size=32,
        batch_size=3,
        seed=seed,
        color_jitter={"brightness": 0.2, "contrast": 0.2, "saturation": 0.2},
    )
    history = model.fit(dataset, epochs=2, verbose=0).history
    return history, [keras.ops.convert_to_numpy(v) for v in model.variables]


def test_same_seed_same_history_other_seed_other_history():
    history, weights = _run(11)
    again, weights_again = _run(11)
    assert again == history  # every loss and accuracy of every epoch, exactly
    for a, b in zip(weights, weights_again, strict=True):
        np.testing.assert_array_equal(a, b)
    other, _ = _run(12)
    assert other["loss"] != history["loss"]


def test_set_seed_validates():
    with pytest.raises(ValueError, match="seed"):
        set_seed(-1)
    with pytest.raises(ValueError, match="deterministic_ops"):
        set_seed(0, deterministic_ops="yes")
