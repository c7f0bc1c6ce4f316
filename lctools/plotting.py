"""The book's figure conventions in one place: figures drawn for the text column.

Read online at 1280 px, the book's text column is ``COLUMN_PX = 688`` CSS pixels wide, and an
image wider than the column is scaled down to fit it. A figure ``w`` inches wide saved at
``dpi`` dots per inch (matplotlib's default ``FIGURE_DPI = 100``, which Jupyter's inline
backend keeps) is ``w * dpi`` pixels wide, and a label of ``f`` points is ``f * dpi / 72``
pixels tall in it. Shown in the column, the label is

    label_css_px = f * dpi / 72 * min(1, COLUMN_PX / (w * dpi))

CSS pixels tall. The rule of the book: a 10-pt label shows at ``>= MIN_LABEL_PX = 9.5`` CSS
pixels, i.e. ``w <= 10`` inches at the default font; we draw figures ``COLUMN_WIDTH = 7``
inches wide (a 10-pt label shows at about 13.7 px), and split figures with many panels
rather than squeezing them into one row.

* :func:`column_figure` -- ``plt.subplots`` at the column width with a sensible height.
* :func:`label_css_px`, :func:`max_figure_width` -- the rule above, as numbers.
* :func:`check_figure` -- raise if a figure breaks the rule (for a chapter's check cells).
* :func:`symlog_axis` -- a symmetric-log axis whose linear range fits the data.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from .validation import as_float, as_int

__all__ = [
    "COLUMN_PX", "COLUMN_WIDTH", "FIGURE_DPI", "LABEL_PT", "MIN_LABEL_PX",
    "label_css_px", "max_figure_width", "column_figure", "check_figure", "symlog_axis",
]

COLUMN_PX = 688
"""Width of the book's text column in CSS pixels, in a 1280-px-wide browser window."""

COLUMN_WIDTH = 7.0
"""Width (inches) at which the book draws its figures."""

FIGURE_DPI = 100.0
"""Dots per inch of the book's PNG figures (matplotlib's default ``figure.dpi``)."""

LABEL_PT = 10.0
"""Default font size of matplotlib labels, in points."""

MIN_LABEL_PX = 9.5
"""Smallest height (CSS pixels) a ``LABEL_PT`` label may have on the page."""


def _positive(value, name: str) -> float:
    return as_float(value, name, low=0.0, low_open=True)


def label_css_px(width: float, dpi: float = FIGURE_DPI, font_pt: float = LABEL_PT,
                 column_px: float = COLUMN_PX) -> float:
    """Height in CSS pixels of a ``font_pt`` label of a figure ``width`` inches wide, shown in
    the column: ``font_pt * dpi / 72 * min(1, column_px / (width * dpi))``.

    Examples
    --------
    >>> round(label_css_px(7.0), 1)      # a 7-inch figure is shown at 98 %
    13.7
    >>> round(label_css_px(15.0), 1)     # a 15-inch figure is shown at 46 %
    6.4
    """
    width, dpi = _positive(width, "width"), _positive(dpi, "dpi")
    font_pt, column_px = _positive(font_pt, "font_pt"), _positive(column_px, "column_px")
    return font_pt * dpi / 72.0 * min(1.0, column_px / (width * dpi))


def max_figure_width(font_pt: float = LABEL_PT, min_px: float = MIN_LABEL_PX,
                     column_px: float = COLUMN_PX) -> float:
    """The widest figure (inches) whose ``font_pt`` labels still show at ``min_px`` CSS pixels
    in the column: ``font_pt * column_px / (72 * min_px)`` (independent of the dpi once the
    figure is scaled down). At the defaults, about 10 inches.

    Examples
    --------
    >>> round(max_figure_width(), 2)
    10.06
    """
    font_pt, min_px = _positive(font_pt, "font_pt"), _positive(min_px, "min_px")
    return font_pt * _positive(column_px, "column_px") / (72.0 * min_px)


def column_figure(nrows: int = 1, ncols: int = 1, *, width: float = COLUMN_WIDTH,
                  height: Optional[float] = None, aspect: float = 0.8, max_height: float = 9.0,
                  **subplots_kw):
    """``plt.subplots(nrows, ncols)`` drawn for the book's column.

    The figure is ``width`` inches wide (default ``COLUMN_WIDTH``); its height is ``height``
    or, by default, ``nrows`` rows of panels whose height is ``aspect`` times their width
    (``width / ncols``), capped at ``max_height``. Layout is ``constrained`` unless
    ``subplots_kw`` says otherwise; other keywords go to ``plt.subplots``.

    Returns ``(fig, axes)`` as ``plt.subplots`` does (``squeeze`` applies).

    Raises
    ------
    ValueError
        if ``nrows``/``ncols`` are not positive integers, if ``width`` is wider than
        :func:`max_figure_width` (labels would show below ``MIN_LABEL_PX``), or if a panel
        would be narrower than 1.4 inches (split the figure instead).

    Examples
    --------
    >>> fig, axes = column_figure(1, 2)
    >>> [round(float(v), 2) for v in fig.get_size_inches()]
    [7.0, 2.8]
    """
    import matplotlib.pyplot as plt

    nrows, ncols = as_int(nrows, "nrows", low=1), as_int(ncols, "ncols", low=1)
    width, aspect = _positive(width, "width"), _positive(aspect, "aspect")
    limit = max_figure_width()
    if width > limit:
        raise ValueError(
            f"a figure {width} inches wide shows 10-pt labels at {label_css_px(width):.1f} CSS px "
            f"in the {COLUMN_PX}-px column (< {MIN_LABEL_PX}); draw it at most {limit:.1f} "
            "inches wide, or split it."
        )
    if width / ncols < 1.4:
        raise ValueError(
            f"{ncols} panels in a row of {width} inches are {width / ncols:.2f} inches each; "
            "split the figure into several (at most about 4 panels per row)."
        )
    if height is None:
        height = min(_positive(max_height, "max_height"), nrows * aspect * width / ncols)
    height = _positive(height, "height")
    if "layout" not in subplots_kw and "constrained_layout" not in subplots_kw:
        subplots_kw["layout"] = "constrained"
    return plt.subplots(nrows, ncols, figsize=(width, height), **subplots_kw)


def check_figure(fig, font_pt: float = LABEL_PT) -> float:
    """Raise ``ValueError`` if ``fig`` breaks the column rule; return its label size in CSS px.

    The rule: ``font_pt`` labels of ``fig``, at its own width and dpi, show at least
    ``MIN_LABEL_PX`` CSS pixels high in the column (:func:`label_css_px`).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure to check.
    font_pt : float
        The label size in points (matplotlib's default 10).

    Returns
    -------
    float
        The labels' height in CSS pixels.

    Raises
    ------
    ValueError
        if the labels would show below ``MIN_LABEL_PX`` (the figure is too wide).

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> fig = plt.figure(figsize=(7.0, 3.0), dpi=100)
    >>> round(check_figure(fig), 1)
    13.7
    >>> check_figure(plt.figure(figsize=(15.0, 3.0), dpi=100))
    Traceback (most recent call last):
    ...
    ValueError: figure is 15.00 inches wide at 100 dpi: 10-pt labels show at 6.4 CSS px (< 9.5); use lctools.plotting.column_figure.
    >>> plt.close("all")
    """
    w = float(fig.get_size_inches()[0])
    px = label_css_px(w, dpi=fig.dpi, font_pt=font_pt)
    if px < MIN_LABEL_PX:
        raise ValueError(
            f"figure is {w:.2f} inches wide at {fig.dpi:g} dpi: {font_pt:g}-pt labels show at "
            f"{px:.1f} CSS px (< {MIN_LABEL_PX}); use lctools.plotting.column_figure."
        )
    return px


def symlog_axis(ax, values: Optional[Sequence[float]] = None, axis: str = "y",
                linthresh: Optional[float] = None, quantile: float = 0.05):
    """Put a symmetric-log scale on ``axis`` (``"x"`` or ``"y"``) of ``ax`` and return ``ax``.

    The axis is linear on ``[-linthresh, linthresh]`` and logarithmic outside. By default
    ``linthresh`` is the ``quantile`` of the nonzero ``|values|`` (so the bulk of the data is
    on the log part), rounded down to a power of ten; without ``values`` it is 1. A thin line
    marks zero.

    Raises
    ------
    ValueError
        for an ``axis`` other than ``"x"``/``"y"``, a non-positive ``linthresh`` or a
        ``quantile`` outside ``[0, 1]``.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots()
    >>> _ = symlog_axis(ax, values=[-300.0, -2.0, 0.0, 0.5, 40.0])
    >>> ax.get_yscale()
    'symlog'
    """
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}.")
    quantile = as_float(quantile, "quantile", low=0.0, high=1.0)
    if linthresh is None:
        linthresh = 1.0
        if values is not None:
            a = np.abs(np.asarray(values, dtype=float).ravel())
            a = a[np.isfinite(a) & (a > 0)]
            if a.size:
                linthresh = 10.0 ** math.floor(math.log10(np.quantile(a, quantile)))
    linthresh = _positive(linthresh, "linthresh")
    if axis == "y":
        ax.set_yscale("symlog", linthresh=linthresh)
        ax.axhline(0.0, color="0.6", lw=0.6, zorder=0)
    else:
        ax.set_xscale("symlog", linthresh=linthresh)
        ax.axvline(0.0, color="0.6", lw=0.6, zorder=0)
    return ax
