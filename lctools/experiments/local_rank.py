"""Chapter 3: local rank collapses in deep layers, and local complexity falls with it.

An ensemble of networks (one per seed) trained on a Gaussian mixture in ``R^100`` whose class
structure lives in a ``k``-dimensional subspace; the local rank ``LR_l^eps`` of each layer's
pre-activation features and the local complexity ``LC_l`` (plug-in, per layer) are recorded
on a log-spaced schedule of steps.
"""
from __future__ import annotations

import numpy as np

from .. import data
from ..complexity import local_complexity
from ..models import MLP
from ..rank import local_rank
from ..training import log_steps
from ._shared import Claims, Runner, make_settings, history_table, member_series, spearman, symlog_steps

NAME = "local-rank"
QUICK = dict(n_train=1_000, dim=100, k=5, classes=6, data_seed=0, widths=[200] * 4, steps=1_500, lr=3e-3,
             weight_decay=0.5, batch_size=64, seeds=3, n_eval=100, num_evals=24, sigma=0.1, eps=1e-2)
FULL = dict(n_train=1_000, dim=100, k=5, classes=6, data_seed=0, widths=[200] * 4, steps=50_000, lr=1e-3,
            weight_decay=0.05, batch_size=64, seeds=6, n_eval=500, num_evals=60, sigma=0.1, eps=1e-2)
settings = make_settings(NAME, QUICK, FULL)


def compute(cfg, runner: Runner = None) -> dict:
    """Train-or-load the ensemble; returns ``{"summary": ..., "table": ...}``."""
    runner = runner or Runner()
    ctx = runner
    ds = data.gaussian_mixture(cfg.n_train, dim=cfg.dim, intrinsic_dim=cfg.k, num_classes=cfg.classes,
                               seed=cfg.data_seed)
    X, y = ds.X.to(runner.device), ds.y.to(runner.device)
    x_eval = X[: cfg.n_eval]
    metrics = {
        "lc": lambda m: local_complexity(m, x_eval, cfg.sigma, noise_draws=0, per_layer=True),
        "local_rank": lambda m: local_rank(m, x_eval, eps=cfg.eps),
    }
    seeds = list(range(cfg.data_seed, cfg.data_seed + cfg.seeds))
    config = dict(vars(cfg), experiment=NAME, data="gaussian_mixture", model="lctools.MLP (PyTorch default init)")
    _, hists = ctx.train_ensemble(
        config, lambda: MLP(cfg.dim, cfg.widths, cfg.classes), seeds, X, y, metrics=metrics,
        batched_metrics={"acc": lambda e: e.accuracy(X, y)}, steps=cfg.steps, lr=cfg.lr,
        weight_decay=cfg.weight_decay, batch_size=cfg.batch_size, optimizer="adamw", loss="mse",
        eval_steps=log_steps(cfg.steps, cfg.num_evals))
    R = np.stack([h["local_rank"] for h in hists])   # (seeds, E, L)
    C = np.stack([h["lc"] for h in hists]).sum(2)    # (seeds, E)
    late_r, late_c = [], []
    for h, r, c in zip(hists, R, C):
        fitted = np.flatnonzero(h["acc"] >= 0.9)
        i0 = int(fitted[0]) if len(fitted) else len(c) - 1
        late_r.append(r[i0:, -1])
        late_c.append(c[i0:])
    lr_r, lr_c = np.concatenate(late_r), np.concatenate(late_c)
    summary = dict(
        local_rank_init=R[:, 0].mean(0).tolist(), local_rank_end=R[:, -1].mean(0).tolist(),
        lc_init=float(C[:, 0].mean()), lc_end=float(C[:, -1].mean()),
        final_accuracy=[float(h["acc"][-1]) for h in hists],
        late_phase_spearman=spearman(lr_r, lr_c) if len(lr_r) > 2 else None,
        intrinsic_dim=cfg.k,
    )
    return dict(summary=summary, table=history_table(hists))


def plot(result, cfg):
    import matplotlib.pyplot as plt

    steps, R = member_series(result["table"], "local_rank")
    _, C = member_series(result["table"], "lc")
    L = R.shape[2]
    colors = plt.cm.viridis(np.linspace(0, 0.85, L))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 7.5), sharex=True)
    for l in range(L):
        for r in R:
            ax1.plot(steps, r[:, l], color=colors[l], lw=0.6, alpha=0.4)
        ax1.plot(steps, R[:, :, l].mean(0), color=colors[l], lw=2, label=f"layer {l + 1}")
        ax2.plot(steps, C[:, :, l].mean(0), color=colors[l], lw=1.5, label=f"layer {l + 1}")
    for c in C:
        ax2.plot(steps, c.sum(1), color="k", lw=0.6, alpha=0.4)
    ax2.plot(steps, C.sum(2).mean(0), color="k", lw=2.5, label="all layers")
    ax1.axhline(cfg.k, color="tab:red", ls="--", lw=1.2, label=f"k = {cfg.k}")
    ax1.set(yscale="log", ylabel=rf"local rank $\mathrm{{LR}}_l^\varepsilon$ ($\varepsilon$ = {cfg.eps})",
            title=f"local rank of each layer's features ({len(R)} seeds)")
    ax2.set(yscale="log", ylabel=rf"local complexity $\mathrm{{LC}}_l$ ($s$ = {cfg.sigma}, plug-in)",
            title="local complexity")
    for ax in (ax1, ax2):
        symlog_steps(ax, int(steps[-1]))
        ax.legend(fontsize=8, loc="lower left")
        ax.grid(alpha=0.3)
    fig.suptitle(f"Gaussian mixture in R^{cfg.dim} with {cfg.k}-dim class structure; MLP "
                 f"{len(cfg.widths)}x{cfg.widths[0]}, AdamW lr {cfg.lr:g}, weight decay {cfg.weight_decay:g}",
                 fontsize="medium")
    fig.tight_layout()
    return fig



def claims(s: dict) -> Claims:
    """Chapter 3's claims about this run, with their tolerances."""
    k, c = s["intrinsic_dim"], Claims()
    c.add("layer 1 keeps its rank (>= 95 of 100 at initialisation and at the end)",
          s["local_rank_init"][0] >= 95 and s["local_rank_end"][0] >= 95,
          f"{s['local_rank_init'][0]:.1f} -> {s['local_rank_end'][0]:.1f}")
    c.add(f"the deepest layer collapses to about k = {k} (<= 2k, and <= 0.25 x its initial rank)",
          s["local_rank_end"][-1] <= 2 * k and s["local_rank_end"][-1] <= 0.25 * s["local_rank_init"][-1],
          f"{s['local_rank_init'][-1]:.1f} -> {s['local_rank_end'][-1]:.1f}")
    c.add("LC falls with it (end <= 0.6 x initialisation)", s["lc_end"] <= 0.6 * s["lc_init"],
          f"{s['lc_init']:.1f} -> {s['lc_end']:.1f}")
    c.add("late in training LC tracks the deepest rank (Spearman >= 0.5)",
          s["late_phase_spearman"] is not None and s["late_phase_spearman"] >= 0.5, f"{s['late_phase_spearman']}")
    c.add("every network fits (accuracy >= 0.9)", min(s["final_accuracy"]) >= 0.9, f"{min(s['final_accuracy']):.3f}")
    return c
