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


@pytest.mark.parametrize("item, message", [
    ("steps=abc", "setting 'steps' of figure 'dynamics' expects an integer, got 'abc'"),
    ("steps=1.5", "'steps' of figure 'dynamics' expects an integer"),
    ("steps=0", "'steps' of figure 'dynamics' must be an integer >= 1, got 0"),
    ("widths=64", "'widths' of figure 'dynamics' expects a list like [64, 64, 64, 64], got 64"),
    ("widths=[64, 'a']", "'widths' of figure 'dynamics' expects an integer, got 'a'"),
    ("widths=[]", "'widths' of figure 'dynamics' expects a list"),
    ("lr=nan", "'lr' of figure 'dynamics' must be a finite number > 0, got nan"),
    ("lr=inf", "'lr' of figure 'dynamics' must be a finite number > 0, got inf"),
    ("lr=-1e-3", "'lr' of figure 'dynamics' must be a finite number > 0, got -0.001"),
    ("seeds=0", "'seeds' of figure 'dynamics' must be an integer >= 1, got 0"),
    ("normalize=1", "'normalize' of figure 'dynamics' expects True or False"),
    ("activation=3", "'activation' of figure 'dynamics' expects a str"),
    ("weight_decay=-0.1", "'weight_decay' of figure 'dynamics' must be a finite number >= 0, got -0.1"),
])
def test_set_values_are_checked_against_the_setting_type(item, message, tmp_path):
    with pytest.raises(ValueError) as info:
        reproduce.figure_settings(reproduce.FIGURES["dynamics"], "quick", reproduce.parse_overrides([item]))
    assert message in str(info.value)


def test_cli_reports_bad_set_values_by_name(tmp_path):
    """One process: the first bad value is reported, nothing is computed or written."""
    out = _cli("dynamics", "--set", "lr=nan", "--set", "steps=abc", "--out", str(tmp_path / "out"),
               "--no-progress", env={"LCTOOLS_CACHE": str(tmp_path / "cache")}, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "'lr' of figure 'dynamics' must be a finite number" in out.stderr or "'steps'" in out.stderr
    assert not (tmp_path / "out" / "dynamics.png").exists() and not (tmp_path / "cache").exists()


def test_set_values_accept_numpy_scalars_and_0d_tensors():
    """Settings follow lctools.validation: numpy and 0-d tensor numbers are numbers, 2.0 is an integer."""
    cfg = reproduce.figure_settings(reproduce.FIGURES["dynamics"], "quick", dict(
        steps=np.int64(300), lr=torch.tensor(2e-3), weight_decay=np.float32(0.5), seeds=2.0))
    assert (cfg.steps, cfg.seeds) == (300, 2) and isinstance(cfg.steps, int) and isinstance(cfg.seeds, int)
    assert cfg.lr == pytest.approx(2e-3) and isinstance(cfg.lr, float) and cfg.weight_decay == 0.5
    with pytest.raises(ValueError, match="'steps' of figure 'dynamics' expects an integer"):
        reproduce.figure_settings(reproduce.FIGURES["dynamics"], "quick", dict(steps=np.float64(1.5)))


def test_good_set_values_pass():
    cfg = reproduce.figure_settings(reproduce.FIGURES["dynamics"], "quick", reproduce.parse_overrides(
        ["steps=300", "widths=[32, 32]", "lr=1e-3", "weight_decay=0", "seeds=2", "data_seed=0", "lr=2"]))
    assert (cfg.steps, cfg.widths, cfg.lr, cfg.weight_decay, cfg.seeds) == (300, [32, 32], 2.0, 0, 2)
    assert isinstance(cfg.lr, float)


@pytest.mark.parametrize("device", ["tpu", "cuda", "cuda:3", "nonsense"])
def test_bad_devices_get_a_clean_message(device, tmp_path):
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="device"):
        reproduce.check_device(device)
    if device == "tpu":  # and once through the command line: a message, not a traceback
        out = _cli("lc-estimate", "--device", device, "--out", str(tmp_path), timeout=300)
        assert out.returncode == 2 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr
        assert "device 'tpu'" in out.stderr or "unknown device 'tpu'" in out.stderr, out.stderr


def test_out_and_cache_are_checked_writable_before_computing(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = _cli("dynamics", "--out", str(blocker / "out"), env={"LCTOOLS_CACHE": str(tmp_path / "cache")},
               timeout=120)
    assert out.returncode == 2 and "output folder" in out.stderr and "not writable" in out.stderr, out.stderr
    out = _cli("dynamics", "--out", str(tmp_path / "out"), env={"LCTOOLS_CACHE": str(blocker / "cache")},
               timeout=120)
    assert out.returncode == 2 and "results cache" in out.stderr, out.stderr
    assert not list((tmp_path / "out").glob("*.png"))
    with pytest.raises(ValueError, match="not writable"):
        reproduce.run("lc-estimate", out=blocker / "x", cache=tmp_path / "cache")


class _Interrupted(KeyboardInterrupt):
    def __init__(self, step, total):
        super().__init__()
        self.step, self.total = step, total


@pytest.mark.parametrize("exc, expected", [(_Interrupted(1234, 8000), "interrupted at step 1234 of 8000; "
                                            "run again to resume"), (KeyboardInterrupt(), "interrupted")])
def test_ctrl_c_says_where_it_stopped(monkeypatch, tmp_path, capsys, exc, expected):
    from lctools.reproduce import __main__ as cli

    def stop(*args, **kwargs):
        raise exc

    monkeypatch.setattr(cli, "run", stop)
    monkeypatch.setenv("LCTOOLS_CACHE", str(tmp_path / "cache"))
    assert cli.main(["local-rank", "--out", str(tmp_path), "--no-progress"]) == 130
    assert capsys.readouterr().err.strip() == expected


def test_figures_are_listed_explicitly_without_import_cycles():
    code = ("import lctools.experiments.mnist_dynamics, lctools.reproduce.figures as f; "
            "print(sorted(f.build_figures()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(sorted(reproduce.FIGURES))
    for spec in reproduce.FIGURES.values():
        assert spec.compute.__module__.startswith(("lctools.experiments", "lctools.reproduce.figures"))
        assert spec.claims.__module__.startswith("lctools.experiments")


CHECKS = {name: spec.claims for name, spec in reproduce.FIGURES.items()}


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
    CHECKS[name](meta["summary"]).check()             # the chapter's own claims, through the same code
    assert all(c["holds"] for c in meta["claims"])


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
    small = {"weight-decay": dict(steps=200, lambdas=[0.1, 1.0], seeds=2, noise_draws=1),
             "lc-estimate": dict(sigmas=[0.1, 0.3], exact_draws=8, n_points=2000)}
    for name, overrides in small.items():
        paths = reproduce.run(name, device="cuda", out=tmp_path, overrides=overrides, progress=False,
                              cache=tmp_path / "cache")
        meta = json.loads(paths["json"].read_text())
        assert meta["device"].startswith("cuda") and paths["png"].is_file()


def test_threads_option(monkeypatch, tmp_path, capsys):
    from lctools.reproduce import __main__ as cli

    calls = []
    monkeypatch.setattr(cli, "run", lambda name, **kw: calls.append((name, torch.get_num_threads()))
                        or {"png": tmp_path / f"{name}.png"})
    monkeypatch.setenv("LCTOOLS_CACHE", str(tmp_path / "cache"))
    before = torch.get_num_threads()
    try:
        assert cli.main(["lc-estimate", "--threads", "0", "--out", str(tmp_path)]) == 2
        assert "--threads must be >= 1" in capsys.readouterr().err and calls == []
        assert cli.main(["lc-estimate", "--device", "cpu", "--threads", "1", "--out", str(tmp_path),
                         "--no-progress"]) == 0
        assert calls == [("lc-estimate", 1)]
    finally:
        torch.set_num_threads(before)
