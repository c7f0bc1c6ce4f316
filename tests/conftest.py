"""Shared pieces of the notebook, notebook-format and book tests.

Tests that take a ``notebook`` argument are run once per notebook listed in _toc.yml, tests
that take a ``chapter`` argument once per chapter notebook (``book/NN_*.ipynb``);
tests that take a ``book_page`` argument once per page (file) listed in _toc.yml.

``make test`` runs ``pytest -n 2 --dist loadfile --no-loadscope-reorder``: each test file
runs whole on one worker, in collection order. The book build (tests/test_book.py, the
only execution of the notebooks, two at a time: tests/book_execution.py) is the longest
file, so it is collected first and starts at once on one worker while the other works
through the remaining files.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))  # tools/sync_repo_url.py: reads _config.yml and _toc.yml


def _threads_per_worker() -> int:
    """The cores divided among the pytest-xdist workers (at least one thread each)."""
    return max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


# ``make test`` runs one worker per core: each worker, and every process it starts (a
# notebook kernel, a grading child, a CLI run), gets its share of the cores. Two threads
# per worker on two cores made the workers' OpenMP threads spin against each other (an
# end-to-end grading under load: 132 s without this, 82 s with it).
if os.environ.get("PYTEST_XDIST_WORKER"):
    from book_execution import THREAD_VARIABLES  # tests/book_execution.py

    for _var in THREAD_VARIABLES:
        os.environ.setdefault(_var, str(_threads_per_worker()))

import pytest  # noqa: E402
import torch  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
os.environ.setdefault("LCTOOLS_MODE", "quick")


def pytest_generate_tests(metafunc):
    if not {"notebook", "chapter", "book_page"} & set(metafunc.fixturenames):
        return
    import sync_repo_url  # only here: it needs the book's tools (nbformat), the package's tests do not

    if "notebook" in metafunc.fixturenames:
        notebooks = sync_repo_url.toc_notebooks(ROOT)
        metafunc.parametrize("notebook", notebooks, ids=[p.stem for p in notebooks])
    if "chapter" in metafunc.fixturenames:
        chapters = sync_repo_url.toc_chapters(ROOT)
        metafunc.parametrize("chapter", chapters, ids=[p.stem for p in chapters])
    if "book_page" in metafunc.fixturenames:
        pages = sync_repo_url.toc_pages(ROOT)
        metafunc.parametrize("book_page", pages, ids=[Path(p).name for p in pages])


FIRST = ("test_book.py",)  # the longest file (the book build): scheduled first


def pytest_collection_modifyitems(config, items):
    """Collect the book build's file first (a stable sort keeps every other order)."""
    items.sort(key=lambda item: item.path.name not in FIRST)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models train faster on one thread (and do not fight other jobs for the cores).
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
