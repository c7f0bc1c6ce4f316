"""tools/sync_repo_url.py: the Colab install cells of the chapters *and* the assignments,
built from the repository URL (``_config.yml``) and the distribution name (``pyproject.toml``).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import sync_repo_url  # tools/, put on sys.path by tests/conftest.py

ROOT = Path(__file__).resolve().parents[1]
FORK = "https://example.org/someone/fork"


def test_distribution_name_is_not_lctools():
    """``lctools`` on PyPI is an unrelated 2014 project: pip must be given our own name."""
    assert sync_repo_url.dist_name(ROOT) == "local-complexity"
    assert sync_repo_url.install_spec(FORK) == f"local-complexity @ git+{FORK}"
    for source in (sync_repo_url.colab_cell_source(FORK), sync_repo_url.exercise_colab_cell_source(FORK)):
        assert f'%pip install -q "local-complexity @ git+{FORK}"' in source
        assert '"lctools @' not in source


def test_dist_name_reads_the_project_table(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\n\n[tool.x]\nname = "wrong"\n\n'
        '[project]\nversion = "1"\nname = "right-one"\n')
    assert sync_repo_url.dist_name(tmp_path) == "right-one"
    (tmp_path / "pyproject.toml").write_text('[tool.x]\nname = "wrong"\n')
    with pytest.raises(ValueError, match="no name"):
        sync_repo_url.dist_name(tmp_path)


def test_every_assignment_is_in_sync():
    notebooks = sync_repo_url.exercise_notebooks(ROOT)
    assert len(notebooks) >= 6
    url = sync_repo_url.repo_url(ROOT)
    for path in notebooks:
        assert sync_repo_url.is_assignment(path)
        assert sync_repo_url.sync_exercise(path, url, check=True) is False, path
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        assert "".join(cells[1]["source"]) == sync_repo_url.exercise_colab_cell_source(url)


@pytest.mark.parametrize("kind", ["chapter", "assignment"])
def test_a_new_url_changes_only_the_colab_cell(tmp_path, kind):
    """Rewriting a real notebook for a fork changes only the Colab cell's install line, keeps
    the file's layout, and going back restores the file byte for byte."""
    src = sync_repo_url.toc_notebooks(ROOT)[0] if kind == "chapter" else sync_repo_url.exercise_notebooks(ROOT)[0]
    path = tmp_path / src.name
    shutil.copy(src, path)
    original = path.read_text(encoding="utf-8")
    sync = sync_repo_url.sync if kind == "chapter" else sync_repo_url.sync_exercise
    url = sync_repo_url.repo_url(ROOT)
    assert sync(path, url) is False
    assert sync(path, FORK, check=True) is True and path.read_text(encoding="utf-8") == original
    assert sync(path, FORK) is True
    changed = path.read_text(encoding="utf-8")
    diff = [(a, b) for a, b in zip(original.splitlines(), changed.splitlines()) if a != b]
    assert len(original.splitlines()) == len(changed.splitlines()) and len(diff) == 1, diff
    assert FORK in diff[0][1] and "pip install" in diff[0][1]
    assert sync(path, FORK) is False
    assert sync(path, url) is True
    assert path.read_text(encoding="utf-8") == original


def test_assignment_without_colab_cell_gets_one_after_the_config(tmp_path):
    nb = {"cells": [
        {"cell_type": "raw", "metadata": {}, "source": ["# ASSIGNMENT CONFIG\n", "name: hw\n"]},
        {"cell_type": "markdown", "metadata": {}, "source": ["# Homework"]},
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "hw.ipynb"
    path.write_text(json.dumps(nb, indent=1) + "\n")
    assert sync_repo_url.main([str(path)]) == 0  # main tells an assignment from a chapter
    cells = json.loads(path.read_text())["cells"]
    assert [c["cell_type"] for c in cells] == ["raw", "code", "markdown"]
    assert "".join(cells[1]["source"]) == sync_repo_url.exercise_colab_cell_source(sync_repo_url.repo_url(ROOT))
    assert cells[1]["metadata"] == {} and cells[1]["id"]
    assert sync_repo_url.main(["--check", str(path)]) == 0


def test_pyproject_source_url(tmp_path):
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'Source = "{sync_repo_url.repo_url(ROOT)}"' in text
    (tmp_path / "pyproject.toml").write_text(text)
    assert sync_repo_url.sync_pyproject(FORK, root=tmp_path, check=True) is True
    assert sync_repo_url.sync_pyproject(FORK, root=tmp_path) is True
    assert f'Source = "{FORK}"' in (tmp_path / "pyproject.toml").read_text()
    assert sync_repo_url.sync_pyproject(FORK, root=tmp_path) is False
