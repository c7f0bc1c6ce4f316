"""Chapter 5: stronger weight decay, lower local complexity.

One ensemble holds every (weight decay, seed) pair: members differ in their weight decay
``lambda`` and their seed (initialisation and minibatch order), and train together.  After
training, each member's local complexity ``LC_s`` on ``K = [-1, 1]^2`` and its exact boundary
length per unit area (regioncam) are plotted against ``lambda``.
"""
from __future__ import annotations


import numpy as np
import torch

from .. import data, regions
from ..complexity import local_complexity
from ..models import MLP
from ._shared import Claims, Runner, make_settings, spearman

NAME = "weight-decay"
BOX = (-1.0, 1.0, -1.0, 1.0)
QUICK = dict(task="two_moons", n_train=256, data_seed=0, widths=[32, 32], steps=1_000, lr=1e-2, batch_size=64,
             lambdas=np.logspace(-1.5, 0.5, 8).round(4).tolist(), seeds=3, s=0.2, n_box=20_000, noise_draws=2)
FULL = dict(task="two_moons", n_train=1_000, data_seed=0, widths=[64, 64, 64], steps=5_000, lr=1e-2,
            batch_size=64, lambdas=np.logspace(-2, 0.5, 11).round(4).tolist(), seeds=5, s=0.2, n_box=160_000,
            noise_draws=8)
settings = make_settings(NAME, QUICK, FULL)


def compute(cfg, runner: Runner = None) -> dict:
    """Train-or-load the ensemble of (lambda, seed) pairs; returns ``{"summary", "table"}``.
    The box points are uniform on ``K`` from a generator seeded with ``data_seed``; each
    member's noise from a generator seeded with its index."""
    runner = ctx = runner or Runner()
    X, y = getattr(data, cfg.task)(n=cfg.n_train, seed=cfg.data_seed)
    X, y = X.to(ctx.device), y.to(ctx.device)
    n_classes = int(y.max()) + 1
    pairs = [(lam, seed) for lam in cfg.lambdas for seed in range(cfg.seeds)]
    seeds = [seed for _, seed in pairs]
    ens, hists = ctx.train_ensemble(
        dict(vars(cfg), experiment=NAME, model="lctools.MLP (PyTorch default init)"),
        lambda: MLP(X.shape[1], cfg.widths, n_classes), seeds, X, y,
        batched_metrics={"accuracy": lambda e: e.accuracy(X, y)}, steps=cfg.steps, lr=cfg.lr,
        weight_decay=[lam for lam, _ in pairs], batch_size=cfg.batch_size, optimizer="adamw",
        eval_steps=[0, cfg.steps])
    x_box = data.uniform_box(cfg.n_box, BOX, generator=torch.Generator().manual_seed(cfg.data_seed)).to(ctx.device)
    rows = []
    for k, ((lam, seed), h) in enumerate(zip(pairs, hists)):
        net = ens.member(k)
        lc = local_complexity(net, x_box, cfg.s, noise_draws=cfg.noise_draws,
                              generator=torch.Generator().manual_seed(k)).item()
        P = regions.partition2d(net.cpu(), BOX)
        rows.append(dict(member=k, weight_decay=lam, seed=seed, accuracy=float(h["accuracy"][-1]),
                         loss=float(h.loss[-1]), lc=lc, boundary_per_area=P.boundary_length / P.area,
                         regions=P.num_regions))
    lam = np.array([r["weight_decay"] for r in rows])
    lc = np.array([r["lc"] for r in rows])
    slope, intercept = np.polyfit(np.log(1 / lam), lc, 1)
    fit = intercept + slope * np.log(1 / lam)
    r2 = 1 - np.sum((lc - fit) ** 2) / np.sum((lc - lc.mean()) ** 2)
    summary = dict(fit_intercept=float(intercept), fit_slope_per_log_inverse_lambda=float(slope), fit_r2=float(r2),
                   spearman_lc_vs_lambda=spearman(lam, lc),
                   spearman_boundary_vs_lambda=spearman(lam, [r["boundary_per_area"] for r in rows]),
                   min_accuracy=float(min(r["accuracy"] for r in rows)), members=len(rows))
    return dict(summary=summary, table=rows)


def plot(result, cfg):
    import matplotlib.pyplot as plt

    rows, s = result["table"], result["summary"]
    lams = np.array(sorted({r["weight_decay"] for r in rows}))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 7))
    for key, ax, label in (("lc", ax1, rf"$\mathrm{{LC}}_s$ ($s$ = {cfg.s}) on $K = [-1, 1]^2$"),
                           ("boundary_per_area", ax2, "exact boundary length / area of K")):
        ax.scatter([r["weight_decay"] for r in rows], [r[key] for r in rows], s=14, color="0.5", label="each network")
        ax.plot(lams, [np.mean([r[key] for r in rows if r["weight_decay"] == lam]) for lam in lams], "o-",
                color="C0", label=f"mean of {cfg.seeds} seeds")
        ax.set(xscale="log", xlabel=r"weight decay $\lambda$", ylabel=label)
        ax.grid(alpha=0.3)
    grid = np.geomspace(lams.min(), lams.max(), 50)
    ax1.plot(grid, s["fit_intercept"] + s["fit_slope_per_log_inverse_lambda"] * np.log(1 / grid), "k--", lw=1,
             label=rf"fit {s['fit_intercept']:.1f} + {s['fit_slope_per_log_inverse_lambda']:.2f} "
                   rf"$\log(1/\lambda)$, $R^2$ = {s['fit_r2']:.2f}")
    ax1.set_title(f"local complexity (Spearman with lambda: {s['spearman_lc_vs_lambda']:.2f})")
    ax2.set_title(f"the exact partition (Spearman: {s['spearman_boundary_vs_lambda']:.2f})")
    for ax in (ax1, ax2):
        ax.legend(fontsize="small")
    fig.suptitle(f"{cfg.task}, MLP {'-'.join(map(str, cfg.widths))}, {cfg.steps} AdamW steps, "
                 f"{len(rows)} networks trained as one ensemble", fontsize="medium")
    fig.tight_layout()
    return fig



def claims(s: dict) -> Claims:
    """Chapter 5's claims about this sweep, with their tolerances."""
    c = Claims()
    c.add("stronger weight decay, lower LC (Spearman of LC with lambda <= -0.7)",
          s["spearman_lc_vs_lambda"] <= -0.7, f"{s['spearman_lc_vs_lambda']:.2f}")
    c.add("LC is close to linear in log(1/lambda) (R^2 >= 0.7, positive slope)",
          s["fit_r2"] >= 0.7 and s["fit_slope_per_log_inverse_lambda"] > 0,
          f"R^2 {s['fit_r2']:.2f}, slope {s['fit_slope_per_log_inverse_lambda']:.2f}")
    c.add("every network fits (accuracy >= 0.8)", s["min_accuracy"] >= 0.8, f"{s['min_accuracy']:.3f}")
    return c
