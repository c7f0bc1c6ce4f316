"""``python -m lctools.reproduce``: every figure in quick mode, its phenomenon, and resuming
a run that was killed.

The figures run in-process on the test results cache (``_build/lctools-cache``, set by the
root conftest.py); the command line and the kill test run in subprocesses with their own
cache folders.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lctools import reproduce

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]


def _cli(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "lctools.reproduce", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, **kw)


def test_list_names_a_figure_per_chapter():
    out = _cli("--list")
    assert out.returncode == 0, out.stderr
    assert {spec.chapter for spec in reproduce.FIGURES.values()} == {2, 3, 4, 5, 6}
    for name in reproduce.FIGURES:
        assert name in out.stdout


def test_bad_arguments_are_reported():
    assert "unknown figure" in _cli("no-such-figure").stderr
    assert _cli().returncode != 0
    with pytest.raises(ValueError, match="has no setting 'stepz'"):
        reproduce.run("local-rank", overrides={"stepz": 3})
    with pytest.raises(ValueError, match="KEY=VALUE"):
        reproduce.parse_overrides(["steps"])
    assert reproduce.parse_overrides(["steps=30", "widths=[8, 8]", "task=xor_blobs"]) == dict(
        steps=30, widths=[8, 8], task="xor_blobs")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            reproduce.run("lc-estimate", device="cuda")


def _check_lc_estimate(s):
    assert s["max_abs_relative_difference"] < 0.06 and s["max_abs_z"] < 4     # the coarea theorem


def _check_local_rank(s):
    k = s["intrinsic_dim"]
    assert s["local_rank_init"][0] >= 95 and s["local_rank_end"][0] >= 95      # layer 1 keeps its rank
    assert s["local_rank_end"][-1] <= 2 * k                                   # the deepest collapses to ~k
    assert s["local_rank_end"][-1] <= 0.25 * s["local_rank_init"][-1]
    assert s["lc_end"] <= 0.6 * s["lc_init"]                                  # LC falls with it
    assert s["late_phase_spearman"] >= 0.5 and min(s["final_accuracy"]) >= 0.9


def _check_dynamics(s):
    m = s["mean"]
    assert m["train_acc"] >= 0.99 and m["test_acc"] >= 0.85
    assert m["pgd_acc_best_after_saturation"] >= m["pgd_acc_at_saturation"] + 0.05   # delayed robustness
    assert m["lc_end_over_peak"] <= 0.8                                               # LC falls late
    assert m["deepest_rank_end_over_saturation"] <= 0.75


def _check_weight_decay(s):
    assert s["spearman_lc_vs_lambda"] <= -0.7 and s["fit_r2"] >= 0.7 and s["fit_slope_per_log_inverse_lambda"] > 0
    assert s["min_accuracy"] >= 0.8


CHECKS = {"lc-estimate": _check_lc_estimate, "local-rank": _check_local_rank, "robustness": _check_dynamics,
          "dynamics": _check_dynamics, "weight-decay": _check_weight_decay}


def test_every_figure_is_checked():
    assert set(CHECKS) == set(reproduce.FIGURES)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CHECKS))
def test_figure_in_quick_mode(name, tmp_path):
    paths = reproduce.run(name, mode="quick", device="cpu", out=tmp_path, progress=False)
    assert set(paths) == {"png", "csv", "json"} and all(p.is_file() for p in paths.values())
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths["png"].stat().st_size > 20_000
    meta = json.loads(paths["json"].read_text())
    assert meta["figure"] == name and meta["mode"] == "quick" and meta["device"] == "cpu"
    header, *rows = paths["csv"].read_text().splitlines()
    assert rows and len(header.split(",")) >= 3
    CHECKS[name](meta["summary"])


SMALL = ["--set", "steps=600", "--set", "seeds=2", "--set", "n_eval=40", "--set", "num_evals=12"]


def _checkpoint_step(cache: Path):
    files = list((cache / "checkpoints").glob("*.pt"))
    if not files:
        return None
    try:
        return torch.load(files[0], weights_only=False)["step"]
    except Exception:  # being replaced right now
        return None


@pytest.mark.slow
def test_killed_run_resumes_from_its_checkpoint(tmp_path):
    """Kill a run (SIGKILL) after its first checkpoints, start it again: it resumes from the
    last checkpoint, and its figure's numbers equal those of a run that was never killed."""
    cache, out = tmp_path / "cache", tmp_path / "out"
    args = ["local-rank", *SMALL, "--checkpoint-every", "0.5", "--no-progress", "--device", "cpu"]
    proc = subprocess.Popen([sys.executable, "-m", "lctools.reproduce", *args, "--out", str(out)], cwd=ROOT,
                            env={**os.environ, "LCTOOLS_CACHE": str(cache), "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    step = None
    while time.monotonic() < deadline and proc.poll() is None:
        step = _checkpoint_step(cache)
        if step is not None and step >= 60:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed:\n" + proc.stdout.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = _checkpoint_step(cache)
    assert killed_at is not None and 60 <= killed_at < 600
    assert not (out / "local-rank.png").exists()

    resumed = _cli(*args, "--out", str(out), env={"LCTOOLS_CACHE": str(cache)}, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"at step {killed_at} of 600" in resumed.stderr, resumed.stderr
    assert not list((cache / "checkpoints").glob("*.pt"))        # removed once the result is stored

    fresh = _cli(*args, "--out", str(tmp_path / "fresh"), env={"LCTOOLS_CACHE": str(tmp_path / "cache2")},
                 timeout=600)
    assert fresh.returncode == 0, fresh.stderr
    a = (out / "local-rank.csv").read_text().splitlines()
    b = (tmp_path / "fresh" / "local-rank.csv").read_text().splitlines()
    assert a[0] == b[0] and len(a) == len(b)
    np.testing.assert_allclose(np.array([r.split(",") for r in a[1:]], float),
                               np.array([r.split(",") for r in b[1:]], float), rtol=1e-6)
    # a finished figure is re-plotted from the cache: nothing is trained again
    again = _cli(*args, "--out", str(out), env={"LCTOOLS_CACHE": str(cache)}, timeout=600)
    assert again.returncode == 0 and "resumed" not in again.stderr
    assert json.loads((out / "local-rank.json").read_text())["compute_seconds"] < 10


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_figures_on_cuda(tmp_path):
    small = {"weight-decay": dict(steps=200, lambdas=[0.1, 1.0], seeds=2, n_box=2000),
             "lc-estimate": dict(sigmas=[0.1, 0.3], exact_draws=8, n_points=2000)}
    for name, overrides in small.items():
        paths = reproduce.run(name, device="cuda", out=tmp_path, overrides=overrides, progress=False,
                              cache=tmp_path / "cache")
        meta = json.loads(paths["json"].read_text())
        assert meta["device"].startswith("cuda") and paths["png"].is_file()
