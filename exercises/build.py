"""Build the student notebooks and autograder zips of every assignment.

    python exercises/build.py [ASSIGNMENT ...] [--out exercises/dist] [--no-run-tests]
                              [--update-student]

For each assignment ``exercises/<name>/<name>.ipynb`` (an otter-grader solution notebook in
otter assign format) this builds a wheel of the course package from this repository, runs
``otter assign`` and writes

    <out>/<name>/student/<name>.ipynb                  hand this to students
    <out>/<name>/student/tests/q*.py                   its public tests (also inside the notebook)
    <out>/<name>/autograder/<name>-autograder.zip      exercises/grade.py, Gradescope or `otter grade`
    <out>/<name>/autograder/<name>.ipynb               the solution notebook, as graded (full marks)

The zip grades anywhere: its environment installs CPU torch (``torch_requirement()``, from
PyTorch's CPU index) and the course package from the wheel shipped inside it
(``files/lctools-*.whl``), and it never shows the students the output of their notebook
(``show_stdout: false``).  The student notebook carries its public tests and writes them
to ``./tests`` when they are missing, so ``grader.check`` works on Colab, where otter
needs test files.  ``--update-student`` also copies the student notebooks to
``exercises/student/`` (committed: the book's Colab links point there).

``--no-run-tests`` skips otter's check that the solution notebook passes its own tests
(faster; the test suite grades the solutions anyway).  The build folder is not committed.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_OUT = HERE / "dist"
STUDENT_DIR = HERE / "student"  # committed copies of the student notebooks (Colab links)
#: how the zip's environment gets torch: the CPU build (no CUDA libraries to download)
TORCH_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"



def torch_requirement() -> str:
    """``torch==<the course environment's version>``: grading uses the torch the solutions
    were checked with (the CPU build, from ``TORCH_INDEX``)."""
    try:
        import torch

        return f"torch=={torch.__version__.split('+')[0]}"
    except ImportError:
        return "torch>=2.1"


#: where Gradescope and ``otter grade`` unpack the zip; otter puts ``files`` under ``files/``
AUTOGRADER_SOURCE = "/autograder/source"
INIT_MARKER = "grader = otter.Notebook("  # the otter cell; the student notebook's has no path


def colab_url(name: str, root: Path = ROOT) -> str:
    """Colab's address of the committed student notebook ``exercises/student/<name>.ipynb``,
    from ``repository: url:`` and ``branch:`` in ``_config.yml`` (a GitHub repository)."""
    import yaml

    repo = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))["repository"]
    url = str(repo["url"]).strip().rstrip("/")
    url = url[:-4] if url.endswith(".git") else url
    prefix = "https://github.com/"
    if not url.startswith(prefix):
        raise ValueError(f"Colab opens notebooks from GitHub only; repository url is {url!r}")
    path = STUDENT_DIR.relative_to(ROOT).as_posix()
    return (f"https://colab.research.google.com/github/{url[len(prefix):]}/blob/"
            f"{repo.get('branch', 'main')}/{path}/{name}.ipynb")


def assignments() -> list[str]:
    """Names of the assignments: folders ``exercises/<name>/`` holding ``<name>.ipynb``."""
    return sorted(p.name for p in HERE.iterdir() if p.is_dir() and (p / f"{p.name}.ipynb").is_file())


def autograder_zip(out: Path, name: str) -> Path:
    return Path(out) / name / "autograder" / f"{name}-autograder.zip"


def build_wheel(dest: Path) -> Path:
    """A wheel of the course package built from this repository (in a scratch copy, so the
    repository gets no ``build/`` or ``*.egg-info``); returns its path in ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lc-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for f in ("pyproject.toml", "README.md", "LICENSE", "setup.py", "setup.cfg", "MANIFEST.in"):
            if (ROOT / f).is_file():
                shutil.copy2(ROOT / f, src / f)
        shutil.copytree(ROOT / "lctools", src / "lctools",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                               "-q", "-w", str(dest), str(src)], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit("building the course package's wheel failed")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one wheel in {dest}, found {wheels}")
    return wheels[0]


def requirements(wheel_name: str) -> str:
    """The zip's requirements: CPU torch and the shipped wheel of the course package."""
    return (f"{TORCH_INDEX}\n{torch_requirement()}\n{AUTOGRADER_SOURCE}/files/wheel/{wheel_name}\n")


def _config_with_extras(nb: dict) -> dict:
    """The ASSIGNMENT CONFIG cell plus what every zip needs (requirements, wheel, test files)."""
    import yaml

    cell = nb["cells"][0]
    src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    head, body = src.split("\n", 1)
    cfg = yaml.safe_load(body)
    cfg["requirements"] = "requirements.txt"
    cfg["files"] = sorted(set(cfg.get("files") or []) | {"wheel"})
    cfg.setdefault("tests", {})["files"] = True
    cfg.setdefault("generate", {})["show_stdout"] = False
    cell["source"] = head + "\n" + yaml.safe_dump(cfg, sort_keys=False)
    return nb


def embed_public_tests(student_nb: Path, tests_dir: Path) -> None:
    """Make the student notebook self-contained: its otter cell writes the public tests
    (``tests_dir/q*.py``) to ``./tests`` when a file is missing (on Colab there is none)."""
    nb = json.loads(student_nb.read_text(encoding="utf-8"))
    tests = {p.name: p.read_text(encoding="utf-8") for p in sorted(tests_dir.glob("q*.py"))}
    for cell in nb["cells"]:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "code" and INIT_MARKER in src:
            lines = src.splitlines()
            i = next(k for k, line in enumerate(lines) if INIT_MARKER in line)
            setup = [
                "# The public tests, written to ./tests if missing (otter reads them there; Colab",
                "# has no tests folder). The autograder runs more, hidden, tests.",
                "import json as _json, pathlib as _pathlib",
                f"for _f, _t in _json.loads({json.dumps(json.dumps(tests))}).items():",
                "    _p = _pathlib.Path(\"tests\") / _f",
                "    if not _p.exists():",
                "        _p.parent.mkdir(exist_ok=True)",
                "        _p.write_text(_t, encoding=\"utf-8\")",
            ]
            # no notebook path: on Colab the notebook is not a file, and otter would fail to read it
            lines[i] = re.sub(r"otter\.Notebook\([^)]*\)", "otter.Notebook()", lines[i])
            cell["source"] = "\n".join(lines[:i] + setup + lines[i:])
            break
    else:
        raise SystemExit(f"{student_nb}: no cell with {INIT_MARKER!r}")
    for i, cell in enumerate(nb["cells"]):  # otter draws random cell ids: make them reproducible
        if "id" in cell:
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            cell["id"] = hashlib.sha1(f"{i}\n{src}".encode()).hexdigest()[:8]
    student_nb.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def build(name: str, out: Path = DEFAULT_OUT, run_tests: bool = True, quiet: bool = False,
          wheel: Path | None = None) -> Path:
    """Run ``otter assign`` for one assignment; return its build folder ``<out>/<name>``.

    ``wheel``: the course package's wheel to ship (default: build one from the repository).
    """
    src = HERE / name / f"{name}.ipynb"
    if not src.is_file():
        raise SystemExit(f"no assignment {name!r}: {src} does not exist (known: {', '.join(assignments())})")
    dest = Path(out).resolve() / name
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # otter assign reads requirements and files relative to the notebook and may leave scratch
    # files in its working directory: stage everything in a temporary folder.
    with tempfile.TemporaryDirectory(prefix="otter-assign-") as cwd:
        stage = Path(cwd)
        whl = Path(wheel) if wheel else build_wheel(stage / "_wheelbuild")
        (stage / "wheel").mkdir()
        shutil.copy2(whl, stage / "wheel" / whl.name)
        (stage / "requirements.txt").write_text(requirements(whl.name), encoding="utf-8")
        nb = _config_with_extras(json.loads(src.read_text(encoding="utf-8")))
        (stage / src.name).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        cmd = [sys.executable, "-m", "otter", "assign", src.name, str(dest)]
        if not run_tests:
            cmd.append("--no-run-tests")
        proc = subprocess.run(cmd, cwd=stage, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"otter assign failed for {name} (exit {proc.returncode})")
    zips = sorted((dest / "autograder").glob("*.zip"))
    if len(zips) != 1:
        raise SystemExit(f"expected one autograder zip in {dest / 'autograder'}, found {zips}")
    zips[0].rename(autograder_zip(out, name))
    embed_public_tests(dest / "student" / f"{name}.ipynb", dest / "student" / "tests")
    for extra in ("student/wheel", "autograder/wheel"):  # shipped inside the zip; not for students
        shutil.rmtree(dest / extra, ignore_errors=True)
    if not quiet:
        print(f"{name}: student notebook {dest / 'student' / (name + '.ipynb')}")
        print(f"{' ' * len(name)}  autograder       {autograder_zip(out, name)}")
    return dest


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help=f"assignments to build (default: all, {', '.join(assignments())})")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="build folder (default: exercises/dist)")
    ap.add_argument("--no-run-tests", action="store_true", help="skip otter's run of the solution's tests")
    ap.add_argument("--update-student", action="store_true",
                    help="also copy the student notebooks to exercises/student/ (the Colab links)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lc-wheel-") as tmp:
        wheel = build_wheel(Path(tmp))
        for name in args.names or assignments():
            dest = build(name, args.out, run_tests=not args.no_run_tests, wheel=wheel)
            if args.update_student:
                STUDENT_DIR.mkdir(exist_ok=True)
                shutil.copyfile(dest / "student" / f"{name}.ipynb", STUDENT_DIR / f"{name}.ipynb")


if __name__ == "__main__":
    main()
