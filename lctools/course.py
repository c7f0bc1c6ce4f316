"""The course's one switch: *quick* (laptop CPU) or *full* (the paper's scale, GPU) settings.

Every chapter notebook starts the same way::

    from lctools.course import resolve_mode, settings, banner

    MODE = resolve_mode()          # explicit argument > $LCTOOLS_MODE > "quick"
    cfg = settings(MODE,
                   quick=dict(width=64, steps=2_000),
                   full=dict(width=200, steps=1_000_000))
    banner(MODE)                   # the rendered page says which mode produced it

*quick* is the default everywhere, also on a machine with a GPU (a reader who presses
"Run all" on Colab gets minutes, not hours). *full* runs only when asked for: the
environment variable ``LCTOOLS_MODE=full``, or ``MODE = "full"`` in a notebook's
parameters cell (papermill: ``-p MODE full``).
"""
from __future__ import annotations

import os
import sys
import types
from typing import Any, Mapping, Optional

from .validation import check_device

__all__ = ["MODES", "ENV_VAR", "resolve_mode", "settings", "on_colab", "device_name",
           "banner_text", "banner"]

MODES = ("quick", "full")
"""The allowed modes."""

ENV_VAR = "LCTOOLS_MODE"
"""Name of the environment variable that selects the mode."""

_DESCRIPTIONS = {
    "quick": "CPU settings: small networks and short runs, minutes on a laptop",
    "full": "the paper's settings: full-size networks and long runs, meant for a GPU",
}


def _check(mode: Any, source: str) -> str:
    value = str(mode).strip().lower() if isinstance(mode, str) else mode
    if value not in MODES:
        raise ValueError(
            f"{source} must be one of {', '.join(repr(m) for m in MODES)}; got {mode!r}."
        )
    return value


def resolve_mode(mode: Optional[str] = None) -> str:
    """The mode to run in: ``"quick"`` or ``"full"``; *quick* unless full mode is asked for.

    Order of precedence: the explicit argument ``mode`` (a notebook passes its
    parameters-cell ``MODE``); else the environment variable ``LCTOOLS_MODE`` (if set and
    non-empty); else ``"quick"``. The default does not depend on the hardware: on a CUDA
    machine (Colab with a GPU) it is still ``"quick"``, so that "Run all" never starts a run
    of hours by surprise. Values are case-insensitive and may carry surrounding spaces.

    Parameters
    ----------
    mode : ``"quick"``, ``"full"`` or None
        The mode asked for; None defers to ``LCTOOLS_MODE``, then to ``"quick"``.

    Returns
    -------
    str
        ``"quick"`` or ``"full"``.

    Raises
    ------
    ValueError
        if the argument or the environment variable is not one of ``quick``, ``full``.

    Examples
    --------
    >>> resolve_mode("FULL")            # what a parameters cell MODE = "full" asks for
    'full'
    >>> resolve_mode() in ("quick", "full")  # "quick" unless LCTOOLS_MODE says otherwise
    True
    """
    if mode is not None:
        return _check(mode, "mode")
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return _check(env, f"the environment variable {ENV_VAR}")
    return "quick"


def settings(
    mode: Optional[str], quick: Mapping[str, Any], full: Mapping[str, Any]
) -> types.SimpleNamespace:
    """The settings for ``mode``, as attributes: ``settings("quick", quick=..., full=...).steps``.

    ``quick`` and ``full`` must have the same keys, so that a chapter cannot silently
    depend on a setting that only one mode defines. ``mode=None`` resolves the mode with
    :func:`resolve_mode`.

    Parameters
    ----------
    mode : ``"quick"``, ``"full"`` or None
        The mode (None: :func:`resolve_mode` decides).
    quick, full : mapping
        The settings of each mode, with the same keys.

    Returns
    -------
    types.SimpleNamespace
        The chosen mode's settings as attributes.

    Raises
    ------
    ValueError
        if ``mode`` is not a mode, or the two dictionaries have different keys.

    Examples
    --------
    >>> cfg = settings("quick", quick=dict(width=64, steps=2_000),
    ...                full=dict(width=200, steps=1_000_000))
    >>> cfg.width, cfg.steps
    (64, 2000)
    """
    mode = resolve_mode(mode)
    only_quick = sorted(set(quick) - set(full))
    only_full = sorted(set(full) - set(quick))
    if only_quick or only_full:
        parts = []
        if only_quick:
            parts.append(f"only in quick: {only_quick}")
        if only_full:
            parts.append(f"only in full: {only_full}")
        raise ValueError(
            "quick and full settings must have the same keys (" + "; ".join(parts) + ")."
        )
    chosen = quick if mode == "quick" else full
    return types.SimpleNamespace(**dict(chosen))


def on_colab() -> bool:
    """Whether this code runs in Google Colab (the module ``google.colab`` is imported).

    Returns
    -------
    bool
        True inside a Colab runtime.

    Examples
    --------
    >>> on_colab()          # not on Colab when the doctests run
    False
    """
    return "google.colab" in sys.modules


def device_name(device: Any = None) -> str:
    """A short name of the device a chapter runs on: ``"CPU"`` or ``"GPU (<name>)"``.

    Parameters
    ----------
    device : str, torch.device, optional
        The device; None means CUDA when available, else the CPU (the chapters' default).

    Returns
    -------
    str
        ``"CPU"``, ``"GPU (<name>)"`` or the device type in capitals.

    Raises
    ------
    ValueError
        for a device torch does not know or this machine does not have
        (:func:`lctools.validation.check_device`).

    Examples
    --------
    >>> device_name("cpu")
    'CPU'
    """
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = check_device(device)
    if dev.type == "cuda":
        try:
            return f"GPU ({torch.cuda.get_device_name(dev)})"
        except Exception:  # pragma: no cover - a CUDA device that cannot be queried
            return "GPU"
    return "CPU" if dev.type == "cpu" else dev.type.upper()


_DATASET_NAMES = {
    "mnist": "MNIST",
    "digits": "scikit-learn's 8x8 digits (the offline stand-in for MNIST)",
}


def _data_phrase(data: Any) -> str:
    if data is None:
        return ""
    if isinstance(data, str) or hasattr(data, "name"):
        items = [data]
    elif isinstance(data, (list, tuple)):
        items = list(data)
    else:
        raise ValueError(f"data must name the data set(s): a string, a list of strings or a Dataset; got {data!r}.")
    names = []
    for item in items:
        name = item if isinstance(item, str) else getattr(item, "name", None)
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"data must name the data set(s) as strings (or objects with a .name); got {item!r}.")
        names.append(name.strip() if isinstance(item, str) else _DATASET_NAMES.get(name, name))
    if not names:
        raise ValueError("data must name at least one data set.")
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def banner_text(mode: str, data: Any = None, device: Any = None) -> str:
    """The Markdown text of :func:`banner` (one short paragraph).

    It names the mode, the device (:func:`device_name`) and, if given, the data set(s).

    Parameters
    ----------
    mode : str
        ``"quick"`` or ``"full"``.
    data : str, list, optional
        A string, a list of strings, or objects with a ``.name`` such as
        :class:`lctools.data.Dataset`; ``None`` leaves the data out.
    device : str or torch.device, optional
        The device (``None``: CUDA when available, else the CPU).

    Returns
    -------
    str
        Markdown (``**bold**`` and backticks).

    Examples
    --------
    >>> text = banner_text("full", data="MNIST", device="cpu")
    >>> text.startswith("This page was executed in **full** mode"), "data: **MNIST**" in text
    (True, True)
    """
    mode = _check(mode, "mode")
    other = "full" if mode == "quick" else "quick"
    hint = (
        "To reproduce the paper's scale, set `LCTOOLS_MODE=full` (a GPU is recommended) and re-run."
        if mode == "quick"
        else "For a fast CPU run, set `LCTOOLS_MODE=quick` and re-run."
    )
    data_text = _data_phrase(data)
    data_part = f"; data: **{data_text}**" if data_text else ""
    return (
        f"This page was executed in **{mode}** mode ({_DESCRIPTIONS[mode]}) on "
        f"**{device_name(device)}**{data_part}. {hint} "
        f"Numbers and figures differ between `{mode}` and `{other}` mode; the effects do not."
    )


def _html(mode: str, data: Any = None, device: Any = None) -> str:
    import html
    import re

    text = html.escape(banner_text(mode, data, device), quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
    return (
        f'<div class="admonition note lctools-mode-banner" data-lctools-mode="{mode}">\n'
        '<p class="admonition-title">Execution mode</p>\n'
        f"<p>{text}</p>\n"
        "</div>"
    )


class _Banner:
    """A display object: HTML (the book and Jupyter show this), Markdown and plain text."""

    def __init__(self, mode: str, data: Any = None, device: Any = None):
        self.mode = _check(mode, "mode")
        self.data, self.device = data, device
        banner_text(self.mode, data, device)  # validate now, not when displayed

    def _repr_html_(self) -> str:
        return _html(self.mode, self.data, self.device)

    def _repr_markdown_(self) -> str:
        return "> **Execution mode.** " + banner_text(self.mode, self.data, self.device)

    def __repr__(self) -> str:
        text = banner_text(self.mode, self.data, self.device)
        return "Execution mode: " + text.replace("**", "").replace("`", "")


def banner(mode: str, data: Any = None, device: Any = None) -> None:
    """Display a short note saying which mode, device and data set produced the page.

    In a notebook (and hence in the rendered book) it shows a "note" admonition:
    *This page was executed in* **quick** *mode (CPU settings ...) on* **CPU**; *data:*
    **...**. Chapters call it at the top of the page, right after the parameters cell.
    Outside IPython it prints the same text.

    Parameters
    ----------
    mode : str
        ``"quick"`` or ``"full"``.
    data : str, list, optional
        The data set(s) the chapter uses: a string, a list of strings, or objects with a
        ``.name`` (e.g. :class:`lctools.data.Dataset`); ``None`` leaves them out.
    device : str or torch.device, optional
        The device the chapter trains on (``None``: CUDA when available, else the CPU).

    Examples
    --------
    >>> banner("quick", data="two moons (500 points)", device="cpu")
    Execution mode: This page was executed in quick mode (CPU settings: small networks and short runs, minutes on a laptop) on CPU; data: two moons (500 points). To reproduce the paper's scale, set LCTOOLS_MODE=full (a GPU is recommended) and re-run. Numbers and figures differ between quick and full mode; the effects do not.
    """
    obj = _Banner(mode, data, device)
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython is a Jupyter dependency
        print(repr(obj))
        return
    if get_ipython() is None:
        print(repr(obj))
    else:
        display(obj)
