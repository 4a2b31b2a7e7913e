"""Runs every benchmark (or the named ones) and rewrites their sections of docs/benchmarks.md.

    python benchmarks/run.py                 # all of them
    python benchmarks/run.py two_stream      # benchmarks/bench_two_stream.py only

Each benchmark runs in its own process, so one backend or thread setting cannot leak into the next.
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None):
    names = (argv if argv is not None else sys.argv[1:]) or sorted(
        p.stem[len("bench_") :] for p in HERE.glob("bench_*.py")
    )
    failed = []
    for name in names:
        script = HERE / f"bench_{name}.py"
        if not script.exists():
            valid = sorted(p.stem[len("bench_") :] for p in HERE.glob("bench_*.py"))
            print(f"unknown benchmark {name!r}; expected one of {valid}", file=sys.stderr)
            return 2
        print(f"=== {name}", flush=True)
        if subprocess.call([sys.executable, str(script)]) != 0:
            failed.append(name)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
