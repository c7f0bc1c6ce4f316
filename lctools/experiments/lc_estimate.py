"""Chapter 2: the local-complexity estimate against exact expected boundary lengths.

For a random ReLU network on ``K = [-1, 1]^2`` and each noise scale ``s``: the exact
``E_eps[length of the region boundaries in K] / area(K)``, averaged over exact partitions
(regioncam) of bias-perturbed copies, against ``lctools.local_complexity`` at points
uniform on ``K`` (the coarea formula says they are equal).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .. import data, regions
from ..complexity import local_complexity
from ..models import MLP, build_seeded, perturb_biases
from ._shared import Claims, Runner, make_settings

NAME = "lc-estimate"
BOX = (-1.0, 1.0, -1.0, 1.0)
AREA = 4.0
QUICK = dict(widths=[12, 12, 12], bias_std=0.2, seed=0, sigmas=[0.01, 0.03, 0.1, 0.3, 1.0],
             exact_draws=48, n_points=10_000, noise_draws=4)
FULL = dict(widths=[32, 32, 32], bias_std=0.2, seed=0, sigmas=[0.01, 0.03, 0.1, 0.3, 1.0],
            exact_draws=400, n_points=200_000, noise_draws=16)
settings = make_settings(NAME, QUICK, FULL)


def reference_network(cfg):
    """The random ReLU network ``2 - widths - 1`` (He initialisation, biases N(0, bias_std^2)),
    built under ``torch.manual_seed(cfg.seed)`` (:func:`~lctools.models.build_seeded`), as
    chapter 2 builds it; the chapter's other sections use the same network."""
    return build_seeded(lambda: MLP(2, cfg.widths, 1, init="he", bias_std=cfg.bias_std), cfg.seed)


def compute(cfg, runner: Runner = None) -> dict:
    """For each noise scale ``s``: the exact mean boundary length per unit area over
    ``exact_draws`` bias-perturbed partitions, the estimate at ``n_points`` uniform points
    of ``K`` with ``noise_draws`` draws each, and the noiseless plug-in at the same points.

    Each scale ``s_i`` draws from its own generator (seeded ``1000 seed + i``), so every
    scale is reproducible and cached on its own, whichever other scales are listed (the
    chapter once drew all scales from one generator in turn, so adding a scale changed
    all later numbers)."""
    runner = ctx = runner or Runner()
    net = reference_network(cfg)
    rows = []
    for i, s in enumerate(cfg.sigmas):
        def one_scale(s=s, i=i):
            gen = torch.Generator().manual_seed(1000 * cfg.seed + i)
            lengths = np.array([regions.partition2d(perturb_biases(net, s, gen), BOX).boundary_length / AREA
                                for _ in range(cfg.exact_draws)])
            x = data.uniform_box(cfg.n_points, BOX, generator=gen).to(ctx.device)
            est = local_complexity(net.to(ctx.device), x, sigma=s, noise_draws=cfg.noise_draws, reduction="none",
                                   generator=torch.Generator(device=ctx.device).manual_seed(i)).cpu().double().numpy()
            plug = local_complexity(net, x, sigma=s, noise_draws=0, reduction="none").cpu().double().numpy()
            net.cpu()
            n = math.sqrt(len(est))
            return dict(s=s, exact=lengths.mean(), exact_sd=lengths.std(ddof=1),
                        exact_se=lengths.std(ddof=1) / math.sqrt(len(lengths)),
                        estimate=est.mean(), estimate_se=est.std(ddof=1) / n, plugin=plug.mean(),
                        plugin_bias=(plug - est).mean(), plugin_bias_se=(plug - est).std(ddof=1) / n)

        config = dict(experiment=NAME, version=3, widths=cfg.widths, bias_std=cfg.bias_std, seed=cfg.seed, s=s, exact_draws=cfg.exact_draws,
                      n_points=cfg.n_points, noise_draws=cfg.noise_draws)
        row = dict(ctx.cached(config, one_scale))
        row["z"] = (row["estimate"] - row["exact"]) / math.hypot(row["exact_se"], row["estimate_se"])
        row["relative_difference"] = row["estimate"] / row["exact"] - 1
        rows.append(row)
    summary = dict(max_abs_z=max(abs(r["z"]) for r in rows),
                   max_abs_relative_difference=max(abs(r["relative_difference"]) for r in rows))
    return dict(summary=summary, table=rows)


def plot(result, cfg):
    import matplotlib.pyplot as plt

    rows = result["table"]
    S = np.array([r["s"] for r in rows])
    ex, ex_se = np.array([r["exact"] for r in rows]), np.array([r["exact_se"] for r in rows])
    es, es_se = np.array([r["estimate"] for r in rows]), np.array([r["estimate_se"] for r in rows])
    fig, axes = plt.subplots(2, 1, figsize=(7, 7), constrained_layout=True)
    ax = axes[0]
    ax.errorbar(S / 1.06, ex, yerr=2 * ex_se, fmt="s", ms=6, capsize=3,
                label=f"exact: mean over {cfg.exact_draws} partitions")
    ax.errorbar(S * 1.06, es, yerr=2 * es_se, fmt="o", ms=6, capsize=3,
                label=f"estimate: {cfg.n_points} points x {cfg.noise_draws} draws")
    ax.set(xscale="log", xlabel="noise scale $s$", ylabel=r"$\mathrm{LC}_s$ (boundary length per unit area)",
           title=f"estimate vs exact, MLP 2-{'-'.join(map(str, cfg.widths))}-1 (2 SE)")
    ax.legend(fontsize="small")
    ax = axes[1]
    rel_se = np.hypot(ex_se / ex, es_se / es)
    ax.axhspan(-5, 5, color="0.92", label=r"$\pm 5\%$")
    ax.axhline(0, color="0.4", lw=0.8)
    ax.errorbar(S, 100 * (es / ex - 1), yerr=200 * rel_se, fmt="o", capsize=3, color="C1")
    lim = max(8.0, float(np.max(np.abs(100 * (es / ex - 1)) + 200 * rel_se)) * 1.1)
    ax.set(xscale="log", xlabel="noise scale $s$", ylabel="estimate / exact - 1  (%)",
           title="Relative difference (error bars: 2 SE)", ylim=(-lim, lim))
    ax.legend(fontsize="small", loc="lower left")
    return fig



def claims(s: dict) -> Claims:
    """Chapter 2's claim (the coarea formula): estimate = exact within 4 SE and 6 %."""
    c = Claims()
    c.add("the estimate agrees with the exact boundary density within 4 standard errors at every s",
          s["max_abs_z"] < 4, f"max |z| = {s['max_abs_z']:.2f}")
    c.add("... and within 6 %", s["max_abs_relative_difference"] < 0.06,
          f"max {100 * s['max_abs_relative_difference']:.1f} %")
    return c
