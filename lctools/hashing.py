"""Canonical JSON and fingerprints (a leaf module: it imports nothing from lctools).

The results cache (:mod:`lctools.cache`) keys entries by ``sha256(canonical JSON)``; the
training checkpoints (:mod:`lctools.checkpoints`) are tied to their run by the same kind
of digest.  Both use the functions here, so one configuration has one digest everywhere.

Example
-------
>>> digest(canonical({"b": (1, 2), "a": 0.5}))[:12]
'e6ed64e48f9b'
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

__all__ = ["canonical", "result_json", "dumps", "sha256", "digest", "tensor_fingerprint", "model_fingerprint",
           "torch_version"]

def canonical(value: Any, where: str = "config") -> Any:
    """``value`` as plain JSON types: numbers, strings, bools, None, lists and dicts with
    string keys.  Tuples become lists, numpy scalars and arrays Python numbers and lists,
    ``torch.dtype``/``torch.device`` their names, non-finite floats ``{"__float__": "inf"}``.
    Anything else (a tensor, a function, an object) raises ``ValueError`` naming where it is.

    Example
    -------
    >>> import numpy as np
    >>> canonical({"a": (1, np.float32(0.5)), "b": float("inf")})
    {'a': [1, 0.5], 'b': {'__float__': 'inf'}}
    """
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


def result_json(result: Any, where: str = "result") -> Any:
    """Like :func:`canonical`, but results may also hold tensors and numpy arrays (stored as
    nested lists) and NaN/inf (stored as JSON NaN/Infinity, which Python's json reads back).

    Example
    -------
    >>> import torch
    >>> result_json({"x": torch.tensor([1.0, 2.0])})
    {'x': [1.0, 2.0]}
    """
    if isinstance(result, (torch.Tensor, np.ndarray)):
        return result_json(result.tolist() if isinstance(result, np.ndarray) else result.detach().cpu().tolist(), where)
    if isinstance(result, np.generic):
        return result_json(result.item(), where)
    if isinstance(result, float):
        return float(result)
    if isinstance(result, (list, tuple)):
        return [result_json(v, f"{where}[{i}]") for i, v in enumerate(result)]
    if isinstance(result, Mapping):
        if not all(isinstance(k, str) for k in result):
            raise ValueError(f"{where} has non-string keys; result keys must be strings.")
        return {k: result_json(v, f"{where}[{k!r}]") for k, v in result.items()}
    return canonical(result, where)


def dumps(obj: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no spaces.

    Example
    -------
    >>> dumps({"b": 1, "a": [1, 2]})
    b'{"a":[1,2],"b":1}'
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha256(data: bytes) -> str:
    """Hex sha256 of ``data``.

    Example
    -------
    >>> sha256(b"")[:8]
    'e3b0c442'
    """
    return hashlib.sha256(data).hexdigest()


def torch_version() -> str:
    """torch's ``major.minor`` version.

    Example
    -------
    >>> torch_version().count(".")
    1
    """
    return ".".join(torch.__version__.split("+")[0].split(".")[:2])


def digest(value: Any) -> str:
    """``sha256(dumps(value))`` of a JSON-like value (already :func:`canonical`).

    Example
    -------
    >>> digest({"a": 1}) == sha256(dumps({"a": 1}))
    True
    """
    return sha256(dumps(value))


def tensor_fingerprint(t: torch.Tensor) -> dict:
    """``{"dtype", "shape", "sha256"}`` of a tensor's bytes (on the CPU, contiguous).

    Example
    -------
    >>> import torch
    >>> tensor_fingerprint(torch.zeros(2))["shape"]
    [2]
    """
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"expected a torch tensor, got {type(t).__name__}.")
    arr = t.detach().cpu().contiguous()
    return {"dtype": str(arr.dtype), "shape": list(arr.shape),
            "sha256": sha256(arr.reshape(-1).view(torch.uint8).numpy().tobytes()) if arr.numel() else ""}


def model_fingerprint(model: nn.Module) -> dict:
    """What determines a model before training: its structure (``str(model)``, which names
    every layer, width and activation slope) and a digest of its parameters and buffers
    (names, dtypes, shapes and bytes).

    Example
    -------
    >>> import torch
    >>> sorted(model_fingerprint(torch.nn.Linear(2, 1)))
    ['architecture', 'parameters']
    """
    state = model.state_dict()
    return {"architecture": str(model),
            "parameters": digest({k: tensor_fingerprint(v) for k, v in state.items()})}
