"""Tests for lctools.cache: keys, hits and misses, corrupt and partial entries, train-or-load."""
import json
import math
import warnings

import numpy as np
import pytest
import torch

from lctools import MLP, cache, training
from lctools.data import two_moons

from helpers import UNWRITABLE, unwritable_folder as _unwritable

CONFIG = {"model": {"widths": (8, 8)}, "lr": 1e-2, "steps": 20, "seed": np.int64(3), "wd": np.float32(0.5),
          "schedule": None, "flag": True, "name": "moons"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv("LCTOOLS_CACHE", raising=False)


class Counter:
    def __init__(self, value=None):
        self.calls, self.value = 0, value or {"lc": [1.0, 0.5], "acc": np.float64(0.75), "arr": np.arange(3)}

    def __call__(self):
        self.calls += 1
        return self.value


def test_key_is_stable_and_canonical(tmp_path):
    c = cache.ResultsCache(tmp_path)
    k = c.key(CONFIG)
    assert len(k) == 64 and k == cache.ResultsCache(tmp_path / "other").key(dict(reversed(list(CONFIG.items()))))
    assert c.key({**CONFIG, "model": {"widths": [8, 8]}}) == k  # tuples are lists
    assert c.key({**CONFIG, "seed": 3}) == k  # numpy scalars are Python numbers
    assert c.key({**CONFIG, "lr": 2e-2}) != k
    assert c.key({"x": math.inf}) != c.key({"x": "inf"})
    assert c.path(CONFIG) == tmp_path / k


def test_second_call_is_a_hit(tmp_path):
    c, compute = cache.ResultsCache(tmp_path), Counter()
    first = c.get_or_compute(CONFIG, compute)
    second = cache.ResultsCache(tmp_path).get_or_compute(CONFIG, compute)  # a new session
    assert compute.calls == 1 and first == second == {"lc": [1.0, 0.5], "acc": 0.75, "arr": [0, 1, 2]}
    assert len(c) == 1 and CONFIG in c
    entry = c.path(CONFIG)
    assert sorted(p.name for p in entry.iterdir()) == ["MANIFEST.json", "config.json", "result.json"]
    assert not [p for p in tmp_path.iterdir() if p != entry]  # no temporary leftovers


def test_changes_recompute(tmp_path, monkeypatch):
    c, compute = cache.ResultsCache(tmp_path), Counter()
    c.get_or_compute(CONFIG, compute)
    c.get_or_compute({**CONFIG, "steps": 21}, compute)
    assert compute.calls == 2
    monkeypatch.setattr(cache, "CACHE_VERSION", "99")  # a change of numerics starts afresh
    c.get_or_compute(CONFIG, compute)
    assert compute.calls == 3 and len(c) == 3


@pytest.mark.parametrize("damage", ["truncate", "corrupt", "no_manifest", "bad_manifest", "missing_file"])
def test_damaged_entries_are_recomputed_and_repaired(tmp_path, damage):
    c, compute = cache.ResultsCache(tmp_path), Counter()
    c.get_or_compute(CONFIG, compute)
    entry = c.path(CONFIG)
    result = entry / "result.json"
    if damage == "truncate":  # killed while writing
        result.write_bytes(result.read_bytes()[:10])
    elif damage == "corrupt":  # same length, one byte changed
        data = bytearray(result.read_bytes())
        data[2] ^= 1
        result.write_bytes(bytes(data))
    elif damage == "no_manifest":  # killed before the manifest was written
        (entry / "MANIFEST.json").unlink()
    elif damage == "bad_manifest":
        (entry / "MANIFEST.json").write_text("{")
    else:
        (entry / "config.json").unlink()
    assert CONFIG not in c
    with pytest.warns(cache.CacheWarning, match="recomputing"):
        value = c.get_or_compute(CONFIG, compute)
    assert compute.calls == 2 and value["lc"] == [1.0, 0.5]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert c.get_or_compute(CONFIG, compute) == value  # repaired: a silent hit
    assert compute.calls == 2


def test_interrupted_store_leaves_no_entry(tmp_path, monkeypatch):
    """A store killed before the manifest is written: nothing half-written is ever used."""
    c, compute = cache.ResultsCache(tmp_path), Counter()
    real_write = cache._write

    def dying_write(path, data):
        if path.name == "MANIFEST.json":
            raise KeyboardInterrupt
        real_write(path, data)

    monkeypatch.setattr(cache, "_write", dying_write)
    with pytest.raises(KeyboardInterrupt):
        c.get_or_compute(CONFIG, compute)
    assert len(c) == 0 and not any(tmp_path.iterdir())
    # a temporary directory left by a process killed outright is ignored, then cleared
    monkeypatch.setattr(cache, "_write", real_write)
    (tmp_path / ".tmp-deadbeef-x").mkdir()
    (tmp_path / ".tmp-deadbeef-x" / "result.json").write_text("{")
    assert c.get_or_compute(CONFIG, compute) == c.get_or_compute(CONFIG, compute)
    assert compute.calls == 2 and len(c) == 1
    assert c.clear() == 1 and not any(tmp_path.iterdir())


def test_non_serialisable_config_is_rejected(tmp_path):
    c = cache.ResultsCache(tmp_path)
    with pytest.raises(ValueError, match=r"config\['data'\].*torch.Tensor"):
        c.key({"data": torch.zeros(3)})
    with pytest.raises(ValueError, match="function"):
        c.get_or_compute({"act": [torch.relu]}, Counter())
    with pytest.raises(ValueError, match="type object"):
        c.key({"x": object()})
    with pytest.raises(ValueError, match="string"):
        c.key({1: 2})
    with pytest.raises(ValueError, match="dict"):
        c.get_or_compute(CONFIG, lambda: [1, 2])
    assert len(c) == 0


def test_root_and_env(tmp_path, monkeypatch):
    monkeypatch.setenv("LCTOOLS_CACHE", str(tmp_path / "env"))
    assert cache.ResultsCache().root == tmp_path / "env"
    assert cache.ResultsCache(tmp_path / "arg").root == tmp_path / "arg"  # the argument wins
    c, compute = cache.ResultsCache(), Counter()
    c.get_or_compute(CONFIG, compute)
    assert (tmp_path / "env" / c.key(CONFIG) / "MANIFEST.json").is_file()
    monkeypatch.delenv("LCTOOLS_CACHE")
    assert cache.ResultsCache().root == (cache.Path.home() / ".cache" / "lctools" / "results")


@pytest.mark.parametrize("how", ["env", "arg"])
def test_disabled_cache_always_computes(tmp_path, monkeypatch, how):
    if how == "env":
        monkeypatch.setenv("LCTOOLS_CACHE", "off")
        c = cache.ResultsCache(tmp_path)
    else:
        c = cache.ResultsCache(tmp_path, enabled=False)
    compute = Counter()
    assert c.get_or_compute(CONFIG, compute) == c.get_or_compute(CONFIG, compute)
    assert compute.calls == 2 and not any(tmp_path.iterdir())


def test_clear_only_removes_entries(tmp_path):
    c = cache.ResultsCache(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    for steps in range(3):
        c.get_or_compute({**CONFIG, "steps": steps}, Counter())
    assert len(c) == 3 and c.clear() == 3 and len(c) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.fixture(scope="module")
def moons():
    return two_moons(n=128, noise=0.1, seed=0)


def test_cached_train_trains_once(tmp_path, monkeypatch, moons):
    X, y = moons
    calls = []
    real_train = training.train
    monkeypatch.setattr(training, "train", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    config = {"model": "MLP(2, [8, 8], 2)", "data": "two_moons(n=128, noise=0.1, seed=0)"}
    kwargs = dict(steps=30, lr=1e-2, seed=1, eval_steps=[0, 10, 30], progress=False)
    metrics = {"w": lambda m: m[0].weight.norm()}
    build = lambda: MLP(2, [8, 8], 2)  # noqa: E731

    torch.manual_seed(123)
    rng_before = torch.get_rng_state()
    m1, h1 = cache.cached_train(config, build, X, y, metrics=metrics, cache=tmp_path, **kwargs)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is left alone
    m2, h2 = cache.cached_train(config, build, X, y, metrics=metrics, cache=cache.ResultsCache(tmp_path), **kwargs)
    assert len(calls) == 1
    assert h1.to_dict() == h2.to_dict() and list(h2.steps) == [0, 10, 30] and h2["w"].shape == (3,)
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert torch.equal(m1(X), m2(X))
    assert h1.loss[-1] < h1.loss[0]

    # what the entry holds, and what changes the key
    entry = next(p for p in tmp_path.iterdir())
    assert sorted(p.name for p in entry.iterdir()) == ["MANIFEST.json", "config.json", "model.pt", "result.json"]
    assert set(json.loads((entry / "MANIFEST.json").read_text())["files"]) == {"config.json", "result.json", "model.pt"}
    cache.cached_train(config, build, X, y, metrics=metrics, cache=tmp_path, **{**kwargs, "progress": True})
    assert len(calls) == 1  # progress does not change what is computed
    cache.cached_train(config, build, X, y, metrics=metrics, cache=tmp_path, **{**kwargs, "lr": 2e-2})
    cache.cached_train(config, build, X[:64], y[:64], metrics=metrics, cache=tmp_path, **kwargs)
    cache.cached_train(config, build, X, y, cache=tmp_path, **kwargs)
    assert len(calls) == 4


def test_cached_train_repairs_a_corrupt_model(tmp_path, moons):
    X, y = moons
    build = lambda: MLP(2, [4], 2)  # noqa: E731
    kwargs = dict(steps=5, eval_steps=[0, 5], progress=False)
    m1, _ = cache.cached_train({"m": 1}, build, X, y, cache=tmp_path, **kwargs)
    entry = next(p for p in tmp_path.iterdir())
    (entry / "model.pt").write_bytes(b"garbage")
    with pytest.warns(cache.CacheWarning, match="model.pt"):
        m2, _ = cache.cached_train({"m": 1}, build, X, y, cache=tmp_path, **kwargs)
    assert torch.equal(m1(X), m2(X))  # retrained deterministically from the seeded initialisation
    with pytest.raises(ValueError, match=r"config\[.X.\] is a torch.Tensor"):
        cache.cached_train({"X": X}, build, X, y, cache=tmp_path, **kwargs)


# ----------------------------------------------------------------------------- nothing computed is lost
@pytest.mark.parametrize("kind", UNWRITABLE)
def test_store_that_cannot_write_warns_and_returns_the_value(tmp_path, monkeypatch, kind):
    root = _unwritable(kind, tmp_path, monkeypatch)
    c, compute = cache.ResultsCache(root), Counter()
    with pytest.warns(cache.CacheWarning, match="could not store"):
        value = c.get_or_compute(CONFIG, compute)
    assert value == {"lc": [1.0, 0.5], "acc": 0.75, "arr": [0, 1, 2]} and compute.calls == 1
    assert not c.writable() or kind == "disk full"


@pytest.mark.parametrize("kind", ["root is a file", "read-only filesystem", "rename fails"])
def test_cached_train_with_unwritable_cache_returns_the_model(tmp_path, monkeypatch, moons, kind):
    root = _unwritable(kind, tmp_path, monkeypatch)
    X, y = moons
    with pytest.warns(cache.CacheWarning, match="could not store"):
        model, hist = cache.cached_train({"m": 1}, lambda: MLP(2, [4], 2), X, y, cache=root, steps=5,
                                         eval_steps=[0, 5], progress=False)
    assert list(hist.steps) == [0, 5] and hist.loss[-1] < hist.loss[0]
    with pytest.warns(cache.CacheWarning, match="could not store"):
        ens, hists = cache.cached_train_ensemble({"m": 1}, lambda: MLP(2, [4], 2), [0, 1], X, y, cache=root,
                                                 steps=5, eval_steps=[0, 5], progress=False)
    assert len(hists) == 2
    torch.testing.assert_close(ens.member(0)[0].weight, model[0].weight, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("value", ["none", "None", "NONE", " off ", "OFF", "0", "false", "False", "no"])
def test_env_values_that_mean_off(tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LCTOOLS_CACHE", value)
    c, compute = cache.ResultsCache(), Counter()
    assert not c.enabled
    c.get_or_compute(CONFIG, compute)
    c.get_or_compute(CONFIG, compute)
    assert compute.calls == 2 and list(tmp_path.iterdir()) == []  # no folder called "none"


def test_orphan_temporaries_of_killed_writers_are_removed(tmp_path):
    import os
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    c = cache.ResultsCache(tmp_path)
    (tmp_path / f".tmp-{dead}-0123456789ab-xyz").mkdir()                 # a killed store()
    (tmp_path / f".tmp-{dead}-trash-{'a' * 64}").mkdir()                  # a killed _remove()
    live = tmp_path / f".tmp-{os.getpid()}-0123456789ab-live"             # ours, still writing
    live.mkdir()
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    (ckpts / f".{'b' * 64}.pt.{dead}.tmp").write_bytes(b"half a checkpoint")
    old = tmp_path / ".tmp-oldformat-abc"                                  # no pid: removed by age
    old.mkdir()
    os.utime(old, (0, 0))
    c.get_or_compute(CONFIG, Counter())
    names = sorted(p.name for p in tmp_path.iterdir())
    assert live.name in names and all(not n.startswith(".tmp-") or n == live.name for n in names), names
    assert list(ckpts.iterdir()) == []


@pytest.mark.parametrize("change", ["activation", "widths", "slope", "init", "flatten"])
def test_model_changes_without_config_change_do_not_load_stale_weights(tmp_path, moons, change):
    X, y = moons
    base = dict(in_dim=2, widths=[6], out_dim=2, activation="leaky_relu", negative_slope=0.1)
    other = dict(base, **{"activation": dict(activation="relu"), "widths": dict(widths=[7]),
                          "slope": dict(negative_slope=0.3), "init": dict(init="he"),
                          "flatten": dict(flatten=True)}[change])
    kw = dict(steps=5, eval_steps=[0, 5], progress=False, seed=0)
    m1, h1 = cache.cached_train({"m": "same"}, lambda: MLP(**base), X, y, cache=tmp_path, **kw)
    m2, h2 = cache.cached_train({"m": "same"}, lambda: MLP(**other), X, y, cache=tmp_path, **kw)
    assert len(cache.ResultsCache(tmp_path)) == 2  # a second entry: the model is part of the key
    ref = MLP(**other)
    ref.load_state_dict(m2.state_dict())
    assert repr(m2) == repr(ref)
    kw.pop("seed")
    e1, _ = cache.cached_train_ensemble({"m": "same"}, lambda: MLP(**base), [0], X, y, cache=tmp_path, **kw)
    e2, _ = cache.cached_train_ensemble({"m": "same"}, lambda: MLP(**other), [0], X, y, cache=tmp_path, **kw)
    assert len(cache.ResultsCache(tmp_path)) == 4


_RACER = """
import os, sys, time
import torch
from lctools import MLP, cache

root, log = sys.argv[1], sys.argv[2]


def note(kind):  # one line per computation (a training calls its metric at steps 0 and 2)
    with open(log, "a") as f:
        f.write(kind + "\\n")
    time.sleep(0.5)  # hold the entry long enough for the other process to ask for it
    return 0.0


# start together: both processes have imported torch before either asks for an entry
open(f"{log}.ready-{os.getpid()}", "w").close()
deadline = time.monotonic() + 120
while sum(n.startswith(os.path.basename(log) + ".ready-") for n in os.listdir(os.path.dirname(log))) < 2:
    assert time.monotonic() < deadline, "the other process did not start"
    time.sleep(0.01)

store = cache.ResultsCache(root)
torch.manual_seed(0)  # the same data in both processes
X, y = torch.rand(16, 2), torch.randint(0, 2, (16,))
print(store.get_or_compute({"race": 1}, lambda: {"value": note("compute") + 1}))
_, h = cache.cached_train({"race": 2}, lambda: MLP(2, [3], 2), X, y, cache=store, steps=2, progress=False,
                          metrics={"m": lambda m: note("train")}, eval_steps=[0, 2])
print(h["m"].tolist())
_, hs = cache.cached_train_ensemble({"race": 3}, lambda: MLP(2, [3], 2), [0, 1], X, y, cache=store, steps=2,
                                    progress=False, metrics={"m": lambda m: note("ensemble")}, eval_steps=[0, 2])
print(len(hs))
"""


def test_two_processes_asking_for_one_entry_compute_it_once(tmp_path):
    """Two processes start the same three computations at the same moment (a value, a
    training, an ensemble training): each is computed once, under its entry's lock; the
    process that waited loads the result (the computations sleep, so without the lock both
    would compute)."""
    import subprocess
    import sys

    log = tmp_path / "log.txt"
    script = tmp_path / "racer.py"
    script.write_text(_RACER)
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "cache"), str(log)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    assert outs[0][0] == outs[1][0]  # the same values in both processes
    lines = log.read_text().split()
    # one computation each: the value once, each training's metric at its two evaluations
    assert lines.count("compute") == 1 and lines.count("train") == 2, lines
    assert lines.count("ensemble") == 2 * 2, lines  # two members, two evaluations, one training
    assert not list((tmp_path / "cache" / "checkpoints").glob("*.pt"))


@pytest.mark.parametrize("obstacle", ["folder", "lock file"])
def test_a_lock_that_cannot_be_made_does_not_stop_the_computation(tmp_path, monkeypatch, obstacle):
    """The lock folder is a file, or the entry's lock file is a folder (say, left by another
    program): the value is computed and stored all the same, without the lock."""
    import os
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    folder = tmp_path / "tmp" / f"lctools-locks-{os.getuid() if hasattr(os, 'getuid') else 0}"
    c, compute = cache.ResultsCache(tmp_path / "cache"), Counter()
    if obstacle == "folder":
        folder.write_text("not a folder")
    else:
        (folder / f"{c.key(CONFIG)}.lock").mkdir(parents=True)
    assert c.get_or_compute(CONFIG, compute) == c.get_or_compute(CONFIG, compute)
    assert compute.calls == 1 and CONFIG in c
