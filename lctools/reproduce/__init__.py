"""Regenerate the paper-style figures of chapters 2-6 from the command line.

    python -m lctools.reproduce --list
    python -m lctools.reproduce local-rank --mode full --device cuda --out figures/
    python -m lctools.reproduce all --mode quick

Each figure (:data:`FIGURES`, listed in ``lctools/reproduce/figures.py``) is one experiment
of :mod:`lctools.experiments`: the chapters call the same settings, computation and claims.
:func:`run` writes ``<out>/<name>.png``, ``<out>/<name>.csv`` (the plotted numbers, one row
per member and evaluation step or per point of a sweep) and ``<out>/<name>.json`` (settings,
summary, the claims and whether they hold, device, versions, run time).

Every expensive step goes through the results cache (:mod:`lctools.cache`): training runs
are :func:`~lctools.cache.cached_train_ensemble` entries, checkpointed while they run, so a
run that is killed resumes from its last checkpoint when started again, and a finished
figure is re-plotted from the cache in seconds.  Set ``LCTOOLS_CACHE`` to choose the cache
folder.
"""
from __future__ import annotations

import csv
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from .. import __version__
from ..cache import ResultsCache
from ..course import MODES
from ..experiments._shared import Runner, history_table, member_series, spearman, symlog_steps
from ._spec import FigureSpec, check_setting, figure_settings, parse_overrides
from .figures import build_figures

__all__ = ["FigureSpec", "FIGURES", "run", "parse_overrides", "figure_settings", "check_setting",
           "check_device", "check_writable", "history_table", "member_series", "spearman", "symlog_steps"]

#: The figures by name, in chapter order (``lctools/reproduce/figures.py`` lists them).
FIGURES: Dict[str, FigureSpec] = build_figures()


def check_device(device: Union[str, torch.device, None]) -> torch.device:
    """The device to compute on (default: CUDA when available); a clear ``ValueError`` for a
    device torch does not know or cannot use here."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"unknown device {device!r}; use cpu or cuda (cuda:N).") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for, but torch sees no CUDA device; use --device cpu.")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {str(device)!r} is not supported by lctools.reproduce; use cpu or cuda.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {str(device)!r}: torch sees only {torch.cuda.device_count()} CUDA device(s).")
    return device


def check_writable(folder: Union[str, Path], what: str) -> Path:
    """Create ``folder`` if needed and make sure a file can be written there, before any
    computation starts; a ``ValueError`` naming ``what`` otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ValueError(f"{what} {str(folder)!r} is not writable ({exc.strerror or exc}).") from None
    return folder


def _write_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    columns: List[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run(
    name: str,
    mode: str = "quick",
    device: Union[str, torch.device, None] = None,
    out: Union[str, Path] = "figures",
    overrides: Optional[Mapping[str, Any]] = None,
    progress: bool = True,
    checkpoint_interval: float = 60.0,
    cache: Union[ResultsCache, str, Path, None] = None,
) -> Dict[str, Path]:
    """Compute (or load from the cache) and draw figure ``name``; returns the paths written
    (``{"png":, "csv":, "json":}``). Arguments, the output folder and the cache are checked
    before anything is computed."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; known: {', '.join(FIGURES)} (see --list).")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    device = check_device(device)
    spec = FIGURES[name]
    cfg = figure_settings(spec, mode, overrides)
    out = check_writable(out, "output folder")
    cache = cache if isinstance(cache, ResultsCache) else ResultsCache(cache)
    if cache.enabled:
        check_writable(cache.root, "results cache ($LCTOOLS_CACHE)")
    runner = Runner(device, cache, progress, checkpoint_interval)
    start = time.perf_counter()
    result = spec.compute(cfg, runner)
    seconds = time.perf_counter() - start
    claims = spec.claims(result["summary"])

    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {ext: out / f"{name}.{ext}" for ext in ("png", "csv", "json")}
    fig = spec.plot(result, cfg)
    fig.savefig(paths["png"], dpi=120, bbox_inches="tight")
    plt.close(fig)
    _write_csv(result["table"], paths["csv"])
    meta = dict(
        figure=name, chapter=spec.chapter, title=spec.title, mode=mode, device=str(device),
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        settings=vars(cfg), summary=result["summary"], compute_seconds=round(seconds, 2),
        claims=[dict(text=c.text, holds=c.holds, detail=c.detail) for c in claims.items],
        lctools=__version__, torch=torch.__version__, cpu_threads=torch.get_num_threads(), pid=os.getpid(),
    )
    paths["json"].write_text(json.dumps(_jsonable(meta), indent=1, sort_keys=True) + "\n")
    return paths
