"""Fast checks of the committed chapter notebooks (every notebook listed in _toc.yml).

Notebooks are committed without outputs (Colab opens them; papermill and nbval run them),
have exactly one ``parameters`` cell, start with the hidden Colab install cell built from
the repository URL in _config.yml (``python tools/sync_repo_url.py`` writes it), use the
``python3`` kernel, and show the quick/full mode banner.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import sync_repo_url  # tools/, put on sys.path by tests/conftest.py

ROOT = Path(__file__).resolve().parents[1]


def _read(path):
    return nbformat.read(path, as_version=4)


def test_toc_lists_notebooks():
    assert sync_repo_url.toc_notebooks(ROOT), "_toc.yml lists no notebook"


def test_toc_files_exist():
    pages = sync_repo_url.toc_pages(ROOT)
    missing = [p for p in pages if not any((ROOT / (p + s)).exists() for s in (".md", ".ipynb"))]
    assert not missing, f"_toc.yml lists files that do not exist: {missing}"


def test_valid_nbformat(notebook):
    nbformat.validate(_read(notebook))


def test_no_outputs_committed(notebook):
    nb = _read(notebook)
    dirty = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.outputs or c.execution_count is not None)
    ]
    assert not dirty, (
        f"{notebook.name}: code cells {dirty} have outputs or execution counts; clear them "
        "(e.g. `jupyter nbconvert --clear-output --inplace {notebook}`) before committing."
    )


def test_one_parameters_cell(notebook):
    nb = _read(notebook)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{notebook.name}: need exactly one 'parameters'-tagged cell, found cells {tagged}"
    assert nb.cells[tagged[0]].cell_type == "code"


def test_first_cell_is_colab_install(notebook):
    nb = _read(notebook)
    url = sync_repo_url.repo_url(ROOT)
    first = nb.cells[0]
    hint = "run `python tools/sync_repo_url.py` to (re)write it from _config.yml"
    assert first.cell_type == "code", f"{notebook.name}: first cell must be the Colab install cell; {hint}"
    assert first.source == sync_repo_url.colab_cell_source(url), (
        f"{notebook.name}: first cell differs from the Colab install cell for {url}; {hint}"
    )
    assert "remove-cell" in first.metadata.get("tags", []), f"{notebook.name}: first cell must be tagged remove-cell"


def test_kernelspec_python3(notebook):
    nb = _read(notebook)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", (
        f"{notebook.name}: kernelspec must be python3, got {nb.metadata.get('kernelspec')}"
    )


def test_shows_mode_banner(notebook):
    nb = _read(notebook)
    assert any(c.cell_type == "code" and "banner(" in c.source for c in nb.cells), (
        f"{notebook.name}: call lctools.course.banner(MODE) so the page says which mode produced it"
    )


def test_sync_repo_url_check_passes():
    assert sync_repo_url.main(["--check"]) == 0


def test_sync_repo_url_inserts_and_is_idempotent(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Title")])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    url = "https://example.org/someone/fork"
    assert sync_repo_url.sync(path, url) is True
    cells = _read(path).cells
    assert cells[0].source == sync_repo_url.colab_cell_source(url)
    assert cells[0].metadata["tags"] == ["remove-cell"]
    assert cells[1].source == "# Title"
    assert sync_repo_url.sync(path, url) is False  # nothing left to do
    assert sync_repo_url.sync(path, url + "2") is True  # a new URL rewrites the same cell
    assert len(_read(path).cells) == 2


def test_colab_cell_is_noop_outside_colab():
    """The cell is IPython (``%pip``), guarded so that it does nothing outside Colab."""
    pytest.importorskip("IPython")
    from IPython.core.inputtransformer2 import TransformerManager

    source = sync_repo_url.colab_cell_source(sync_repo_url.repo_url(ROOT))
    python = TransformerManager().transform_cell(source)
    compile(python, "<colab cell>", "exec")
    calls = []

    class FakeShell:
        def run_line_magic(self, *args):
            calls.append(args)

    exec(python, {"get_ipython": lambda: FakeShell()})
    assert calls == []


def test_links_to_its_assignment(notebook):
    """The last section of every chapter names its assignment (which exists) and links to
    the Instructor guide page of the book."""
    if not notebook.stem[:2].isdigit():
        pytest.skip(f"{notebook.name} is a reference page, not a chapter")
    nb = nbformat.read(notebook, as_version=4)
    text = nb.cells[-1].source
    assert text.startswith("## Assignment"), f"{notebook.name}: the last cell must be the '## Assignment' section"
    assert "(instructor_guide.md)" in text
    name = "ch{}_{}".format(int(notebook.stem[:2]), notebook.stem[3:])
    assert f"`{name}`" in text and f"exercises/build.py {name}" in text
    assert (ROOT / "exercises" / name / f"{name}.ipynb").is_file()
