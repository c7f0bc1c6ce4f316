"""Run one submitted notebook and then its tests, in this process, with tamper evidence.

``exercises/grade.py`` starts this file once, as a *fork server*:

    python sandbox.py --serve SOCKET_FD

The server imports the libraries the notebooks use (torch, otter, matplotlib: about 6 s
of CPU) once, runs no student code itself, and forks one child per submission.  The
grader sends each request over a Unix socket: the child's working directory and
environment, and three file descriptors (the job pipe, the result pipe, the error log).
The child gets its own session and process group, that empty working directory, that
environment, the job pipe as stdin, and runs :func:`main`.  The server reports
``{"started": pid}`` and, when the child ends, ``{"exited": pid, "code": c}`` (``c`` as
``subprocess`` gives it: negative for a signal).  The grader asks the server to kill a
child (``{"kill": pid}``): only the parent knows whether a pid is still its child.  The
server ends when the grader closes the socket.

On platforms other than Linux, where forking a process that imported these libraries is
not safe (macOS), grade.py starts a fresh ``python sandbox.py --child RESULT_FD`` per
submission instead, with the job on stdin.  Either way the tests reach the child only
after the student's code has finished.

Protocol between the grader and a child (one JSON object per line):

- stdin, first line: ``{"cells": [source, ...], "imports": [[name, module, attr], ...],
  "forbidden": {question: ["module.attr", ...]}, "sensitive": [path, ...]}``
- RESULT_FD: ``{"event": "ready"}`` once the student's cells have run;
- stdin, second line: ``{"nonce": str, "tests": {question: [code, ...]}}``
- RESULT_FD: ``{"nonce": ..., "passed": {question: [bool, ...]}, "flags": [...],
  "notes": [...]}``.

What happens here, in order:

1. The libraries the notebooks use are imported and *snapshotted*: every module's
   namespace and every class dictionary of ``builtins``, ``torch``, ``numpy``, ``math``,
   ``lctools``, ``otter`` and ``doctest``.
2. An audit hook (PEP 578, cannot be removed from Python code) blocks and records:
   writes, deletions and renames outside the working directory; reading or listing the
   grader's files (``sensitive`` paths, anything named like a test file or an autograder
   zip); starting processes, ``os.kill``; network connections; ``ctypes``; tracing and
   profiling hooks; ``gc`` object walks; setting attributes of library classes.
3. The forbidden functions of each question are wrapped: a call made directly from the
   student's code while that question's tests run is recorded and zeroes the question.
4. The student's code cells run one by one (errors are noted, as otter does).
5. Everything the snapshot holds is compared and *restored*: a patched ``abs``,
   ``torch.allclose`` or otter/doctest internals are put back and flagged.  Library
   names the tests use (``torch``, ``np``, ...) are re-bound to the real modules.
6. Only now are the tests received and run, each test case as a doctest would (every
   statement in ``single`` mode; an exception or any output fails it), with
   pristine builtins.

Flags are strings ``"<kind>: <detail>"``; kinds: ``patched``, ``rebinds``,
``comparison-override``, ``file-read``, ``file-write``, ``process``, ``network``,
``native-code``, ``introspection``, ``forbidden-call``, ``result-channel``.
"""
from __future__ import annotations

import ast
import builtins
import io
import json
import os
import select
import signal
import socket
import sys
import tempfile
import traceback
import types

sys.dont_write_bytecode = True

#: comparison and coercion hooks a fake answer object would override to pass ``==`` tests
COMPARISON_DUNDERS = {
    "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__bool__", "__len__",
    "__hash__", "__contains__", "__instancecheck__", "__subclasscheck__", "__subclasshook__",
    "__torch_function__", "__torch_dispatch__", "__array_function__", "__array_ufunc__",
    "__float__", "__int__", "__index__", "__abs__", "__round__",
}
SNAPSHOT_PACKAGES = ("builtins", "torch", "numpy", "math", "lctools", "otter", "doctest", "operator",
                     "functools", "sys", "io", "contextlib", "json")
STUDENT_FILE = "<student cell {}>"


def _top(modname: str) -> str:
    return modname.split(".", 1)[0]


class Snapshot:
    """Shallow copies of module namespaces and of library class dictionaries."""

    def __init__(self):
        self.modules = dict(sys.modules)
        self.dicts = {name: dict(vars(m)) for name, m in self.modules.items()
                      if isinstance(m, types.ModuleType) and _top(name) in SNAPSHOT_PACKAGES}
        self.classes = {}
        for name, d in self.dicts.items():
            for obj in d.values():
                if isinstance(obj, type) and _top(getattr(obj, "__module__", "") or "") in SNAPSHOT_PACKAGES:
                    self.classes[id(obj)] = (obj, dict(vars(obj)))
        self.std = (sys.stdout, sys.stderr, sys.displayhook, sys.excepthook)

    def restore(self) -> list[str]:
        """Put back every function/class the student's code replaced; return the flags.

        A library changes its own functions and classes lazily (torch wraps ``manual_seed``
        and ``Optimizer.step`` on first use): a change counts as tampering when the new
        value is the student's own code or comes from another package (``torch.equal =
        operator.is_not``); every change to ``builtins`` counts.
        """
        flags = []
        sys.stdout, sys.stderr, sys.displayhook, sys.excepthook = self.std
        for name, mod in self.modules.items():
            if sys.modules.get(name) is not mod:
                sys.modules[name] = mod
                if _top(name) in SNAPSHOT_PACKAGES:
                    flags.append(f"patched: sys.modules[{name!r}] replaced")
        for name, saved in self.dicts.items():
            live = vars(self.modules[name])
            for k, v in saved.items():
                cur = live.get(k, _MISSING)
                if cur is v or not (callable(v) or isinstance(v, type) or name == "builtins"):
                    continue
                if name == "sys" and k in ("stdout", "stderr", "displayhook", "excepthook"):
                    continue
                if name == "builtins" or cur is _MISSING or _foreign(cur, name):
                    flags.append(f"patched: {name}.{k}")
                    live[k] = v
        for obj, saved in self.classes.values():
            live = vars(obj)
            owner = obj.__module__
            for k, v in saved.items():
                cur = live.get(k, _MISSING)
                if cur is not v and (callable(v) or isinstance(v, (property, staticmethod, classmethod))) and (
                        cur is _MISSING or _foreign(cur, owner)):
                    try:
                        setattr(obj, k, v)
                        flags.append(f"patched: {owner}.{obj.__qualname__}.{k}")
                    except (TypeError, AttributeError):
                        pass
            for k in set(live) - set(saved):
                if _from_student(live[k]):
                    try:
                        delattr(obj, k)
                        flags.append(f"patched: {owner}.{obj.__qualname__}.{k} added")
                    except (TypeError, AttributeError):
                        pass
        return flags


def _from_student(obj, depth: int = 0) -> bool:
    """Is ``obj`` (a function, method, partial, or an instance/class) the student's code?"""
    if depth > 3 or obj is None:
        return False
    for fn in (obj, getattr(obj, "__func__", None), getattr(obj, "fget", None)):
        code = getattr(fn, "__code__", None)
        if code is not None and code.co_filename.startswith("<student cell"):
            return True
    if hasattr(obj, "func"):  # functools.partial
        return _from_student(obj.func, depth + 1)
    cls = obj if isinstance(obj, type) else type(obj)
    return any(_from_student(m, depth + 1) for m in vars(cls).values()
               if isinstance(m, types.FunctionType)) if cls.__module__ == "__main__" else False


def _foreign(new, owner: str) -> bool:
    """A replacement that is the student's code or comes from another package than ``owner``."""
    if _from_student(new):
        return True
    if isinstance(new, (staticmethod, classmethod)):
        new = new.__func__
    if isinstance(new, property):
        new = new.fget
    mod = getattr(new, "__module__", None)
    if not isinstance(mod, str):
        mod = getattr(type(new), "__module__", None)
    return not isinstance(mod, str) or _top(mod) != _top(owner)


_MISSING = object()


def comparison_overrides(sources: list[str]) -> list[str]:
    """Names of comparison/coercion hooks the student's code defines or mentions."""
    found = set()
    for src in sources:
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            name = None
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = node.name
            elif isinstance(node, ast.Attribute):
                name = node.attr
            elif isinstance(node, ast.Name):
                name = node.id
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                name = node.value
            if name in COMPARISON_DUNDERS:
                found.add(name)
    return sorted(found)


def split_examples(code: str) -> list[str]:
    """The statements of a doctest string (``>>> `` / ``... `` prompts) as plain sources."""
    out, cur = [], None
    for line in code.splitlines():
        if line.startswith(">>> "):
            if cur is not None:
                out.append("\n".join(cur))
            cur = [line[4:]]
        elif line.startswith("..."):
            cur.append(line[4:])
        elif line.strip() and cur is not None:
            cur.append("#> " + line)  # expected output: none of our tests has any
    if cur is not None:
        out.append("\n".join(cur))
    return out


def run_case(code: str, env: dict) -> bool:
    """Run one test case like a doctest: passes iff nothing raises and nothing is printed.

    Example
    -------
    >>> run_case(">>> x = 1\\n>>> assert x == 1\\n", {})
    True
    >>> run_case(">>> 1 + 1\\n", {})   # a doctest expecting no output fails on output
    False
    """
    buf = io.StringIO()  # what the examples print (doctest compares stdout; warnings go to stderr)
    out, err, hook = sys.stdout, sys.stderr, sys.displayhook
    sys.stdout, sys.stderr = buf, io.StringIO()
    sys.displayhook = sys.__displayhook__
    try:
        for i, src in enumerate(split_examples(code)):
            exec(compile(src + "\n", f"<test example {i}>", "single"), env)
    except BaseException:  # noqa: BLE001 - a test fails on any exception, as in doctest
        return False
    finally:
        sys.stdout, sys.stderr, sys.displayhook = out, err, hook
    return buf.getvalue() == ""


def run_tests(tests: dict, env: dict, on_question=None) -> dict:
    """``{question: [passed, ...]}`` for ``tests = {question: [case code, ...]}`` in ``env``.

    ``on_question(q)`` is called before the tests of question ``q`` run.
    """
    out = {}
    for q, cases in tests.items():
        if on_question is not None:
            on_question(q)
        out[q] = [run_case(c, env) for c in cases]
    return out


def strip_magics(src: str) -> str:
    """IPython syntax (``%pip``, ``!cmd``) turned into plain Python, as IPython does."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
        return TransformerManager().transform_cell(src)
    except Exception:  # noqa: BLE001
        return src


def _is_check_cell(src: str) -> bool:
    lines = [l.strip() for l in src.splitlines() if l.strip() and not l.strip().startswith("#")]
    return bool(lines) and all(l.startswith("grader.") for l in lines)


class Guard:
    """The audit hook: blocks and records what student code must not do."""

    WRITE_EVENTS = {"os.remove", "os.rmdir", "os.rename", "os.replace", "shutil.rmtree", "os.mkdir",
                    "os.chmod", "os.chown", "os.truncate", "os.symlink", "os.link", "os.utime",
                    "shutil.move", "shutil.copyfile", "shutil.copytree"}
    PROCESS_EVENTS = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                      "os.fork", "os.forkpty", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill",
                      "os.startfile", "os.setsid"}
    NATIVE_EVENTS = {"ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function",
                     "ctypes.addressof", "ctypes.string_at", "ctypes.wstring_at"}
    INTROSPECTION_EVENTS = {"gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.settrace",
                            "sys.setprofile", "sys._current_frames", "threading.settrace",
                            "threading.setprofile"}

    def __init__(self, workdir: str, sensitive: list[str], report):
        self.workdir = os.path.realpath(workdir)
        self.sensitive = [os.path.realpath(p) for p in sensitive]
        self.report = report
        self.active = False

    def _inside(self, path) -> bool:
        p = self._real(path)
        return p is None or p == self.workdir or p.startswith(self.workdir + os.sep) or p in ("/dev/null",)

    @staticmethod
    def _real(path):
        if isinstance(path, int):
            return None
        try:
            return os.path.realpath(os.fsdecode(path))
        except Exception:  # noqa: BLE001
            return None

    def _is_sensitive(self, path) -> bool:
        p = self._real(path)
        if p is None:
            return False
        base = os.path.basename(p)
        parts = p.split(os.sep)
        if "autograder" in base.lower():
            return True
        if len(parts) >= 2 and parts[-2] == "tests" and base.startswith("q") and base.endswith(".py"):
            # outside: the grader's tests; inside: only the public tests the notebook wrote
            # itself may be there, so asking for another one is looking for hidden tests
            return not self._inside(p) or not os.path.exists(p)
        return any(p == s or p.startswith(s + os.sep) for s in self.sensitive)

    def _block(self, kind: str, detail: str):
        self.report(f"{kind}: {detail}")
        raise PermissionError(f"blocked by the grader ({kind}: {detail})")

    def __call__(self, event: str, args):
        if not self.active:
            return
        if event == "open":
            path, mode, flags = (list(args) + [None, None, None])[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC))
            if writing and not self._inside(path):
                self._block("file-write", str(path))
            if not (writing and self._inside(path)) and self._is_sensitive(path):
                self._block("file-read", str(path))
        elif event in ("os.listdir", "os.scandir", "glob.glob", "os.walk"):
            if args and self._is_sensitive(args[0]):
                self._block("file-read", f"lists {args[0]}")
        elif event in self.WRITE_EVENTS:
            for a in args:
                if isinstance(a, (str, bytes, os.PathLike)) and not self._inside(a):
                    self._block("file-write", f"{event} {a}")
                if isinstance(a, (str, bytes, os.PathLike)) and self._is_sensitive(a):
                    self._block("file-write", f"{event} {a}")
        elif event in self.PROCESS_EVENTS:
            self._block("process", f"{event} {args[:2]!r}"[:200])
        elif event in ("socket.connect", "socket.bind", "socket.sendto", "urllib.Request", "socket.getaddrinfo"):
            self._block("network", f"{event} {args[:2]!r}"[:200])
        elif event in self.NATIVE_EVENTS:
            self._block("native-code", event)
        elif event in self.INTROSPECTION_EVENTS:
            self._block("introspection", event)
        elif event in ("object.__setattr__", "object.__delattr__"):
            # a library class changed by the student's own code (a library changing its own
            # classes is let through; Snapshot.restore still sees the result)
            obj, name = args[0], args[1]
            mod = getattr(obj, "__module__", "") if isinstance(obj, type) else ""
            if (isinstance(obj, type) and _top(mod or "") in SNAPSHOT_PACKAGES and name != "__slotnames__"
                    and _student_caller(2)):
                self._block("patched", f"{mod}.{obj.__qualname__}.{name}")


def _student_caller(depth: int = 2) -> bool:
    f = sys._getframe(depth)
    return f is not None and f.f_code.co_filename.startswith("<student cell")


class ForbiddenCalls:
    """Wrap each forbidden function; record calls whose Python caller is the student's code."""

    def __init__(self, forbidden: dict, report):
        self.report = report
        self.phase = ["cells"]
        self.calls = {}  # question -> [names]
        import importlib

        for q, names in forbidden.items():
            for full in names:
                modname, _, attr = full.rpartition(".")
                try:
                    mod = importlib.import_module(modname)
                    orig = getattr(mod, attr)
                    if isinstance(orig, types.ModuleType):
                        raise AttributeError(full)
                except (ImportError, AttributeError):
                    try:  # a whole module is forbidden: wrap its public functions
                        mod = importlib.import_module(full)
                    except ImportError:
                        continue
                    for a in getattr(mod, "__all__", [n for n in vars(mod) if not n.startswith("_")]):
                        f = getattr(mod, a, None)
                        if isinstance(f, types.FunctionType):
                            self._wrap(q, f"{full}.{a}", mod, a, f)
                    continue
                self._wrap(q, full, mod, attr, orig)

    def _wrap(self, q, full, mod, attr, orig):
        calls, report, phase = self.calls, self.report, self.phase

        def wrapper(*a, **k):
            # only while the tests of q run: elsewhere (a scratch cell, another question)
            # the function is allowed
            if phase[0] == q and _student_caller(2):
                calls.setdefault("tests", set()).add(q)
                report(f"forbidden-call: {full} (not allowed in {q}; the answer calls it)")
            return orig(*a, **k)

        wrapper.__name__, wrapper.__qualname__, wrapper.__doc__ = orig.__name__, orig.__qualname__, orig.__doc__
        for m in list(sys.modules.values()):  # every module that re-exports it
            d = getattr(m, "__dict__", None)
            if isinstance(d, dict):
                for k, v in list(d.items()):
                    if v is orig:
                        d[k] = wrapper
        setattr(mod, attr, wrapper)


def _preimport():
    import matplotlib

    matplotlib.use("Agg")
    import doctest  # noqa: F401
    import numpy  # noqa: F401
    import torch  # noqa: F401
    import lctools  # noqa: F401
    import lctools.robustness, lctools.regions, lctools.rank, lctools.training  # noqa: F401,E401
    import matplotlib.pyplot  # noqa: F401
    try:
        import otter  # noqa: F401
        import otter.check.notebook  # noqa: F401
        import otter.test_files.ok_test  # noqa: F401
    except ImportError:
        pass
    try:
        import IPython.core.inputtransformer2  # noqa: F401
    except ImportError:
        pass


def main(result_fd: int) -> None:
    flags: list[str] = []
    notes: list[str] = []

    def emit(obj):
        data = (json.dumps(obj) + "\n").encode()
        while data:
            data = data[os.write(result_fd, data):]

    def report(flag):
        if flag not in flags:
            flags.append(flag)
            try:
                emit({"flag": flag})
            except OSError:
                pass

    # the job pipe moves to a private descriptor; the student's code sees an empty stdin
    stdin = os.fdopen(os.dup(0), "r", encoding="utf-8")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = open(os.devnull, encoding="utf-8")
    job = json.loads(stdin.readline())
    _preimport()
    import importlib

    forbidden = ForbiddenCalls(job.get("forbidden", {}), report)
    snap = Snapshot()
    guard = Guard(os.getcwd(), job.get("sensitive", []), report)
    sys.addaudithook(guard)
    for f in comparison_overrides(job["cells"]):
        report(f"comparison-override: the code defines or names {f}")

    env = {"__name__": "__main__", "__builtins__": builtins}
    guard.active = True
    for i, src in enumerate(job["cells"]):
        if _is_check_cell(src):
            continue
        try:
            code = compile(strip_magics(src), STUDENT_FILE.format(i), "exec")
            exec(code, env)
        except BaseException as e:  # noqa: BLE001 - as otter: keep going after a failing cell
            if len(notes) < 5:
                notes.append(f"cell {i}: {type(e).__name__}: {str(e)[:120]}")
    guard.active = False

    for flag in snap.restore():
        report(flag)
    import threading

    def _student_thread(t) -> bool:  # started from the student's code (tqdm's monitor is not)
        fn = getattr(t, "_target", None) or getattr(type(t).run, "__func__", type(t).run)
        code = getattr(fn, "__code__", None)
        return code is not None and code.co_filename.startswith("<student cell")

    mine = [t for t in threading.enumerate() if t is not threading.current_thread() and _student_thread(t)]
    if mine:
        report(f"introspection: {len(mine)} thread(s) left running by the student's code")
    # library names the tests use are re-bound to the real objects
    for name, modname, attr in job.get("imports", []):
        try:
            real = importlib.import_module(modname)
            if attr:
                real = getattr(real, attr)
        except (ImportError, AttributeError):
            continue
        if name in env and env[name] is not real and not isinstance(real, types.FunctionType):
            report(f"rebinds: {name} is not {modname}{'.' + attr if attr else ''}")
        env[name] = real
    env["__builtins__"] = builtins
    emit({"event": "ready"})

    job2 = json.loads(stdin.readline())
    guard.active = True  # student functions run inside the tests: still guarded
    passed = run_tests(job2["tests"], env, on_question=lambda q: forbidden.phase.__setitem__(0, q))
    guard.active = False
    for flag in snap.restore():
        report(flag)
    emit({"nonce": job2["nonce"], "passed": passed, "flags": flags, "notes": notes,
          "forbidden_during_tests": sorted(forbidden.calls.get("tests", ()))})


def _run_child(request: dict, fds: list[int]) -> None:
    """In a freshly forked child of the server: become the submission's process, run
    :func:`main`, and exit (never returns to the server's loop)."""
    code = 1
    try:
        job, result_fd, errlog = fds
        os.setsid()  # its own session and process group: the grader kills the whole group
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        tempfile.tempdir = None  # TMPDIR is read again
        sys.argv = sys.argv[:1]
        null = os.open(os.devnull, os.O_WRONLY)
        for src, dst in ((job, 0), (null, 1), (errlog, 2)):
            os.dup2(src, dst)
            os.close(src)
        main(result_fd)
        code = 0
    except BaseException:  # noqa: BLE001 - what went wrong goes to the error log
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)


def _kill(pid: int, unreaped: bool) -> None:
    """SIGKILL the process group of child ``pid`` (what it left running too), and the child
    itself if it has not made its group yet.  Only the server can do this safely: it knows
    whether ``pid`` is still its (unreaped) child, so a pid reused by another process is
    never signalled (a process group's id is not reused while the group has members)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        if unreaped:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _send(sock: socket.socket, obj: dict) -> None:
    sock.send(json.dumps(obj).encode())


def serve(sock_fd: int) -> None:
    """The fork server: import the libraries once, then fork a child per request.

    A request is one message on the ``SOCK_SEQPACKET`` socket ``sock_fd``:
    ``{"cwd": path, "env": {...}}`` with the file descriptors (job, result, error log)
    attached, or ``{"kill": pid}`` (:func:`_kill`).  The server imports no student code,
    starts no thread and runs no tensor operation before it forks, so every child starts
    from the same clean state.
    """
    _preimport()
    sock = socket.socket(fileno=sock_fd)
    children: set[int] = set()
    while True:
        while children:  # report the children that ended
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            children.discard(pid)
            _send(sock, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})
        if not select.select([sock], [], [], 0.05)[0]:
            continue
        msg, fds, _, _ = socket.recv_fds(sock, 1 << 20, 3)
        if not msg:  # the grader is gone
            return
        try:
            request = json.loads(msg)
            if "kill" in request and not fds:
                _kill(int(request["kill"]), int(request["kill"]) in children)
                continue
            if len(fds) != 3:
                raise ValueError(f"{len(fds)} file descriptors, not 3")
        except ValueError as e:
            for fd in fds:
                os.close(fd)
            _send(sock, {"error": f"bad request: {e}"})
            continue
        pid = os.fork()
        if pid == 0:
            sock.close()
            _run_child(request, fds)
        for fd in fds:
            os.close(fd)
        children.add(pid)
        _send(sock, {"started": pid})


if __name__ == "__main__":
    if sys.argv[1:2] not in (["--serve"], ["--child"]) or len(sys.argv) != 3:
        raise SystemExit("usage: python sandbox.py --serve SOCKET_FD | --child RESULT_FD (started by grade.py)")
    if sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
    else:  # one submission in this fresh interpreter (platforms without the fork server)
        main(int(sys.argv[2]))
