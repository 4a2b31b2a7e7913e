"""Writes one benchmark's section into docs/benchmarks.md, keeping the others."""

import datetime
import os
import platform
import re
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Every figure here is produced by a script in `benchmarks/` that measures our code and its floor
or peer side by side in one run and reports their ratio. The machines are shared and noisy, so
read the ratios and medians, not absolute times. Each section names the command that wrote it.
"""


def machine():
    import keras

    backend = keras.backend.backend()
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, Keras {keras.__version__} ({backend} backend)"


def write_section(key, title, body, command=None):
    """Replaces (or appends) the section `key` of docs/benchmarks.md."""
    command = command or "python " + " ".join(sys.argv)
    stamp = datetime.date.today().isoformat()
    section = (
        f"<!-- {key}:start -->\n## {title}\n\n"
        f"Command: `{command}`  \nMeasured {stamp} on {machine()}.\n\n{body.strip()}\n"
        f"<!-- {key}:end -->\n"
    )
    text = DOC.read_text() if DOC.exists() else HEADER
    pattern = re.compile(
        rf"<!-- {re.escape(key)}:start -->.*?<!-- {re.escape(key)}:end -->\n", re.S
    )
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
    print(f"wrote section '{key}' of {DOC}")


def markdown_table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
