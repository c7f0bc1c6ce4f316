"""The package as a user gets it: ``pip install local-complexity``, then ``import lctools``.

From a copy of the repository's files (tracked or not ignored, as a clone or a commit would
have them) the sdist is built with setuptools' PEP 517 hooks, and the wheel is built from
the unpacked sdist, as ``python -m build`` does. The wheel is installed with pip into a
fresh virtual environment created ``--without-pip``; its dependencies (torch, numpy, ...)
come from this environment's site-packages through a ``.pth`` line (so no download), which
adds the folder to ``sys.path`` without running the ``.pth`` files in it, so this
environment's editable install of lctools stays out (checked: before the wheel is installed,
``import lctools`` fails there). Python runs from a temporary folder with an environment
without ``PYTHONPATH``, so the repository is not on the path either.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIST = "local-complexity"
SKIP = {".git", "_build", ".venv", "venv", "build", "dist", "__pycache__", ".pytest_cache", ".ipynb_checkpoints"}

pytestmark = pytest.mark.slow


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


def _run(args, cwd, **kw):
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=_clean_env(), capture_output=True, text=True,
                          timeout=600, **kw)
    assert proc.returncode == 0, f"{args}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _source_files() -> list[str]:
    """The repository's files, as a clone (tracked) or the next commit (not ignored) has them."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
        return [f for f in out.splitlines() if (ROOT / f).is_file()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: the tree, less build outputs
        files = []
        for folder, dirs, names in os.walk(ROOT):
            dirs[:] = [d for d in dirs if d not in SKIP and not d.endswith(".egg-info")]
            files += [str((Path(folder) / n).relative_to(ROOT)) for n in names if not n.endswith(".pyc")]
        return files


def _package_files() -> set[str]:
    """Every file of the lctools package in the repository (``lctools/...``)."""
    return {f for f in _source_files() if f.startswith("lctools/") and "__pycache__" not in f}


def _hook(hook: str, outdir: Path, cwd: Path) -> Path:
    code = f"import sys; from setuptools import build_meta as b; print(b.{hook}(sys.argv[1]))"
    name = _run([sys.executable, "-c", code, outdir], cwd=cwd).strip().splitlines()[-1]
    return outdir / name


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(sdist, wheel) built from a copy of the repository."""
    tmp = tmp_path_factory.mktemp("package")
    src = tmp / "src"
    for rel in _source_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    dist = tmp / "dist"
    dist.mkdir()
    sdist = _hook("build_sdist", dist, src)
    shutil.unpack_archive(sdist, tmp / "unpacked")
    (unpacked,) = (tmp / "unpacked").iterdir()
    wheel = _hook("build_wheel", dist, unpacked)
    return sdist, wheel


def _version() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    return re.search(r'^version\s*=\s*"([^"]+)"', text, re.M).group(1)


def test_sdist_has_the_sources(built):
    sdist, _ = built
    assert sdist.name == f"local_complexity-{_version()}.tar.gz"
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    missing = ({"pyproject.toml", "README.md", "LICENSE"} | _package_files()) - names
    assert not missing, f"not in the sdist: {sorted(missing)}"


def test_wheel_has_the_package_and_its_metadata(built):
    _, wheel = built
    assert wheel.name == f"local_complexity-{_version()}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = zf.read(meta).decode()
    package = _package_files()
    data = {f for f in package if not f.endswith(".py")}  # package data: every non-.py file
    assert not (package - names), f"not in the wheel: {sorted(package - names)} (package data: {sorted(data)})"
    assert {n.split("/")[0] for n in names} == {"lctools", f"local_complexity-{_version()}.dist-info"}
    assert "Name: local-complexity" in metadata
    assert re.search(r"^Requires-Dist: torch>=2\.1$", metadata, re.M)  # loose, so Colab keeps its torch
    assert "License-Expression: MIT" in metadata
    assert "Description-Content-Type: text/markdown" in metadata


def test_wheel_installs_and_imports_in_a_fresh_venv(built, tmp_path):
    _, wheel = built
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=tmp_path).strip())
    # torch & co. from this environment: a path line only, so its .pth files (the editable
    # install of lctools) are not run
    (purelib / "zz_course_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    blocked = subprocess.run([python, "-c", "import lctools"], cwd=tmp_path, env=_clean_env(),
                             capture_output=True, text=True)
    assert blocked.returncode != 0, "lctools is importable in the fresh venv before the wheel is installed"

    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel],
         cwd=tmp_path)
    probe = """
import contextlib, importlib.metadata as md, io, json, runpy, sys
import torch
import lctools, lctools.reproduce
net = lctools.MLP(2, [8, 8], 1)
x = torch.rand(64, 2)
listing, sys.argv = io.StringIO(), ["lctools.reproduce", "--list"]
with contextlib.redirect_stdout(listing):  # python -m lctools.reproduce --list, in this process
    try:
        runpy.run_module("lctools.reproduce", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        assert not exc.code, exc.code
print(json.dumps(dict(
    file=lctools.__file__, reproduce=lctools.reproduce.__file__, path=sys.path,
    version=md.version("local-complexity"), files=[str(f) for f in md.files("local-complexity")],
    lc=float(lctools.local_complexity(net, x, sigma=0.1, noise_draws=2)), listing=listing.getvalue(),
)))
"""
    info = json.loads(_run([python, "-c", probe], cwd=tmp_path).strip().splitlines()[-1])
    for key in ("file", "reproduce"):
        assert Path(info[key]).resolve().is_relative_to(purelib.resolve()), info[key]
    assert not any(p and Path(p).resolve() == ROOT for p in info["path"]), info["path"]
    assert info["version"] == _version()
    assert _package_files() <= set(info["files"])
    assert info["lc"] > 0
    import lctools.reproduce

    for name in lctools.reproduce.FIGURES:
        assert name in info["listing"]
