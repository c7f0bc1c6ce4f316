"""A reproducible figure (:class:`FigureSpec`) and its settings, checked against their types."""
from __future__ import annotations

import ast
import types
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Mapping, Optional

from ..course import settings
from ..validation import as_float, as_int

#: settings that may be 0 (everything else numeric must be positive)
NON_NEGATIVE = ("data_seed", "seed", "weight_decay")


@dataclass(frozen=True)
class FigureSpec:
    """One reproducible figure of an experiment (a module of :mod:`lctools.experiments`).

    ``compute(cfg, runner)`` returns ``{"summary": {...}, "table": [row dicts]}``;
    ``plot(result, cfg)`` draws it; ``claims(summary)`` states the chapter's claims.
    """

    name: str
    chapter: int
    title: str
    quick: Mapping[str, Any]
    full: Mapping[str, Any]
    compute: Callable[..., dict]
    plot: Callable[[dict, types.SimpleNamespace], Any]
    claims: Callable[[dict], Any]


def parse_overrides(items: Iterable[str]) -> Dict[str, Any]:
    """``["steps=300", "widths=[32, 32]"]`` -> ``{"steps": 300, "widths": [32, 32]}`` (values
    are Python literals; anything else is kept as a string; ``nan``/``inf`` become floats
    so that :func:`check_setting` can refuse them by name)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}.")
        value = value.strip()
        try:
            out[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key.strip()] = float(value) if value.lower() in ("nan", "inf", "-inf", "+inf") else value
    return out


def _describe(default) -> str:
    if isinstance(default, bool):
        return "True or False"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, (list, tuple)):
        return f"a list like {list(default)!r}"
    return f"a {type(default).__name__}"


def check_setting(figure: str, key: str, value, default):
    """``value`` if it has the type of ``default`` (the setting's value in the figure's
    settings) and a sensible range; otherwise a ``ValueError`` that names the setting."""
    where = f"setting {key!r} of figure {figure!r}"
    bad = ValueError(f"{where} expects {_describe(default)}, got {value!r}.")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad
        return value
    if isinstance(default, (int, float)):
        # the rules of lctools.validation (numpy scalars and 0-d tensors are numbers)
        positive = key not in NON_NEGATIVE
        if isinstance(default, int):
            try:
                value = as_int(value, where)
            except ValueError:
                raise bad from None
            return as_int(value, where, low=1 if positive else 0)
        return as_float(value, where, low=0.0, low_open=positive)
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)) or not value:
            raise bad
        element = default[0] if default else value[0]
        return [check_setting(figure, key, v, element) for v in value]
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad
        return value
    return value


def figure_settings(spec: FigureSpec, mode: str, overrides: Optional[Mapping[str, Any]] = None):
    """The settings of ``spec`` in ``mode`` with ``overrides`` applied (each key must exist,
    each value must fit the setting's type)."""
    cfg = settings(mode, quick=spec.quick, full=spec.full)
    for key, value in dict(overrides or {}).items():
        if not hasattr(cfg, key):
            raise ValueError(f"figure {spec.name!r} has no setting {key!r}; its settings: {sorted(vars(cfg))}.")
        setattr(cfg, key, check_setting(spec.name, key, value, getattr(cfg, key)))
    return cfg
