"""The book build that the tests run, and the checks of the notebooks it executed.

Each notebook of the book is executed once per test run, for the strict book build
(QuantEcon's pattern: the build's execution *is* the notebook test). MyST-NB executes
notebooks one after the other; to use both cores, :func:`build_book` first executes the
book's ``.ipynb`` notebooks two at a time, exactly as MyST-NB's ``cache`` mode does
(jupyter-cache's ``single_nb_execution`` in the notebook's folder, this book's timeout,
errors not allowed), and stores each notebook that ran without an error in the build's own
execution cache (``<out>/_build/.jupyter_cache``), where the build then finds it, and as
``<out>/executed/<page>.ipynb``. (On a cache hit MyST-NB renders the cached outputs but
writes the *unexecuted* notebook to ``_build/jupyter_execute``; the copy under
``executed/`` is what the tests read.) A notebook that failed is not stored: the build
executes it again and fails on it as it always did, and its executed copy, with the error,
is the build's.
Notebooks run in book order, two at a time; later chapters load runs that earlier ones
trained (through the results cache, whose lock makes a notebook that asks for a run being
trained wait for it rather than train it twice).

:func:`execution_problems` reads an executed copy (:func:`executed_notebook`) and lists every cell that raised (a failing
``assert`` of a chapter is an ``AssertionError`` output there) or was not executed
(execution stops at the first error).

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

#: the environment variables that size the thread pools of torch (OpenMP, MKL) and numpy (OpenBLAS)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

# The README's book command (``make book``); the tests add ``--path-output``.
BOOK_COMMAND = ["jupyter-book", "build", "--all", "-W", "-n", "--keep-going", "."]

_EXECUTED = re.compile(r"(?P<path>\S+\.ipynb): Executed notebook in (?P<seconds>[0-9.]+) seconds")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def jupyter_book() -> str:
    """The ``jupyter-book`` next to this Python (the course venv), else the one on PATH."""
    local = Path(sys.executable).with_name("jupyter-book")
    return str(local) if local.exists() else (shutil.which("jupyter-book") or "jupyter-book")


def build_book(
    source: Path,
    out: Path,
    env: Optional[Mapping[str, str]] = None,
    timeout: float = 3 * 3600,
    workers: int = 2,
) -> Tuple[int, str, float]:
    """Run the book command on ``source`` with ``--path-output out`` from an empty ``out``.

    ``out`` is deleted first, so its execution cache is empty and every notebook executes.
    The results cache of lctools (``LCTOOLS_CACHE``) is set to ``out/lctools-cache`` (fresh
    too). With ``workers > 1`` the ``.ipynb`` pages are first executed ``workers`` at a time
    into the build's execution cache (module docstring); ``workers=1`` leaves all execution
    to the build. Returns ``(returncode, combined output, seconds)``: the output holds the
    parallel execution's log lines (``<path>: Executed notebook in <s> seconds``, as the
    build writes them) and then the build's; it is also written to ``out/book-build.log``.
    """
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    run_env = dict(os.environ if env is None else env)
    run_env.setdefault("LCTOOLS_MODE", "quick")
    run_env["LCTOOLS_CACHE"] = str(out / "lctools-cache")
    start = time.perf_counter()
    logs = []
    if workers > 1:
        import sync_repo_url  # tools/ (on sys.path in the tests): the book's notebooks, in order

        notebooks = [str(p) for p in sync_repo_url.toc_notebooks(Path(source))]
        threads = {v: "1" for v in THREAD_VARIABLES}  # one core per notebook
        proc = subprocess.run(
            [sys.executable, __file__, str(out), str(source), str(workers), *notebooks],
            env={**run_env, **threads}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            timeout=timeout,
        )
        logs.append(proc.stdout)
    command = [jupyter_book(), *BOOK_COMMAND[1:-1], "--path-output", str(out), BOOK_COMMAND[-1]]
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
    output = "".join(logs) + proc.stdout
    (out / "book-build.log").write_text(output, encoding="utf-8")
    return proc.returncode, output, seconds


def _execute(path: str, timeout: Optional[int]):
    """Execute one notebook as MyST-NB's cache mode does (in its folder, errors stop it)."""
    import nbformat
    from jupyter_cache.executors.utils import single_nb_execution

    nb = nbformat.read(path, as_version=4)
    result = single_nb_execution(nb, cwd=str(Path(path).parent), timeout=timeout, allow_errors=False,
                                 meta_override=True)
    return nbformat.writes(result.nb), result.time, result.exc_string


def execute_into_cache(out: Path, source: Path, notebooks: List[str], workers: int) -> int:
    """Execute ``notebooks`` ``workers`` at a time, in order, and store each one that ran
    without an error in the build's jupyter-cache ``out/_build/.jupyter_cache`` (as MyST-NB's
    cache mode stores it) and as ``out/executed/<page>.ipynb``. Prints one log line per
    notebook; returns the number that failed."""
    from concurrent.futures import ProcessPoolExecutor

    import nbformat
    import yaml
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    config = yaml.safe_load((Path(source) / "_config.yml").read_text(encoding="utf-8")) or {}
    execute = config.get("execute") or {}
    if execute.get("execute_notebooks", "auto") != "cache" or execute.get("run_in_temp", False) \
            or execute.get("allow_errors", False):
        print("book_execution: the book does not execute in cache mode, in place, errors not allowed: "
              "the build executes every notebook itself", flush=True)
        return 0
    timeout = execute.get("timeout", 30)
    cache = get_cache(str(Path(out) / "_build" / ".jupyter_cache"))
    failed = 0
    with ProcessPoolExecutor(max_workers=workers) as pool:
        jobs = [(path, pool.submit(_execute, path, timeout)) for path in notebooks]
        for path, job in jobs:  # stored in book order, one writer for the cache database
            text, seconds, error = job.result()
            if error is not None:
                failed += 1
                print(f"{path}: Executing notebook failed (the build executes it again):\n{error}", flush=True)
                continue
            copy = Path(out) / "executed" / Path(path).resolve().relative_to(Path(source).resolve())
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_text(text, encoding="utf-8")
            stage = cache.add_nb_to_project(path)
            cache.cache_notebook_bundle(CacheBundleIn(nbformat.reads(text, as_version=4), stage.uri,
                                                      data={"execution_seconds": seconds}),
                                        check_validity=False, overwrite=True)
            print(f"{path}: Executed notebook in {seconds:.2f} seconds [{workers} at a time]", flush=True)
    return failed


def executed_notebook(out: Path, source: Path, notebook: Path) -> Path:
    """The executed copy of ``notebook`` from :func:`build_book` with output folder ``out``:
    the parallel execution's copy, else the one the build executed itself."""
    page = Path(notebook).resolve().relative_to(Path(source).resolve())
    parallel = Path(out) / "executed" / page
    return parallel if parallel.is_file() else Path(out) / "_build" / "jupyter_execute" / page


def execution_seconds(log: str) -> Dict[str, float]:
    """``{notebook file name: seconds}`` from the build log's "Executed notebook in" lines."""
    return {name: seconds[-1] for name, seconds in executions(log).items()}


def executions(log: str) -> Dict[str, List[float]]:
    """``{notebook file name: [seconds of each execution]}`` from the build log (one entry
    per "Executed notebook in" line: a notebook executed twice has two)."""
    out: Dict[str, List[float]] = {}
    for line in _ANSI.sub("", log).splitlines():
        m = _EXECUTED.search(line)
        if m:
            out.setdefault(Path(m["path"]).name, []).append(float(m["seconds"]))
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


if __name__ == "__main__":  # build_book's parallel execution: OUT SOURCE WORKERS NOTEBOOK...
    _out, _source_dir, _workers, *_notebooks = sys.argv[1:]
    execute_into_cache(Path(_out), Path(_source_dir), _notebooks, int(_workers))
