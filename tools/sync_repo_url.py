#!/usr/bin/env python
"""Write the Colab install cells, built from the repository URL in ``_config.yml`` and the
distribution name in ``pyproject.toml``, into every notebook of the book and every
assignment notebook, and the URL into ``pyproject.toml``'s ``[project.urls]``.

The repository URL lives in ONE place: ``repository: url:`` in ``_config.yml`` (it also
feeds the book's repository and Colab launch buttons).  The distribution name (what
``pip install`` takes: ``local-complexity``; the import name is ``lctools``) lives in
``pyproject.toml``.  After changing either, run::

    python tools/sync_repo_url.py          # rewrite every Colab cell (book and exercises)
    python tools/sync_repo_url.py --check  # exit 1 if anything is out of date
    python tools/sync_repo_url.py book/07_new.ipynb   # only these notebooks

Book chapters (``_toc.yml``): the first cell is the Colab cell, tagged ``remove-cell``
(hidden in the HTML); a notebook without one gets one inserted in front.  Assignments
(``exercises/<name>/<name>.ipynb``, otter-grader format): the Colab cell, which also
installs otter-grader, follows the ``# ASSIGNMENT CONFIG`` cell, so that it is the first
cell of the student notebook.  The cells do nothing outside Colab.  Notebooks are read and
written as JSON with the files' own layout (``indent=1``), so only the Colab cell changes.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import uuid
from pathlib import Path
from typing import Iterator, List, Optional

import yaml

ROOT = Path(__file__).resolve().parents[1]
MARKER = "# Colab only: install lctools from the course repository (does nothing elsewhere)."
EXERCISE_MARKER = "# Colab only: install lctools and otter-grader (does nothing elsewhere)."
ASSIGNMENT_CONFIG = "# ASSIGNMENT CONFIG"
TAGS = ["remove-cell"]


def repo_url(root: Path = ROOT) -> str:
    """``repository: url:`` from ``_config.yml``, without a trailing slash or ``.git``."""
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    url = str(config["repository"]["url"]).strip().rstrip("/")
    return url[:-4] if url.endswith(".git") else url


def dist_name(root: Path = ROOT) -> str:
    """The distribution name, ``name`` of ``[project]`` in ``pyproject.toml``."""
    text = (root / "pyproject.toml").read_text(encoding="utf-8")
    project = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    name = project and re.search(r'^name\s*=\s*"([^"]+)"', project.group(1), re.M)
    if not name:
        raise ValueError(f"no name in the [project] table of {root / 'pyproject.toml'}")
    return name.group(1)


def install_spec(url: str, dist: Optional[str] = None) -> str:
    """What ``pip install`` takes to install lctools from the repository at ``url``."""
    return f"{dist or dist_name()} @ git+{url}"


def _colab_cell(marker: str, url: str, dist: Optional[str], *also: str) -> str:
    """A Colab-only install cell: ``marker``, then lctools from ``url`` and the packages
    ``also``, installed only when the notebook runs on Colab."""
    installs = [f'"{install_spec(url, dist)}"', *also]
    return "\n".join([marker, "import sys", 'if "google.colab" in sys.modules:',
                      *(f"    %pip install -q {spec}" for spec in installs)])


def colab_cell_source(url: str, dist: Optional[str] = None) -> str:
    """The exact source of the first (Colab install) cell of a book chapter."""
    return _colab_cell(MARKER, url, dist)


def exercise_colab_cell_source(url: str, dist: Optional[str] = None) -> str:
    """The exact source of the Colab install cell of an assignment (first student cell)."""
    return _colab_cell(EXERCISE_MARKER, url, dist, "otter-grader")


def _toc_files(entry) -> Iterator[str]:
    if isinstance(entry, dict):
        if "file" in entry:
            yield str(entry["file"])
        for key in ("root", "parts", "chapters", "sections"):
            if key == "root" and key in entry:
                yield str(entry["root"])
            elif key in entry:
                yield from _toc_files(entry[key])
    elif isinstance(entry, list):
        for item in entry:
            yield from _toc_files(item)


def toc_pages(root: Path = ROOT) -> List[str]:
    """Every file listed in ``_toc.yml``, without suffix, in book order (``book/intro``, ...)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    pages: List[str] = []
    for name in _toc_files(toc):
        stem = name[: -len(Path(name).suffix)] if Path(name).suffix in (".md", ".ipynb") else name
        if stem not in pages:
            pages.append(stem)
    return pages


def toc_notebooks(root: Path = ROOT) -> List[Path]:
    """The notebooks (``.ipynb``) listed in ``_toc.yml``, in book order."""
    out: List[Path] = []
    for stem in toc_pages(root):
        path = root / (stem + ".ipynb")
        if path.exists() and path not in out:
            out.append(path)
    return out


def toc_chapters(root: Path = ROOT) -> List[Path]:
    """The chapter notebooks (``book/NN_name.ipynb``) listed in ``_toc.yml``, in book order.

    Chapters follow the chapter conventions (a theorem box, exercises, an assignment, the
    ``MODE``/``SEED`` parameters and a settings cell); other notebook pages need not."""
    return [p for p in toc_notebooks(root) if re.match(r"\d\d_", p.name)]


def exercise_notebooks(root: Path = ROOT) -> List[Path]:
    """The assignment notebooks, ``exercises/<name>/<name>.ipynb``, sorted by name."""
    return sorted(p for p in (root / "exercises").glob("*/*.ipynb") if p.stem == p.parent.name)


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _code_cell(nb: dict, source: str, tags: List[str]) -> dict:
    """A new code cell (with an id from nbformat 4.5 on), keys in nbformat's order."""
    cell = {"cell_type": "code", "execution_count": None}
    if (nb.get("nbformat", 4), nb.get("nbformat_minor", 0)) >= (4, 5):
        cell["id"] = uuid.uuid4().hex[:8]
    cell["metadata"] = {"tags": list(tags)} if tags else {}
    cell["outputs"] = []
    cell["source"] = source.splitlines(keepends=True)
    return cell


def _put_cell(path: Path, index: int, marker: str, source: str, tags: List[str], check: bool) -> bool:
    """Make cell ``index`` of ``path`` the cell ``source`` (the one starting with ``marker``
    is rewritten, else a new one is inserted there); return whether it was (or would be)
    changed. The file is rewritten as JSON in the notebooks' own layout."""
    raw = path.read_text(encoding="utf-8")
    nb = json.loads(raw)
    cells = nb["cells"]
    cell = cells[index] if index < len(cells) else None
    if cell is not None and cell["cell_type"] == "code" and _source(cell).lstrip().startswith(marker):
        old_tags = list(cell.get("metadata", {}).get("tags", []))
        if (_source(cell) == source and all(t in old_tags for t in tags) and not cell.get("outputs")
                and cell.get("execution_count") is None):
            return False
        cell["source"] = source.splitlines(keepends=True)
        cell["outputs"] = []
        cell["execution_count"] = None
        if tags:
            cell.setdefault("metadata", {})["tags"] = old_tags + [t for t in tags if t not in old_tags]
    else:
        cells.insert(index, _code_cell(nb, source, tags))
    if not check:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return True


def sync(path: Path, url: str, check: bool = False) -> bool:
    """Make the first cell of the chapter ``path`` the Colab cell; return whether it was
    (or would be) changed."""
    return _put_cell(Path(path), 0, MARKER, colab_cell_source(url), TAGS, check)


def sync_exercise(path: Path, url: str, check: bool = False) -> bool:
    """Make the cell after ``# ASSIGNMENT CONFIG`` of the assignment ``path`` its Colab cell
    (the first cell of the student notebook); return whether it was (or would be) changed."""
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    index = 1 if cells and cells[0]["cell_type"] == "raw" and _source(cells[0]).startswith(ASSIGNMENT_CONFIG) else 0
    return _put_cell(Path(path), index, EXERCISE_MARKER, exercise_colab_cell_source(url), [], check)


def is_assignment(path: Path) -> bool:
    """Whether ``path`` is an otter-grader assignment (first cell ``# ASSIGNMENT CONFIG``)."""
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    return bool(cells) and cells[0]["cell_type"] == "raw" and _source(cells[0]).startswith(ASSIGNMENT_CONFIG)


def sync_pyproject(url: str, root: Path = ROOT, check: bool = False) -> bool:
    """Make ``Source`` in ``[project.urls]`` of ``pyproject.toml`` the repository URL."""
    path = root / "pyproject.toml"
    text = path.read_text(encoding="utf-8")
    new = re.sub(r'^(Source\s*=\s*)"[^"]*"', lambda m: f'{m.group(1)}"{url}"', text, count=1, flags=re.M)
    if new == text:
        return False
    if not check:
        path.write_text(new, encoding="utf-8")
    return True


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="default: every notebook in _toc.yml, every assignment, and pyproject.toml")
    parser.add_argument("--check", action="store_true", help="only report; exit 1 if anything is out of date")
    args = parser.parse_args(argv)
    url = repo_url()
    paths = args.notebooks or (toc_notebooks() + exercise_notebooks())
    stale = [p for p in paths
             if (sync_exercise if is_assignment(Path(p)) else sync)(Path(p), url, check=args.check)]
    if not args.notebooks and sync_pyproject(url, check=args.check):
        stale.append(ROOT / "pyproject.toml")
    verb = "out of date" if args.check else "updated"
    for p in stale:
        print(f"{verb}: {p}")
    print(f"{len(paths)} notebook(s) and pyproject.toml, {len(stale)} {verb}; "
          f"repository URL {url}, pip install \"{install_spec(url)}\"")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
