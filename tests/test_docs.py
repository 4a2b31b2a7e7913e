"""The documentation site: it builds without a warning, and every public symbol is in its API
reference with a docstring that has an example.

The site is built once per module with `mkdocs build --strict` (a warning fails the build),
in a subprocess so that the build sees exactly what a user's `mkdocs build` sees. The tutorial
notebooks are not executed by this build (`KERAS_TWOSTREAM_DOCS_EXECUTE=false`):
`tests/test_notebooks.py` executes each of them once.
"""

import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The packages whose `__all__` is the public API.
PACKAGES = (
    "keras_twostream.layers",
    "keras_twostream.models",
    "keras_twostream.backbones",
    "keras_twostream.data",
    "keras_twostream.datasets",
    "keras_twostream.training",
    "keras_twostream.evaluation",
    "keras_twostream.visualization",
)
EXAMPLE_HEADER = re.compile(r"^Examples?:[ \t]*$", re.M)

pytestmark = pytest.mark.slow


def public_symbols():
    """(package, name, object) for every name in the packages' `__all__` (submodules excluded)."""
    symbols = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            if not inspect.ismodule(obj):
                symbols.append((package, name, obj))
    return symbols


def anchors_of(package, name, obj):
    """The ids an API entry of `package.name` may have: its public path or its defining module's."""
    ids = {f"{package}.{name}"}
    if inspect.isclass(obj) or inspect.isfunction(obj):
        ids.add(f"{obj.__module__}.{name}")
    return ids


def api_ids(out):
    """Every element id of the API reference pages of the built site."""
    ids = set()
    for page in (out / "api").rglob("*.html"):
        ids.update(re.findall(r'\bid="([\w.]+)"', page.read_text(encoding="utf-8")))
    return ids


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Builds the site; returns (completed process, site folder)."""
    out = tmp_path_factory.mktemp("site")
    env = {
        **os.environ,
        "KERAS_TWOSTREAM_DOCS_EXECUTE": "false",  # tests/test_notebooks.py executes them
        "NO_MKDOCS_2_WARNING": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return result, out


def test_site_builds_without_warnings(site):
    result, out = site
    log = result.stdout + result.stderr
    # MkDocs' own log lines ("WARNING -  ..."); TensorFlow's start-up notices are not warnings.
    warnings = [line for line in log.splitlines() if re.match(r"(WARNING|ERROR)\s+-", line)]
    assert result.returncode == 0 and not warnings, (
        f"`mkdocs build --strict` failed (exit {result.returncode}):\n"
        + "\n".join(warnings or log.splitlines()[-40:])
    )
    pages = {p.relative_to(out).as_posix() for p in out.rglob("index.html")}
    for page in (
        "index.html",
        "getting-started/index.html",
        "data/index.html",
        "benchmarks/index.html",
        "architectures/stpn/index.html",
        "api/layers/index.html",
    ):
        assert page in pages, f"{page} is missing from the built site"
    tutorials = sorted((ROOT / "docs" / "tutorials").glob("*.ipynb"))
    for notebook in tutorials:
        assert f"tutorials/{notebook.stem}/index.html" in pages, (
            f"{notebook.name} is not in the site"
        )


def test_every_public_symbol_is_in_the_api_reference(site):
    result, out = site
    assert result.returncode == 0, "the site did not build; see test_site_builds_without_warnings"
    ids = api_ids(out)
    missing = [
        f"{package}.{name}"
        for package, name, obj in public_symbols()
        if not anchors_of(package, name, obj) & ids
    ]
    assert not missing, (
        "Public symbols without an entry in the API reference (docs/api/*.md, completed from "
        f"__all__ by docs/_hooks/api_reference.py): {missing}"
    )


def test_top_level_names_resolve_and_are_in_the_api_reference(site):
    # `from keras_twostream import build_stpn`: the top level re-exports the model names lazily.
    result, out = site
    assert result.returncode == 0, "the site did not build; see test_site_builds_without_warnings"
    import keras_twostream

    ids = api_ids(out)
    broken = []
    for name in keras_twostream.__all__:
        if name == "__version__":
            continue
        try:
            obj = getattr(keras_twostream, name)
        except AttributeError as error:
            broken.append(f"{name}: {error}")
            continue
        # Model names are documented under keras_twostream.models, the others where defined
        # (predict_video: keras_twostream.inference).
        entries = {f"keras_twostream.models.{name}", f"{getattr(obj, '__module__', '')}.{name}"}
        if not inspect.ismodule(obj) and not entries & set(ids):
            broken.append(f"{name}: no entry {' or '.join(sorted(entries))} in the API reference")
    assert not broken, (
        f"keras_twostream.__all__ names that do not resolve or are undocumented: {broken}"
    )


def test_every_public_class_and_function_has_an_example():
    # Constants (dicts, tuples) are documented by their entry in the reference, which shows the value.
    missing = []
    for package, name, obj in public_symbols():
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        doc = inspect.getdoc(obj) or ""
        match = EXAMPLE_HEADER.search(doc)
        if not match or not doc[match.end() :].strip():
            missing.append(f"{package}.{name}")
    assert not missing, f"Docstrings without an `Example:` section: {missing}"
