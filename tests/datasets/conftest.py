"""The dataset tests hold no Keras state.

This overrides the autouse fixture of tests/conftest.py for this folder only: its
`keras.backend.clear_session()` costs about 0.5 s per test here (a full garbage collection with
TensorFlow loaded), more than most of these tests take themselves.
"""

import pytest


@pytest.fixture(autouse=True)
def _seed_and_clear():
    yield
