"""A results cache (train-or-load), so that re-building the book does not retrain.

An entry is identified by a *configuration*: a JSON-like dict that fully describes the
computation (model, data, optimiser, steps, seeds, ...).  Its key is

    sha256( canonical JSON of {"config": config, "lctools": CACHE_VERSION,
                               "torch": torch major.minor} )

with sorted keys, so the same configuration gives the same key in every session, and a
change of lctools' numerics (``lctools.versions.CACHE_VERSION``) or of torch's version
starts afresh.  For trained models (:func:`cached_train`, :func:`cached_train_ensemble`)
the configuration also holds the data's fingerprint and the *model's*: its architecture
(every layer, width and activation) and its initial parameters, so changing the model
without changing ``config`` never loads another model's weights.  Each entry is a directory ``<root>/<key>/``
holding ``config.json``, ``result.json``, optionally ``model.pt`` (a ``state_dict``), and
``MANIFEST.json``, written last, with the sha256 of every other file.

Guarantees:

- an entry is used only if its manifest exists and every checksum matches (and the stored
  configuration is the requested one); otherwise a :class:`CacheWarning` is issued, the
  value is recomputed and the entry repaired;
- entries are written into a temporary directory under the root and moved into place
  with ``os.replace``, so a run killed mid-way never leaves a half-written entry in use;
- a miss and a later hit return the same value: results are returned as their JSON
  round-trip in both cases (lists for tuples/arrays, plain floats for numpy scalars);
- nothing computed is lost: when an entry cannot be written (a read-only folder or
  filesystem, ``LCTOOLS_CACHE`` naming a file, a failed move) a :class:`CacheWarning` says
  so and the value is returned all the same; temporary files of killed writers are removed
  (:meth:`ResultsCache.remove_orphans`);
- one computation per entry at a time: a process that misses an entry computes it under a
  lock (:meth:`ResultsCache.computing`); another process that asks for the same entry
  meanwhile waits, then loads what the first stored (two notebooks, or a notebook and
  ``python -m lctools.reproduce``, never train the same run twice at once);
- training checkpoints are read as data only (``torch.load(weights_only=True)``), and
  Ctrl-C during a checkpointed ensemble run saves the state and raises
  :class:`TrainingInterrupted` ("interrupted at step X of Y; run again to resume").

Root directory: the ``root`` argument, else the environment variable ``LCTOOLS_CACHE``,
else ``~/.cache/lctools/results``.  ``LCTOOLS_CACHE=off`` (also ``none``, ``0``, ``false``,
``no``, in any case; or ``enabled=False``) turns caching off: everything is computed,
nothing is read or written.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from filelock import FileLock
from torch import nn

from . import training
from .checkpoints import TrainingInterrupted, remove_orphans
from .ensemble import Ensemble, train_ensemble
from .hashing import canonical, dumps, model_fingerprint, result_json, sha256, tensor_fingerprint, torch_version
from .models import build_seeded
from .validation import check_writable
from .versions import CACHE_VERSION

__all__ = ["ResultsCache", "CacheWarning", "TrainingInterrupted", "cached_train", "cached_train_ensemble",
           "canonical", "cache_disabled_by_env", "ENV", "OFF"]

ENV = "LCTOOLS_CACHE"
OFF = ("off", "false", "0", "no", "none", "disable", "disabled")
DEFAULT_ROOT = "~/.cache/lctools/results"
MANIFEST = "MANIFEST.json"
_TMP = ".tmp-"


class CacheWarning(UserWarning):
    """An entry was found incomplete or corrupt and is being recomputed, or a result could
    not be stored (it is returned all the same)."""


def cache_disabled_by_env(value: Optional[str] = None) -> bool:
    """Whether ``LCTOOLS_CACHE`` (or ``value``) turns caching off: one of ``OFF``, in any
    case and with surrounding spaces (``off``, ``none``, ``0``, ``false``, ``no``, ...).

    Example
    -------
    >>> cache_disabled_by_env(" None "), cache_disabled_by_env("/tmp/results")
    (True, False)
    """
    value = os.environ.get(ENV, "") if value is None else value
    return value.strip().lower() in OFF


_TMP_PID = re.compile(r"^\.tmp-(?:trash-.*-)?(\d+)(?:-|$)")


# ----------------------------------------------------------------------------- cache
class ResultsCache:
    """Train-or-load storage for results keyed by configuration (module docstring).

    Parameters
    ----------
    root
        Directory of the entries; default ``$LCTOOLS_CACHE`` or ``~/.cache/lctools/results``.
    enabled
        ``False`` disables caching; default: enabled unless ``LCTOOLS_CACHE=off``.
    """

    def __init__(self, root: Union[str, os.PathLike, None] = None, enabled: Optional[bool] = None):
        env = os.environ.get(ENV, "").strip()
        env_off = cache_disabled_by_env(env)
        if enabled is None:
            enabled = not env_off
        if root is None:
            root = env if env and not env_off else DEFAULT_ROOT
        self.root = Path(root).expanduser()
        self.enabled = bool(enabled)

    def __repr__(self) -> str:
        return f"ResultsCache(root={str(self.root)!r}, enabled={self.enabled})"

    # -- keys
    def _payload(self, config: Mapping) -> dict:
        if not isinstance(config, Mapping):
            raise ValueError(f"config must be a dict, got {type(config).__name__}.")
        return {"config": canonical(config), "lctools": CACHE_VERSION, "torch": torch_version()}

    def key(self, config: Mapping) -> str:
        """sha256 (hex) of the canonical JSON of the configuration, lctools'
        ``lctools.versions.CACHE_VERSION`` and torch's major.minor version."""
        return sha256(dumps(self._payload(config)))

    def path(self, config: Mapping) -> Path:
        """The entry directory of ``config`` (which may not exist yet)."""
        return self.root / self.key(config)

    # -- reading
    def _read(self, entry: Path, payload: dict) -> Tuple[Optional[Dict[str, bytes]], str]:
        """The verified file contents of an entry, or ``(None, reason)``."""
        if not entry.exists():
            return None, "missing"
        try:
            manifest = json.loads((entry / MANIFEST).read_bytes())
            files = manifest["files"]
        except FileNotFoundError:
            return None, "no MANIFEST.json (the run that wrote it did not finish)"
        except (ValueError, KeyError, TypeError):
            return None, "unreadable MANIFEST.json"
        if not isinstance(files, dict) or not {"config.json", "result.json"} <= set(files):
            return None, "incomplete MANIFEST.json"
        data = {}
        for name, digest in files.items():
            try:
                data[name] = (entry / name).read_bytes()
            except OSError:
                return None, f"{name} is missing"
            if sha256(data[name]) != digest:
                return None, f"{name} does not match its checksum"
        if data["config.json"] != dumps(payload):
            return None, "its stored configuration differs from the requested one"
        return data, ""

    def _load(self, payload: dict):
        entry = self.root / sha256(dumps(payload))
        data, reason = self._read(entry, payload)
        if data is None and reason != "missing":
            warnings.warn(f"lctools cache: entry {entry} is unusable ({reason}); recomputing it.", CacheWarning,
                          stacklevel=3)
        return data

    def load(self, config: Mapping, map_location="cpu") -> Optional[Tuple[Any, Optional[dict]]]:
        """``(result, state_dict or None)`` of a valid entry for ``config``, else ``None``
        (also when caching is disabled)."""
        payload = self._payload(config)
        if not self.enabled:
            return None
        data = self._load(payload)
        if data is None:
            return None
        state = None
        if "model.pt" in data:
            try:  # data only: a crafted pickle cannot run code here
                state = torch.load(io.BytesIO(data["model.pt"]), map_location=map_location, weights_only=True)
            except Exception as exc:
                warnings.warn(f"lctools cache: model.pt of entry {self.root / sha256(dumps(payload))} could not be "
                              f"read as data ({type(exc).__name__}); recomputing it.", CacheWarning, stacklevel=2)
                return None
        return json.loads(data["result.json"]), state

    def __contains__(self, config: Mapping) -> bool:
        payload = self._payload(config)
        return self._read(self.root / sha256(dumps(payload)), payload)[0] is not None

    # -- writing
    def store(self, config: Mapping, result: Any, state_dict: Optional[Mapping] = None) -> Any:
        """Write an entry (replacing any previous one) and return the JSON round-trip of
        ``result``.  ``state_dict`` (optional) is saved with ``torch.save`` as ``model.pt``.
        When caching is disabled nothing is written."""
        payload = self._payload(config)
        text = json.dumps(result_json(result), sort_keys=True).encode()
        if not self.enabled:
            return json.loads(text)
        files = {"config.json": dumps(payload), "result.json": text}
        if state_dict is not None:
            buf = io.BytesIO()
            torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buf)
            files["model.pt"] = buf.getvalue()
        key = sha256(files["config.json"])
        tmp = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.remove_orphans()
            tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP}{os.getpid()}-{key[:12]}-", dir=self.root))
            for name, data in files.items():
                _write(tmp / name, data)
            manifest = {"files": {name: sha256(data) for name, data in files.items()}, "key": key,
                        "lctools": payload["lctools"], "torch": payload["torch"]}
            _write(tmp / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())  # last
            self._commit(tmp, self.root / key, payload)
        except OSError as exc:  # read-only folder or filesystem, a file in the way, a failed move
            warnings.warn(f"lctools cache: could not store the result under {self.root} ({exc}); it is "
                          "returned but not cached. Set LCTOOLS_CACHE to a writable folder, or to 'off'.",
                          CacheWarning, stacklevel=2)
        finally:
            if tmp is not None and tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return json.loads(text)

    def writable(self) -> bool:
        """Whether entries can be stored under the root: a folder can be made there and moved
        into place, as :meth:`store` does (creates the root if needed; ``False`` when caching
        is disabled).  ``python -m lctools.reproduce`` asks this before computing."""
        if not self.enabled:
            return False
        try:
            check_writable(self.root, "the results cache", prefix=f"{_TMP}{os.getpid()}-probe-")
        except ValueError:
            return False
        return True

    def remove_orphans(self) -> int:
        """Delete temporary directories (``.tmp-<pid>-...``) and training-checkpoint temporary
        files left by processes that were killed mid-write: their process is not running on
        this host, or they are older than a day.  Returns the number removed."""
        return remove_orphans(self.root, f"{_TMP}*", _TMP_PID) + remove_orphans(self.root / "checkpoints")

    def _commit(self, tmp: Path, entry: Path, payload: dict) -> None:
        for _ in range(3):
            try:
                os.replace(tmp, entry)
                return
            except OSError:
                if not entry.exists():
                    raise
                if self._read(entry, payload)[0] is not None:  # another process just finished it
                    return
                _remove(entry)  # stale or corrupt entry in the way
        raise OSError(f"could not move the new cache entry into place at {entry}.")

    @contextmanager
    def computing(self, config: Mapping) -> Iterator[None]:
        """Hold the lock of ``config``'s entry while computing it: another process that
        enters ``computing`` for the same entry waits until this one leaves (and should then
        :meth:`load` before computing).  The lock is a file
        ``<temp dir>/lctools-locks-<user id>/<key>.lock`` (package ``filelock``: an OS lock,
        released when the process ends, even when it is killed), so one user's processes on
        one machine share it and the cache folder holds entries only.  Does nothing when
        caching is disabled or the lock file cannot be made or opened (the computation runs
        all the same, unshared)."""
        lock = None
        if self.enabled:
            folder = Path(tempfile.gettempdir()) / f"lctools-locks-{os.getuid() if hasattr(os, 'getuid') else 0}"
            try:
                folder.mkdir(exist_ok=True)
                lock = FileLock(str(folder / f"{self.key(config)}.lock"))
                lock.acquire()
            except OSError:  # no writable temporary folder, or a lock file in the way
                lock = None
        try:
            yield
        finally:
            if lock is not None:
                lock.release()

    def get_or_compute(self, config: Mapping, compute: Callable[[], Mapping]) -> Any:
        """The stored result of ``config`` if a valid entry exists; otherwise ``compute()``
        (a dict of JSON-like values, numpy arrays or tensors), stored atomically.  Returns
        the JSON round-trip of the result, so a miss and a later hit give equal values.
        A miss computes under :meth:`computing`: a second process asking meanwhile waits and
        loads."""
        def loaded():
            hit = self.load(config)
            return None if hit is None else hit[0]

        return _load_or_compute(self, config, loaded, lambda: self.store(config, self._checked(compute())))

    @staticmethod
    def _checked(result):
        if not isinstance(result, Mapping):
            raise ValueError(f"compute() must return a dict, got {type(result).__name__}.")
        return result

    # -- maintenance
    def _entries(self):
        if not self.root.is_dir():
            return []
        return [p for p in self.root.iterdir() if p.is_dir() and len(p.name) == 64
                and all(c in "0123456789abcdef" for c in p.name)]

    def __len__(self) -> int:
        """Number of finished entries (with a manifest) under the root."""
        return sum((p / MANIFEST).is_file() for p in self._entries())

    def clear(self) -> int:
        """Remove every entry (and leftover temporary directory and training checkpoint) under
        the root; other files there are left alone.  Returns the number of entries removed."""
        entries = self._entries()
        for p in entries:
            _remove(p)
        if self.root.is_dir():
            for p in self.root.glob(f"{_TMP}*"):
                shutil.rmtree(p, ignore_errors=True)
            shutil.rmtree(self.root / "checkpoints", ignore_errors=True)  # of unfinished ensemble runs
        return len(entries)


def _load_or_compute(cache: ResultsCache, config: Mapping, loaded: Callable[[], Any], compute: Callable[[], Any]):
    """``loaded()`` if it finds the entry of ``config``; else, under the entry's lock
    (:meth:`ResultsCache.computing`), ``loaded()`` once more (another process may have
    stored it while this one waited) or ``compute()``, which stores it."""
    found = loaded()
    if found is None:
        with cache.computing(config):
            found = loaded()
            if found is None:
                found = compute()
    return found


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _remove(path: Path) -> None:
    """Move aside atomically, then delete (readers never see a half-deleted entry)."""
    trash = path.with_name(f"{_TMP}{os.getpid()}-trash-{path.name}")
    try:
        os.replace(path, trash)
    except OSError:
        trash = path
    shutil.rmtree(trash, ignore_errors=True)


# ----------------------------------------------------------------------------- train-or-load
def _train_key(kind: str, config: Mapping, X, y, metric_names, train_kwargs: Mapping, model: nn.Module) -> dict:
    """The cache configuration of a training run: the caller's ``config``, the training
    arguments (but ``progress``, ``device`` and checkpoint settings), the metric names, a
    fingerprint of the data and the fingerprint of the initial model (its architecture, with
    every width and activation, and its initial parameters)."""
    for name, t in (("X", X), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"X and y must be torch tensors, got {type(t).__name__} for {name}.")
    ignored = ("progress", "device", "checkpoint", "checkpoint_interval")
    kwargs = {k: v for k, v in train_kwargs.items() if k not in ignored}
    if "decay_biases" in kwargs:  # the default (True) keeps the keys of runs made before it existed
        if not isinstance(kwargs["decay_biases"], (bool, np.bool_)):
            raise ValueError(f"decay_biases must be True or False, got {kwargs['decay_biases']!r}.")
        if kwargs["decay_biases"]:
            del kwargs["decay_biases"]
        else:
            kwargs["decay_biases"] = False
    return {
        kind: canonical(config),
        "train": canonical(kwargs, "train_kwargs"),
        "metrics": list(metric_names),
        "data": {"X": tensor_fingerprint(X), "y": tensor_fingerprint(y)},
        "model": model_fingerprint(model),
    }


def cached_train(
    config: Mapping,
    build_model: Callable[[], nn.Module],
    X: torch.Tensor,
    y: torch.Tensor,
    metrics: Optional[Dict[str, Callable[[nn.Module], Any]]] = None,
    cache: Union[ResultsCache, str, os.PathLike, None] = None,
    **train_kwargs,
) -> Tuple[nn.Module, training.History]:
    """Train-or-load: ``model = build_model()`` trained by
    ``lctools.training.train(model, X, y, metrics=metrics, **train_kwargs)``, or its stored
    ``state_dict`` and :class:`~lctools.training.History` when a valid entry exists.

    ``config`` must describe the model, the data, the optimiser, the steps and the seeds.
    The entry's key also covers, automatically, ``train_kwargs`` (except ``progress`` and
    ``device``), the metric *names* (rename a metric, or change ``config``, when you change
    what it computes) and a sha256 fingerprint of ``X`` and ``y``.

    ``build_model`` is called with torch's RNG seeded by ``train_kwargs.get("seed", 0)``
    (inside ``torch.random.fork_rng``, so the global RNG state is left alone): the initial
    model is a function of the seed.  On a hit it is called the same way and the stored
    weights are loaded into it (strictly), then it is moved to ``device`` if given.

    Returns ``(model, history)``; a miss and a later hit return models with identical
    parameters and equal histories (both are the JSON round-trip).

    Example
    -------
    >>> import tempfile, torch, lctools
    >>> X, y = torch.rand(32, 2), torch.randint(0, 2, (32,))
    >>> build = lambda: lctools.MLP(2, [4], 2)
    >>> root = tempfile.mkdtemp()
    >>> m1, h1 = cached_train({"demo": 1}, build, X, y, cache=root, steps=5, progress=False)
    >>> m2, h2 = cached_train({"demo": 1}, build, X, y, cache=root, steps=5, progress=False)  # loaded
    >>> h1.to_dict() == h2.to_dict()
    True
    """
    if not isinstance(cache, ResultsCache):
        cache = ResultsCache(cache)
    metrics = dict(metrics or {})
    model = build_seeded(build_model, int(train_kwargs.get("seed", 0)))
    if not isinstance(model, nn.Module):
        raise ValueError(f"build_model() must return a torch.nn.Module, got {type(model).__name__}.")
    full = _train_key("lctools.cached_train", config, X, y, sorted(metrics), train_kwargs, model)

    def loaded():
        hit = cache.load(full)
        if hit is None or hit[1] is None:
            return None
        model.load_state_dict(hit[1], strict=True)
        if train_kwargs.get("device") is not None:
            model.to(train_kwargs["device"])
        model.train()  # as train() leaves it
        return model, training.History.from_dict(hit[0]["history"])

    def train():
        history = training.train(model, X, y, metrics=metrics, **train_kwargs)
        result = cache.store(full, {"history": history.to_dict()}, state_dict=model.state_dict())
        return model, training.History.from_dict(result["history"])

    return _load_or_compute(cache, full, loaded, train)


def cached_train_ensemble(
    config: Mapping,
    build_model: Callable[[], nn.Module],
    seeds,
    X: torch.Tensor,
    y: torch.Tensor,
    metrics: Optional[Dict[str, Callable[[nn.Module], Any]]] = None,
    batched_metrics: Optional[Dict[str, Callable[[Any], Any]]] = None,
    cache: Union[ResultsCache, str, os.PathLike, None] = None,
    checkpoint_interval: float = 60.0,
    **train_kwargs,
):
    """Train-or-load an ensemble: members ``build_model()`` built under each seed of ``seeds``
    (:meth:`lctools.ensemble.Ensemble.build`), trained by
    :func:`lctools.ensemble.train_ensemble` with ``seeds=seeds``; the key is formed as in
    :func:`cached_train`.

    While training, the state is checkpointed to ``<cache root>/checkpoints/<key>.pt``
    (every evaluation step and every ``checkpoint_interval`` seconds): a run that is killed
    resumes from there when called again, and the checkpoint is deleted once the result is
    stored.  With caching off nothing is written (and nothing resumes).

    Returns ``(ensemble, histories)`` (one :class:`~lctools.training.History` per member).

    Example
    -------
    >>> import tempfile, torch, lctools
    >>> X, y = torch.rand(32, 2), torch.randint(0, 2, (32,))
    >>> ens, hists = cached_train_ensemble({"demo": 1}, lambda: lctools.MLP(2, [4], 2), [0, 1], X, y,
    ...                                    cache=tempfile.mkdtemp(), steps=5, progress=False)
    >>> len(hists)
    2
    """
    if not isinstance(cache, ResultsCache):
        cache = ResultsCache(cache)
    seeds = [int(s) for s in seeds]
    metric_names = sorted(dict(metrics or {})) + sorted(dict(batched_metrics or {}))
    ensemble = Ensemble.build(build_model, seeds)
    full = _train_key("lctools.cached_train_ensemble", config, X, y, metric_names, dict(train_kwargs, seeds=seeds),
                      ensemble)

    def loaded():
        hit = cache.load(full)
        if hit is None or hit[1] is None:
            return None
        try:
            ensemble.load_state_dict(hit[1], strict=True)
        except RuntimeError as exc:  # stored by an lctools with another parameter layout
            warnings.warn(f"cache entry {cache.key(full)[:12]} does not fit this Ensemble ({exc}); retraining.",
                          CacheWarning)
            return None
        if train_kwargs.get("device") is not None:
            ensemble.to(train_kwargs["device"])
        return ensemble, [training.History.from_dict(h) for h in hit[0]["histories"]]

    def train():
        checkpoint = cache.root / "checkpoints" / f"{cache.key(full)}.pt" if cache.writable() else None
        histories = train_ensemble(ensemble, X, y, metrics=metrics, batched_metrics=batched_metrics, seeds=seeds,
                                   checkpoint=checkpoint, checkpoint_interval=checkpoint_interval, **train_kwargs)
        result = cache.store(full, {"histories": [h.to_dict() for h in histories]},
                             state_dict=ensemble.state_dict())
        if checkpoint is not None:
            checkpoint.unlink(missing_ok=True)
        return ensemble, [training.History.from_dict(h) for h in result["histories"]]

    return _load_or_compute(cache, full, loaded, train)
