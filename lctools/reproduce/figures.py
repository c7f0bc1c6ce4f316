"""The figures of ``python -m lctools.reproduce``, listed explicitly, in chapter order.

Each figure is one experiment of :mod:`lctools.experiments` (settings, computation,
claims) with one of its plots; ``robustness`` and ``dynamics`` are two views of the same
MNIST run, which they share through the results cache with chapters 4 and 6.
"""
from __future__ import annotations

from typing import Dict

from ..experiments import lc_estimate, local_rank, mnist_dynamics, weight_decay
from ._spec import FigureSpec


def _mnist(cfg, runner) -> dict:
    result = mnist_dynamics.run(cfg, runner)
    return dict(summary=result.summary, table=result.table)


def build_figures() -> Dict[str, FigureSpec]:
    """All figures, by name."""
    specs = [
        FigureSpec("lc-estimate", 2, "local complexity estimate vs exact boundary length (coarea theorem)",
                   lc_estimate.QUICK, lc_estimate.FULL, lc_estimate.compute, lc_estimate.plot, lc_estimate.claims),
        FigureSpec("local-rank", 3, "local rank and local complexity during training (synthetic data, seeds)",
                   local_rank.QUICK, local_rank.FULL, local_rank.compute, local_rank.plot, local_rank.claims),
        FigureSpec("robustness", 4, "delayed robustness on MNIST: PGD accuracy, TV and LC during training",
                   mnist_dynamics.QUICK, mnist_dynamics.FULL, _mnist, mnist_dynamics.plot_robustness,
                   mnist_dynamics.claims),
        FigureSpec("weight-decay", 5, "local complexity against weight decay (one ensemble of lambdas x seeds)",
                   weight_decay.QUICK, weight_decay.FULL, weight_decay.compute, weight_decay.plot,
                   weight_decay.claims),
        FigureSpec("dynamics", 6, "training dynamics on MNIST: accuracy, PGD, LC, TV and local rank (main figure)",
                   mnist_dynamics.QUICK, mnist_dynamics.FULL, _mnist, mnist_dynamics.plot_dynamics,
                   mnist_dynamics.claims),
    ]
    return {spec.name: spec for spec in specs}
