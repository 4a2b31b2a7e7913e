"""Every tutorial notebook runs top to bottom and draws at least one figure.

Each notebook of `docs/tutorials/` is executed with nbclient in a fresh kernel of the Python
running the tests (a kernelspec written for the test, so a fresh virtual environment needs only
`ipykernel`, and a `python3` kernel registered elsewhere on the machine is not picked up). The
notebooks share one work folder, so the synthetic dataset is generated and extracted once. The
documentation build of `tests/test_docs.py` does not execute them: this is their one run.
"""

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "docs" / "tutorials").glob("*.ipynb"))
KERNEL = "python3"  # the name the notebooks' metadata asks for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A `python3` kernelspec for this interpreter first on JUPYTER_PATH, and a shared work folder."""
    root = tmp_path_factory.mktemp("notebooks")
    spec = root / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    env = {
        "TF_CPP_MIN_LOG_LEVEL": "2",
        # Figures must reach the notebook even where the environment says MPLBACKEND=Agg.
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "KERAS_TWOSTREAM_TUTORIALS": str(root / "work"),
    }
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "keras_twostream tests",
                "language": "python",
                "env": env,
            }
        )
    )
    saved = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(root / "jupyter"), saved]))
    cwd = root / "cwd"
    cwd.mkdir()
    yield cwd
    if saved is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = saved


def test_the_tutorials_are_there():
    names = {path.stem for path in NOTEBOOKS}
    for topic in ("two_stream", "stpn", "cross_modality", "tclsta", "mpa_sal", "your_own_dataset"):
        assert any(topic in name for name in names), (
            f"no tutorial notebook about {topic!r} in {sorted(names)}"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_and_draws_a_figure(path, kernel_env):
    notebook = nbformat.read(path, as_version=4)
    committed = [
        i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code" and cell.outputs
    ]
    assert not committed, f"{path.name}: outputs are committed in cells {committed}; strip them"
    assert notebook.metadata.get("kernelspec", {}).get("name") == KERNEL, (
        f"{path.name}: the kernelspec must be {KERNEL!r} (mkdocs-jupyter and this test start that kernel)"
    )

    client = NotebookClient(
        notebook, kernel_name=KERNEL, timeout=600, resources={"metadata": {"path": str(kernel_env)}}
    )
    client.execute()  # a failing cell raises CellExecutionError with its source and traceback

    figures = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    ]
    assert figures, f"{path.name} ran but drew no figure"
