"""Build the student notebooks and autograder zips of every assignment.

    python exercises/build.py [ASSIGNMENT ...] [--out exercises/dist] [--no-run-tests]

For each assignment ``exercises/<name>/<name>.ipynb`` (an otter-grader solution notebook in
otter assign format) this runs ``otter assign`` and writes

    <out>/<name>/student/<name>.ipynb                  hand this to students
    <out>/<name>/autograder/<name>-autograder.zip      give this to exercises/grade.py (or Gradescope)
    <out>/<name>/autograder/<name>.ipynb               the solution notebook, as graded (full marks)

``--no-run-tests`` skips otter's check that the solution notebook passes its own tests
(faster; the test suite grades the solutions anyway).  The build folder is not committed.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "dist"


def assignments() -> list[str]:
    """Names of the assignments: folders ``exercises/<name>/`` holding ``<name>.ipynb``."""
    return sorted(p.name for p in HERE.iterdir() if p.is_dir() and (p / f"{p.name}.ipynb").is_file())


def autograder_zip(out: Path, name: str) -> Path:
    return Path(out) / name / "autograder" / f"{name}-autograder.zip"


def build(name: str, out: Path = DEFAULT_OUT, run_tests: bool = True, quiet: bool = False) -> Path:
    """Run ``otter assign`` for one assignment; return its build folder ``<out>/<name>``."""
    src = HERE / name / f"{name}.ipynb"
    if not src.is_file():
        raise SystemExit(f"no assignment {name!r}: {src} does not exist (known: {', '.join(assignments())})")
    dest = Path(out).resolve() / name
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "otter", "assign", str(src), str(dest)]
    if not run_tests:
        cmd.append("--no-run-tests")
    # otter assign may leave scratch files in its working directory: run it in a temporary one.
    with tempfile.TemporaryDirectory(prefix="otter-assign-") as cwd:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"otter assign failed for {name} (exit {proc.returncode})")
    zips = sorted((dest / "autograder").glob("*.zip"))
    if len(zips) != 1:
        raise SystemExit(f"expected one autograder zip in {dest / 'autograder'}, found {zips}")
    zips[0].rename(autograder_zip(out, name))
    if not quiet:
        print(f"{name}: student notebook {dest / 'student' / (name + '.ipynb')}")
        print(f"{' ' * len(name)}  autograder       {autograder_zip(out, name)}")
    return dest


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help=f"assignments to build (default: all, {', '.join(assignments())})")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="build folder (default: exercises/dist)")
    ap.add_argument("--no-run-tests", action="store_true", help="skip otter's run of the solution's tests")
    args = ap.parse_args(argv)
    for name in args.names or assignments():
        build(name, args.out, run_tests=not args.no_run_tests)


if __name__ == "__main__":
    main()
