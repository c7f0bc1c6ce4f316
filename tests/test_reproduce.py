"""``python -m lctools.reproduce``: the command line, every figure's plumbing, and resuming a
run that was killed.

What each part proves, and where the rest is proved:

- The command line's checks (figure names, ``--set`` values, devices, writable folders,
  threads, Ctrl-C) run ``main([...])`` in this process: the argument handling is what is
  tested, not the interpreter start (each start imports torch and matplotlib, seconds of
  CPU). One test runs the real entry point, ``python -m lctools.reproduce``, in a
  subprocess and checks its exit status; the killed-run test runs a real subprocess too,
  and a fresh interpreter checks the figure list imports without cycles.
- Every figure runs through :func:`lctools.reproduce.run` on *small* settings (``--set``
  overrides of its steps, seeds, widths, sample sizes): PNG, CSV and JSON are written, the
  JSON reports the claims of the figure's experiment evaluated on its summary, and a second
  call re-plots from the results cache without training or writing anything.
- The quick settings' *claims* (the phenomena) are not trained again here: each chapter
  computes its experiment in quick mode and asserts its claims, and the book build of
  tests/test_book.py executes every chapter once per test run; a failing claim fails it.
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

import lctools.cache
from lctools import reproduce
from lctools.reproduce import __main__ as cli

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]

#: small values of the settings the figures share by name; each figure takes those it has
SMALL = dict(steps=30, seeds=2, n_train=200, n_test=100, widths=[16, 16], n_eval=32, num_evals=4, evals=4,
             exact_draws=4, n_points=400, n_box=400, noise_draws=1, n_geom=40, n_rank=16, pgd_steps=2,
             sigmas=[0.1, 1.0], lambdas=[0.1, 1.0])


def _small(name, **extra):
    """The overrides of ``SMALL`` (and ``extra``) that figure ``name`` has among its settings."""
    quick = reproduce.FIGURES[name].quick
    return {k: v for k, v in {**SMALL, **extra}.items() if k in quick}


def _set_args(overrides):
    return [a for k, v in overrides.items() for a in ("--set", f"{k}={v!r}")]


def _cli_subprocess(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "lctools.reproduce", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, **kw)


# ----------------------------------------------------------------------------- command line


def test_list_names_a_figure_per_chapter(capsys):
    assert cli.main(["--list"]) == 0
    listing = capsys.readouterr().out
    assert {spec.chapter for spec in reproduce.FIGURES.values()} == {2, 3, 4, 5, 6}
    for name, spec in reproduce.FIGURES.items():
        assert any(line.split()[:3] == [name, "chapter", str(spec.chapter)] for line in listing.splitlines())


def test_bad_arguments_are_reported(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["no-such-figure"])
    assert info.value.code == 2 and "unknown figure" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2 and "name at least one figure" in capsys.readouterr().err
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


def test_cli_entry_point_reports_bad_set_values_by_name(tmp_path):
    """The real entry point, ``python -m lctools.reproduce``, in its own process: exit
    status 2, the first bad value reported by name on stderr without a traceback, and
    nothing computed or written."""
    out = _cli_subprocess("dynamics", "--set", "lr=nan", "--set", "steps=abc", "--out", str(tmp_path / "out"),
                          "--no-progress", env={"LCTOOLS_CACHE": str(tmp_path / "cache")}, timeout=300)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr, out.stderr
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
def test_bad_devices_get_a_clean_message(device, tmp_path, monkeypatch, capsys):
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="device"):
        reproduce.check_device(device)
    # and through the command line: a message and status 2, nothing computed or written
    monkeypatch.setenv("LCTOOLS_CACHE", str(tmp_path / "cache"))
    assert cli.main(["lc-estimate", "--device", device, "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"device {device!r}" in err, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_out_and_cache_are_checked_writable_before_computing(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(cli, "run", lambda *a, **kw: pytest.fail("computed although a folder is not writable"))
    monkeypatch.setenv("LCTOOLS_CACHE", str(tmp_path / "cache"))
    assert cli.main(["dynamics", "--out", str(blocker / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "output folder" in err and "not writable" in err, err
    monkeypatch.setenv("LCTOOLS_CACHE", str(blocker / "cache"))
    assert cli.main(["dynamics", "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "results cache" in err and "not writable" in err, err
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
    def stop(*args, **kwargs):
        raise exc

    monkeypatch.setattr(cli, "run", stop)
    monkeypatch.setenv("LCTOOLS_CACHE", str(tmp_path / "cache"))
    assert cli.main(["local-rank", "--out", str(tmp_path), "--no-progress"]) == 130
    assert capsys.readouterr().err.strip() == expected


def test_threads_option(monkeypatch, tmp_path, capsys):
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


def test_figures_are_listed_explicitly_without_import_cycles():
    """In a fresh interpreter (nothing imported yet), an experiment module first and then
    the figure list: with a cycle through the registry this import order fails."""
    code = ("import lctools.experiments.mnist_dynamics, lctools.reproduce.figures as f; "
            "print(sorted(f.build_figures()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(sorted(reproduce.FIGURES))
    for spec in reproduce.FIGURES.values():
        assert spec.compute.__module__.startswith(("lctools.experiments", "lctools.reproduce.figures"))
        assert spec.claims.__module__.startswith("lctools.experiments")


# ----------------------------------------------------------------------------- figures


CHECKS = {name: spec.claims for name, spec in reproduce.FIGURES.items()}


def test_every_figure_is_checked():
    assert set(CHECKS) == set(reproduce.FIGURES)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One results cache for the figures: ``dynamics`` re-uses the MNIST run of ``robustness``."""
    return tmp_path_factory.mktemp("figures-cache")


def _snapshot(folder: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", list(CHECKS))
def test_figure_is_written_checked_and_cached(name, tmp_path, shared_cache, monkeypatch):
    """``run`` on small settings writes the PNG, CSV and JSON; the JSON holds the settings
    and the claims of the figure's experiment evaluated on its summary (the same report as
    ``claims(summary)``); a second call loads the result from the cache: nothing is
    trained or stored again, and the CSV is the same."""
    overrides = _small(name)
    assert {"steps", "seeds"} & set(overrides) or {"exact_draws", "n_points"} <= set(overrides), overrides
    paths = reproduce.run(name, mode="quick", device="cpu", out=tmp_path / "a", overrides=overrides,
                          progress=False, cache=shared_cache)
    assert set(paths) == {"png", "csv", "json"} and all(p.is_file() for p in paths.values())
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths["png"].stat().st_size > 20_000
    meta = json.loads(paths["json"].read_text())
    assert meta["figure"] == name and meta["mode"] == "quick" and meta["device"] == "cpu"
    assert all(meta["settings"][k] == v for k, v in overrides.items())
    header, *rows = paths["csv"].read_text().splitlines()
    assert rows and len(header.split(",")) >= 3
    claims = CHECKS[name](meta["summary"])  # the experiment's claims, from the JSON's summary
    assert claims.items and meta["claims"] == [dict(text=c.text, holds=bool(c.holds), detail=c.detail)
                                               for c in claims.items]

    before = _snapshot(shared_cache)
    monkeypatch.setattr(lctools.cache, "train_ensemble", lambda *a, **kw: pytest.fail("trained again"))
    again = reproduce.run(name, mode="quick", device="cpu", out=tmp_path / "b", overrides=overrides,
                          progress=False, cache=shared_cache)
    assert _snapshot(shared_cache) == before, "the second call wrote to the cache"
    assert again["csv"].read_text() == paths["csv"].read_text()
    assert json.loads(again["json"].read_text())["claims"] == meta["claims"]


# ----------------------------------------------------------------------------- resuming

#: a training figure on settings where training takes a few seconds, with several checkpoints
RESUME = "local-rank"
RESUME_STEPS = 1000


def _checkpoint_step(cache: Path):
    files = list((cache / "checkpoints").glob("*.pt"))
    if not files:
        return None
    try:
        return torch.load(files[0], weights_only=False)["step"]
    except Exception:  # being replaced right now
        return None


def _csv_numbers(path: Path):
    header, *rows = path.read_text().splitlines()
    return header, np.array([r.split(",") for r in rows], float)


@pytest.mark.slow
def test_killed_run_resumes_from_its_checkpoint(tmp_path, monkeypatch, capsys):
    """Kill a real run (SIGKILL of ``python -m lctools.reproduce``) after a checkpoint part
    way through training, start it again: it resumes from that checkpoint, and its figure's
    numbers equal those of a run that was never killed; a finished figure is re-plotted
    from the cache. The runs after the kill call the command line's ``main`` in-process."""
    cache, out = tmp_path / "cache", tmp_path / "out"
    overrides = _small(RESUME, steps=RESUME_STEPS, widths=[32, 32])
    args = [RESUME, *_set_args(overrides), "--checkpoint-every", "0.2", "--no-progress", "--device", "cpu"]
    proc = subprocess.Popen([sys.executable, "-m", "lctools.reproduce", *args, "--out", str(out)], cwd=ROOT,
                            env={**os.environ, "LCTOOLS_CACHE": str(cache), "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        step = _checkpoint_step(cache)
        if step is not None and step >= RESUME_STEPS // 50:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed:\n" + proc.stdout.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = _checkpoint_step(cache)
    assert killed_at is not None and RESUME_STEPS // 50 <= killed_at < RESUME_STEPS
    assert not (out / f"{RESUME}.png").exists()

    monkeypatch.setenv("LCTOOLS_CACHE", str(cache))
    assert cli.main([*args, "--out", str(out)]) == 0
    assert f"at step {killed_at} of {RESUME_STEPS}" in capsys.readouterr().err
    assert not list((cache / "checkpoints").glob("*.pt"))        # removed once the result is stored

    monkeypatch.setenv("LCTOOLS_CACHE", str(tmp_path / "cache2"))
    assert cli.main([*args, "--out", str(tmp_path / "fresh")]) == 0
    assert "resumed" not in capsys.readouterr().err
    (ha, a), (hb, b) = _csv_numbers(out / f"{RESUME}.csv"), _csv_numbers(tmp_path / "fresh" / f"{RESUME}.csv")
    assert ha == hb and a.shape == b.shape and len(a) > 1
    np.testing.assert_allclose(a, b, rtol=1e-6)

    # a finished figure is re-plotted from the cache: nothing is trained again
    monkeypatch.setenv("LCTOOLS_CACHE", str(cache))
    monkeypatch.setattr(lctools.cache, "train_ensemble", lambda *a, **kw: pytest.fail("trained again"))
    assert cli.main([*args, "--out", str(out)]) == 0
    assert "resumed" not in capsys.readouterr().err
    assert _csv_numbers(out / f"{RESUME}.csv")[1].tolist() == a.tolist()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_figures_on_cuda(tmp_path):
    for name in ("weight-decay", "lc-estimate"):
        paths = reproduce.run(name, device="cuda", out=tmp_path, overrides=_small(name), progress=False,
                              cache=tmp_path / "cache")
        meta = json.loads(paths["json"].read_text())
        assert meta["device"].startswith("cuda") and paths["png"].is_file()


def test_each_chapter_checks_its_figures_claims():
    """The quick-mode claims of a figure are asserted where its chapter runs them (the book
    build executes every chapter in each test run; the tests above use small settings): the
    chapter of every figure calls its experiment's ``claims`` and ``claims.check()``."""
    chapters = {int(p.name[:2]): p for p in (ROOT / "book").glob("[0-9][0-9]_*.ipynb")}
    for name, spec in reproduce.FIGURES.items():
        module = spec.claims.__module__.rsplit(".", 1)[-1]
        nb = json.loads(chapters[spec.chapter].read_text(encoding="utf-8"))
        code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
        assert f"{module}.claims(" in code and "claims.check()" in code, (name, chapters[spec.chapter].name)
