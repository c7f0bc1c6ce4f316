"""The notebooks' parameters cell, and the check that makes a failing chapter fail the run.

Every notebook of the book is executed once per test run, by the strict book build in
``tests/test_book.py``, which reads the executed copies with
:func:`book_execution.execution_problems`. This file checks the pieces around it cheaply:

- the ``parameters`` cell works as papermill uses it: papermill finds ``MODE`` and ``SEED``
  in it, and with ``MODE="full"``, ``SEED=7`` injected (papermill's own injection) the
  chapter's settings cell runs in full mode, seeds torch with 7 and shows a *full* banner,
  although the kernel's ``LCTOOLS_MODE`` says quick. Only the parameters, injected and
  settings cells run (all chapters in one kernel, its namespace reset between them);
- the checker flags error outputs and cells that did not run, on hand-made notebooks;
- end to end: a tiny book whose notebook has a failing ``assert``, built with the book
  command and the ``execute:`` settings of ``_config.yml``, fails the build and the check.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import pytest
import yaml
from book_execution import (  # tests/book_execution.py
    banner_modes,
    build_book,
    executed_notebook,
    execution_problems,
    execution_seconds,
)

ROOT = Path(__file__).resolve().parents[1]
INJECTED = {"MODE": "full", "SEED": 7}
_PROBE = "__lctools_probe__"


def _settings_cells(cells, after: int) -> list:
    """The code cells after ``after`` up to the settings cell (the first that resolves MODE and
    makes ``cfg``), so the execution note at the top of a chapter runs too."""
    for i in range(after + 1, len(cells)):
        if cells[i].cell_type == "code" and re.search(r"^cfg = ", cells[i].source, re.M):
            return [c for c in cells[after + 1 : i + 1] if c.cell_type == "code"]
    raise AssertionError("no settings cell (a code cell that assigns cfg) after the parameters")


def _injection_notebook(notebooks):
    """One notebook: for each chapter, %reset, its parameters cell, papermill's injected cell,
    its settings cell and a probe that prints what the settings cell made of them."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    cells, spans = [], {}
    for path in notebooks:
        nb = load_notebook_node(str(path))  # as papermill.execute_notebook reads it
        nb = parameterize_notebook(nb, dict(INJECTED), kernel_name="python3", language="python")
        tags = [c.metadata.get("tags", []) for c in nb.cells]
        params = next(i for i, t in enumerate(tags) if "parameters" in t)
        injected = next(i for i, t in enumerate(tags) if "injected-parameters" in t)
        assert injected == params + 1, "papermill puts its cell right after the parameters cell"
        start = len(cells)
        cells.append(nbformat.v4.new_code_cell("%reset -f"))
        cells += [nb.cells[params], nb.cells[injected], *_settings_cells(nb.cells, injected)]
        cells.append(nbformat.v4.new_code_cell(
            "import json as _json, torch as _torch\n"
            f"print({_PROBE!r}, _json.dumps(dict(MODE=MODE, SEED=SEED, seed=_torch.initial_seed(),"
            " cfg=sorted(vars(cfg)))))"
        ))
        spans[path.name] = (start, len(cells))
    merged = nbformat.v4.new_notebook(cells=cells)
    merged.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return merged, spans


@pytest.fixture(scope="module")
def injected_runs():
    """``{notebook name: executed cells of its segment}``, all chapters in one kernel."""
    from nbclient import NotebookClient

    import sync_repo_url

    notebooks = sync_repo_url.toc_chapters(ROOT)
    nb, spans = _injection_notebook(notebooks)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LCTOOLS_MODE", "quick")  # the kernel inherits it; the injected MODE must win
        NotebookClient(
            nb, timeout=600, kernel_name="python3", allow_errors=True,
            resources={"metadata": {"path": str(notebooks[0].parent)}},  # cwd as in the build
        ).execute()
    return {name: nbformat.v4.new_notebook(cells=nb.cells[a:b]) for name, (a, b) in spans.items()}


def test_papermill_finds_the_parameters(notebook):
    import sync_repo_url

    papermill = pytest.importorskip("papermill")
    found = papermill.inspect_notebook(str(notebook))
    needed = {"MODE", "SEED"} if notebook in sync_repo_url.toc_chapters(ROOT) else {"MODE"}
    assert needed <= set(found), f"{notebook.name}: parameters cell defines {sorted(found)}"
    assert found["MODE"]["default"] == "None"


@pytest.mark.slow
def test_injected_parameters_reach_the_settings(injected_runs, chapter):
    notebook = chapter
    pytest.importorskip("papermill")
    segment = injected_runs[notebook.name]
    problems = execution_problems(segment)
    assert not problems, f"{notebook.name} with {INJECTED} injected:\n" + "\n".join(problems)
    probe = [
        json.loads(line.split(_PROBE, 1)[1])
        for cell in segment.cells
        for out in cell.get("outputs", [])
        if out.get("name") == "stdout"
        for line in out["text"].splitlines()
        if line.startswith(_PROBE)
    ]
    assert len(probe) == 1, segment.cells[-1].get("outputs")
    (probe,) = probe
    assert (probe["MODE"], probe["SEED"]) == (INJECTED["MODE"], INJECTED["SEED"])
    assert probe["seed"] == INJECTED["SEED"], f"{notebook.name}: the settings cell should seed torch with SEED"
    assert probe["cfg"], f"{notebook.name}: empty settings"
    assert banner_modes(segment) == ["full"], f"{notebook.name}: the banner must name the injected mode"


# --------------------------------------------------------------------------- the checker


def _code(source, count=None, outputs=()):
    cell = nbformat.v4.new_code_cell(source, execution_count=count)
    cell.outputs = [nbformat.from_dict(o) for o in outputs]
    return cell


def _error(ename="AssertionError", evalue="LC must fall"):
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": []}


def test_checker_passes_a_clean_run():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# A chapter"),
        _code("x = 1", 1),
        _code("print(x)", 2, [{"output_type": "stream", "name": "stdout", "text": "1\n"}]),
        _code("   \n", None),  # a blank cell is not executed, and that is fine
    ])
    assert execution_problems(nb) == []
    assert execution_problems(json.loads(nbformat.writes(nb))) == []  # a plain dict works too


@pytest.mark.parametrize("ename", ["AssertionError", "ValueError", "KeyboardInterrupt"])
def test_checker_flags_an_error_output(ename):
    nb = nbformat.v4.new_notebook(cells=[
        _code("x = 1", 1),
        _code("assert x == 2, 'LC must fall'", 2, [_error(ename)]),
        _code("print('after')", None),
    ])
    problems = execution_problems(nb)
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"cell 1 raised {ename}: LC must fall")
    assert problems[1].startswith("cell 2 was not executed")


def test_checker_flags_an_error_even_when_later_cells_ran():
    """allow_errors=True executes past an error: the error output alone must fail."""
    nb = nbformat.v4.new_notebook(cells=[_code("1/0", 1, [_error("ZeroDivisionError", "division by zero")]),
                                         _code("y = 2", 2)])
    assert execution_problems(nb) == ["cell 0 raised ZeroDivisionError: division by zero  [1/0]"]


def test_checker_flags_a_notebook_that_never_ran():
    nb = nbformat.v4.new_notebook(cells=[_code("x = 1"), _code("y = 2")])
    assert len(execution_problems(nb)) == 2


def test_banner_modes_reads_the_banner_output():
    from lctools.course import _Banner

    html = _Banner("full")._repr_html_()
    cell = _code("banner(MODE)", 1, [{"output_type": "display_data", "metadata": {},
                                      "data": {"text/html": html, "text/plain": "x"}}])
    assert banner_modes(nbformat.v4.new_notebook(cells=[cell])) == ["full"]
    assert banner_modes(nbformat.v4.new_notebook(cells=[_code("x = 1", 1)])) == []


def test_execution_seconds_reads_the_build_log():
    log = ("\x1b[01m/x/book/01_a.ipynb: Executed notebook in 12.50 seconds [mystnb]\n"
           "/x/book/02_b.ipynb: Executed notebook in 3 seconds [mystnb]\nother line\n")
    assert execution_seconds(log) == {"01_a.ipynb": 12.5, "02_b.ipynb": 3.0}


@pytest.mark.slow
def test_failing_assert_fails_the_build_and_the_check(tmp_path):
    """End to end, with the book command and this book's ``execute:`` settings: a chapter
    whose ``assert`` fails makes the build fail, and its executed copy shows the error."""
    src = tmp_path / "src"
    (src / "book").mkdir(parents=True)
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    (src / "_config.yml").write_text(yaml.safe_dump(
        {"title": "tiny", "only_build_toc_files": True, "execute": config["execute"]}))
    (src / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/good\n  - file: book/bad\n")
    (src / "book" / "intro.md").write_text("# Tiny\n\nA book of two notebooks.\n")
    kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    good = nbformat.v4.new_notebook(metadata=kernel, cells=[
        nbformat.v4.new_markdown_cell("# Good"), nbformat.v4.new_code_cell("x = 2\nassert x == 2")])
    bad = nbformat.v4.new_notebook(metadata=kernel, cells=[
        nbformat.v4.new_markdown_cell("# Bad"),
        nbformat.v4.new_code_cell("lc_end, lc_start = 3.0, 1.0"),
        nbformat.v4.new_code_cell("assert lc_end < lc_start, 'local complexity must fall'"),
        nbformat.v4.new_code_cell("print('not reached')"),
    ])
    nbformat.write(good, src / "book" / "good.ipynb")
    nbformat.write(bad, src / "book" / "bad.ipynb")

    out = tmp_path / "out"
    returncode, log, _ = build_book(src, out, env=dict(os.environ), timeout=600)
    assert returncode != 0, log[-3000:]
    assert "Executing notebook failed" in log
    assert set(execution_seconds(log)) == {"good.ipynb"}
    assert execution_problems(nbformat.read(executed_notebook(out, src, src / "book" / "good.ipynb"), 4)) == []
    problems = execution_problems(nbformat.read(executed_notebook(out, src, src / "book" / "bad.ipynb"), 4))
    assert problems[0].startswith("cell 2 raised AssertionError: local complexity must fall"), problems
    assert problems[1].startswith("cell 3 was not executed"), problems
