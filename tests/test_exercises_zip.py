"""The assignments outside this repository: the autograder zip in a clean environment, and
the students' checks on Colab.

- ``test_zip_grades_full_marks_in_a_clean_environment``: builds one fresh virtual
  environment, without this repository on the path, from the zip's own ``environment.yml``
  the way Gradescope's ``setup.sh`` does (its ``/autograder/source`` paths pointing at the
  unpacked zip), then grades the solution notebook with ``otter run`` (what Gradescope's
  ``run_autograder`` calls) and expects full marks.  The installer is ``uv`` when it is
  there (requirements.txt has it): a fresh environment each time, every package installed
  into it, from uv's download cache after the first run (about 15 s of CPU instead of 90 s
  for ``pip install``); without uv, ``pip install --no-compile``.  uv gets pip's package
  sources (``pip config list``: ``find-links``, index URLs, constraints), since it reads
  no pip configuration.  One difference from Gradescope: the ``--extra-index-url`` of
  PyTorch's CPU wheels is left out, since that host is not reachable here; the installer
  takes the same CPU wheel (``torch==<version>``) from pip's ``find-links`` folder or its
  cache.
- ``test_public_checks_work_on_colab``: runs the student notebook's otter cell the way Colab
  does (otter's Colab detection on, no ``tests`` folder, no notebook file on disk) and
  checks that ``grader.check`` runs the public tests, where otter alone refuses.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from helpers import built_assignments, exercise_tools

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = ROOT / "exercises"
(build,) = exercise_tools("build")

NAME = "ch1_linear_regions"


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    return built_assignments(tmp_path_factory, [NAME])


def _source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _uv():
    """The ``uv`` installer (the ``uv`` package or one on ``PATH``), or None."""
    try:
        import uv

        return uv.find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


_UV_FLAGS = {"find-links": "--find-links", "index-url": "--index-url", "extra-index-url": "--extra-index-url",
             "constraint": "--constraint"}


def _pip_sources_for_uv(env) -> list[str]:
    """pip's package sources and constraints (its config files and ``PIP_*`` variables, as
    ``pip config list`` shows them) as uv flags: uv reads no pip configuration, and pip
    on this machine takes torch from a local ``find-links`` folder.  Nothing when unset."""
    proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"], env=env, capture_output=True,
                          text=True)
    flags: list[str] = []
    for line in proc.stdout.splitlines():
        m = re.fullmatch(r"(global|install|:env:)\.([\w-]+)='(.*)'", line.strip())
        if m and m.group(2) in _UV_FLAGS:
            for value in m.group(3).split():
                if value not in flags:
                    flags += [_UV_FLAGS[m.group(2)], value]
    return flags


@pytest.mark.slow
def test_zip_grades_full_marks_in_a_clean_environment(dist, tmp_path):
    import yaml

    src = tmp_path / "source"  # plays /autograder/source
    with zipfile.ZipFile(build.autograder_zip(dist, NAME)) as zf:
        zf.extractall(src)
    env_yml = yaml.safe_load((src / "environment.yml").read_text())
    pip = next(d["pip"] for d in env_yml["dependencies"] if isinstance(d, dict))
    reqs = [p.replace(build.AUTOGRADER_SOURCE, str(src)) for p in pip if not p.startswith("--extra-index-url")]
    venv = tmp_path / "venv"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "LCTOOLS"))}
    clean["PATH"] = os.pathsep.join(p for p in clean.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    base = getattr(sys, "_base_executable", sys.executable)
    py = venv / "bin" / "python"
    uv = _uv()
    if uv:  # a venv without pip (otter run does not need it), filled by uv with pip's sources
        subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, env=clean)
        cmd = [uv, "pip", "install", "-q", "--python", str(py), *_pip_sources_for_uv(clean), *reqs]
    else:
        subprocess.run([base, "-m", "venv", str(venv)], check=True, env=clean)
        cmd = [str(py), "-m", "pip", "install", "-q", "--no-compile", *reqs]
    proc = subprocess.run(cmd, env=clean, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    work = tmp_path / "submission"
    work.mkdir()
    (work / f"{NAME}.ipynb").write_bytes((dist / NAME / "autograder" / f"{NAME}.ipynb").read_bytes())
    clean["HOME"] = str(tmp_path)
    proc = subprocess.run([str(py), "-m", "otter", "run", "-a", str(build.autograder_zip(dist, NAME)),
                           "-o", str(work), f"{NAME}.ipynb"], cwd=work, env=clean, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the course package came from the zip's wheel, not from this repository
    # (where `import lctools` loads it from, without importing torch a second time)
    where = subprocess.run([str(py), "-c", "import importlib.util as u; print(u.find_spec('lctools').origin)"],
                           cwd=tmp_path, env=clean, capture_output=True, text=True).stdout
    assert str(venv) in where and str(ROOT) not in where, where
    results = json.loads((work / "results.json").read_text())
    scored = {t["name"]: (t["score"], t["max_score"]) for t in results["tests"] if t.get("max_score")}
    assert scored and all(s == m for s, m in scored.values()), scored
    assert sum(m for _, m in scored.values()) == 9


COLAB = textwrap.dedent('''
    import json, sys, types
    sys.modules["google.colab"] = types.ModuleType("google.colab")
    from otter.check.utils import IPythonInterpreter
    IPythonInterpreter.COLAB.value.check_strs.append("None")  # str(get_ipython()) outside IPython
    assert IPythonInterpreter.COLAB.value.running()
    cell = json.load(open(sys.argv[1]))
    exec(cell["init"])              # the student's otter cell, as on Colab
    exec(cell["answer"])            # a correct answer to q2
    result = grader.check("q2")
    print("RESULT", result.grade)
    q1 = grader.check("q1")         # unanswered: fails, but runs
    print("Q1", q1.grade)
''')


@pytest.mark.slow
def test_public_checks_work_on_colab(dist, tmp_path):
    student = json.loads((dist / NAME / "student" / f"{NAME}.ipynb").read_text())
    init = next(_source(c) for c in student["cells"] if build.INIT_MARKER in _source(c))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"init": init, "answer": "import math\nimport numpy as np\nimport torch\ndef arrangement_bound(n0, n):\n"
                                "    return sum(math.comb(n, j) for j in range(n0 + 1))\n"}))
    colab = tmp_path / "content"  # Colab's working folder: no notebook file, no tests
    colab.mkdir()
    (tmp_path / "colab.py").write_text(COLAB)
    proc = subprocess.run([sys.executable, str(tmp_path / "colab.py"), str(spec)], cwd=colab,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RESULT 1.0" in proc.stdout and "Q1 0.0" in proc.stdout, proc.stdout
    assert sorted(p.name for p in (colab / "tests").iterdir()) == ["q1.py", "q2.py", "q3.py", "q4.py"]
    # the control: otter's own cell, without the shipped tests, refuses on Colab
    plain = "\n".join(line for line in init.splitlines() if "_json" not in line and not line.startswith("    "))
    spec.write_text(json.dumps({"init": plain, "answer": "pass"}))
    (colab / "tests").rename(tmp_path / "moved")
    proc = subprocess.run([sys.executable, str(tmp_path / "colab.py"), str(spec)], cwd=colab,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "Tests directory ./tests does not exist" in proc.stderr, proc.stderr[-2000:]
