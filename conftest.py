"""Repository-wide pytest settings (loaded for every test path, including ``--nbval-lax book/``).

- Notebooks run by nbval (and papermill, and the book build started by the tests) use the
  *quick* settings unless LCTOOLS_MODE is already set: kernels inherit this environment.
- Copies of notebooks under _build/ (executed by the book build or papermill) and the
  virtual environment are never collected.
"""
import os

os.environ.setdefault("LCTOOLS_MODE", "quick")

collect_ignore_glob = ["_build/*", ".venv/*", "venv/*", "**/.ipynb_checkpoints/*"]
