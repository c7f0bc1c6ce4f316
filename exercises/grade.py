"""Grade a folder of submitted notebooks locally into a CSV of scores, one isolated process each.

    python exercises/grade.py SUBMISSIONS_DIR --assignment ch1_linear_regions [--out scores.csv]
                              [--autograder PATH.zip] [--build-dir exercises/dist] [--timeout 300]

Every file under SUBMISSIONS_DIR (recursively) gets a row: notebooks (``.ipynb``, any case)
are graded, other files get a row that says why they were not.  The autograder zip
(default ``<build-dir>/<assignment>/autograder/<assignment>-autograder.zip`` from
``exercises/build.py``) and ``--out`` are checked before anything is graded.

Each notebook is run by ``exercises/sandbox.py`` in a child process: its own process group
and session (Ctrl-C reaches only the grader; a timeout kills the whole group), its own
empty temporary working directory (no solutions, no other submissions, no test files),
``HOME``/``TMPDIR`` inside it and the lctools results cache off.  The children are forked
from one server process that imported torch, otter and matplotlib once (see
``sandbox.serve``), so a notebook costs its own run time, not a fresh interpreter's
imports.  The hidden tests reach the child only after the student's code has run, and
are then run against pristine builtins and library functions.  Tamper evidence (see
``sandbox.py``) goes to the ``flags`` column; a call of a function the question forbids,
made from the answer while the tests run, scores that question 0.

The CSV has one row per file: ``file``, one column per autograded question, ``total``,
``possible``, ``percent``, ``flags``, ``error``, ``notes``.  It is rewritten after every
notebook, so Ctrl-C or a crash keeps every row graded so far.  Free-response (manual)
questions are not in the CSV: grade them by reading the notebooks.

This is *evidence*, not a security boundary: the student's code runs with your user's
rights.  Grade in a container or on Gradescope for anything that counts (see the
instructor guide).
"""
from __future__ import annotations

import argparse
import ast
import atexit
import csv
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from build import DEFAULT_OUT, autograder_zip  # noqa: E402

SANDBOX = HERE / "sandbox.py"
DEFAULT_TIMEOUT = 300.0


class GradingError(Exception):
    """A submission that could not be graded (the message goes to the ``error`` column)."""


# ---------------------------------------------------------------------------------------
# the autograder: tests and points, read by the (trusted) parent from the zip
# ---------------------------------------------------------------------------------------
def load_autograder(ag_zip) -> dict:
    """``{question: {"cases", "hidden", "points", "all_or_nothing", "possible"}}`` from a zip.

    Points per test case follow otter's rules (``OKTestFile.from_spec``).  Raises
    ``SystemExit`` if the zip is missing, unreadable, has no tests or 0 possible points.
    """
    from otter.test_files.ok_test import OKTestFile

    ag_zip = Path(ag_zip)
    if not ag_zip.is_file():
        raise SystemExit(f"autograder zip {ag_zip} not found: run `python exercises/build.py` first")
    if not zipfile.is_zipfile(ag_zip):
        raise SystemExit(f"{ag_zip} is not a zip file")
    tests = {}
    with zipfile.ZipFile(ag_zip) as zf:
        names = [n for n in zf.namelist() if n.startswith("tests/") and n.endswith(".py")]
        for n in names:
            ns: dict = {}
            exec(compile(zf.read(n).decode("utf-8"), n, "exec"), ns)
            tf = OKTestFile.from_spec(ns["test"], path=n)
            tests[tf.name] = dict(
                cases=[tc.body for tc in tf.test_cases], hidden=[tc.hidden for tc in tf.test_cases],
                points=[float(tc.points) for tc in tf.test_cases], all_or_nothing=bool(tf.all_or_nothing),
                possible=float(sum(tc.points for tc in tf.test_cases)))
    if not tests:
        raise SystemExit(f"{ag_zip} holds no tests/*.py: not an otter autograder zip")
    if sum(t["possible"] for t in tests.values()) <= 0:
        raise SystemExit(f"{ag_zip}: the tests are worth 0 points in total")
    return dict(sorted(tests.items(), key=lambda kv: (len(kv[0]), kv[0])))


def score(tests: dict, passed: dict, zeroed=()) -> dict:
    """Points per question from the pass/fail list of each test case (otter's rules)."""
    out = {}
    for q, t in tests.items():
        ok = passed.get(q, [False] * len(t["cases"]))
        if q in zeroed:
            out[q] = 0.0
        elif t["all_or_nothing"]:
            out[q] = t["possible"] if all(ok) else 0.0
        else:
            out[q] = float(sum(p for p, good in zip(t["points"], ok) if good))
    return out


# ---------------------------------------------------------------------------------------
# what the grader knows about the assignment (from its solution notebook, when present)
# ---------------------------------------------------------------------------------------
def _source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def library_imports(nb: dict) -> list[list[str]]:
    """``[name, module, attr]`` of every import statement in the notebook's code cells."""
    out = []
    for c in nb.get("cells", []):
        if c.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse(_source(c))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        out.append([a.asname, a.name, ""])
                    else:
                        top = a.name.split(".")[0]
                        out.append([top, top, ""])
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    if a.name != "*":
                        out.append([a.asname or a.name, node.module, a.name])
    return out


def assignment_info(assignment: str) -> dict:
    """Imports of the solution notebook and the forbidden calls (``forbidden.json``) per question."""
    folder = HERE / assignment
    info = {"imports": [], "forbidden": {}}
    nb_path = folder / f"{assignment}.ipynb"
    if nb_path.is_file():
        info["imports"] = library_imports(json.loads(nb_path.read_text(encoding="utf-8")))
    fb = folder / "forbidden.json"
    if fb.is_file():
        info["forbidden"] = json.loads(fb.read_text(encoding="utf-8"))
    return info


# ---------------------------------------------------------------------------------------
# one submission, in a child process
# ---------------------------------------------------------------------------------------
def _read_notebook(path: Path, assignment: str):
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells = nb["cells"]
        sources = [_source(c) for c in cells if c.get("cell_type") == "code"]
    except Exception as e:  # noqa: BLE001
        raise GradingError(f"not a readable notebook ({type(e).__name__}: {str(e)[:100]})") from None
    notes = []
    name = (nb.get("metadata", {}).get("otter", {}) or {}).get("assignment_name")
    if name and name != assignment:
        notes.append(f"the notebook says it is assignment {name!r}")
    return sources, notes


def _child_env(workdir: Path) -> dict:
    env = dict(os.environ)
    for k in list(env):
        if k.startswith(("OTTER", "GRADESCOPE")):
            del env[k]
    home = workdir / ".home"
    home.mkdir()
    (workdir / ".tmp").mkdir()
    try:
        from lctools.data import _default_root  # the teacher's MNIST, read-only use
        env.setdefault("LCTOOLS_DATA", str(_default_root()))
    except Exception:  # noqa: BLE001
        pass
    env.update(HOME=str(home), TMPDIR=str(workdir / ".tmp"), MPLCONFIGDIR=str(home / ".mpl"),
               XDG_CACHE_HOME=str(home / ".cache"), LCTOOLS_CACHE="off", PYTHONDONTWRITEBYTECODE="1",
               MPLBACKEND="Agg", PYTHONUNBUFFERED="1", TORCHINDUCTOR_CACHE_DIR=str(home / ".inductor"),
               TRITON_CACHE_DIR=str(home / ".triton"))
    return env


class ForkServer:
    """The client side of ``sandbox.serve``: one server process, started on first use, that
    forks a sandboxed child per submission.

    The server runs in its own session and empty temporary folder, with the environment
    of a child (``_child_env``) and no file of the grader open.  It ends when the grader
    closes the socket (:meth:`close`, at exit, or when the grader dies).
    """

    def __init__(self):
        self.proc = None
        self.sock = None
        self.home = None
        self.exited: dict[int, int] = {}

    def _start(self) -> None:
        self.close()
        self.home = Path(tempfile.mkdtemp(prefix="lc-grade-server-"))
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with open(self.home / "server.log", "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(SANDBOX), "--serve", str(theirs.fileno())], cwd=self.home,
                env=_child_env(self.home), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=log, pass_fds=(theirs.fileno(),), start_new_session=True)
        theirs.close()
        self.sock = mine
        self.exited.clear()

    def _read(self, timeout: float) -> dict | None:
        if not select.select([self.sock], [], [], max(timeout, 0))[0]:
            return None
        data = self.sock.recv(1 << 16)
        if not data:
            raise GradingError("crash: the grading server ended" + self._log_tail())
        msg = json.loads(data)
        if "exited" in msg:
            self.exited[msg["exited"]] = msg["code"]
        return msg

    def _log_tail(self) -> str:
        try:
            tail = (self.home / "server.log").read_text(errors="replace").strip().splitlines()[-1:]
        except OSError:
            tail = []
        return f": {tail[0][:200]}" if tail else ""

    def spawn(self, cwd: Path, env: dict, fds: tuple[int, int, int], timeout: float = 120.0) -> int:
        """Fork a child in ``cwd`` with ``env`` and ``fds`` (job, result, error log); its pid."""
        for attempt in (0, 1):  # a server that died (killed, out of memory) is started again
            if self.proc is None or self.proc.poll() is not None:
                self._start()
            try:
                socket.send_fds(self.sock, [json.dumps({"cwd": str(cwd), "env": env}).encode()], list(fds))
                break
            except OSError:
                if attempt:
                    raise GradingError("crash: could not reach the grading server" + self._log_tail())
                self.close()
        deadline = time.monotonic() + timeout  # the first request waits for the server's imports
        while True:
            msg = self._read(deadline - time.monotonic())
            if msg is None:
                raise GradingError(f"crash: the grading server did not start a process in {timeout:g} s")
            if "started" in msg:
                return int(msg["started"])
            if "error" in msg:
                raise GradingError(f"crash: {msg['error']}")

    def wait(self, pid: int, timeout: float) -> int | None:
        """The exit code of child ``pid`` (negative: killed by that signal), or None after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while pid not in self.exited:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._read(left)
        return self.exited.pop(pid)

    def kill(self, pid: int) -> None:
        """SIGKILL child ``pid`` and its process group (by the server: ``sandbox._kill``)."""
        try:
            self.sock.send(json.dumps({"kill": pid}).encode())
        except (OSError, AttributeError):  # no server: only the group can still be reached
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def close(self) -> None:
        """End the server (it exits when its socket closes) and remove its folder."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None


SERVER = ForkServer()
atexit.register(SERVER.close)
#: fork the children from the server (Linux); elsewhere (macOS, where forking a process
#: that imported these libraries is not safe) each child is a fresh interpreter
USE_FORK_SERVER = sys.platform.startswith("linux")


class _Forked:
    """A child of the fork server."""

    def __init__(self, cwd: Path, env: dict, fds: tuple[int, int, int]):
        self.pid = SERVER.spawn(cwd, env, fds)

    def wait(self, timeout: float) -> int | None:
        return SERVER.wait(self.pid, timeout)

    def kill(self) -> None:
        SERVER.kill(self.pid)


class _Spawned:
    """A child that is a fresh interpreter (``python sandbox.py --child RESULT_FD``)."""

    def __init__(self, cwd: Path, env: dict, fds: tuple[int, int, int]):
        job, result, errlog = fds
        self.proc = subprocess.Popen([sys.executable, str(SANDBOX), "--child", str(result)], cwd=cwd, env=env,
                                     stdin=job, stdout=subprocess.DEVNULL, stderr=errlog, pass_fds=(result,),
                                     start_new_session=True)
        self.pid = self.proc.pid

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        # its process group (what it left running too), else itself (Popen does not signal
        # a pid it has reaped; a group's id is not reused while the group has members)
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            self.proc.kill()


def grade_notebook(nb_path, tests: dict, assignment: str, timeout: float = DEFAULT_TIMEOUT,
                   sensitive=(), info=None) -> dict:
    """Grade one notebook in an isolated child process.

    Returns ``{"scores": {q: points}, "total", "possible", "flags": [...], "error": str,
    "notes": [...]}``; ``error`` is set (and the scores are 0) for a timeout, a crash or
    an unreadable notebook.
    """
    nb_path = Path(nb_path)
    possible = sum(t["possible"] for t in tests.values())
    zero = {q: 0.0 for q in tests}
    info = info if info is not None else assignment_info(assignment)
    res = dict(scores=dict(zero), total=0.0, possible=possible, flags=[], error="", notes=[])
    try:
        sources, notes = _read_notebook(nb_path, assignment)
    except GradingError as e:
        res["error"] = str(e)
        return res
    res["notes"] = notes
    workdir = Path(tempfile.mkdtemp(prefix="lc-grade-"))
    shutil.copyfile(nb_path, workdir / f"{assignment}.ipynb")  # its own notebook, under the expected name
    r, w = os.pipe()  # results, from the child
    job_r, job_w = os.pipe()  # the job, to the child
    jobs = os.fdopen(job_w, "wb")
    errlog = tempfile.TemporaryFile()  # no name: the child inherits it, cannot find it by path
    child = rc = None
    try:
        try:
            start = _Forked if USE_FORK_SERVER else _Spawned
            child = start(workdir, _child_env(workdir), (job_r, w, errlog.fileno()))
        finally:  # the child holds its own copies: EOF on r means that it has ended
            os.close(job_r)
            os.close(w)
        job = dict(cells=sources, imports=info["imports"], forbidden=info["forbidden"],
                   sensitive=[str(p) for p in sensitive])
        jobs.write((json.dumps(job) + "\n").encode())
        jobs.flush()
        nonce = secrets.token_hex(16)
        deadline = time.monotonic() + timeout
        buf, final, sent = b"", None, False
        while final is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise GradingError(f"timeout: still running after {timeout:g} s (an endless loop?); killed")
            ready, _, _ = select.select([r], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(r, 1 << 16)
            if not chunk:
                rc = child.wait(max(1.0, deadline - time.monotonic()))
                how = ("it did not report how" if rc is None else
                       f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exit code {rc}")
                errlog.seek(max(0, errlog.seek(0, 2) - 300))
                tail = errlog.read().decode("utf-8", "replace").strip().splitlines()[-1:]
                raise GradingError(f"crash: the notebook's process ended before the tests finished ({how})"
                                   + (f": {tail[0][:200]}" if tail else ""))
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    msg = json.loads(line)
                except ValueError:
                    res["flags"].append("result-channel: unreadable message from the child")
                    continue
                if not isinstance(msg, dict):
                    continue
                if "flag" in msg:
                    if msg["flag"] not in res["flags"]:
                        res["flags"].append(str(msg["flag"])[:300])
                elif msg.get("event") == "ready" and not sent:
                    jobs.write((json.dumps({"nonce": nonce, "tests": {
                        q: t["cases"] for q, t in tests.items()}}) + "\n").encode())
                    jobs.flush()
                    sent = True
                elif "nonce" in msg:
                    if msg["nonce"] == nonce and sent:
                        final = msg
                    else:
                        res["flags"].append("result-channel: forged result message")
        for f in final.get("flags", []):
            if f not in res["flags"]:
                res["flags"].append(str(f)[:300])
        res["notes"] += [str(n) for n in final.get("notes", [])]
        zeroed = set(final.get("forbidden_during_tests", []))
        res["scores"] = score(tests, final.get("passed", {}), zeroed)
        if zeroed:
            res["notes"].append(f"{', '.join(sorted(zeroed))}: 0 for calling a forbidden function")
        res["total"] = float(sum(res["scores"].values()))
    except GradingError as e:
        res["error"] = str(e)
        res["scores"], res["total"] = dict(zero), 0.0
    except (BrokenPipeError, OSError) as e:
        res["error"] = f"crash: lost contact with the notebook's process ({type(e).__name__})"
        res["scores"], res["total"] = dict(zero), 0.0
    finally:
        os.close(r)
        try:
            jobs.close()
        except OSError:  # the child ended without reading everything
            pass
        errlog.close()
        if child is not None:
            child.kill()  # also whatever it left running
            if rc is None:
                try:
                    child.wait(10)
                except GradingError:
                    pass
        shutil.rmtree(workdir, ignore_errors=True)
    return res


# ---------------------------------------------------------------------------------------
# a folder of submissions
# ---------------------------------------------------------------------------------------
def collect(folder) -> list[tuple[Path, str]]:
    """Every file under ``folder``: ``(path, "")`` to grade or ``(path, reason)`` not to."""
    folder = Path(folder)
    out = []
    for p in sorted(folder.rglob("*")):
        if p.is_dir():
            continue
        rel = p.relative_to(folder)
        if ".ipynb_checkpoints" in rel.parts:
            out.append((p, "not graded: a Jupyter checkpoint copy"))
        elif p.is_symlink():
            out.append((p, "not graded: a symbolic link"))
        elif p.suffix == ".ipynb":
            out.append((p, ""))
        elif p.suffix.lower() == ".ipynb":
            out.append((p, ""))  # graded; the note says the extension is unusual
        else:
            out.append((p, f"not graded: not a notebook ({p.suffix or 'no extension'})"))
    return out


def _check_out(out: Path) -> None:
    if out.is_dir():
        raise SystemExit(f"--out {out} is a folder, not a file")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise SystemExit(f"--out {out}: folder {parent} does not exist")
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".grade-probe-")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise SystemExit(f"--out {out}: cannot write in {parent} ({e.strerror})") from None
    if out.exists() and not os.access(out, os.W_OK):
        raise SystemExit(f"--out {out} is not writable")


def _write_csv(out: Path, questions, rows) -> None:
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["file", *questions, "total", "possible", "percent", "flags",
                                          "error", "notes"])
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, out)  # atomic: the CSV is always complete


def _row(name, questions, r, possible) -> dict:
    total = r["total"]
    return {"file": name, **{q: r["scores"].get(q, 0.0) for q in questions}, "total": total,
            "possible": possible, "percent": round(100 * total / possible, 2),
            "flags": " | ".join(r.get("flags", [])), "error": r.get("error", ""),
            "notes": " | ".join(r.get("notes", []))}


def grade_folder(submissions, assignment: str, out, ag_zip=None, build_dir=DEFAULT_OUT,
                 timeout: float = DEFAULT_TIMEOUT, quiet: bool = False) -> list[dict]:
    """Grade every file under ``submissions`` (see the module docstring); return the rows."""
    submissions, out = Path(submissions), Path(out)
    ag_zip = Path(ag_zip) if ag_zip else autograder_zip(build_dir, assignment)
    tests = load_autograder(ag_zip)
    _check_out(out)
    if not submissions.is_dir():
        raise SystemExit(f"{submissions} is not a folder")
    files = collect(submissions)
    if not any(reason == "" for _, reason in files):
        raise SystemExit(f"no .ipynb files under {submissions}")
    info = assignment_info(assignment)
    questions = list(tests)
    possible = sum(t["possible"] for t in tests.values())
    sensitive = [submissions.resolve(), ag_zip.resolve().parent, out.resolve(), HERE, Path(build_dir).resolve()]
    rows: list[dict] = []
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    try:
        for path, reason in files:
            name = str(path.relative_to(submissions))
            if reason:
                r = dict(scores={}, total=0.0, flags=[], error=reason, notes=[])
            else:
                r = grade_notebook(path, tests, assignment, timeout, sensitive, info)
                if path.suffix != ".ipynb":
                    r["notes"].append(f"extension {path.suffix} (graded as .ipynb)")
            rows.append(_row(name, questions, r, possible))
            _write_csv(out, questions, rows)
            say(f"{name}: {r['total']:g} / {possible:g}" + (f"  ERROR {r['error']}" if r["error"] else "")
                + (f"  FLAGS {len(r['flags'])}" if r["flags"] else ""))
    except KeyboardInterrupt:
        done = {row["file"] for row in rows}
        for path, _ in files:
            name = str(path.relative_to(submissions))
            if name not in done:
                rows.append(_row(name, questions, dict(scores={}, total=0.0, error="not graded: interrupted"),
                                 possible))
        _write_csv(out, questions, rows)
        say(f"interrupted: {out} keeps the {len(done)} rows graded so far")
        raise SystemExit(130) from None
    say(f"wrote {out} ({len(rows)} rows)")
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("submissions", type=Path, help="folder of submitted .ipynb files (searched recursively)")
    ap.add_argument("--assignment", required=True, help="assignment name, e.g. ch1_linear_regions")
    ap.add_argument("--out", type=Path, default=Path("scores.csv"), help="CSV to write (default: scores.csv)")
    ap.add_argument("--autograder", type=Path, default=None, help="autograder zip (default: from the build folder)")
    ap.add_argument("--build-dir", type=Path, default=DEFAULT_OUT, help="build folder of exercises/build.py")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                    help=f"seconds per notebook before it is killed (default {DEFAULT_TIMEOUT:g})")
    args = ap.parse_args(argv)
    grade_folder(args.submissions, args.assignment, args.out, args.autograder, args.build_dir, args.timeout)


if __name__ == "__main__":
    main()
