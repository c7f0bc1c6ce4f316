"""Repository-wide pytest settings (loaded for every test path, including ``--nbval-lax book/``).

- Notebooks run by nbval (and papermill, and the book build started by the tests) use the
  *quick* settings unless LCTOOLS_MODE is already set: kernels inherit this environment.
- They share one results cache, ``_build/lctools-cache`` (unless LCTOOLS_CACHE is set), so a
  network trained by one run of a notebook is loaded by the others, and a test run never
  touches the reader's own cache in ``~/.cache/lctools``.
- Copies of notebooks under _build/ (executed by the book build or papermill) and the
  virtual environment are never collected.
"""
import os

os.environ.setdefault("LCTOOLS_MODE", "quick")
os.environ.setdefault("LCTOOLS_CACHE", os.path.join(os.path.dirname(os.path.abspath(__file__)), "_build", "lctools-cache"))

collect_ignore_glob = ["_build/*", ".venv/*", "venv/*", "**/.ipynb_checkpoints/*"]
