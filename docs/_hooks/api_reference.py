"""MkDocs hook: completes the API reference pages from the packages' `__all__`.

A page of `docs/api/` names its package in a marker comment, `<!-- api: keras_twostream.layers -->`.
The marker is replaced by a `::: identifier` block (rendered by mkdocstrings) for every name of
the package's `__all__` that the page does not already document by hand, so a new public symbol
reaches the reference without anyone editing the page; hand-written blocks above the marker
group and introduce the important ones. `tests/test_docs.py` checks the rendered site.

Identifiers: the public path (`keras_twostream.layers.CompactBilinear`) where the package
imports the name itself, so that mkdocstrings (which reads the source, not the running package)
can follow the import; the defining module's path (`keras_twostream.data.flow.flow_to_color`)
for the lazily exported names of `keras_twostream.data` and `keras_twostream.visualization`.
"""

import importlib
import inspect
import re

MARKER = re.compile(r"<!--\s*api:\s*([\w.]+)\s*-->")
DOCUMENTED = re.compile(r"^:::\s*([\w.]+)", re.M)


def identifier(package, name):
    """The mkdocstrings identifier of `package.name` (see the module docstring)."""
    module = importlib.import_module(package)
    if name in vars(module):  # imported by the package itself: griffe follows it
        return f"{package}.{name}"
    obj = getattr(module, name)  # a lazy export: document it where it is defined
    if inspect.ismodule(obj):
        return obj.__name__
    return f"{obj.__module__}.{name}"


def public_names(package):
    """`__all__` of a package, without its submodules."""
    module = importlib.import_module(package)
    return [
        name
        for name in getattr(module, "__all__", [])
        if not inspect.ismodule(getattr(module, name, None))
    ]


def on_page_markdown(markdown, page, config, files):
    match = MARKER.search(markdown)
    if not match:
        return markdown
    package = match.group(1)
    present = set(DOCUMENTED.findall(markdown))
    blocks = []
    for name in public_names(package):
        ident = identifier(package, name)
        if ident not in present and f"{package}.{name}" not in present:
            blocks.append(f"::: {ident}\n")
    return markdown[: match.start()] + "\n".join(blocks) + markdown[match.end() :]
