"""The `keras-twostream` command as a user runs it: a real subprocess, real files."""

import json
import os
import subprocess
import sys

import pytest


def run_cli(*args, cwd=None, timeout=900):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "keras_twostream.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def test_help_lists_the_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("demo", "extract"):
        assert command in result.stdout


def test_user_error_is_one_line_and_nonzero(tmp_path):
    result = run_cli("extract", str(tmp_path / "missing"), str(tmp_path / "out"), "--flow", "dis")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "missing" in result.stderr


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path):
    """Generates data, extracts frames and flow, trains, evaluates, saves .keras and SavedModel."""
    out = tmp_path / "demo"
    result = run_cli("demo", "--quick", "--output", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| fused" in result.stdout
    assert (out / "two_stream.keras").exists()
    assert (out / "two_stream_savedmodel" / "saved_model.pb").exists()
    results = json.loads((out / "results.json").read_text())
    assert set(results["accuracy"]) == {"spatial", "temporal", "fused"}
    assert all(0.0 <= v <= 1.0 for v in results["accuracy"].values())
