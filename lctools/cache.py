"""A results cache (train-or-load), so that re-building the book does not retrain.

An entry is identified by a *configuration*: a JSON-like dict that fully describes the
computation (model, data, optimiser, steps, seeds, ...).  Its key is

    sha256( canonical JSON of {"config": config, "lctools": lctools.__version__,
                               "torch": torch major.minor} )

with sorted keys, so the same configuration gives the same key in every session, and a
new lctools or torch version starts afresh.  Each entry is a directory ``<root>/<key>/``
holding ``config.json``, ``result.json``, optionally ``model.pt`` (a ``state_dict``), and
``MANIFEST.json``, written last, with the sha256 of every other file.

Guarantees:

- an entry is used only if its manifest exists and every checksum matches (and the stored
  configuration is the requested one); otherwise a :class:`CacheWarning` is issued, the
  value is recomputed and the entry repaired;
- entries are written into a temporary directory under the root and moved into place
  with ``os.replace``, so a run killed mid-way never leaves a half-written entry in use;
- a miss and a later hit return the same value: results are returned as their JSON
  round-trip in both cases (lists for tuples/arrays, plain floats for numpy scalars).

Root directory: the ``root`` argument, else the environment variable ``LCTOOLS_CACHE``,
else ``~/.cache/lctools/results``.  ``LCTOOLS_CACHE=off`` (or ``enabled=False``) turns
caching off: everything is computed, nothing is read or written.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from . import training
from .models import build_seeded

__all__ = ["ResultsCache", "CacheWarning", "cached_train", "cached_train_ensemble", "canonical"]

ENV = "LCTOOLS_CACHE"
OFF = ("off", "false", "0", "no")
DEFAULT_ROOT = "~/.cache/lctools/results"
MANIFEST = "MANIFEST.json"
_TMP = ".tmp-"


class CacheWarning(UserWarning):
    """An entry was found incomplete or corrupt and is being recomputed."""


# ----------------------------------------------------------------------------- JSON
def canonical(value: Any, where: str = "config") -> Any:
    """``value`` as plain JSON types: numbers, strings, bools, None, lists and dicts with
    string keys.  Tuples become lists, numpy scalars and arrays Python numbers and lists,
    ``torch.dtype``/``torch.device`` their names, non-finite floats ``{"__float__": "inf"}``.
    Anything else (a tensor, a function, an object) raises ``ValueError`` naming where it is."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        return canonical(value.item(), where)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else {"__float__": repr(float(value))}
    if isinstance(value, (list, tuple)):
        return [canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return canonical(value.tolist(), where)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where} has a non-string key {k!r}; configuration keys must be strings.")
            out[k] = canonical(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value)
    if isinstance(value, torch.Tensor):
        raise ValueError(
            f"{where} is a torch.Tensor, which cannot be part of a cache configuration: describe it "
            "instead (e.g. the data set's name, size and seed), or use .tolist() for a few numbers."
        )
    if callable(value):
        raise ValueError(
            f"{where} is a function ({getattr(value, '__name__', type(value).__name__)}), which cannot be part "
            "of a cache configuration: name it with a string instead."
        )
    raise ValueError(
        f"{where} has type {type(value).__name__}, which is not JSON-serialisable; a cache configuration "
        "may hold numbers, strings, bools, None, lists, tuples, dicts and numpy scalars."
    )


def _result_json(result: Any, where: str = "result") -> Any:
    """Like :func:`canonical`, but results may also hold tensors and numpy arrays (stored as
    nested lists) and NaN/inf (stored as JSON NaN/Infinity, which Python's json reads back)."""
    if isinstance(result, (torch.Tensor, np.ndarray)):
        return _result_json(result.tolist() if isinstance(result, np.ndarray) else result.detach().cpu().tolist(), where)
    if isinstance(result, np.generic):
        return _result_json(result.item(), where)
    if isinstance(result, float):
        return float(result)
    if isinstance(result, (list, tuple)):
        return [_result_json(v, f"{where}[{i}]") for i, v in enumerate(result)]
    if isinstance(result, Mapping):
        if not all(isinstance(k, str) for k in result):
            raise ValueError(f"{where} has non-string keys; result keys must be strings.")
        return {k: _result_json(v, f"{where}[{k!r}]") for k, v in result.items()}
    return canonical(result, where)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _torch_version() -> str:
    return ".".join(torch.__version__.split("+")[0].split(".")[:2])


# ----------------------------------------------------------------------------- cache
class ResultsCache:
    """Train-or-load storage for results keyed by configuration (module docstring).

    Parameters
    ----------
    root : directory of the entries; default ``$LCTOOLS_CACHE`` or ``~/.cache/lctools/results``.
    enabled : ``False`` disables caching; default: enabled unless ``LCTOOLS_CACHE=off``.
    """

    def __init__(self, root: Union[str, os.PathLike, None] = None, enabled: Optional[bool] = None):
        env = os.environ.get(ENV, "").strip()
        env_off = env.lower() in OFF
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
        import lctools

        if not isinstance(config, Mapping):
            raise ValueError(f"config must be a dict, got {type(config).__name__}.")
        return {"config": canonical(config), "lctools": str(lctools.__version__), "torch": _torch_version()}

    def key(self, config: Mapping) -> str:
        """sha256 (hex) of the canonical JSON of the configuration, lctools' version and
        torch's major.minor version."""
        return _sha256(_dumps(self._payload(config)))

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
            if _sha256(data[name]) != digest:
                return None, f"{name} does not match its checksum"
        if data["config.json"] != _dumps(payload):
            return None, "its stored configuration differs from the requested one"
        return data, ""

    def _load(self, payload: dict):
        entry = self.root / _sha256(_dumps(payload))
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
            state = torch.load(io.BytesIO(data["model.pt"]), map_location=map_location, weights_only=True)
        return json.loads(data["result.json"]), state

    def __contains__(self, config: Mapping) -> bool:
        payload = self._payload(config)
        return self._read(self.root / _sha256(_dumps(payload)), payload)[0] is not None

    # -- writing
    def store(self, config: Mapping, result: Any, state_dict: Optional[Mapping] = None) -> Any:
        """Write an entry (replacing any previous one) and return the JSON round-trip of
        ``result``.  ``state_dict`` (optional) is saved with ``torch.save`` as ``model.pt``.
        When caching is disabled nothing is written."""
        payload = self._payload(config)
        text = json.dumps(_result_json(result), sort_keys=True).encode()
        if not self.enabled:
            return json.loads(text)
        files = {"config.json": _dumps(payload), "result.json": text}
        if state_dict is not None:
            buf = io.BytesIO()
            torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buf)
            files["model.pt"] = buf.getvalue()
        key = _sha256(files["config.json"])
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP}{key[:12]}-", dir=self.root))
        try:
            for name, data in files.items():
                _write(tmp / name, data)
            manifest = {"files": {name: _sha256(data) for name, data in files.items()}, "key": key,
                        "lctools": payload["lctools"], "torch": payload["torch"]}
            _write(tmp / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())  # last
            self._commit(tmp, self.root / key, payload)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return json.loads(text)

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

    def get_or_compute(self, config: Mapping, compute: Callable[[], Mapping]) -> Any:
        """The stored result of ``config`` if a valid entry exists; otherwise ``compute()``
        (a dict of JSON-like values, numpy arrays or tensors), stored atomically.  Returns
        the JSON round-trip of the result, so a miss and a later hit give equal values."""
        hit = self.load(config)
        if hit is not None:
            return hit[0]
        result = compute()
        if not isinstance(result, Mapping):
            raise ValueError(f"compute() must return a dict, got {type(result).__name__}.")
        return self.store(config, result)

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


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _remove(path: Path) -> None:
    """Move aside atomically, then delete (readers never see a half-deleted entry)."""
    trash = path.with_name(f"{_TMP}trash-{path.name}-{os.getpid()}")
    try:
        os.replace(path, trash)
    except OSError:
        trash = path
    shutil.rmtree(trash, ignore_errors=True)


# ----------------------------------------------------------------------------- train-or-load
def _fingerprint(t: torch.Tensor) -> dict:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"X and y must be torch tensors, got {type(t).__name__}.")
    arr = t.detach().cpu().contiguous()
    return {"dtype": str(arr.dtype), "shape": list(arr.shape),
            "sha256": _sha256(arr.reshape(-1).view(torch.uint8).numpy().tobytes()) if arr.numel() else ""}


def _train_key(kind: str, config: Mapping, X, y, metric_names, train_kwargs: Mapping) -> dict:
    """The cache configuration of a training run: the caller's ``config``, the training
    arguments (but ``progress``, ``device`` and checkpoint settings), the metric names and a
    fingerprint of the data."""
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
        "data": {"X": _fingerprint(X), "y": _fingerprint(y)},
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
    """
    if not isinstance(cache, ResultsCache):
        cache = ResultsCache(cache)
    metrics = dict(metrics or {})
    full = _train_key("lctools.cached_train", config, X, y, sorted(metrics), train_kwargs)
    model = build_seeded(build_model, int(train_kwargs.get("seed", 0)))
    if not isinstance(model, nn.Module):
        raise ValueError(f"build_model() must return a torch.nn.Module, got {type(model).__name__}.")

    hit = cache.load(full)
    if hit is not None and hit[1] is not None:
        model.load_state_dict(hit[1], strict=True)
        if train_kwargs.get("device") is not None:
            model.to(train_kwargs["device"])
        model.train()  # as train() leaves it
        return model, training.History.from_dict(hit[0]["history"])

    history = training.train(model, X, y, metrics=metrics, **train_kwargs)
    result = cache.store(full, {"history": history.to_dict()}, state_dict=model.state_dict())
    return model, training.History.from_dict(result["history"])


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
    """
    from .ensemble import Ensemble, train_ensemble

    if not isinstance(cache, ResultsCache):
        cache = ResultsCache(cache)
    seeds = [int(s) for s in seeds]
    metric_names = sorted(dict(metrics or {})) + sorted(dict(batched_metrics or {}))
    full = _train_key("lctools.cached_train_ensemble", config, X, y, metric_names, dict(train_kwargs, seeds=seeds))
    ensemble = Ensemble.build(build_model, seeds)

    hit = cache.load(full)
    if hit is not None and hit[1] is not None:
        try:
            ensemble.load_state_dict(hit[1], strict=True)
        except RuntimeError as exc:  # stored by an lctools with another parameter layout
            warnings.warn(f"cache entry {cache.key(full)[:12]} does not fit this Ensemble ({exc}); retraining.",
                          CacheWarning)
        else:
            if train_kwargs.get("device") is not None:
                ensemble.to(train_kwargs["device"])
            return ensemble, [training.History.from_dict(h) for h in hit[0]["histories"]]

    checkpoint = cache.root / "checkpoints" / f"{cache.key(full)}.pt" if cache.enabled else None
    histories = train_ensemble(ensemble, X, y, metrics=metrics, batched_metrics=batched_metrics, seeds=seeds,
                               checkpoint=checkpoint, checkpoint_interval=checkpoint_interval, **train_kwargs)
    result = cache.store(full, {"histories": [h.to_dict() for h in histories]}, state_dict=ensemble.state_dict())
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    return ensemble, [training.History.from_dict(h) for h in result["histories"]]
