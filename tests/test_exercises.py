"""The classroom assignments (exercises/): otter format, build, and grading.

The slow tests build every assignment with ``exercises/build.py`` into a temporary folder.

- Wrong solutions, the fast way: each solution notebook is executed once, in this process;
  every plausible wrong solution of ``exercises/<name>/wrong_solutions.py`` replaces its one
  definition in a copy of that namespace, and its question's tests (from the autograder
  zip) run against it: one assertion per wrong solution, that it loses points.
- End to end, per assignment: ``exercises/grade.py`` (isolated child processes) grades the
  solution (full marks, no tamper flags), the student notebook (zero) and a notebook with
  several wrong answers at once; otter itself grades that last notebook too, and the
  shortcut, grade.py and otter must give the same points per question.
Cheating submissions are in ``tests/test_grading_tamper.py``; the clean-environment
grading of the zip in ``tests/test_exercises_zip.py``.  Nothing is written outside
temporary folders.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
from helpers import built_assignments, exercise_tools

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = ROOT / "exercises"
build, grade, sandbox = exercise_tools("build", "grade", "sandbox")

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

    chapters = sync_repo_url.toc_chapters(ROOT)
    expected = {"ch{}_{}".format(int(nb.stem[:2]), nb.stem[3:]) for nb in chapters}
    assert len(expected) == 6 and expected <= set(ASSIGNMENTS), sorted(expected - set(ASSIGNMENTS))


def test_each_chapter_links_its_student_notebook_on_colab():
    import sync_repo_url

    for nb_path in sync_repo_url.toc_chapters(ROOT):
        name = "ch{}_{}".format(int(nb_path.stem[:2]), nb_path.stem[3:])
        cells = [_source(c) for c in json.loads(nb_path.read_text())["cells"]
                 if _source(c).startswith("## Assignment")]
        assert len(cells) == 1, nb_path
        assert f"({build.colab_url(name)})" in cells[0], nb_path
        assert (build.STUDENT_DIR / f"{name}.ipynb").is_file()


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
    tests below grade the solutions), with one wheel of the course package; built once per
    session (the zip and tamper tests use the same folder)."""
    return built_assignments(tmp_path_factory, ASSIGNMENTS)


@pytest.mark.slow
@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_build(dist, name):
    import zipfile

    import yaml

    ag = build.autograder_zip(dist, name)
    student = json.loads((dist / name / "student" / f"{name}.ipynb").read_text())
    text = "\n".join(_source(c) for c in student["cells"])
    assert "# BEGIN SOLUTION" not in text and "# HIDDEN" not in text and "ASSIGNMENT CONFIG" not in text
    assert "..." in text
    assert _source(student["cells"][0]).startswith("# Colab only")
    assert student["metadata"]["otter"]["assignment_name"] == name
    tests = grade.load_autograder(ag)
    public = {}
    for path in (dist / name / "student" / "tests").glob("q*.py"):
        ns = {}
        exec(path.read_text(), ns)
        public[ns["test"]["name"]] = [c["code"] for c in ns["test"]["suites"][0]["cases"]]
        assert not any(c["hidden"] for c in ns["test"]["suites"][0]["cases"])
    assert set(public) == set(tests)
    for q, t in tests.items():
        assert public[q] == [c for c, h in zip(t["cases"], t["hidden"]) if not h]
        public_lines = {line for c in public[q] for line in c.splitlines()}
        for code in (c for c, h in zip(t["cases"], t["hidden"]) if h):  # no hidden test reaches students
            for line in code.splitlines():
                if "assert" in line and line not in public_lines:
                    assert line[4:] not in text and repr(line[4:])[1:-1] not in text, line
    assert text.count(build.INIT_MARKER) == 1 and "_json.loads(" in text
    # the committed copy that the book's Colab links open is this build
    committed = build.STUDENT_DIR / f"{name}.ipynb"
    assert committed.is_file() and json.loads(committed.read_text()) == student, (
        f"{committed} is out of date: run `python exercises/build.py --update-student`")
    with zipfile.ZipFile(ag) as zf:
        names = zf.namelist()
        env = yaml.safe_load(zf.read("environment.yml"))
        cfg = json.loads(zf.read("otter_config.json"))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    wheels = [n for n in names if n.startswith("files/wheel/") and n.endswith(".whl")]
    assert len(wheels) == 1
    assert f"{build.AUTOGRADER_SOURCE}/{wheels[0]}" in pip, pip  # the course package, from the zip
    assert build.TORCH_INDEX in pip and any(p.startswith("torch==") for p in pip), pip  # CPU torch
    assert cfg["show_stdout"] is False


_ENVS: dict = {}


@pytest.fixture
def solution_env(dist, name):
    """The namespace of the solution notebook ``name``, executed once (lazily), in this process."""
    if name not in _ENVS:
        nb = json.loads((dist / name / "autograder" / f"{name}.ipynb").read_text())
        env = {"__name__": "__main__"}
        here = os.getcwd()
        os.chdir(dist / name / "autograder")  # where otter.Notebook(...) finds the notebook
        try:
            for c in nb["cells"]:
                if c["cell_type"] == "code" and not sandbox._is_check_cell(_source(c)):
                    exec(compile(sandbox.strip_magics(_source(c)), f"<{name}>", "exec"), env)
        finally:
            os.chdir(here)
        _ENVS[name] = env
    return _ENVS[name]


def _shortcut_scores(dist, env, name, sources, questions=None) -> dict:
    """Points per question after replacing definitions by ``sources`` in a copy of ``env``."""
    tests = grade.load_autograder(build.autograder_zip(dist, name))
    if questions is not None:
        tests = {q: tests[q] for q in questions}
    env = dict(env)
    for src in sources:
        exec(compile(src, "<wrong solution>", "exec"), env)
    return grade.score(tests, sandbox.run_tests({q: t["cases"] for q, t in tests.items()}, env))


@pytest.mark.slow
@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_shortcut_gives_the_solution_full_marks(dist, solution_env, name):
    tests = grade.load_autograder(build.autograder_zip(dist, name))
    scores = _shortcut_scores(dist, solution_env, name, [])
    assert scores == {q: t["possible"] for q, t in tests.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name,wrong", WRONG, ids=[f"{n}-{w['question']}-{w['name']}" for n, w in WRONG])
def test_wrong_solution_loses_points(dist, solution_env, name, wrong):
    q = wrong["question"]
    full = _questions(json.loads((EXERCISES / name / f"{name}.ipynb").read_text()))[q]["points"]
    got = _shortcut_scores(dist, solution_env, name, [wrong["source"]], [q])[q]
    assert got < full, f"{wrong['description']}: still {got} / {full}"


def _mixed_notebook(dist, name):
    """The solution notebook with the first wrong solution of every question put in."""
    nb = json.loads((dist / name / "autograder" / f"{name}.ipynb").read_text())
    chosen = {}
    for w in _wrong_solutions(name):
        chosen.setdefault(w["question"], w)
    for w in chosen.values():
        hits = [c for c in nb["cells"] if c["cell_type"] == "code" and w["marker"] in _source(c)]
        assert len(hits) == 1, f"marker {w['marker']!r} found in {len(hits)} cells"
        hits[0]["source"] = w["source"].strip("\n")
    return nb, list(chosen.values())


@pytest.mark.slow
@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_grade_end_to_end_agrees_with_otter_and_the_shortcut(dist, solution_env, name, tmp_path):
    import contextlib
    import io

    import otter.api

    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "solution.ipynb").write_bytes((dist / name / "autograder" / f"{name}.ipynb").read_bytes())
    (subs / "student.ipynb").write_bytes((dist / name / "student" / f"{name}.ipynb").read_bytes())
    nb, chosen = _mixed_notebook(dist, name)
    (subs / "mixed.ipynb").write_text(json.dumps(nb))
    rows = {r["file"]: r for r in grade.grade_folder(subs, name, tmp_path / "scores.csv", build_dir=dist,
                                                      quiet=True)}
    sol, stu, mixed = rows["solution.ipynb"], rows["student.ipynb"], rows["mixed.ipynb"]
    for r in rows.values():
        assert r["error"] == "", r
    assert sol["possible"] > 0 and sol["total"] == sol["possible"] and sol["flags"] == "", sol
    assert stu["total"] == 0 and stu["flags"] == "", stu
    with contextlib.redirect_stdout(io.StringIO()):
        res = otter.api.grade_submission(str(subs / "mixed.ipynb"), str(build.autograder_zip(dist, name)),
                                         quiet=True)
    by_otter = {q: float(res.get_score(q)) for q in res.to_dict()}
    shortcut = _shortcut_scores(dist, solution_env, name, [w["source"] for w in chosen])
    by_grade = {q: float(mixed[q]) for q in by_otter}
    assert by_grade == by_otter == shortcut, (by_grade, by_otter, shortcut)
    assert all(by_otter[w["question"]] < _questions(json.loads(
        (EXERCISES / name / f"{name}.ipynb").read_text()))[w["question"]]["points"] for w in chosen)
