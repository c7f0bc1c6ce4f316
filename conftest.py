"""Repository-wide pytest settings (loaded for every test path).

- Notebooks executed by the tests (the book build started by tests/test_book.py, the
  parameter check of tests/test_notebooks.py) use the *quick* settings unless LCTOOLS_MODE
  is already set: kernels inherit this environment.
- In-process tests share one results cache, ``_build/lctools-cache`` (unless LCTOOLS_CACHE
  is set), so a test run never touches the reader's own cache in ``~/.cache/lctools``. The
  book build of the tests uses a fresh cache of its own, under ``_build/test``.
- Copies of notebooks under _build/ (executed by the book build) and the virtual
  environment are never collected.
"""
import os

os.environ.setdefault("LCTOOLS_MODE", "quick")
os.environ.setdefault("LCTOOLS_CACHE", os.path.join(os.path.dirname(os.path.abspath(__file__)), "_build", "lctools-cache"))

collect_ignore_glob = ["_build/*", ".venv/*", "venv/*", "**/.ipynb_checkpoints/*"]
