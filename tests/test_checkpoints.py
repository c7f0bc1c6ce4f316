"""lctools.checkpoints and the checkpointed ensemble run: Ctrl-C saves and says where it
stopped, checkpoints are read as data only, and temporary files of killed writers go away.

The reference for every interrupted run is the same run never interrupted: resuming must
give identical parameters and records.
"""
import os
import pickle
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

import lctools
from lctools import cache, checkpoints, ensemble as ensemble_module
from lctools.ensemble import Ensemble, train_ensemble

pytestmark = pytest.mark.usefixtures("one_thread")

G = torch.Generator().manual_seed(0)
X = torch.rand(200, 6, generator=G)
Y = torch.randint(0, 3, (200,), generator=G)
EVALS, STEPS = [0, 5, 20, 40], 40
KW = dict(lr=[1e-2, 5e-3], weight_decay=0.1, seeds=[0, 1], batch_size=32, eval_steps=EVALS, progress=False)


def factory():
    return lctools.MLP(6, [16, 12], 3)


def lc(model):
    return lctools.local_complexity(model, X[:50], 0.5, noise_draws=0)


def reference():
    ens = Ensemble.build(factory, [0, 1])
    return ens, train_ensemble(ens, X, Y, STEPS, metrics={"lc": lc}, **KW)


def assert_same_run(ens, hists, ref_ens, ref):
    for h, r in zip(hists, ref):
        np.testing.assert_array_equal(h.loss, r.loss)
        np.testing.assert_array_equal(h["lc"], r["lc"])
    for a, b in zip(ens.parameters(), ref_ens.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.fixture(autouse=True)
def sigint_as_in_a_terminal():
    """Each test starts with Python's own SIGINT handler, as in a terminal (a test worker
    started in the background ignores SIGINT); the worker's handler is restored after it."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def interrupting_metric(at_call, how):
    """lc, but the ``at_call``-th call raises KeyboardInterrupt or sends SIGINT to this process."""
    calls = {"n": 0}

    def metric(model):
        calls["n"] += 1
        if calls["n"] == at_call:
            if how == "raise":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGINT)
        return lc(model)

    return metric, calls


# evaluations: step 0 -> calls 1-2, step 5 -> 3-4, step 20 -> 5-6, step 40 -> 7-8
@pytest.mark.parametrize("how", ["raise", "signal"])
@pytest.mark.parametrize("at_call, step", [(1, 0), (4, 5), (5, 20), (8, 40)])
def test_ctrl_c_saves_a_checkpoint_and_resumes_to_the_same_result(tmp_path, how, at_call, step):
    ref_ens, ref = reference()
    path = tmp_path / "run.pt"
    metric, calls = interrupting_metric(at_call, how)
    with pytest.raises(cache.TrainingInterrupted) as info:
        train_ensemble(Ensemble.build(factory, [0, 1]), X, Y, STEPS, metrics={"lc": metric}, checkpoint=path,
                       checkpoint_interval=1e9, **KW)
    exc = info.value
    assert isinstance(exc, KeyboardInterrupt)
    assert (exc.step, exc.total, exc.checkpoint) == (step, STEPS, path)
    assert str(exc) == f"interrupted at step {step} of {STEPS}; run again to resume"
    assert torch.load(path, weights_only=True)["step"] == step
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is restored
    ens = Ensemble.build(factory, [0, 1])
    hists = train_ensemble(ens, X, Y, STEPS, metrics={"lc": metric}, checkpoint=path, **KW)
    assert_same_run(ens, hists, ref_ens, ref)


def test_a_process_that_ignores_ctrl_c_keeps_ignoring_it(tmp_path):
    """A background job (SIGINT ignored) is not stopped by a SIGINT during training, and
    SIGINT is still ignored afterwards."""
    ref_ens, ref = reference()
    metric, calls = interrupting_metric(4, "signal")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ens = Ensemble.build(factory, [0, 1])
    hists = train_ensemble(ens, X, Y, STEPS, metrics={"lc": metric}, checkpoint=tmp_path / "run.pt",
                           checkpoint_interval=1e9, **KW)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert calls["n"] >= 4  # the signal was sent
    assert_same_run(ens, hists, ref_ens, ref)


def test_interrupt_without_checkpoint_says_nothing_was_kept():
    metric, _ = interrupting_metric(3, "raise")
    with pytest.raises(cache.TrainingInterrupted, match="interrupted at step 5 of 40; no checkpoint was kept"):
        train_ensemble(Ensemble.build(factory, [0, 1]), X, Y, STEPS, metrics={"lc": metric}, **KW)


def test_interrupt_mid_update_keeps_the_last_clean_checkpoint(tmp_path, monkeypatch):
    """A KeyboardInterrupt inside an update (a second Ctrl-C) leaves half-updated parameters:
    nothing is saved then, the last checkpoint stays, and resuming from it is exact."""
    ref_ens, ref = reference()
    path = tmp_path / "run.pt"
    real_step, count = ensemble_module._StackedOptimizer.step, {"n": 0}

    def flaky_step(self):
        count["n"] += 1
        if count["n"] == 27:  # inside update 27 (after the step-20 checkpoint)
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(ensemble_module._StackedOptimizer, "step", flaky_step)
    with pytest.raises(cache.TrainingInterrupted) as info:
        train_ensemble(Ensemble.build(factory, [0, 1]), X, Y, STEPS, metrics={"lc": lc}, checkpoint=path,
                       checkpoint_interval=1e9, **KW)
    assert info.value.step == 20 and torch.load(path, weights_only=True)["step"] == 20
    monkeypatch.setattr(ensemble_module._StackedOptimizer, "step", real_step)
    ens = Ensemble.build(factory, [0, 1])
    assert_same_run(ens, train_ensemble(ens, X, Y, STEPS, metrics={"lc": lc}, checkpoint=path, **KW), ref_ens, ref)


def test_cached_train_ensemble_interrupt_then_resume(tmp_path):
    metric, _ = interrupting_metric(5, "signal")
    kw = dict(steps=STEPS, lr=1e-2, batch_size=32, eval_steps=EVALS, progress=False)
    with pytest.raises(cache.TrainingInterrupted) as info:
        cache.cached_train_ensemble({"x": 1}, factory, [0, 1], X, Y, metrics={"lc": metric}, cache=tmp_path, **kw)
    assert info.value.checkpoint.exists() and info.value.checkpoint.parent == tmp_path / "checkpoints"
    ens, hists = cache.cached_train_ensemble({"x": 1}, factory, [0, 1], X, Y, metrics={"lc": metric},
                                             cache=tmp_path, **kw)
    ref = Ensemble.build(factory, [0, 1])
    ref_h = train_ensemble(ref, X, Y, metrics={"lc": lc}, seeds=[0, 1], **kw)
    assert_same_run(ens, hists, ref, ref_h)
    assert not info.value.checkpoint.exists()  # removed once the result is stored


class RunsCode:
    """Unpickling this runs code (it creates a marker file)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_crafted_checkpoint_runs_no_code(tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "run.pt"
    kw = dict(KW, eval_steps=[0, 10])
    train_ensemble(Ensemble.build(factory, [0, 1]), X, Y, 10, checkpoint=path, **kw)
    state = torch.load(path, weights_only=True)
    state["evil"] = RunsCode(marker)  # a checkpoint of *this* run (the right fingerprint), plus code
    torch.save(state, path)
    with pytest.warns(checkpoints.CheckpointWarning, match="could not be read as data"):
        train_ensemble(Ensemble.build(factory, [0, 1]), X, Y, 10, checkpoint=path, **kw)
    assert not marker.exists()
    with open(path, "wb") as f:  # a bare pickle, not even torch's format
        pickle.dump(RunsCode(marker), f)
    with pytest.warns(checkpoints.CheckpointWarning):
        assert checkpoints.load_checkpoint(path, "any") is None
    assert not marker.exists()


def test_a_crafted_cached_model_runs_no_code(tmp_path):
    import io
    import json

    marker = tmp_path / "pwned"
    c = cache.ResultsCache(tmp_path / "c")
    build = lambda: lctools.MLP(6, [4], 3)  # noqa: E731
    m1, _ = cache.cached_train({"m": 1}, build, X, Y, cache=c, steps=3, eval_steps=[3], progress=False)
    entry = next(p for p in c.root.iterdir() if len(p.name) == 64)
    buf = io.BytesIO()
    torch.save({"0.weight": RunsCode(marker)}, buf)
    (entry / "model.pt").write_bytes(buf.getvalue())
    manifest = json.loads((entry / "MANIFEST.json").read_text())  # a consistent manifest, as an attacker would
    manifest["files"]["model.pt"] = lctools.hashing.sha256(buf.getvalue())
    (entry / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.warns(cache.CacheWarning, match="could not be read as data"):
        m2, _ = cache.cached_train({"m": 1}, build, X, Y, cache=c, steps=3, eval_steps=[3], progress=False)
    assert not marker.exists() and torch.equal(m1[0].weight, m2[0].weight)


def test_orphan_checkpoint_temporaries_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    path = tmp_path / "run.pt"
    orphan = tmp_path / f".run.pt.{dead}.tmp"
    orphan.write_bytes(b"half")
    ours = tmp_path / f".run.pt.{os.getpid()}.tmp"  # a live writer (this process) is left alone
    ours.write_bytes(b"writing")
    assert checkpoints.load_checkpoint(path, "x") is None
    assert not orphan.exists() and ours.exists()
    old = tmp_path / ".run.pt.old.tmp"  # no pid: removed once older than ORPHAN_AGE
    old.write_bytes(b"")
    os.utime(old, (0, 0))
    checkpoints.save_atomic({"fingerprint": "x"}, path)
    assert not old.exists() and checkpoints.load_checkpoint(path, "x") == {"fingerprint": "x"}


def test_unwritable_checkpoint_warns_and_training_goes_on(tmp_path):
    (tmp_path / "file").write_text("x")
    ens = Ensemble.build(factory, [0, 1])
    with pytest.warns(checkpoints.CheckpointWarning, match="cannot be written"):
        hists = train_ensemble(ens, X, Y, STEPS, checkpoint=tmp_path / "file" / "run.pt", metrics={"lc": lc}, **KW)
    ref_ens, ref = reference()
    assert_same_run(ens, hists, ref_ens, ref)
