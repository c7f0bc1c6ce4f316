"""What the experiments share: where to compute and cache, seeded generators, claims,
history tables and the training-step axis."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..cache import ResultsCache, cached_train_ensemble


@dataclass
class Runner:
    """Where an experiment computes (``device``) and caches (``cache``: a
    :class:`~lctools.cache.ResultsCache`, a folder, or ``None`` for the default).

    Experiments train through :meth:`train_ensemble` and cache other results through
    :meth:`cached`, so that a chapter and ``python -m lctools.reproduce`` that ask for
    the same settings share one cache entry."""

    device: Union[str, torch.device, None] = None
    cache: Union[ResultsCache, str, None] = None
    progress: bool = False
    checkpoint_interval: float = 60.0

    def __post_init__(self):
        self.device = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if not isinstance(self.cache, ResultsCache):
            self.cache = ResultsCache(self.cache)

    def train_ensemble(self, config: Mapping, build_model, seeds, X, y, **kwargs):
        """:func:`~lctools.cache.cached_train_ensemble` on this runner's cache and device."""
        return cached_train_ensemble(
            dict(config), build_model, seeds, X, y, cache=self.cache,
            checkpoint_interval=self.checkpoint_interval, device=self.device,
            progress=self.progress, **kwargs)

    def cached(self, config: Mapping, compute: Callable[[], Mapping]) -> Any:
        """:meth:`~lctools.cache.ResultsCache.get_or_compute` on this runner's cache."""
        return self.cache.get_or_compute(dict(config), compute)


def make_settings(name: str, quick: Mapping[str, Any], full: Mapping[str, Any]):
    """A ``settings(mode, **overrides)`` function for an experiment: its ``quick`` or ``full``
    settings as attributes, with ``overrides`` (existing keys only) applied."""

    def settings(mode: Optional[str] = None, **overrides):
        from ..course import settings as _settings

        cfg = _settings(mode, quick=quick, full=full)
        for key, value in overrides.items():
            if not hasattr(cfg, key):
                raise ValueError(f"{name} has no setting {key!r}; its settings: {sorted(vars(cfg))}.")
            setattr(cfg, key, value)
        return cfg

    settings.__doc__ = f"The settings of {name} in ``mode`` (quick or full), with ``overrides``."
    return settings


def fixed_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``: a fresh one at every evaluation gives the same
    bias noise and attack starts at every step, so that curves are smooth."""
    return torch.Generator().manual_seed(int(seed))


@dataclass
class Claim:
    """One claim of a chapter: ``text``, whether it ``holds``, and the numbers behind it."""

    text: str
    holds: bool
    detail: str = ""


@dataclass
class Claims:
    """The claims of an experiment; :meth:`check` raises if any fails."""

    items: List[Claim] = field(default_factory=list)

    def add(self, text: str, holds, detail: str = "") -> None:
        self.items.append(Claim(text, bool(holds), detail))

    def check(self) -> None:
        """Raise ``AssertionError`` listing every claim that does not hold."""
        failed = [c for c in self.items if not c.holds]
        if failed:
            raise AssertionError("claims that do not hold:\n" + "\n".join(
                f"  - {c.text} ({c.detail})" for c in failed))

    def __str__(self) -> str:
        return "\n".join(f"[{'ok' if c.holds else 'FAILS'}] {c.text}: {c.detail}" for c in self.items)

    def _repr_markdown_(self) -> str:
        return "\n".join(f"- {'✓' if c.holds else '✗ **fails**'} {c.text} ({c.detail})"
                         for c in self.items)


def spearman(a, b) -> float:
    """Spearman rank correlation of two 1-d arrays (ranks by ``argsort``; no ties correction)."""
    ra, rb = (np.argsort(np.argsort(np.asarray(v))).astype(float) for v in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


def symlog_steps(ax, last_step: int, label: str = "training step") -> None:
    """Training steps on a symlog x axis (linear up to 1, so that step 0 is shown)."""
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(0, last_step * 1.1)
    ax.set_xlabel(label)


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


def member_series(rows: Sequence[Mapping[str, Any]], name: str) -> Tuple[np.ndarray, np.ndarray]:
    """Invert :func:`history_table` for one metric: ``(steps, values)`` with ``values`` of shape
    ``(members, E)`` for a scalar metric or ``(members, E, k)`` for a vector one."""
    members = sorted({r["member"] for r in rows})
    steps = np.array(sorted({r["step"] for r in rows}))
    keys = sorted((k for k in rows[0] if k == name or (k.startswith(name + "_") and k[len(name) + 1:].isdigit())),
                  key=lambda k: (len(k), k))
    values = np.array([[[r[k] for k in keys] for r in rows if r["member"] == m] for m in members])
    return steps, values if len(keys) > 1 else values[..., 0]


def first_index(mask) -> Optional[int]:
    """The first index where ``mask`` holds, or ``None``."""
    hits = np.flatnonzero(np.asarray(mask))
    return int(hits[0]) if len(hits) else None
