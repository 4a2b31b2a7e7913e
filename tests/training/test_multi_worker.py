"""Multi-worker training (JAX backend, `keras.distribution.DataParallel` across processes): two
worker processes on 127.0.0.1 end with identical weights, equal to one process on the same global
batch, for the plain `fit` step and the alternating (CMA) step."""

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_twostream.training import multi_worker

JOB = Path(__file__).with_name("multi_worker_job.py")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args, env, log):
    return subprocess.Popen(
        [sys.executable, *args], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=JOB.parent
    )


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax (the test extra)")
def test_two_workers_match_one_process(tmp_path):
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        # Compiling dominates these few steps; the unoptimised CPU code halves the test's time.
        "XLA_FLAGS": "--xla_backend_optimization_level=0",
        multi_worker.ENV_JOB_ADDRESSES: f"127.0.0.1:{_free_port()}",
        multi_worker.ENV_NUM_PROCESSES: "2",
    }
    launcher = ["-m", "keras_twostream.training.multi_worker", str(JOB)]
    runs = {}
    for name in ("worker0", "worker1", "single"):
        log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 (closed below)
        if name == "single":
            single_env = {k: v for k, v in env.items() if not k.startswith("KERAS_DISTRIBUTION_")}
            process = _start([str(JOB), str(tmp_path / "single.npz")], single_env, log)
        else:
            worker_env = {**env, multi_worker.ENV_PROCESS_ID: name[-1]}
            process = _start([*launcher, str(tmp_path / f"{name}.npz")], worker_env, log)
        runs[name] = (process, log)
    failed = []
    for name, (process, log) in runs.items():
        try:
            code = process.wait(timeout=300)
        except subprocess.TimeoutExpired:
            process.kill()
            code = "timeout"
        log.close()
        if code != 0:
            failed.append(
                f"{name} exited with {code}:\n" + (tmp_path / f"{name}.log").read_text()[-3000:]
            )
    assert not failed, "\n".join(failed)

    results = {name: np.load(tmp_path / f"{name}.npz") for name in runs}
    assert [int(results[n]["processes"]) for n in runs] == [2, 2, 1]
    count = sum(key.startswith("final_") for key in results["single"])
    moved = 0.0
    for i in range(count):
        initial, final = results["single"][f"initial_{i}"], results["single"][f"final_{i}"]
        for name in ("worker0", "worker1"):  # the same seed gives the same initial weights
            np.testing.assert_array_equal(results[name][f"initial_{i}"], initial)
        # Both workers hold the same replicated weights, bit for bit ...
        np.testing.assert_array_equal(
            results["worker0"][f"final_{i}"], results["worker1"][f"final_{i}"]
        )
        # ... equal to one process training on the global batch (float summation order aside).
        np.testing.assert_allclose(results["worker0"][f"final_{i}"], final, rtol=1e-4, atol=1e-5)
        moved = max(moved, float(np.abs(final - initial).max()))
    assert moved > 1e-2  # a wrong gradient reduction (e.g. 2x) would show far above the tolerance
    histories = {name: json.loads(str(results[name]["history"])) for name in runs}
    assert histories["worker0"] == histories["worker1"]
    for key, values in histories["single"].items():
        np.testing.assert_allclose(histories["worker0"][key], values, rtol=2e-5, err_msg=key)


def test_configuration_errors_name_the_variable(monkeypatch):
    for name in (
        multi_worker.ENV_JOB_ADDRESSES,
        multi_worker.ENV_NUM_PROCESSES,
        multi_worker.ENV_PROCESS_ID,
    ):
        monkeypatch.delenv(name, raising=False)
    if keras.backend.backend() != "jax":
        with pytest.raises(NotImplementedError, match="KERAS_BACKEND=jax"):
            multi_worker.initialize_multi_worker()
    with pytest.raises(ValueError, match=multi_worker.ENV_JOB_ADDRESSES):
        multi_worker._check_config(None, 2, 0)
    with pytest.raises(ValueError, match="'host:port'"):
        multi_worker._check_config("10.0.0.1", 2, 0)
    with pytest.raises(ValueError, match=multi_worker.ENV_NUM_PROCESSES):
        multi_worker._check_config("10.0.0.1:1234", 0, 0)
    with pytest.raises(ValueError, match=multi_worker.ENV_PROCESS_ID):
        multi_worker._check_config("10.0.0.1:1234", 2, 2)
    monkeypatch.setenv(multi_worker.ENV_NUM_PROCESSES, "two")
    with pytest.raises(ValueError, match="KERAS_DISTRIBUTION_NUM_PROCESSES to be an integer"):
        multi_worker._env_int(multi_worker.ENV_NUM_PROCESSES, None)
    with pytest.raises(FileNotFoundError, match="missing.py"):
        multi_worker.main(["missing.py"])
