"""Every notebook of the book runs top to bottom in quick mode under papermill.

The chapters' key claims are ``assert`` statements inside the notebooks, so a failing claim
fails its test. Executed copies go to ``_build/papermill/`` (kept for inspection).
"""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

OUT = ROOT / "_build" / "papermill"
CELL_TIMEOUT = 1800  # seconds per cell; quick-mode cells take seconds (the book build allows 3600)


@pytest.mark.slow
def test_notebook_runs_in_quick_mode(notebook, monkeypatch):
    papermill = pytest.importorskip("papermill")
    monkeypatch.setenv("LCTOOLS_MODE", "quick")  # the kernel inherits it
    OUT.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(notebook),
        str(OUT / notebook.name),
        cwd=str(notebook.parent),  # as in the book build and nbval
        kernel_name="python3",
        progress_bar=False,
        execution_timeout=CELL_TIMEOUT,
    )
