"""A live region explorer that needs no kernel: weights exported to JavaScript.

:func:`region_explorer` turns training snapshots of 2D ReLU networks (trained by lctools)
into one self-contained HTML output: the exported weights plus a small JavaScript module
(package data, ``lctools/explorer_assets/region_explorer.js``, inlined: no CDN, no server).
The same output works in the static online book, in Jupyter and on Colab. The reader moves
sliders over the training steps and the bias-noise scale ``s``, picks one of several
networks (widths, depths), and sees

* the activation regions on a raster of the box ``K`` (a region = the pixels of one
  activation pattern ``(z_{l,i}(x) > 0)_{l,i}``), or the regions of one draw of the
  perturbed network ``b_l + eps_l``, or the per-point local complexity as a heat map;
* the number of regions in view (distinct patterns on the raster, ``<=`` the exact count of
  :func:`lctools.regions.partition2d`, up to regions smaller than a pixel);
* the coarea estimate of local complexity for ``p`` uniform on ``K``, as
  :func:`lctools.complexity.local_complexity` computes it (book/notation.md),

      LC_s = E_eps E_x sum_{l,i} phi_s(zbar_{l,i}(x; eps)) ||grad_x z_{l,i}(x; eps)||,

  over the pixel centres with one noise draw per pixel, with its standard error, and the
  noiseless plug-in ``E_x sum phi_s(z) ||grad z||``.

:func:`train_snapshots` trains a network and keeps copies at log-spaced steps.
"""
from __future__ import annotations

import base64
import copy
import html
import itertools
import json
from importlib import resources
from typing import Mapping, Sequence, Tuple

import numpy as np
import torch

from ._network import parse_network
from .validation import as_float, as_int, check_sigma

__all__ = ["RegionExplorer", "export_network", "region_explorer", "train_snapshots", "javascript"]

VIEWS = ("regions", "noisy", "lc")
_VIEW_NAMES = {"regions": "activation regions", "noisy": "regions of one bias-noise draw",
               "lc": "per-point LC (heat map)"}
_ids = itertools.count()


def javascript() -> str:
    """The explorer's JavaScript module (package data), as text.

    :func:`region_explorer` inlines it in its HTML output (no CDN, no server).

    Returns
    -------
    str
        The source of ``lctools/explorer_assets/region_explorer.js``.

    Examples
    --------
    >>> "LCToolsExplorer" in javascript()
    True
    """
    return resources.files("lctools").joinpath("explorer_assets/region_explorer.js").read_text("utf-8")


def export_network(model) -> dict:
    """The hidden layers of a 2-input network as the explorer reads them.

    Returns ``{"widths": [n_1, ..., n_L], "slopes": [...], "weights": str}`` where
    ``weights`` is base64 of the float32 values ``W_1, b_1, ..., W_L, b_L`` (each ``W_l``
    of shape ``(n_l, n_{l-1})``, row-major, little-endian). The output layer is not needed
    for regions or local complexity and is left out.

    Parameters
    ----------
    model : torch.nn.Module
        A ReLU or LeakyReLU MLP with 2 inputs (e.g. :class:`lctools.models.MLP`).

    Returns
    -------
    dict
        ``widths``, ``slopes`` and the base64 ``weights`` of the hidden layers.

    Raises
    ------
    ValueError
        if the model is not a ReLU/LeakyReLU MLP with 2 inputs, or has non-finite weights.

    Examples
    --------
    >>> import base64, lctools
    >>> out = export_network(lctools.MLP(2, [8, 4], 1, seed=0))
    >>> out["widths"], out["slopes"]
    ([8, 4], [0.0, 0.0])
    >>> len(base64.b64decode(out["weights"])) // 4    # (2*8 + 8) + (8*4 + 4) floats
    60
    """
    net = parse_network(model)
    if net.in_dim != 2:
        raise ValueError(f"the region explorer draws 2D input spaces; this network has n_0 = {net.in_dim}.")
    parts = []
    for W, b in zip(net.weights[:-1], net.biases[:-1]):
        parts += [W.detach().cpu().float().reshape(-1), b.detach().cpu().float().reshape(-1)]
    flat = torch.cat(parts).numpy().astype("<f4")
    if not np.isfinite(flat).all():
        raise ValueError("the network has NaN or infinite weights.")
    return {"widths": [int(n) for n in net.widths], "slopes": [float(a) for a in net.slopes],
            "weights": base64.b64encode(flat.tobytes()).decode("ascii")}


def train_snapshots(model: torch.nn.Module, X, y, steps: int, snapshots: int = 12, **train_kw):
    """Train ``model`` in place with :func:`lctools.training.train` and return copies of it
    (on the CPU) at ``training.log_steps(steps, snapshots)``: a list of ``(step, model)``.

    Other keywords (``lr``, ``weight_decay``, ``batch_size``, ``seed``, ...) go to ``train``.

    Examples
    --------
    >>> import lctools
    >>> from lctools import data, explorer
    >>> X, y = data.two_moons(n=100, seed=0)
    >>> snaps = explorer.train_snapshots(lctools.MLP(2, [8, 8], 2, seed=0), X, y, steps=20,
    ...                                  snapshots=4, progress=False)
    >>> [s for s, _ in snaps]
    [0, 2, 7, 20]
    """
    from .training import log_steps, train

    kept = []

    def keep(m):
        kept.append(copy.deepcopy(m).cpu())
        return len(kept)

    eval_steps = log_steps(int(steps), int(snapshots))
    train(model, X, y, steps=int(steps), metrics={"_snapshot": keep}, eval_steps=eval_steps, **train_kw)
    return [(int(s), m) for s, m in zip(eval_steps, kept)]


def _check_runs(runs) -> list:
    if not isinstance(runs, Mapping) or not runs:
        raise ValueError("runs must be a non-empty mapping: name -> [(step, model), ...].")
    out = []
    for name, snaps in runs.items():
        snaps = list(snaps)
        if not snaps:
            raise ValueError(f"run {name!r} has no snapshots.")
        try:
            steps = [int(s) for s, _ in snaps]
        except (TypeError, ValueError):
            raise ValueError(f"run {name!r}: give snapshots as (step, model) pairs.") from None
        if any(b <= a for a, b in zip(steps, steps[1:])):
            raise ValueError(f"run {name!r}: steps must increase, got {steps}.")
        exported = [export_network(m) for _, m in snaps]
        shapes = {(tuple(e["widths"]), tuple(e["slopes"])) for e in exported}
        if len(shapes) != 1:
            raise ValueError(f"run {name!r}: all snapshots must have the same architecture, got {sorted(shapes)}.")
        out.append({"name": str(name), "widths": exported[0]["widths"], "slopes": exported[0]["slopes"],
                    "steps": steps, "snapshots": [e["weights"] for e in exported]})
    return out


class RegionExplorer:
    """The explorer as a display object: ``_repr_html_`` (book, Jupyter, Colab) and
    ``save(path)`` (a standalone page). ``data`` holds what the JavaScript reads."""

    def __init__(self, data: dict, title: str = "", caption: str = ""):
        self.data, self.title, self.caption = data, title, caption
        self.id = f"lcx-{next(_ids)}-{np.random.default_rng().integers(1 << 30):x}"

    def _controls(self) -> str:
        d = self.data
        runs = "".join(f'<option value="{i}"{" selected" if i == d["run"] else ""}>{html.escape(r["name"])}</option>'
                       for i, r in enumerate(d["runs"]))
        views = "".join(f'<option value="{v}"{" selected" if v == d["view"] else ""}>{_VIEW_NAMES[v]}</option>'
                        for v in VIEWS)
        t = np.log(d["sigma"] / d["sigma_min"]) / np.log(d["sigma_max"] / d["sigma_min"])
        points = ('<label class="lcx-row"><input type="checkbox" class="lcx-points" checked> show the '
                  'training data</label>') if d.get("points") else ""
        return f"""
<label class="lcx-row">network <select class="lcx-run" aria-label="network">{runs}</select></label>
<label class="lcx-row">training step <b class="lcx-step-value"></b>
 <input type="range" class="lcx-step" min="0" max="0" step="1" value="0" aria-label="training step"></label>
<label class="lcx-row">bias-noise scale <i>s</i> = <b class="lcx-sigma-value"></b>
 <input type="range" class="lcx-sigma" min="0" max="1000" step="1" value="{round(1000 * t)}"
  aria-label="bias-noise scale s (log scale)"></label>
<label class="lcx-row">show <select class="lcx-view" aria-label="view">{views}</select></label>
{points}
<p class="lcx-readout">regions in view: <b class="lcx-regions"></b>
 <span class="lcx-note">(distinct patterns on a {d["nx"]}&times;{d["ny"]} raster)</span></p>
<p class="lcx-readout">LC<sub><i>s</i></sub> &asymp; <b class="lcx-lc"></b>
 <span class="lcx-note">(coarea estimate, one noise draw per pixel, &plusmn; 1 SE)</span></p>
<p class="lcx-readout">noiseless plug-in: <b class="lcx-plugin"></b></p>"""

    def html(self) -> str:
        """The HTML fragment: markup, data (JSON) and the inlined JavaScript module."""
        d = self.data
        data = json.dumps(self.data, separators=(",", ":")).replace("</", "<\\/")
        title = f'<p class="lcx-title"><b>{html.escape(self.title)}</b></p>' if self.title else ""
        caption = f'<p class="lcx-caption">{html.escape(self.caption)}</p>' if self.caption else ""
        js = javascript().replace("</script", "<\\/script")
        return f"""<div class="lctools-explorer" id="{self.id}">
<style>
#{self.id} {{font: 14px/1.4 sans-serif; color: #222; max-width: 688px; margin: 0.5em 0;}}
#{self.id} .lcx-body {{display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start;}}
#{self.id} canvas {{width: 360px; max-width: 100%; height: auto; border: 1px solid #999;
  image-rendering: pixelated;}}
#{self.id} .lcx-panel {{flex: 1 1 260px; min-width: 240px;}}
#{self.id} .lcx-row {{display: block; margin: 0 0 8px 0;}}
#{self.id} input[type=range] {{width: 100%; display: block;}}
#{self.id} .lcx-readout {{margin: 4px 0;}}
#{self.id} .lcx-note, #{self.id} .lcx-caption {{color: #555; font-size: 12.5px;}}
#{self.id} .lcx-axis {{display: flex; justify-content: space-between; width: 360px; max-width: 100%;
  color: #555; font-size: 12px;}}
</style>
{title}<div class="lcx-body"><div><canvas class="lcx-canvas" width="720" height="{round(720 * d['ny'] / d['nx'])}"
 role="img" aria-label="activation regions of a two-input ReLU network on the box x1 in
 [{self.data['bounds'][0]:g}, {self.data['bounds'][1]:g}], x2 in [{self.data['bounds'][2]:g}, {self.data['bounds'][3]:g}]"></canvas>
<div class="lcx-axis"><span>x&#8321; = {self.data['bounds'][0]:g}</span><span>x&#8322; from
 {self.data['bounds'][2]:g} (bottom) to {self.data['bounds'][3]:g} (top)</span><span>x&#8321; = {self.data['bounds'][1]:g}</span></div></div>
<div class="lcx-panel">{self._controls()}</div></div>{caption}
<script type="application/json" class="lcx-data">{data}</script>
<script>{js}
window.LCToolsExplorer.mount("{self.id}");</script>
</div>"""

    def _repr_html_(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        runs = ", ".join(f"{r['name']} ({len(r['steps'])} steps)" for r in self.data["runs"])
        return f"RegionExplorer({runs}; bounds={tuple(self.data['bounds'])}, resolution={self.data['resolution']})"

    def save(self, path) -> None:
        """Write a standalone HTML page with the explorer (no external resources)."""
        from pathlib import Path

        page = ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>lctools region explorer"
                f"</title></head><body>\n{self.html()}\n</body></html>\n")
        Path(path).write_text(page, encoding="utf-8")


def region_explorer(
    runs: Mapping[str, Sequence[Tuple[int, torch.nn.Module]]],
    bounds=(-1.0, 1.0, -1.0, 1.0),
    sigma: float = 0.05,
    sigma_range: Tuple[float, float] = (0.005, 1.0),
    resolution: int = 128,
    points=None,
    labels=None,
    view: str = "regions",
    run: int = 0,
    seed: int = 0,
    title: str = "",
    caption: str = "",
) -> RegionExplorer:
    """A live, kernel-free explorer of the activation regions of 2D networks over training.

    Parameters
    ----------
    runs : dict
        ``name -> [(step, model), ...]`` (e.g. from :func:`train_snapshots`); each run is one
        network (a width or a depth) at increasing training steps.
    bounds : tuple of 4 floats
        The box ``K = [x0, x1] x [y0, y1]`` shown and averaged over (``p`` uniform on K).
    sigma : float
        The initial bias-noise scale ``s``; the slider spans ``sigma_range`` (log scale).
    sigma_range : tuple of 2 floats
        The smallest and largest ``s`` of the slider.
    resolution : int
        Raster width in pixels for patterns and the LC estimate (the height follows the
        aspect ratio of ``bounds``).
    points, labels : array, optional
        2D data points (shape ``(n, 2)``) and their 0/1 labels, drawn over the figure.
    view : str
        The initial view: ``"regions"``, ``"noisy"`` (one bias-noise draw) or ``"lc"``.
    run : int
        Index of the run shown first.
    seed : int
        Seed of the JavaScript noise draws (the same draws in every frame).
    title, caption : str
        Text above and below the figure.

    Returns
    -------
    RegionExplorer
        A display object: the book, Jupyter and Colab show it as HTML.

    Examples
    --------
    >>> import lctools
    >>> from lctools import explorer
    >>> net = lctools.MLP(2, [8, 8], 1, seed=0)
    >>> ex = explorer.region_explorer({"width 8": [(0, net)]}, resolution=64)
    >>> ex
    RegionExplorer(width 8 (1 steps); bounds=(-1.0, 1.0, -1.0, 1.0), resolution=64)
    >>> "LCToolsExplorer.mount" in ex._repr_html_()
    True
    """
    exported = _check_runs(runs)
    try:
        x0, x1, y0, y1 = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be four numbers (x0, x1, y0, y1), got {bounds!r}.") from None
    if not (np.isfinite([x0, x1, y0, y1]).all() and x0 < x1 and y0 < y1):
        raise ValueError(f"bounds need finite x0 < x1 and y0 < y1, got {bounds!r}.")
    try:
        lo, hi = sigma_range
    except (TypeError, ValueError):
        raise ValueError(f"sigma_range must be (low, high) with 0 < low < high, got {sigma_range!r}.") from None
    lo = check_sigma(lo, "sigma_range[0]")
    hi = as_float(hi, "sigma_range[1]", low=lo, low_open=True, what=" (the largest s)")
    sigma = as_float(sigma, "sigma", low=lo, high=hi, what=f" (in sigma_range {sigma_range})")
    resolution = as_int(resolution, "resolution", low=8)
    if resolution > 1024:
        raise ValueError(f"resolution must be an integer in [8, 1024], got {resolution!r}.")
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}.")
    run = as_int(run, "run", low=0)
    if run >= len(exported):
        raise ValueError(f"run must index one of the {len(exported)} runs, got {run!r}.")
    ny = max(1, round(int(resolution) * (y1 - y0) / (x1 - x0)))
    if ny > 1024:
        raise ValueError(f"bounds {bounds!r} are too tall for resolution {resolution}: {ny} rows of pixels.")
    data = {"bounds": [x0, x1, y0, y1], "resolution": int(resolution), "nx": int(resolution), "ny": ny,
            "sigma": float(sigma),
            "sigma_min": lo, "sigma_max": hi, "view": view, "run": int(run), "seed": int(seed),
            "runs": exported}
    if points is not None:
        P = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else np.asarray(points)
        if P.ndim != 2 or P.shape[1] != 2 or not np.isfinite(P).all():
            raise ValueError(f"points must be finite with shape (n, 2), got shape {P.shape}.")
        lab = np.zeros(len(P), int) if labels is None else (
            labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels))
        if lab.shape != (len(P),):
            raise ValueError(f"labels must have shape ({len(P)},), got {lab.shape}.")
        data["points"] = {"x": np.round(P[:, 0], 4).tolist(), "y": np.round(P[:, 1], 4).tolist(),
                          "label": [int(v != 0) for v in lab]}
    return RegionExplorer(data, title=title, caption=caption)
