"""Cheating, hanging and crashing submissions against ``exercises/grade.py`` (chapter 1).

Each cheating notebook is the *student* notebook (every answer left as ``...``, so an
honest grade is 0) with cheating cells added; a cheat that worked would earn points.  The
outcome that counts for each pattern: it is flagged in the CSV, and it scores nothing
for what it cheated on.  Several patterns share a notebook (one cell each) to keep the
cost at a few child processes; the flags name each pattern separately.

Patterns (the ones in the issue, and invented ones of the same classes):

- patched comparisons: ``builtins.abs``, ``torch.allclose``/``torch.equal`` (module
  attributes), ``torch.Tensor.__eq__`` (class attribute), ``sys.modules['numpy']``;
- patched grader internals: otter's ``run_doctest``, ``doctest.DocTestRunner.run``;
- fake answers: a ``str`` subclass equal to everything, a name ``torch`` re-bound to a fake
  module whose ``equal``/``allclose`` always agree;
- reading tests and solutions: ``tests/q4.py`` next to the notebook, the autograder zip and
  the solution notebook by absolute path, listing the submissions folder;
- writing outside: rewriting the CSV, deleting another student's submission, a file in /tmp;
- processes and escapes: ``os.kill(os.getppid(), SIGKILL)``, ``subprocess``, a socket,
  ``ctypes``, ``gc.get_objects``, ``sys.settrace``, forged result messages on every file
  descriptor, a thread that keeps re-patching ``torch.allclose`` while the tests run;
- a forbidden library call in the answer (ch1 q2 calls ``regions.arrangement_bound``);
- robustness: an endless ``sleep`` (timeout row), ``os._exit`` and a segfault (crash rows),
  while the rest of the class is graded; ``--out`` and the zip checked before grading;
  every file gets a row.  One honest solution (``VICTIM``: in a subfolder, upper-case
  extension, graded last) is the cheaters' target and must still score full marks.

The children are forked from one server process that imported torch, otter and matplotlib,
so a child costs about a second; the class still keeps to one notebook per kind of outcome.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from helpers import built_assignments, exercise_tools

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = ROOT / "exercises"
build, grade = exercise_tools("build", "grade")

NAME = "ch1_linear_regions"
#: the honest solution, in a subfolder and with an upper-case extension, graded after every
#: cheater (``writes.ipynb`` tries to delete it, ``crash``/``segfault`` end their processes)
VICTIM = "zz_late/VICTIM.IPYNB"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    return built_assignments(tmp_path_factory, [NAME])


def _cell(source: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}


def _with_cells(dist, cells, base="student", first=False) -> dict:
    """The student (or solution) notebook with code ``cells`` added at the end, or with
    ``first=True`` before everything else."""
    folder = "student" if base == "student" else "autograder"
    nb = json.loads((dist / NAME / folder / f"{NAME}.ipynb").read_text())
    added = [_cell(c) for c in cells]
    nb["cells"] = added + nb["cells"] if first else nb["cells"] + added
    return nb


PATCHES = [
    "import builtins, torch\nbuiltins.abs = lambda x: 0\ntorch.allclose = lambda *a, **k: True\n"
    "torch.equal = lambda *a, **k: True",
    "import torch\ntorch.Tensor.__eq__ = lambda self, other: torch.tensor(True)",
    "import sys, types\nsys.modules['numpy'] = types.ModuleType('numpy')",
    "import otter.test_files.ok_test as _ok\n_ok.run_doctest = lambda *a, **k: (True, '')",
    "import doctest\ndoctest.DocTestRunner.run = lambda self, *a, **k: doctest.TestResults(0, 0)",
]
FAKES = [
    "class _S(str):\n    def __eq__(self, other): return True\n    __hash__ = str.__hash__\nq4_answer = _S('a')",
    "import torch as _real\nclass _FakeTorch:\n    def __getattr__(self, n): return getattr(_real, n)\n"
    "    equal = staticmethod(lambda *a, **k: True)\n    allclose = staticmethod(lambda *a, **k: True)\n"
    "torch = _FakeTorch()",
    "def activation_pattern(weights, biases, x):\n    import torch as _t\n"
    "    return _t.zeros(len(x), sum(len(b) for b in biases), dtype=_t.bool)",
]


def _reads(zip_path, solution, subs):
    return [
        "q4_answer = open('tests/q4.py').read().split('q4_answer == ')[-1][1]",
        "q4_answer = open('../tests/q4.py').read()",
        f"import zipfile\nq4_src = zipfile.ZipFile({str(zip_path)!r}).read('tests/q4.py')",
        f"import json\n_nb = json.load(open({str(solution)!r}))\n"
        "exec(''.join(c['source'] if isinstance(c['source'], str) else ''.join(c['source']) "
        "for c in _nb['cells'] if 'def arrangement_bound' in ''.join(c['source'])))",
        f"import os\n_others = os.listdir({str(subs)!r})",
    ]


def _writes(out_csv, victim):
    return [
        f"open({str(out_csv)!r}, 'a').write('cheater.ipynb,3,2,3,1,9,9,100,,,\\n')",
        f"import os\nos.remove({str(victim)!r})",
        "open('/tmp/lc_grade_tamper_test.txt', 'w').write('x')",
    ]


ESCAPES = [
    "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
    "import subprocess\nsubprocess.run(['true'])",
    "import socket\nsocket.create_connection(('127.0.0.1', 9))",
    "import ctypes\nctypes.string_at(id(0), 8)",
    "import gc\n_objs = gc.get_objects()",
    "import sys\nsys.settrace(lambda *a: None)",
    "import os\nfor _fd in range(3, 64):\n    try:\n"
    "        os.write(_fd, b'{\"nonce\": \"x\", \"passed\": {\"q1\": [true, true, true]}}\\n')\n"
    "    except OSError:\n        pass",
    "import threading, time, torch\ndef _keep():\n    while True:\n"
    "        torch.allclose = lambda *a, **k: True\n        time.sleep(0.001)\n"
    "threading.Thread(target=_keep, daemon=True).start()",
]


#: a notebook that changes the state of its own process, graded just before PROBE
LEAK = [
    "import os, lctools, torch\nlctools._leaked = True\nos.environ['LEAKED'] = '1'\n"
    "torch.set_default_dtype(torch.float64)\nopen(os.path.expanduser('~/leaked'), 'w').write('x')",
]
#: checks of what a notebook's own process looks like, put before the solution's cells (a
#: failed check is a note in the CSV)
PROBE = [
    "import os\nassert os.getsid(0) == os.getpid() == os.getpgid(0), 'own session and process group'",
    "import os, tempfile\nassert os.environ['HOME'] == os.path.join(os.getcwd(), '.home'), 'HOME'\n"
    "assert tempfile.gettempdir() == os.path.join(os.getcwd(), '.tmp'), 'TMPDIR'\n"
    "assert sorted(os.listdir('.')) == ['.home', '.tmp', 'ch1_linear_regions.ipynb'], 'an empty folder'",
    "import sys\nassert sys.stdin.read() == '', 'an empty stdin'",
    "import os\nassert os.environ['LCTOOLS_CACHE'] == 'off' and not any(\n"
    "    k.startswith(('OTTER', 'GRADESCOPE')) for k in os.environ), 'environment'",
    "import os, lctools, torch\nassert not hasattr(lctools, '_leaked') and 'LEAKED' not in os.environ, 'leak'\n"
    "assert torch.get_default_dtype() == torch.float32, 'leaked dtype'\n"
    "assert not os.path.exists(os.path.expanduser('~/leaked')), 'leaked file'",
]


@pytest.fixture(scope="module")
def graded(dist, tmp_path_factory):
    """One class: cheaters, a crash, a segfault, an honest solution, odd files."""
    tmp = tmp_path_factory.mktemp("class")
    subs = tmp / "subs"
    (subs / "zz_late").mkdir(parents=True)
    out = tmp / "scores.csv"
    zip_path = build.autograder_zip(dist, NAME)
    solution = EXERCISES / NAME / f"{NAME}.ipynb"
    victim = subs / VICTIM  # graded after the cheaters, with an odd extension
    nbs = {
        "patches.ipynb": _with_cells(dist, PATCHES),
        "fakes.ipynb": _with_cells(dist, FAKES),
        "reads.ipynb": _with_cells(dist, _reads(zip_path, solution, subs)),
        "writes.ipynb": _with_cells(dist, _writes(out, victim)),
        "escapes.ipynb": _with_cells(dist, ESCAPES),
        "forbidden.ipynb": _with_cells(dist, ["def arrangement_bound(n0, n):\n"
                                             "    return regions.arrangement_bound(n0, n)"], base="solution"),
        "crash.ipynb": _with_cells(dist, ["import os\nos._exit(3)"]),
        "segfault.ipynb": _with_cells(dist, ["import faulthandler\nfaulthandler._sigsegv()"]),
        "leak.ipynb": _with_cells(dist, LEAK),
        "probe.ipynb": _with_cells(dist, PROBE, base="solution", first=True),
        VICTIM: json.loads((dist / NAME / "autograder" / f"{NAME}.ipynb").read_text()),
    }
    for fn, nb in nbs.items():
        (subs / fn).write_text(json.dumps(nb))
    (subs / "essay.pdf").write_bytes(b"%PDF-1.4")
    (subs / "broken.ipynb").write_text("{not json")
    rows = grade.grade_folder(subs, NAME, out, build_dir=dist, quiet=True, timeout=240)
    return {r["file"]: r for r in rows}, out, subs


def _flags(row):
    return row["flags"]


def test_every_file_gets_a_row(graded):
    rows, out, subs = graded
    assert set(rows) == {"patches.ipynb", "fakes.ipynb", "reads.ipynb", "writes.ipynb", "escapes.ipynb",
                         "forbidden.ipynb", "crash.ipynb", "segfault.ipynb", "leak.ipynb", "probe.ipynb",
                         VICTIM, "essay.pdf", "broken.ipynb"}
    assert rows["essay.pdf"]["error"].startswith("not graded: not a notebook")
    assert rows["broken.ipynb"]["error"].startswith("not a readable notebook")
    assert rows[VICTIM]["total"] == 9 and "extension .IPYNB" in rows[VICTIM]["notes"]
    with out.open() as f:  # the CSV on disk is the grader's, whatever the cheaters wrote
        on_disk = {r["file"]: r for r in csv.DictReader(f)}
    assert set(on_disk) == set(rows) and "cheater.ipynb" not in on_disk


def test_patched_comparisons_and_grader_internals(graded):
    row = graded[0]["patches.ipynb"]
    assert row["total"] == 0, row
    for what in ("builtins.abs", "torch.allclose", "torch.equal", "Tensor.__eq__", "sys.modules['numpy']",
                 "ok_test.run_doctest", "DocTestRunner.run"):
        assert what in _flags(row), (what, row["flags"])


def test_fake_answers_and_rebound_names(graded):
    row = graded[0]["fakes.ipynb"]
    assert row["total"] == 0, row
    assert "comparison-override: the code defines or names __eq__" in row["flags"]
    assert "rebinds: torch is not torch" in row["flags"]


def test_reading_tests_and_solutions(graded):
    row = graded[0]["reads.ipynb"]
    assert row["total"] == 0, row
    assert "file-read: ../tests/q4.py" in row["flags"]
    assert "autograder.zip" in row["flags"] and f"{NAME}.ipynb" in row["flags"] and "lists " in row["flags"]


def test_writing_outside_is_blocked(graded):
    rows, out, subs = graded
    row = rows["writes.ipynb"]
    assert row["total"] == 0
    assert row["flags"].count("file-write") >= 3, row["flags"]
    assert (subs / VICTIM).exists() and rows[VICTIM]["total"] == 9
    assert not Path("/tmp/lc_grade_tamper_test.txt").exists()


def test_processes_network_native_code_and_forged_results(graded):
    row = graded[0]["escapes.ipynb"]  # the grader survived os.kill(getppid(), SIGKILL)
    assert row["total"] == 0 and row["error"] == "", row
    for kind in ("process: os.kill", "process: subprocess.Popen", "network: socket.", "native-code",
                 "introspection: gc.get_objects", "introspection: sys.settrace",
                 "result-channel: forged result message", "thread(s) left running"):
        assert kind in row["flags"], (kind, row["flags"])


def test_forbidden_call_scores_the_question_zero(graded):
    row = graded[0]["forbidden.ipynb"]
    assert "forbidden-call: lctools.regions.arrangement_bound" in row["flags"]
    assert float(row["q2"]) == 0 and row["total"] == 7, row


def test_crashes_are_named_and_the_class_is_graded(graded):
    rows = graded[0]
    assert rows["crash.ipynb"]["error"].startswith("crash") and "exit code 3" in rows["crash.ipynb"]["error"]
    assert "SIGSEGV" in rows["segfault.ipynb"]["error"]
    assert rows[VICTIM]["total"] == 9


def test_each_notebook_has_its_own_clean_process(graded):
    """The children are forked from one server: each still gets its own session, folder,
    environment and empty stdin, and nothing the notebook before it changed in its own
    process (``leak.ipynb``) reaches the next one."""
    rows = graded[0]
    assert rows["leak.ipynb"]["error"] == "" and "cell" not in rows["leak.ipynb"]["notes"], rows["leak.ipynb"]
    row = rows["probe.ipynb"]
    assert row["total"] == 9 and row["flags"] == "" and row["notes"] == "", row


def test_a_killed_grading_server_is_started_again(graded, dist, tmp_path):
    import os
    import signal

    server = grade.SERVER.proc
    assert server is not None and server.poll() is None  # the class above started it
    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "solution.ipynb").write_text(json.dumps(_with_cells(dist, [], base="solution")))
    rows = grade.grade_folder(subs, NAME, tmp_path / "s.csv", build_dir=dist, quiet=True)
    assert rows[0]["total"] == 9 and rows[0]["error"] == "", rows[0]
    assert grade.SERVER.proc is not server and grade.SERVER.proc.poll() is None


def test_without_the_fork_server_each_notebook_is_a_fresh_interpreter(dist, tmp_path, monkeypatch):
    """Where the grader does not fork (macOS), each notebook runs in a fresh interpreter
    with the same isolation (the probe passes), and a crash is still named."""
    monkeypatch.setattr(grade, "USE_FORK_SERVER", False)
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "crash.ipynb").write_text(json.dumps(_with_cells(dist, ["import os\nos._exit(3)"])))
    (subs / "probe.ipynb").write_text(json.dumps(_with_cells(dist, PROBE, base="solution", first=True)))
    rows = {r["file"]: r for r in grade.grade_folder(subs, NAME, tmp_path / "s.csv", build_dir=dist, quiet=True)}
    assert "exit code 3" in rows["crash.ipynb"]["error"], rows["crash.ipynb"]
    probe = rows["probe.ipynb"]
    assert probe["total"] == 9 and probe["flags"] == "" and probe["notes"] == "", probe


def test_timeout_kills_a_hanging_notebook(dist, tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "hang.ipynb").write_text(json.dumps(_with_cells(dist, ["import time\ntime.sleep(10**6)"])))
    rows = grade.grade_folder(subs, NAME, tmp_path / "s.csv", build_dir=dist, quiet=True, timeout=5)
    assert rows[0]["error"].startswith("timeout") and rows[0]["total"] == 0


def test_out_and_zip_are_checked_before_grading(dist, tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "a.ipynb").write_text("{}")
    with pytest.raises(SystemExit, match="does not exist"):
        grade.grade_folder(subs, NAME, tmp_path / "nowhere" / "s.csv", build_dir=dist, quiet=True)
    with pytest.raises(SystemExit, match="is a folder"):
        grade.grade_folder(subs, NAME, subs, build_dir=dist, quiet=True)
    bad = tmp_path / "bad.zip"
    bad.write_text("not a zip")
    with pytest.raises(SystemExit, match="not a zip"):
        grade.grade_folder(subs, NAME, tmp_path / "s.csv", ag_zip=bad, quiet=True)
    assert not (tmp_path / "s.csv").exists()
