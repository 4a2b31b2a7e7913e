"""Test-wide set-up: two logical CPU devices for tf.distribute tests, quiet logs, seeds."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import pytest  # noqa: E402

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    # Two logical CPU devices reproduce multi-replica behaviour of MirroredStrategy.
    # This must run before TensorFlow initialises its devices.
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
        )
    except RuntimeError:
        pass  # already initialised by an earlier import; tests needing 2 devices skip.

TESTS_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(autouse=True)
def _seed_and_clear():
    keras.utils.set_random_seed(1234)
    yield
    # A full clear (with garbage collection) also releases earlier MirroredStrategy instances;
    # without it a later strategy's collective ops collide with theirs ("Shape mismatch in the
    # collective instance"), measured here.
    keras.backend.clear_session()


@pytest.fixture
def tests_data():
    return TESTS_DATA


_STRATEGY = []


def two_cpu_strategy():
    """A MirroredStrategy over two logical CPU devices, or skip if unavailable.

    One strategy serves the whole session: a second MirroredStrategy in the same process reuses
    collective instance keys of the first and aborts with "Shape mismatch in the collective
    instance" (measured with TF 2.21). Reductions go through one device, which is exact and
    needs no collective ops.

    Tests import it with `from conftest import two_cpu_strategy`: keep this the only conftest.py
    under tests/, or that import becomes ambiguous.
    """
    import tensorflow as tf

    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        pytest.skip("two logical CPU devices are not configured")
    if not _STRATEGY:
        _STRATEGY.append(
            tf.distribute.MirroredStrategy(
                [d.name for d in devices[:2]],
                cross_device_ops=tf.distribute.ReductionToOneDevice(),
            )
        )
    return _STRATEGY[0]


def synthetic_frames(base, num_frames, seed):
    """A tiny embedded synthetic dataset (one training and one test video per class, 32 px) with
    its frames and DIS flow extracted: `(dataset folder, frames folder)`. The CLI tests train on
    it (`from conftest import synthetic_frames`)."""
    from keras_twostream.data.extract import extract_videos
    from keras_twostream.datasets import generate_synthetic_dataset

    data = generate_synthetic_dataset(
        base / "synthetic",
        videos_per_class=(1, 1),
        size=32,
        num_frames=num_frames,
        seed=seed,
        progress=False,
    )
    frames = data / "frames"
    extract_videos(data / "videos", frames, flow="dis", short_side=32, progress=False)
    return data, frames
