#!/usr/bin/env python
"""Write the Colab install cell, built from the repository URL in ``_config.yml``, into
the first cell of every notebook of the book.

The repository URL lives in ONE place: ``repository: url:`` in ``_config.yml`` (it also
feeds the book's repository and Colab launch buttons).  After changing it, run::

    python tools/sync_repo_url.py          # rewrite the first cell of every notebook in _toc.yml
    python tools/sync_repo_url.py --check  # exit 1 if any notebook is out of date
    python tools/sync_repo_url.py book/07_new.ipynb   # only these notebooks

A notebook whose first cell is not the Colab cell gets one inserted in front.  The cell is
tagged ``remove-cell`` (hidden in the HTML) and does nothing outside Colab.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterator, List, Optional

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
MARKER = "# Colab only: install lctools from the course repository (does nothing elsewhere)."
TAGS = ["remove-cell"]


def repo_url(root: Path = ROOT) -> str:
    """``repository: url:`` from ``_config.yml``, without a trailing slash or ``.git``."""
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    url = str(config["repository"]["url"]).strip().rstrip("/")
    return url[:-4] if url.endswith(".git") else url


def colab_cell_source(url: str) -> str:
    """The exact source of the first (Colab install) cell."""
    return (
        f"{MARKER}\n"
        "import sys\n"
        'if "google.colab" in sys.modules:\n'
        f'    %pip install -q "lctools @ git+{url}"'
    )


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


def sync(path: Path, url: str, check: bool = False) -> bool:
    """Make the first cell of ``path`` the Colab cell; return whether it was (or would be) changed."""
    nb = nbformat.read(path, as_version=4)
    source = colab_cell_source(url)
    cells = nb.cells
    if cells and cells[0].cell_type == "code" and cells[0].source.lstrip().startswith(MARKER):
        cell = cells[0]
        tags = list(cell.metadata.get("tags", []))
        if cell.source == source and all(t in tags for t in TAGS) and not cell.outputs:
            return False
        cell.source = source
        cell.outputs = []
        cell.execution_count = None
        cell.metadata["tags"] = tags + [t for t in TAGS if t not in tags]
    else:
        new = nbformat.v4.new_code_cell(source, metadata={"tags": list(TAGS)})
        if nb.nbformat_minor < 5:  # cell ids exist from nbformat 4.5 on
            new.pop("id", None)
        cells.insert(0, new)
    if not check:
        nbformat.write(nb, path)
    return True


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook in _toc.yml")
    parser.add_argument("--check", action="store_true", help="only report; exit 1 if a notebook is out of date")
    args = parser.parse_args(argv)
    url = repo_url()
    paths = args.notebooks or toc_notebooks()
    stale = [p for p in paths if sync(Path(p), url, check=args.check)]
    verb = "out of date" if args.check else "updated"
    for p in stale:
        print(f"{verb}: {p}")
    print(f"{len(paths)} notebook(s), {len(stale)} {verb}; repository URL {url}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
