"""Chapters 4 and 6: delayed robustness and the late fall of local complexity on MNIST.

One experiment, two figures: an ensemble (one network per seed) trained with AdamW on 1000
MNIST images (the 8x8 digits when MNIST is not available offline), recording train and test
accuracy, PGD accuracy, local complexity per layer, total variation and local rank per layer.
``robustness`` (chapter 4) shows accuracy, PGD accuracy, TV and LC; ``dynamics`` (chapter 6)
the four-panel figure of the paper's main experiment.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import data, robustness
from ..complexity import local_complexity
from ..models import MLP
from ..rank import local_rank
from ..training import log_steps
from ..variation import total_variation
from . import FigureSpec, history_table, member_series, register, symlog_steps

QUICK = dict(
    n_train=1_000, n_test=1_000, widths=[64] * 4, init_scale=4.0, lr=3e-3, weight_decay=0.3, batch_size=64,
    steps=8_000, evals=24, eps=0.05, pgd_steps=10, sigma=0.5, n_geom=300, n_rank=100, rank_eps=1e-2, seeds=2,
    data_seed=0,
)
FULL = dict(
    n_train=1_000, n_test=1_000, widths=[200] * 4, init_scale=1.0, lr=1e-4, weight_decay=0.01, batch_size=64,
    steps=1_000_000, evals=40, eps=0.05, pgd_steps=20, sigma=0.5, n_geom=1_000, n_rank=500, rank_eps=1e-2,
    seeds=2, data_seed=0,
)


def _experiment(ctx):
    """Train-or-load the ensemble; returns (histories, data set name)."""
    cfg = ctx.cfg
    train_set = data.mnist(train=True, subset=cfg.n_train, seed=cfg.data_seed)
    test_set = data.mnist(train=False, subset=cfg.n_test, seed=cfg.data_seed, verbose=False)
    Xtr, ytr = train_set.X.to(ctx.device), train_set.y.to(ctx.device)
    Xte, yte = test_set.X.to(ctx.device), test_set.y.to(ctx.device)
    Xgeo, Xrank = Xtr[: cfg.n_geom], Xtr[: cfg.n_rank]

    def build():
        net = MLP(train_set.dim, cfg.widths, train_set.num_classes)
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(cfg.init_scale)
        return net

    def fixed():  # the same bias noise and attack starts at every evaluation
        return torch.Generator().manual_seed(cfg.data_seed)

    metrics = {
        "pgd_acc": lambda m: robustness.robust_accuracy(m, Xte, yte, cfg.eps, norm="inf", steps=cfg.pgd_steps,
                                                        loss="margin", clamp=(0, 1), generator=fixed()),
        "lc": lambda m: local_complexity(m, Xgeo, cfg.sigma, noise_draws=1, per_layer=True, generator=fixed()),
        "tv": lambda m: total_variation(m, Xgeo),
        "local_rank": lambda m: local_rank(m, Xrank, eps=cfg.rank_eps),
    }
    batched = {"train_acc": lambda e: e.accuracy(Xtr, ytr), "test_acc": lambda e: e.accuracy(Xte, yte)}
    config = dict(vars(cfg), experiment="mnist-dynamics", data=train_set.name)
    seeds = list(range(cfg.data_seed, cfg.data_seed + cfg.seeds))
    _, hists = ctx.train_ensemble(
        config, build, seeds, Xtr, ytr, metrics=metrics, batched_metrics=batched, steps=cfg.steps, lr=cfg.lr,
        weight_decay=cfg.weight_decay, batch_size=cfg.batch_size, optimizer="adamw",
        eval_steps=log_steps(cfg.steps, cfg.evals))
    return hists, train_set.name


def _summary(hists, name) -> dict:
    per_seed = []
    for h in hists:
        lc = h["lc"].sum(1)
        fitted = np.flatnonzero(h["train_acc"] >= 0.99)
        i_sat = int(fitted[0]) if len(fitted) else len(lc) - 1
        i_peak = int(np.argmax(lc))
        per_seed.append(dict(
            seed=h.config["seed"], saturation_step=int(h.steps[i_sat]), train_acc=float(h["train_acc"][-1]),
            test_acc=float(h["test_acc"][-1]), pgd_acc_at_saturation=float(h["pgd_acc"][i_sat]),
            pgd_acc_end=float(h["pgd_acc"][-1]), pgd_acc_best_after_saturation=float(h["pgd_acc"][i_sat:].max()),
            lc_end_over_peak=float(lc[-1] / lc[i_peak]), lc_end_over_init=float(lc[-1] / lc[0]),
            tv_end_over_init=float(h["tv"][-1] / h["tv"][0]),
            deepest_rank_end_over_saturation=float(h["local_rank"][-1, -1] / h["local_rank"][i_sat, -1]),
        ))
    mean = {k: float(np.mean([p[k] for p in per_seed])) for k in per_seed[0] if k != "seed"}
    return dict(data=name, mean=mean, per_seed=per_seed)


def compute(ctx) -> dict:
    hists, name = _experiment(ctx)
    return dict(summary=_summary(hists, name), table=history_table(hists))


def _saturation(result):
    return float(np.mean([p["saturation_step"] for p in result["summary"]["per_seed"]]))


def _title(cfg, result):
    return (f"{result['summary']['data']}: {cfg.n_train} training images, MLP {len(cfg.widths)}x{cfg.widths[0]}, "
            f"AdamW lr {cfg.lr:g}, weight decay {cfg.weight_decay:g}; mean of {cfg.seeds} seeds (thin: each seed)")


def _band(ax, steps, arr, **style):
    for a in arr:
        ax.plot(steps, a, lw=0.6, alpha=0.35, color=style.get("color"))
    ax.plot(steps, arr.mean(0), ".-", **style)


def plot_robustness(result, cfg):
    import matplotlib.pyplot as plt

    rows = result["table"]
    steps, tr = member_series(rows, "train_acc")
    te, pgd, tv = (member_series(rows, k)[1] for k in ("test_acc", "pgd_acc", "tv"))
    lc = member_series(rows, "lc")[1].sum(-1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2), sharex=True)
    _band(ax1, steps, tr, color="C0", label="train accuracy")
    _band(ax1, steps, te, color="C1", label="test accuracy")
    _band(ax1, steps, pgd, color="C3", lw=2, label=rf"PGD accuracy ($\ell_\infty$, $\varepsilon$ = {cfg.eps})")
    ax1.set(ylim=(-0.02, 1.02), ylabel="accuracy", title="robustness arrives after the fit")
    _band(ax2, steps, tv / tv[:, :1], color="C4", label=r"$\mathrm{TV} / \mathrm{TV}_0$")
    _band(ax2, steps, lc / lc[:, :1], color="k", label=r"$\mathrm{LC}_s / \mathrm{LC}_{s,0}$")
    ax2.set(ylabel="relative to initialisation", title=f"total variation and local complexity (s = {cfg.sigma})")
    ax2.set_ylim(bottom=0)
    for ax in (ax1, ax2):
        ax.axvline(_saturation(result), color="0.5", ls=":", lw=1.2, label="train accuracy reaches 0.99")
        symlog_steps(ax, int(steps[-1]))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="upper left" if ax is ax1 else "lower left")
    fig.suptitle(_title(cfg, result), fontsize="medium")
    fig.tight_layout()
    return fig


def plot_dynamics(result, cfg):
    import matplotlib.pyplot as plt

    rows = result["table"]
    steps, tr = member_series(rows, "train_acc")
    te, pgd, tv, lc, lr = (member_series(rows, k)[1] for k in ("test_acc", "pgd_acc", "tv", "lc", "local_rank"))
    L = lc.shape[-1]
    colors = plt.cm.viridis(np.linspace(0, 0.85, L))
    fig, axes = plt.subplots(4, 1, figsize=(8, 12), sharex=True)
    _band(axes[0], steps, tr, color="C0", label="train accuracy")
    _band(axes[0], steps, te, color="C1", label="test accuracy")
    _band(axes[0], steps, pgd, color="C3", lw=2, label=rf"PGD accuracy (test, $\varepsilon = {cfg.eps}$)")
    axes[0].set(ylim=(-0.02, 1.02), ylabel="accuracy", title="accuracy and robustness")
    _band(axes[1], steps, lc.sum(-1), color="k", lw=2, label="all layers")
    for l in range(L):
        axes[1].plot(steps, lc[:, :, l].mean(0), lw=1, color=colors[l], label=f"layer {l + 1}")
    axes[1].set(ylabel=r"$\mathrm{LC}_s$", title=f"local complexity on training images (s = {cfg.sigma})")
    _band(axes[2], steps, tv, color="C4", label="TV")
    axes[2].set(ylabel=r"$\mathrm{TV} = \mathbb{E}\,\|J_x N\|_F$", title="total variation on training images")
    for l in range(L):
        axes[3].plot(steps, lr[:, :, l].mean(0), ".-", color=colors[l], label=f"layer {l + 1}")
    axes[3].set(ylabel=r"$\mathrm{LR}_l^{\varepsilon}$",
                title=rf"local rank per layer ($\varepsilon = {cfg.rank_eps}$, pre-activation features)")
    for ax in axes:
        ax.axvline(_saturation(result), color="0.5", ls=":", lw=1.2)
        ax.axvline(1 / (cfg.lr * cfg.weight_decay), color="C5", ls="--", lw=1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="upper left" if ax is axes[0] else "lower left", ncol=5)
        if ax is not axes[0]:
            ax.set_ylim(bottom=0)
        symlog_steps(ax, int(steps[-1]))
    axes[0].text(1.1 / (cfg.lr * cfg.weight_decay), 0.5, r"$\tau = 1/(\eta\lambda)$", color="C5", fontsize="small")
    fig.suptitle(_title(cfg, result), fontsize="medium")
    fig.tight_layout()
    return fig


register(FigureSpec(name="robustness", chapter=4, title="delayed robustness: PGD accuracy, TV and LC during training",
                    quick=QUICK, full=FULL, compute=compute, plot=plot_robustness))
register(FigureSpec(name="dynamics", chapter=6,
                    title="training dynamics on MNIST: accuracy, PGD, LC, TV and local rank (the main figure)",
                    quick=QUICK, full=FULL, compute=compute, plot=plot_dynamics))
