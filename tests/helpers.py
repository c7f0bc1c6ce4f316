"""Shared pieces of the package tests: random networks and autograd references.

Import with ``from helpers import random_mlp`` (pytest puts ``tests/`` on the path).
"""
from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import torch
from torch import nn
from torch.func import jacrev, vmap

import lctools


def random_mlp(in_dim, widths, out_dim=1, seed=0, bias_std=0.3, activation="relu", dtype=torch.float64,
               slope=0.2, init="fan_in", flatten=False):
    """A random ``lctools.MLP`` in ``dtype`` whose zero sets cross the unit box (PyTorch's
    default init gives tiny biases for wide layers, which puts every zero set near the origin).

    ``init`` picks the recipe (each test module keeps the networks it was calibrated on):

    - ``"fan_in"``: after ``torch.manual_seed(seed)``, weights ``N(0, 1/fan_in)`` and biases
      ``N(0, bias_std^2)``, layer by layer;
    - ``"he"``: from ``torch.Generator().manual_seed(seed)``, weights ``N(0, 2/fan_in)`` and
      biases ``N(0, bias_std^2)`` drawn in ``dtype``;
    - ``"default"``: after ``torch.manual_seed(seed)``, PyTorch's default weights, and hidden
      biases ``N(0, bias_std^2)``.

    LeakyReLU nets use negative slope ``slope``.
    """
    if init == "he":
        g = torch.Generator().manual_seed(seed)
        net = lctools.MLP(in_dim, widths, out_dim, activation=activation, negative_slope=slope,
                          flatten=flatten).to(dtype)
        with torch.no_grad():
            for m in net:
                if isinstance(m, nn.Linear):
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g, dtype=dtype) * math.sqrt(2 / m.in_features))
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g, dtype=dtype) * bias_std)
        return net
    torch.manual_seed(seed)
    net = lctools.MLP(in_dim, widths, out_dim, activation=activation, negative_slope=slope, flatten=flatten)
    if init == "default":
        with torch.no_grad():
            for layer in net.hidden_layers:
                layer.bias.normal_(0, bias_std)
        return net.to(dtype)
    assert init == "fan_in", init
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=1.0 / math.sqrt(m.in_features))
            nn.init.normal_(m.bias, std=bias_std)
    return net.to(dtype)


def hidden_maps(model):
    """``x -> z_l`` for each hidden layer ``l``, as separate modules (the reference computations)."""
    layers = list(model)
    start = 1 if layers and isinstance(layers[0], nn.Flatten) else 0
    layers = layers[start:]
    return [nn.Sequential(*layers[: 2 * l - 1]) for l in range(1, len(layers) // 2 + 1)]


def reference_pre_jacobians(model, x):
    """``J_l(x) = dz_l/dx`` by autograd for every hidden layer: a list of ``(N, n_l, n_0)``."""
    return [vmap(jacrev(m))(x) for m in hidden_maps(model)]


UNWRITABLE = ["root is a file", "root under a file", "read-only folder", "read-only filesystem", "rename fails",
              "disk full"]


def unwritable_folder(kind, tmp_path, monkeypatch):
    """A folder (a results-cache root, an output folder) that cannot be written, in one of
    the ways of ``UNWRITABLE``; returns its path.  ``"disk full"`` fails only the results
    cache's ``result.json``."""
    import errno
    import os
    import tempfile

    import pytest

    from lctools import cache

    if kind == "root is a file":
        root = tmp_path / "file"
        root.write_text("not a folder")
        return root
    if kind == "root under a file":
        (tmp_path / "file").write_text("x")
        return tmp_path / "file" / "cache"
    if kind == "read-only folder":
        if os.geteuid() == 0:
            pytest.skip("root ignores folder permissions")
        root = tmp_path / "ro"
        root.mkdir()
        root.chmod(0o500)
        return root
    if kind == "read-only filesystem":
        def erofs(*a, **k):
            raise OSError(errno.EROFS, "Read-only file system")
        monkeypatch.setattr(tempfile, "mkdtemp", erofs)
        return tmp_path / "c"
    if kind == "rename fails":
        def no_replace(src, dst):
            raise PermissionError(errno.EACCES, "Permission denied", str(dst))
        monkeypatch.setattr(cache.os, "replace", no_replace)
        return tmp_path / "c"
    if kind == "disk full":
        real_write = cache._write

        def full(path, data):
            if path.name == "result.json":
                raise OSError(errno.ENOSPC, "No space left on device")
            real_write(path, data)
        monkeypatch.setattr(cache, "_write", full)
        return tmp_path / "c"
    raise AssertionError(kind)


EXERCISES = Path(__file__).resolve().parents[1] / "exercises"


def exercise_tools(*names):
    """The modules ``exercises/<name>.py`` (``build``, ``grade``, ``sandbox``), imported with
    ``exercises/`` on the path and without writing ``__pycache__`` under ``exercises/``."""
    if str(EXERCISES) not in sys.path:
        sys.path.insert(0, str(EXERCISES))
    before, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        return tuple(importlib.import_module(name) for name in names)
    finally:
        sys.dont_write_bytecode = before


def built_assignments(tmp_path_factory, names=None) -> Path:
    """One build folder of ``exercises/build.py`` per test run, shared by the assignment
    test files and by the pytest-xdist workers: the assignments ``names`` (default: all)
    built into it on first use, each once, with one wheel of the course package (otter's
    own solution check skipped: the tests grade the solutions).  A file lock makes a worker
    that needs an assignment another worker is building wait for it.  Tests read the folder
    and must not write into it."""
    import os

    from filelock import FileLock

    (build,) = exercise_tools("build")
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    out = root / "assignments"
    with FileLock(str(root / "assignments.lock")):
        wheels = sorted((out / "_wheel").glob("*.whl"))
        wheel = wheels[0] if wheels else build.build_wheel(out / "_wheel")
        for name in names or build.assignments():
            done = out / f".{name}.built"
            if not done.exists():
                build.build(name, out, run_tests=False, quiet=True, wheel=wheel)
                done.touch()
    return out
