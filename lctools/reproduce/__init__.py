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
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from .. import __version__
from .. import validation
from ..cache import ResultsCache
from ..course import MODES
from ..validation import check_writable
from ..experiments._shared import Runner, history_table, member_series, spearman, symlog_steps
from ._spec import FigureSpec, check_setting, figure_settings, parse_overrides
from .figures import build_figures

__all__ = ["FigureSpec", "FIGURES", "run", "parse_overrides", "figure_settings", "check_setting",
           "check_device", "check_writable", "check_output", "history_table", "member_series", "spearman", "symlog_steps"]

#: The figures by name, in chapter order (``lctools/reproduce/figures.py`` lists them).
FIGURES: Dict[str, FigureSpec] = build_figures()


def check_device(device: Union[str, torch.device, None]) -> torch.device:
    """The device to compute on: CUDA when available for ``None``, else ``device`` checked by
    :func:`lctools.validation.check_device` (only ``cpu`` and ``cuda`` are supported here).

    Parameters
    ----------
    device : str, torch.device, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or None (CUDA when available, else the CPU).

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        for a device torch does not know, one this machine does not have, or another type.

    Examples
    --------
    >>> check_device("cpu")
    device(type='cpu')
    >>> check_device("tpu")
    Traceback (most recent call last):
    ...
    ValueError: unknown device 'tpu'; use 'cpu' or 'cuda' (or 'cuda:N').
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return validation.check_device(device, types=("cpu", "cuda"))


def check_output(out: Union[str, Path], cache: Union[ResultsCache, str, Path, None] = None):
    """Check, before anything is computed, that figures can be written to ``out`` and results
    stored in ``cache`` (both with :func:`lctools.validation.check_writable`).

    Parameters
    ----------
    out : str or Path
        The output folder (created if needed).
    cache : ResultsCache, Path, optional
        The results cache, or its folder (None: ``$LCTOOLS_CACHE`` or the default).

    Returns
    -------
    (Path, ResultsCache)

    Raises
    ------
    ValueError
        naming the output folder or the results cache that is not writable.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out, cache = check_output(pathlib.Path(tmp) / "figures", pathlib.Path(tmp) / "cache")
    ...     out.is_dir(), cache.root.is_dir()
    (True, True)
    """
    out = check_writable(out, "output folder (--out)")
    cache = cache if isinstance(cache, ResultsCache) else ResultsCache(cache)
    if cache.enabled:
        check_writable(cache.root, "results cache ($LCTOOLS_CACHE)")
    return out, cache


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
    """Compute (or load from the cache) and draw figure ``name``; returns the paths written.

    Arguments, the output folder and the cache are checked (:func:`check_device`,
    :func:`check_output`, :func:`figure_settings`) before anything is computed.

    Parameters
    ----------
    name : str
        A figure of :data:`FIGURES` (``--list`` shows them).
    mode : str
        ``"quick"`` (CPU settings) or ``"full"`` (the paper's scale).
    device : str, torch.device, optional
        Where to compute (None: CUDA when available, else the CPU).
    out : str or Path
        The output folder, created if needed.
    overrides : mapping, optional
        Settings that replace the mode's (``--set KEY=VALUE``), checked by type and range.
    progress : bool
        Show progress bars.
    checkpoint_interval : float
        Seconds between training checkpoints.
    cache : ResultsCache, Path, optional
        The results cache or its folder (None: ``$LCTOOLS_CACHE`` or the default).

    Returns
    -------
    dict
        ``{"png": Path, "csv": Path, "json": Path}``.

    Raises
    ------
    ValueError
        for an unknown figure or mode, a bad device or setting, or a folder that is not
        writable.

    Examples
    --------
    A tiny version of the chapter-2 figure (seconds on a CPU):

    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     paths = run("lc-estimate", device="cpu", out=pathlib.Path(tmp) / "fig",
    ...                 cache=pathlib.Path(tmp) / "cache", progress=False,
    ...                 overrides=dict(widths=[4, 4], sigmas=[0.1, 1.0], exact_draws=2,
    ...                                n_points=200, noise_draws=1))
    ...     sorted(p.name for p in paths.values())
    ['lc-estimate.csv', 'lc-estimate.json', 'lc-estimate.png']
    """
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; known: {', '.join(FIGURES)} (see --list).")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    device = check_device(device)
    spec = FIGURES[name]
    cfg = figure_settings(spec, mode, overrides)
    out, cache = check_output(out, cache)
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
