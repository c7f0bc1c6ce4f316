"""The classroom assignments (exercises/): otter format, build, and grading.

The slow tests build every assignment with ``exercises/build.py`` into a temporary folder
and grade notebooks locally (no Docker) with ``exercises/grade.py``:

- every solution notebook gets full marks;
- every student notebook (``...`` left in) gets zero on its autograded questions, and the
  grader does not crash on it;
- every plausible wrong solution listed in ``exercises/<name>/wrong_solutions.py`` loses
  points on its question (and only there).
Nothing is written outside temporary folders.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = ROOT / "exercises"
sys.path.insert(0, str(EXERCISES))
_dont_write = sys.dont_write_bytecode
sys.dont_write_bytecode = True  # no __pycache__ under exercises/ (only dist/ and tmp dirs are written)
import build  # noqa: E402
import grade  # noqa: E402

sys.dont_write_bytecode = _dont_write

ASSIGNMENTS = build.assignments()


def _wrong_solutions(name: str) -> list[dict]:
    spec = importlib.util.spec_from_file_location(f"wrong_{name}", EXERCISES / name / "wrong_solutions.py")
    mod = importlib.util.module_from_spec(spec)
    before, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.dont_write_bytecode = before
    return mod.WRONG_SOLUTIONS


WRONG = [(name, w) for name in ASSIGNMENTS for w in _wrong_solutions(name)]


def _source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _questions(nb: dict) -> dict:
    """``{name: {"points":, "manual":}}`` from the ``# BEGIN QUESTION`` raw cells."""
    import yaml

    out = {}
    for c in nb["cells"]:
        src = _source(c)
        if c["cell_type"] == "raw" and src.startswith("# BEGIN QUESTION"):
            cfg = yaml.safe_load(src.split("\n", 1)[1])
            out[cfg["name"]] = dict(points=cfg["points"], manual=bool(cfg.get("manual", False)))
    return out


def test_every_chapter_has_an_assignment():
    import sync_repo_url

    chapters = sync_repo_url.toc_notebooks(ROOT)
    expected = {"ch{}_{}".format(int(nb.stem[:2]), nb.stem[3:]) for nb in chapters}
    assert len(expected) == 6 and expected <= set(ASSIGNMENTS), sorted(expected - set(ASSIGNMENTS))


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_otter_assign_format(name):
    nb = json.loads((EXERCISES / name / f"{name}.ipynb").read_text())
    cells = nb["cells"]
    assert cells[0]["cell_type"] == "raw" and _source(cells[0]).startswith("# ASSIGNMENT CONFIG")
    colab = _source(cells[1])  # the first cell of the student notebook
    sys.path.insert(0, str(ROOT / "tools"))
    import sync_repo_url

    assert cells[1]["cell_type"] == "code" and 'if "google.colab" in sys.modules:' in colab
    assert colab == sync_repo_url.exercise_colab_cell_source(sync_repo_url.repo_url(ROOT))  # _config.yml, pyproject.toml
    qs = _questions(nb)
    assert len(qs) >= 3
    assert any(q["manual"] for q in qs.values()) and sum(not q["manual"] for q in qs.values()) >= 3
    for kind in ("BEGIN QUESTION", "END QUESTION", "BEGIN SOLUTION", "END SOLUTION"):
        assert sum(_source(c).startswith("# " + kind) for c in cells if c["cell_type"] == "raw") == len(qs), kind
    assert any(_source(c).startswith("# HIDDEN") for c in cells if c["cell_type"] == "code")


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_wrong_solutions_are_listed_for_every_implementation_question(name):
    nb = json.loads((EXERCISES / name / f"{name}.ipynb").read_text())
    qs = _questions(nb)
    listed = {w["question"] for w in _wrong_solutions(name)}
    assert listed <= {q for q, c in qs.items() if not c["manual"]}
    # every question whose answer is a function has a wrong solution
    funcs = [_source(c) for c in nb["cells"] if c["cell_type"] == "code" and _source(c).lstrip().startswith("def ")
             and "# BEGIN SOLUTION" in _source(c)]
    markers = {w["marker"] for w in _wrong_solutions(name)}
    assert len(funcs) >= 3
    for f in funcs:
        assert any(m in f for m in markers), f.splitlines()[0]


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """All assignments built into a temporary folder (otter's own solution check skipped: the
    tests below grade the solutions)."""
    out = tmp_path_factory.mktemp("dist")
    for name in ASSIGNMENTS:
        build.build(name, out, run_tests=False, quiet=True)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_build(dist, name):
    assert build.autograder_zip(dist, name).is_file()
    student = json.loads((dist / name / "student" / f"{name}.ipynb").read_text())
    text = "\n".join(_source(c) for c in student["cells"])
    assert "# BEGIN SOLUTION" not in text and "# HIDDEN" not in text and "ASSIGNMENT CONFIG" not in text
    assert "..." in text
    assert _source(student["cells"][0]).startswith("# Colab only")
    assert student["metadata"]["otter"]["assignment_name"] == name


@pytest.mark.slow
@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_grade_solution_and_student(dist, name, tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "solution.ipynb").write_bytes((dist / name / "autograder" / f"{name}.ipynb").read_bytes())
    (subs / "student.ipynb").write_bytes((dist / name / "student" / f"{name}.ipynb").read_bytes())
    rows = grade.grade_folder(subs, name, tmp_path / "scores.csv", build_dir=dist)
    by_file = {r["file"]: r for r in rows}
    sol, stu = by_file["solution.ipynb"], by_file["student.ipynb"]
    assert sol["error"] == "" and stu["error"] == "", (sol["error"], stu["error"])
    assert sol["possible"] > 0 and sol["total"] == sol["possible"], sol
    assert stu["total"] == 0, stu
    assert (tmp_path / "scores.csv").read_text().startswith("file,q1,")


@pytest.mark.slow
@pytest.mark.parametrize("name,wrong", WRONG, ids=[f"{n}-{w['question']}-{w['name']}" for n, w in WRONG])
def test_wrong_solution_loses_points(dist, name, wrong, tmp_path):
    nb = json.loads((dist / name / "autograder" / f"{name}.ipynb").read_text())
    hits = [c for c in nb["cells"] if c["cell_type"] == "code" and wrong["marker"] in _source(c)]
    assert len(hits) == 1, f"marker {wrong['marker']!r} found in {len(hits)} cells"
    hits[0]["source"] = wrong["source"].strip("\n")
    sub = tmp_path / f"{wrong['name']}.ipynb"
    sub.write_text(json.dumps(nb))
    r = grade.grade_notebook(sub, build.autograder_zip(dist, name), name)
    assert r["error"] == "", r["error"]
    q = wrong["question"]
    full = _questions(json.loads((EXERCISES / name / f"{name}.ipynb").read_text()))[q]["points"]
    assert r["scores"][q] < full, f"{wrong['description']}: still {r['scores'][q]} / {full}"
    assert r["total"] < r["possible"]
    others = {k: v for k, v in r["scores"].items() if k != q}
    assert sum(others.values()) == r["possible"] - full, f"other questions lost points too: {r['scores']}"
