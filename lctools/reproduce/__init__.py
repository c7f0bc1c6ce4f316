"""Regenerate the paper-style figures of chapters 2-6 from the command line.

    python -m lctools.reproduce --list
    python -m lctools.reproduce local-rank --mode full --device cuda --out figures/
    python -m lctools.reproduce all --mode quick

Each figure is a :class:`FigureSpec`: quick and full settings (as in the book's chapters),
a computation and a plot.  :func:`run` writes ``<out>/<name>.png``, ``<out>/<name>.csv``
(the plotted numbers, one row per member and evaluation step or per point of a sweep) and
``<out>/<name>.json`` (settings, summary statistics, device, versions, run time).

Every expensive step goes through the results cache (:mod:`lctools.cache`): training runs
are :func:`~lctools.cache.cached_train_ensemble` entries, checkpointed while they run, so a
run that is killed resumes from its last checkpoint when started again, and a finished
figure is re-plotted from the cache in seconds.  Set ``LCTOOLS_CACHE`` to choose the cache
folder.
"""
from __future__ import annotations

import ast
import csv
import json
import math
import platform
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from .. import __version__
from ..cache import ResultsCache, cached_train_ensemble
from ..course import MODES, settings

__all__ = ["FigureSpec", "Context", "FIGURES", "run", "parse_overrides"]


@dataclass(frozen=True)
class FigureSpec:
    """One reproducible figure.

    ``compute(ctx)`` returns ``{"summary": {...}, "table": [row dicts]}`` (JSON-like values);
    ``plot(result, cfg)`` draws it and returns a matplotlib figure.
    """

    name: str
    chapter: int
    title: str
    quick: Mapping[str, Any]
    full: Mapping[str, Any]
    compute: Callable[["Context"], dict]
    plot: Callable[[dict, types.SimpleNamespace], Any]


@dataclass
class Context:
    """What a figure's computation needs: its settings and where to cache and compute."""

    spec: FigureSpec
    cfg: types.SimpleNamespace
    mode: str
    device: torch.device
    cache: ResultsCache
    progress: bool = True
    checkpoint_interval: float = 60.0

    def _config(self, config: Mapping) -> dict:
        # figures that share an experiment (same "experiment" and settings) share cache entries
        return {"experiment": self.spec.name, **dict(config)}

    def train_ensemble(self, config: Mapping, build_model, seeds, X, y, **kwargs):
        """:func:`~lctools.cache.cached_train_ensemble` on this figure's cache and device."""
        return cached_train_ensemble(
            self._config(config), build_model, seeds, X, y, cache=self.cache,
            checkpoint_interval=self.checkpoint_interval, device=self.device, progress=self.progress, **kwargs)

    def cached(self, config: Mapping, compute: Callable[[], Mapping]) -> Any:
        """:meth:`~lctools.cache.ResultsCache.get_or_compute` on this figure's cache."""
        return self.cache.get_or_compute(self._config(config), compute)


FIGURES: Dict[str, FigureSpec] = {}


def register(spec: FigureSpec) -> FigureSpec:
    if spec.name in FIGURES:
        raise ValueError(f"figure {spec.name!r} registered twice.")
    FIGURES[spec.name] = spec
    return spec


def parse_overrides(items: Iterable[str]) -> Dict[str, Any]:
    """``["steps=300", "widths=[32, 32]"]`` -> ``{"steps": 300, "widths": [32, 32]}`` (values
    are Python literals; anything else is kept as a string)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}.")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


def figure_settings(spec: FigureSpec, mode: str, overrides: Optional[Mapping[str, Any]] = None):
    """The settings of ``spec`` in ``mode`` with ``overrides`` applied (keys must exist)."""
    cfg = settings(mode, quick=spec.quick, full=spec.full)
    for key, value in dict(overrides or {}).items():
        if not hasattr(cfg, key):
            raise ValueError(f"figure {spec.name!r} has no setting {key!r}; its settings: {sorted(vars(cfg))}.")
        setattr(cfg, key, value)
    return cfg


def history_table(histories) -> List[dict]:
    """One row per member and evaluation step: ``member, seed, lr, weight_decay, step, loss``
    and every recorded metric (vector metrics as ``name_1, name_2, ...``, 1-based)."""
    rows = []
    for k, h in enumerate(histories):
        for i, step in enumerate(h.steps):
            row = dict(member=k, seed=h.config.get("seed"), lr=h.config.get("lr"),
                       weight_decay=h.config.get("weight_decay"), step=int(step), loss=float(h.loss[i]))
            for name, values in h.metrics.items():
                v = np.asarray(values[i], dtype=float)
                if v.ndim == 0:
                    row[name] = float(v)
                else:
                    row.update({f"{name}_{j + 1}": float(x) for j, x in enumerate(v)})
            rows.append(row)
    return rows


def member_series(rows: Sequence[Mapping[str, Any]], name: str):
    """Invert :func:`history_table` for one metric: ``(steps, values)`` with ``values`` of shape
    ``(members, E)`` for a scalar metric or ``(members, E, k)`` for a vector one."""
    members = sorted({r["member"] for r in rows})
    steps = np.array(sorted({r["step"] for r in rows}))
    keys = sorted((k for k in rows[0] if k == name or k.startswith(name + "_")), key=lambda k: (len(k), k))
    values = np.array([[[r[k] for k in keys] for r in rows if r["member"] == m] for m in members])
    return steps, values if len(keys) > 1 else values[..., 0]


def spearman(a, b) -> float:
    """Spearman rank correlation of two 1-d arrays (no ties correction)."""
    ra, rb = (np.argsort(np.argsort(np.asarray(v))).astype(float) for v in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


def symlog_steps(ax, last_step: int) -> None:
    """Training steps on a symlog x axis (linear up to 1: step 0 is shown)."""
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(0, last_step * 1.1)
    ax.set_xlabel("training step")


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
    (``{"png":, "csv":, "json":}``)."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; known: {', '.join(FIGURES)} (see --list).")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device.")
    spec = FIGURES[name]
    cfg = figure_settings(spec, mode, overrides)
    cache = cache if isinstance(cache, ResultsCache) else ResultsCache(cache)
    ctx = Context(spec, cfg, mode, device, cache, progress, checkpoint_interval)
    start = time.perf_counter()
    result = spec.compute(ctx)
    seconds = time.perf_counter() - start

    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {ext: out / f"{name}.{ext}" for ext in ("png", "csv", "json")}
    fig = spec.plot(result, cfg)
    fig.savefig(paths["png"], dpi=120, bbox_inches="tight")
    plt.close(fig)
    _write_csv(result["table"], paths["csv"])
    meta = dict(
        figure=name, chapter=spec.chapter, title=spec.title, mode=mode, device=str(device),
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        settings=vars(cfg), summary=result["summary"], compute_seconds=round(seconds, 2),
        lctools=__version__, torch=torch.__version__,
    )
    paths["json"].write_text(json.dumps(_jsonable(meta), indent=1, sort_keys=True) + "\n")
    return paths


# The figures register themselves on import.
from . import dynamics, lc_estimate, local_rank, weight_decay  # noqa: E402,F401
