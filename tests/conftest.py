"""Shared pieces of the notebook, notebook-format and book tests.

Tests that take a ``notebook`` argument are run once per notebook listed in _toc.yml;
tests that take a ``book_page`` argument once per page (file) listed in _toc.yml.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))  # tools/sync_repo_url.py: reads _config.yml and _toc.yml

import pytest  # noqa: E402
import torch  # noqa: E402

os.environ.setdefault("LCTOOLS_MODE", "quick")


def pytest_generate_tests(metafunc):
    if not {"notebook", "book_page"} & set(metafunc.fixturenames):
        return
    import sync_repo_url  # only here: it needs the book's tools (nbformat), the package's tests do not

    if "notebook" in metafunc.fixturenames:
        notebooks = sync_repo_url.toc_notebooks(ROOT)
        metafunc.parametrize("notebook", notebooks, ids=[p.stem for p in notebooks])
    if "book_page" in metafunc.fixturenames:
        pages = sync_repo_url.toc_pages(ROOT)
        metafunc.parametrize("book_page", pages, ids=[Path(p).name for p in pages])


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models train faster on one thread (and do not fight other jobs for the cores).
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
