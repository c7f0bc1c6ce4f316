"""The book build that the tests run, and the checks of the notebooks it executed.

Each notebook of the book is executed once per test run: by the strict book build
(QuantEcon's pattern: the build's execution *is* the notebook test). The build writes every
executed notebook to ``<out>/_build/jupyter_execute/<page>.ipynb``; :func:`execution_problems`
reads one of them and lists every cell that raised (a failing ``assert`` of a chapter is an
``AssertionError`` output there) or was not executed (execution stops at the first error).

The tests build into their own output folder (``jupyter-book build --path-output``), with
their own execution cache and results cache inside it, so the reader's ``_build/html``,
``_build/.jupyter_cache`` and ``~/.cache/lctools`` are never touched.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

# The README's book command (``make book``); the tests add ``--path-output``.
BOOK_COMMAND = ["jupyter-book", "build", "--all", "-W", "-n", "--keep-going", "."]

_EXECUTED = re.compile(r"(?P<path>\S+\.ipynb): Executed notebook in (?P<seconds>[0-9.]+) seconds")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def jupyter_book() -> str:
    """The ``jupyter-book`` next to this Python (the course venv), else the one on PATH."""
    local = Path(sys.executable).with_name("jupyter-book")
    return str(local) if local.exists() else (shutil.which("jupyter-book") or "jupyter-book")


def build_book(
    source: Path, out: Path, env: Optional[Mapping[str, str]] = None, timeout: float = 3 * 3600
) -> Tuple[int, str, float]:
    """Run the book command on ``source`` with ``--path-output out`` from an empty ``out``.

    ``out`` is deleted first, so its execution cache is empty and every notebook executes.
    The results cache of lctools (``LCTOOLS_CACHE``) is set to ``out/lctools-cache`` (fresh
    too). Returns ``(returncode, combined stdout and stderr, seconds)``; the output is also
    written to ``out/book-build.log``.
    """
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    run_env = dict(os.environ if env is None else env)
    run_env.setdefault("LCTOOLS_MODE", "quick")
    run_env["LCTOOLS_CACHE"] = str(out / "lctools-cache")
    command = [jupyter_book(), *BOOK_COMMAND[1:-1], "--path-output", str(out), BOOK_COMMAND[-1]]
    start = time.perf_counter()
    proc = subprocess.run(
        command,
        cwd=source,
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    seconds = time.perf_counter() - start
    (out / "book-build.log").write_text(proc.stdout, encoding="utf-8")
    return proc.returncode, proc.stdout, seconds


def executed_notebook(out: Path, source: Path, notebook: Path) -> Path:
    """Where the build with ``--path-output out`` wrote the executed copy of ``notebook``."""
    page = Path(notebook).resolve().relative_to(Path(source).resolve())
    return Path(out) / "_build" / "jupyter_execute" / page


def execution_seconds(log: str) -> Dict[str, float]:
    """``{notebook file name: seconds}`` from the build log's "Executed notebook in" lines."""
    out = {}
    for line in _ANSI.sub("", log).splitlines():
        m = _EXECUTED.search(line)
        if m:
            out[Path(m["path"]).name] = float(m["seconds"])
    return out


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def execution_problems(nb) -> List[str]:
    """Every code cell of an executed notebook that raised or was not executed.

    ``nb`` is a notebook as a dict (``json.load``) or ``nbformat`` node. A cell *raised*
    if it has an ``error`` output (a failing ``assert`` gives ``AssertionError``); a
    non-blank code cell *was not executed* if it has no execution count (the executor
    stops at the first error, or the notebook was never run). Returns one line per
    problem, empty when the notebook ran top to bottom without an error.
    """
    problems = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        first = (_source(cell).strip().splitlines() or [""])[0][:80]
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"cell {i} raised {out.get('ename')}: {out.get('evalue')}  [{first}]")
        if _source(cell).strip() and cell.get("execution_count") is None:
            problems.append(f"cell {i} was not executed  [{first}]")
    return problems


def banner_modes(nb) -> List[str]:
    """The modes named by the mode banners (``lctools.course.banner``) among the outputs."""
    modes = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            html = out.get("data", {}).get("text/html", "")
            html = "".join(html) if isinstance(html, list) else html
            modes += re.findall(r'data-lctools-mode="(\w+)"', html)
    return modes
