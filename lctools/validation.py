"""One place for the checks of lctools' arguments (a leaf module: it imports no lctools module).

Every public function of lctools validates its numbers here, so one argument obeys one rule
everywhere and every refusal is a ``ValueError`` that names the argument.  Wherever a float
or an int is meant, Python numbers, numpy scalars and 0-d tensors are accepted (``bool`` is
not a number here); NaN and infinity are refused wherever they are meaningless.

The rules:

- ``sigma`` (the bias-noise scale ``s``): a finite number ``> 0``.
- ``eps`` (the singular-value threshold of the local rank): a finite number ``> 0`` (for
  :func:`~lctools.rank.local_rank`, :func:`~lctools.rank.local_rank_bound` and
  :func:`~lctools.rank.count_singular_values_above` alike).
- ``noise_draws``: an integer ``>= 0``.
- ``reduction``: ``"mean"``, ``"sum"`` or ``"none"`` (:func:`reduce` applies it).
- learning rates and weight decays: finite numbers ``>= 0`` (or one per ensemble member).
- widths: integers ``>= 1`` (``2.7`` is refused, not truncated).
- negative slopes of LeakyReLU: finite, in ``[0, 1)`` (:func:`check_slope` says why).
- inputs ``x``: finite, checked in chunks (no full extra copy of ``x``).

Example
-------
>>> import numpy as np, torch
>>> check_sigma(np.float32(0.5)), check_noise_draws(torch.tensor(3))
(0.5, 3)
>>> check_eps(float("inf"))
Traceback (most recent call last):
...
ValueError: eps (the singular-value threshold) must be a finite number > 0, got inf.
"""
from __future__ import annotations

import math
import numbers
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Union

import numpy as np
import torch

__all__ = [
    "REDUCTIONS", "as_float", "as_int", "check_sigma", "check_eps", "check_noise_draws",
    "check_reduction", "reduce", "check_lr", "check_weight_decay", "check_hyperparameter",
    "check_widths", "check_slope", "check_finite", "check_bool", "compute_dtype", "check_device",
    "check_writable",
]

REDUCTIONS = ("mean", "sum", "none")


def _scalar(value, name: str):
    """``value`` as a Python number if it is a number (int, float, numpy scalar, 0-d tensor), else raise."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a number, got the bool {value!r}.")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.dim() != 0:
            raise ValueError(f"{name} must be a number (or a 0-d tensor), got a tensor of shape {tuple(value.shape)}.")
        if value.dtype == torch.bool:
            raise ValueError(f"{name} must be a number, got a bool tensor.")
        return value.item()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return _scalar(value[()], name)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, numbers.Real):
        return value
    raise ValueError(f"{name} must be a number, got {type(value).__name__} {value!r}.")


def as_float(value, name: str, *, low: Optional[float] = None, low_open: bool = False,
             high: Optional[float] = None, high_open: bool = False, finite: bool = True,
             what: str = "") -> float:
    """``value`` as a float, with ``low <= value`` (``<`` if ``low_open``), ``value <= high``
    (``<`` if ``high_open``) and, if ``finite``, no NaN or infinity; else ``ValueError``.

    Example
    -------
    >>> as_float(np.float32(0.25), "lr", low=0.0)
    0.25
    """
    v = _scalar(value, name)
    try:
        v = float(v)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} must be a real number, got {value!r}.") from None
    label = f"{name}{what}"
    conds = []
    if low is not None:
        conds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        conds.append(f"{'<' if high_open else '<='} {high:g}")
    rule = ("a finite number" if finite else "a number") + (" " + " and ".join(conds) if conds else "")
    bad = math.isnan(v) or (finite and math.isinf(v))
    if low is not None:
        bad = bad or (v <= low if low_open else v < low)
    if high is not None:
        bad = bad or (v >= high if high_open else v > high)
    if bad:
        raise ValueError(f"{label} must be {rule}, got {_show(value)}.")
    return v


def _show(value) -> str:
    try:
        return repr(float(_scalar(value, "value")))[:40] if not isinstance(value, str) else repr(value)
    except ValueError:
        return repr(value)


def as_int(value, name: str, *, low: Optional[int] = None) -> int:
    """``value`` as an int (Python, numpy or 0-d integer tensor; ``2.0`` is accepted, ``2.7``
    is not), at least ``low``; else ``ValueError``.

    Example
    -------
    >>> as_int(torch.tensor(3), "steps", low=0), as_int(2.0, "steps")
    (3, 2)
    """
    v = _scalar(value, name)
    if isinstance(v, float):
        if not (math.isfinite(v) and v == int(v)):
            raise ValueError(f"{name} must be an integer, got {_show(value)}.")
        v = int(v)
    if not isinstance(v, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}.")
    v = int(v)
    if low is not None and v < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {v}.")
    return v


def check_bool(value, name: str) -> bool:
    """``value`` if it is ``True`` or ``False`` (also numpy's), else ``ValueError``.

    Example
    -------
    >>> check_bool(np.bool_(True), "flag")
    True
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


def check_sigma(sigma, name: str = "sigma") -> float:
    """The bias-noise scale ``s``: a finite number ``> 0``.

    Example
    -------
    >>> check_sigma(torch.tensor(0.5))
    0.5
    """
    return as_float(sigma, name, low=0.0, low_open=True, what=" (the bias-noise scale s)")


def check_eps(eps, name: str = "eps") -> float:
    """The singular-value threshold ``eps`` of the local rank: a finite number ``> 0`` (an
    infinite threshold counts nothing and a zero one counts rounding noise).

    Example
    -------
    >>> check_eps(1e-3)
    0.001
    """
    return as_float(eps, name, low=0.0, low_open=True, what=" (the singular-value threshold)")


def check_noise_draws(noise_draws, name: str = "noise_draws") -> int:
    """Number of bias-noise draws: an integer ``>= 0`` (0: the noiseless plug-in).

    Example
    -------
    >>> check_noise_draws(np.int64(4))
    4
    """
    return as_int(noise_draws, name, low=0)


def check_reduction(reduction) -> str:
    """``"mean"``, ``"sum"`` or ``"none"``.

    Example
    -------
    >>> check_reduction("sum")
    'sum'
    """
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}.")
    return reduction


def reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """Apply ``reduction`` over the points (axis 0): the mean, the sum, or ``values`` itself.

    Example
    -------
    >>> reduce(torch.tensor([1.0, 3.0]), "mean")
    tensor(2.)
    """
    reduction = check_reduction(reduction)
    if reduction == "none":
        return values
    return values.mean(dim=0) if reduction == "mean" else values.sum(dim=0)


def check_hyperparameter(value, name: str, size: Optional[int] = None) -> Union[float, np.ndarray]:
    """A finite number ``>= 0`` (a learning rate, a weight decay), or with ``size`` given one
    such number per member (a number is broadcast): returns a float or a float64 array.

    Example
    -------
    >>> check_hyperparameter(0.5, "lr", size=3).tolist()
    [0.5, 0.5, 0.5]
    """
    if size is None:
        return as_float(value, name, low=0.0)
    if isinstance(value, torch.Tensor) and value.dim() == 0 or np.ndim(value) == 0:
        return np.full(size, as_float(value, name, low=0.0))
    try:
        values = list(value)
    except TypeError:
        raise ValueError(f"{name} must be a number or a sequence of {size} numbers, got {value!r}.") from None
    if len(values) != size:
        raise ValueError(f"{name} must be a number or a sequence of {size} numbers (one per member), "
                         f"got {len(values)} values.")
    return np.array([as_float(v, f"{name}[{i}]", low=0.0) for i, v in enumerate(values)], dtype=np.float64)


def check_lr(lr, size: Optional[int] = None) -> Union[float, np.ndarray]:
    """A learning rate (or one per member): finite and ``>= 0``.

    Example
    -------
    >>> check_lr([1e-3, 1e-2], size=2).tolist()
    [0.001, 0.01]
    """
    return check_hyperparameter(lr, "lr", size)


def check_weight_decay(weight_decay, size: Optional[int] = None) -> Union[float, np.ndarray]:
    """A weight decay (or one per member): finite and ``>= 0``.

    Example
    -------
    >>> check_weight_decay(0.1)
    0.1
    """
    return check_hyperparameter(weight_decay, "weight_decay", size)


def check_widths(widths, name: str = "widths") -> List[int]:
    """Hidden widths ``[n_1, ..., n_L]``: at least one, each an integer ``>= 1``.

    Example
    -------
    >>> check_widths((np.int64(16), 8))
    [16, 8]
    """
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Iterable):
        raise ValueError(f"{name} must be a sequence of integers >= 1 (e.g. [64, 64]), got {widths!r}.")
    out = [as_int(w, f"{name}[{i}]", low=1) for i, w in enumerate(widths)]
    if not out:
        raise ValueError(f"{name} must hold at least one hidden width, got {widths!r}.")
    return out


def check_slope(slope, name: str = "negative_slope") -> float:
    """The negative slope ``a`` of a LeakyReLU, ``sigma(z) = max(z, a z)``: finite, in ``[0, 1)``.

    ``a = 1`` makes the network affine (no linear regions, while the neuron zero sets that
    lctools measures would still be counted); ``a > 1`` and ``a < 0`` break the course's
    standing assumption ``0 <= sigma' <= 1`` (the total-variation chain uses it), and NaN
    means nothing.  ``a = 0`` is the ReLU.

    Example
    -------
    >>> check_slope(0.2)
    0.2
    """
    return as_float(slope, name, low=0.0, high=1.0, high_open=True,
                    what=" (of a LeakyReLU; 0 is ReLU, 1 would make the network affine)")


def check_finite(x: torch.Tensor, name: str = "x", chunk: int = 2**22) -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or infinity.  The check runs over chunks of at
    most ``chunk`` elements, so it costs no full extra copy of ``x`` (a bool copy would be a
    quarter of a float32 ``x``).

    Example
    -------
    >>> check_finite(torch.tensor([1.0, float("nan")]))
    Traceback (most recent call last):
    ...
    ValueError: x contains NaN or infinite values; all inputs must be finite.
    """
    if not (x.is_floating_point() or x.is_complex()):
        return
    flat = x.reshape(-1) if x.is_contiguous() else None
    if flat is None:
        rows = max(1, chunk // max(1, x[0].numel())) if x.dim() and x.shape[0] else 1
        pieces = (x[i: i + rows] for i in range(0, x.shape[0], rows)) if x.dim() else [x]
    else:
        pieces = (flat[i: i + chunk] for i in range(0, flat.numel(), chunk))
    for piece in pieces:
        if not bool(torch.isfinite(piece).all()):
            raise ValueError(f"{name} contains NaN or infinite values; all inputs must be finite.")


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype in which lctools computes for parameters of ``dtype``: float16 and bfloat16
    are computed in float32 (their linear algebra is missing or too coarse), others as they are.

    Example
    -------
    >>> compute_dtype(torch.bfloat16)
    torch.float32
    """
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def check_device(device, types: Optional[Sequence[str]] = None) -> Optional[torch.device]:
    """``device`` as a ``torch.device`` (``None`` stays ``None``), refusing with a clean message a
    name torch does not know, a CUDA (or MPS) device this machine does not have and, if
    ``types`` is given, a device of another type (``types=("cpu", "cuda")``: what
    ``python -m lctools.reproduce`` computes on).

    Example
    -------
    >>> check_device("cpu")
    device(type='cpu')
    >>> check_device("meta", types=("cpu", "cuda"))
    Traceback (most recent call last):
    ...
    ValueError: device 'meta' is not supported here; use cpu or cuda.
    """
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {device!r}; use 'cpu' or 'cuda' (or 'cuda:N').") from None
    if types is not None and dev.type not in types:
        raise ValueError(f"device {str(dev)!r} is not supported here; use {' or '.join(types)}.")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(dev)!r} was asked for, but torch sees no CUDA device; "
                             "use device='cpu' (or leave device unset).")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(dev)!r} was asked for, but torch sees only "
                             f"{torch.cuda.device_count()} CUDA device(s).")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"device {str(dev)!r} was asked for, but torch sees no MPS device.")
    elif dev.type not in ("cpu", "meta"):
        if not getattr(getattr(torch, dev.type, None), "is_available", lambda: False)():
            raise ValueError(f"device {str(dev)!r} was asked for, but torch cannot use it here.")
    return dev


def check_writable(folder: Union[str, Path], name: str, prefix: str = ".write-test-") -> Path:
    """Create ``folder`` if needed and make sure files can be written and renamed there (a
    probe folder ``<prefix>...`` is made, renamed and removed), before any computation
    starts; a ``ValueError`` naming ``name`` otherwise.  Returns ``folder`` as a ``Path``.

    Example
    -------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     check_writable(pathlib.Path(tmp) / "figures", "output folder").name
    'figures'
    >>> check_writable(__file__ + "/sub", "output folder")
    Traceback (most recent call last):
    ...
    ValueError: output folder '.../sub' is not writable (...).
    """
    folder = Path(folder)
    probe = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = Path(tempfile.mkdtemp(prefix=prefix, dir=folder))
        moved = probe.with_name(probe.name + "-moved")
        os.replace(probe, moved)
        probe = moved
    except OSError as exc:
        raise ValueError(f"{name} {str(folder)!r} is not writable ({exc.strerror or exc}).") from None
    finally:
        if probe is not None:
            shutil.rmtree(probe, ignore_errors=True)
    return folder
