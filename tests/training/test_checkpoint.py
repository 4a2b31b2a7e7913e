"""ResumableCheckpoint: a run killed with SIGKILL mid-epoch and restarted with the same command
ends with the weights of an uninterrupted run, bit for bit; writes are atomic."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_twostream.training import ResumableCheckpoint

JOB = Path(__file__).with_name("resume_job.py")
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="mid-epoch resumption is TensorFlow's (see module)",
)


def _run(args, env=None):
    return subprocess.Popen(
        [sys.executable, str(JOB), *map(str, args)],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process, expected=0):
    output, _ = process.communicate(timeout=300)
    assert process.returncode == expected, output[-3000:]


def test_killed_mid_epoch_resumes_exactly(tmp_path):
    uninterrupted = _run([tmp_path / "full", tmp_path / "full.npz"])  # in parallel with the rest
    # 4 batches per epoch, a checkpoint every 2 steps: killed after step 7 (the 3rd batch of
    # epoch 2), before that step is saved; the last checkpoint is step 6, mid-epoch.
    _finish(
        _run([tmp_path / "run", tmp_path / "run.npz"], {"KILL_AFTER": "7"}),
        expected=-signal.SIGKILL,
    )
    assert not (tmp_path / "run.npz").exists()
    latest = json.loads((tmp_path / "run" / "latest.json").read_text())["checkpoint"]
    meta = json.loads((tmp_path / "run" / latest / "meta.json").read_text())
    assert (meta["epoch"], meta["step"], meta["global_step"]) == (1, 2, 6)
    assert meta["training_branch"] == "temporal"  # the second iteration of the alternating schedule
    _finish(_run([tmp_path / "run", tmp_path / "run.npz"]))  # the same command again
    _finish(uninterrupted)

    full, resumed = np.load(tmp_path / "full.npz"), np.load(tmp_path / "run.npz")
    assert full.files == resumed.files
    for key in full.files:  # weights, BN statistics, seed states, optimizer slots and iterations
        np.testing.assert_array_equal(resumed[key], full[key], err_msg=key)


def _model():
    inputs = keras.Input((3,))
    model = keras.Model(
        inputs, keras.layers.Dense(2, name="dense")(keras.layers.BatchNormalization()(inputs))
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    model.fit(
        np.ones((4, 3)), np.ones((4, 2)), batch_size=2, epochs=1, verbose=0
    )  # builds the slots
    return model


def test_a_failed_write_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    model = _model()
    checkpoint = ResumableCheckpoint(tmp_path, save_every_n_steps=1, verbose=0)
    checkpoint.set_model(model)
    for step in (1, 2):
        checkpoint._global_step = step
        checkpoint.save(epoch=0, step=step)
    good = [keras.ops.convert_to_numpy(v) for v in model.variables]
    model.get_layer("dense").kernel.assign(np.full((3, 2), 7.0, "float32"))

    def crash(*args, **kwargs):  # a kill while the state file is being written
        with open(args[0], "wb") as f:
            f.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    checkpoint._global_step = 3
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(epoch=0, step=3)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []
    assert [step for step, _ in checkpoint.checkpoints()] == [(1, 0), (2, 0)]  # keep=2

    restored = ResumableCheckpoint(tmp_path, verbose=0)
    assert (restored.initial_epoch, restored.initial_step) == (0, 2)
    # A corrupt pointer (as a crash inside os.replace's caller could not leave, but a full disk
    # could) falls back to the newest complete checkpoint.
    (tmp_path / "latest.json").write_text("{not json")
    restored = ResumableCheckpoint(tmp_path, verbose=0)
    assert restored.initial_step == 2
    restored.set_model(model)
    restored._restore_variables(restored._state)
    for value, variable in zip(good, model.variables, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), value)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="save_every_n_steps"):
        ResumableCheckpoint(tmp_path, save_every_n_steps=0)
    with pytest.raises(ValueError, match="keep"):
        ResumableCheckpoint(tmp_path, keep=1)
    with pytest.raises(ValueError, match="set_epoch"):
        ResumableCheckpoint(tmp_path, dataset=[1, 2])
    model = _model()
    checkpoint = ResumableCheckpoint(tmp_path, verbose=0)
    checkpoint.set_model(model)
    checkpoint.save(epoch=1, step=0)
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
    other.compile(optimizer="sgd", loss="mse")
    restored = ResumableCheckpoint(tmp_path, verbose=0)
    restored.set_model(other)
    with pytest.raises(ValueError, match="model variables|shape"):
        restored._restore_variables(restored._state)
