"""Griffe extension: reads the Keras-style `Example:` section of our docstrings as examples.

The docstrings follow Keras (see the style guide): an `Example:` header, then doctest lines at
the header's indentation. Google-style parsing (griffe) knows `Examples:` with an indented body,
and would otherwise render the doctests as text. This rewrites the header and indents the body
(up to the next section header) before griffe parses the docstring, so mkdocstrings renders the
examples as highlighted code.
"""

import re

import griffe

HEADER = re.compile(r"^(?P<indent>[ \t]*)Examples?:[ \t]*$")
# Any other Google-style section header ("Returns:", "Raises:", ...) ends the example.
SECTION = re.compile(r"^[ \t]*[A-Z][A-Za-z ]*:[ \t]*$")


def rewrite(text):
    lines = text.split("\n")
    out, inside, indent = [], False, ""
    for line in lines:
        match = HEADER.match(line)
        if match:
            inside, indent = True, match.group("indent")
            out.append(f"{indent}Examples:")
            continue
        if (
            inside
            and SECTION.match(line)
            and line.startswith(indent)
            and not line[len(indent) :].startswith(" ")
        ):
            inside = False
        out.append(f"{indent}    {line[len(indent) :]}" if inside and line.strip() else line)
    return "\n".join(out)


class KerasStyleExamples(griffe.Extension):
    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None and "Example" in obj.docstring.value:
            obj.docstring.value = rewrite(obj.docstring.value)
