"""Chapter 3: local rank collapses in deep layers, and local complexity falls with it.

The paper's synthetic experiment: an ensemble of networks (one per seed, same data) trained
on a Gaussian mixture in ``R^dim`` whose class structure lives in a ``k``-dimensional
subspace (:func:`lctools.data.gaussian_mixture`). At log-spaced steps each network records
its training accuracy and the whole chain of the course's proposition (chapter 3,
:func:`lctools.rank.local_rank_bound`) per hidden layer ``l`` on the first ``n_eval``
training points:

    LC_l <= row_norm_term_l <= frobenius_term_l <= pointwise_rank_term_l <= bound_l,

with the local rank ``LR_l^eps`` (pre-activation features), the largest singular value
``S_l`` of the feature Jacobian and the generic bound ``C_bias sqrt(n_l m_l) S_l`` that
ignores the rank. ``LC_l`` is the noiseless plug-in local complexity of layer ``l``
(``local_complexity(..., noise_draws=0, per_layer=True)``).

Chapter 3 and ``python -m lctools.reproduce local-rank`` call :func:`run` (or
:func:`compute`) with the same settings and so share one results-cache entry, and both
assert :func:`claims`.

Settings. ``QUICK``: the paper's architecture (four hidden layers of width 200), ``dim =
100``, ``k = 5``, six classes, 1000 points, AdamW with lr 3e-3 and weight decay 0.5 on the
squared loss to one-hot targets, batch 64, 1500 steps, three seeds, 24 evaluations; the
large learning rate and weight decay fit the late phase into 1500 steps. ``FULL``: lr 1e-3,
weight decay 0.05, 50 000 steps, six seeds, 60 evaluations on 500 points.

The *late phase* of a run starts at the first evaluation at which the network classifies at
least ``FIT_ACCURACY = 0.9`` of the training set.
"""
from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any, List, Optional

import numpy as np
import torch

from .. import data
from ..models import MLP, build_seeded
from ..rank import local_rank_bound
from ..training import History, log_steps
from ._shared import Claims, Runner, first_index, history_table, make_settings, member_series, spearman, symlog_steps

__all__ = ["NAME", "QUICK", "FULL", "CHAIN", "INEQUALITIES", "FIT_ACCURACY", "settings", "Data", "Result",
           "load_data", "build_model", "rank_bound_terms", "split_chain", "check_settings", "cache_config", "run",
           "compute", "summarize", "claims", "plot"]

NAME = "local-rank"
QUICK = dict(n_train=1_000, dim=100, k=5, classes=6, data_seed=0, widths=[200] * 4, steps=1_500, lr=3e-3,
             weight_decay=0.5, batch_size=64, loss="mse", seeds=3, n_eval=100, num_evals=24, sigma=0.1,
             eps=1e-2)
FULL = dict(QUICK, steps=50_000, lr=1e-3, weight_decay=0.05, seeds=6, n_eval=500, num_evals=60)
settings = make_settings(NAME, QUICK, FULL)

#: the terms recorded per layer: the local rank, the chain of the proposition from ``lc`` to
#: ``bound``, the generic bound and ``S_l`` (attributes of :class:`lctools.rank.RankBound`)
CHAIN = ("local_rank", "lc", "row_norm_term", "frobenius_term", "pointwise_rank_term", "bound",
         "generic_bound", "sigma_max")
#: the links of the proposition, in order: each term is at most the next
INEQUALITIES = CHAIN[1:6]
FIT_ACCURACY = 0.9
#: relative rounding allowed in the chain's inequalities
CHAIN_RTOL = 1e-9


@dataclass
class Data:
    """The training set ``X, y`` and the evaluation sample ``x_eval = X[:n_eval]`` (on the
    runner's device)."""

    X: torch.Tensor
    y: torch.Tensor
    x_eval: torch.Tensor
    name: str


def load_data(cfg, device="cpu") -> Data:
    """``cfg.n_train`` points of :func:`lctools.data.gaussian_mixture` (seed ``cfg.data_seed``)."""
    ds = data.gaussian_mixture(cfg.n_train, dim=cfg.dim, intrinsic_dim=cfg.k, num_classes=cfg.classes,
                               seed=cfg.data_seed)
    dev = torch.device(device)
    X, y = ds.X.to(dev), ds.y.to(dev)
    return Data(X, y, X[: cfg.n_eval], "gaussian_mixture")


def build_model(cfg):
    """The MLP ``dim - widths - classes`` (ReLU, PyTorch's default initialisation)."""
    return MLP(cfg.dim, cfg.widths, cfg.classes)


def rank_bound_terms(model, x_eval, cfg) -> torch.Tensor:
    """Every term of :data:`CHAIN` for every hidden layer, one float64 vector of length
    ``len(CHAIN) * L`` (term-major), from one call of :func:`~lctools.rank.local_rank_bound`."""
    rb = local_rank_bound(model, x_eval, cfg.sigma, cfg.eps)
    return torch.cat([getattr(rb, name).double() for name in CHAIN])


def split_chain(history: History, depth: int) -> History:
    """``history`` with its ``chain`` metric split into one ``(E, L)`` metric per term of
    :data:`CHAIN` (``history["lc"]``, ``history["local_rank"]``, ...)."""
    v = np.asarray(history["chain"]).reshape(len(history), len(CHAIN), depth)
    metrics = {k: v for k, v in history.metrics.items() if k != "chain"}
    metrics.update({name: v[:, j] for j, name in enumerate(CHAIN)})
    return History(history.steps, history.loss, metrics, dict(history.config))


@dataclass
class Result:
    """What :func:`run` returns: the trained ensemble, one history per seed (metrics ``acc``
    and every term of :data:`CHAIN`, each ``(E, L)``), the summary and the table."""

    cfg: types.SimpleNamespace
    data: Data
    ensemble: Any
    histories: List[History]
    summary: dict
    table: List[dict]

    @property
    def seeds(self) -> List[int]:
        """The seeds of the members, in order."""
        return [int(h.config["seed"]) for h in self.histories]

    @property
    def steps(self) -> np.ndarray:
        """The evaluated steps (the same for every member)."""
        return self.histories[0].steps

    def model(self, k: int = 0):
        """Member ``k`` as a plain ``nn.Sequential`` (eval mode)."""
        return self.ensemble.member(k).eval()

    def models(self) -> list:
        """Every member (see :meth:`model`)."""
        return [self.model(k) for k in range(len(self.histories))]

    def initial_model(self, k: int = 0):
        """Member ``k`` at initialisation (rebuilt from its seed), on the data's device."""
        net = build_seeded(lambda: build_model(self.cfg), self.seeds[k])
        return net.to(self.data.X.device).eval()

    def stacked(self, name: str) -> np.ndarray:
        """Metric ``name`` of every member stacked: ``(seeds, E)`` or ``(seeds, E, L)``."""
        return np.stack([np.asarray(h[name]) for h in self.histories])


def cache_config(cfg) -> dict:
    """The cache key's description of the run: the experiment's name and all its settings."""
    return dict(experiment=NAME, **vars(cfg))


def check_settings(cfg) -> None:
    """``ValueError`` for settings that cannot describe the experiment: an evaluation sample
    larger than the training set, or a subspace dimension ``k`` outside ``1..dim``."""
    if not 1 <= cfg.n_eval <= cfg.n_train:
        raise ValueError(f"{NAME}: n_eval must be between 1 and n_train = {cfg.n_train} (the evaluation "
                         f"sample is the first n_eval training points), got {cfg.n_eval}.")
    if not 1 <= cfg.k <= cfg.dim:
        raise ValueError(f"{NAME}: the class structure's dimension k must be between 1 and dim = {cfg.dim}, "
                         f"got {cfg.k}.")
    if cfg.num_evals < 2:
        raise ValueError(f"{NAME}: num_evals must be >= 2 (the first and the last step), got {cfg.num_evals}.")


def run(cfg, runner: Optional[Runner] = None) -> Result:
    """Train-or-load the ensemble (one member per seed ``data_seed, data_seed + 1, ...``)
    and summarise it.

    Example
    -------
    A tiny run (a second) on a fresh cache; chapter 3 calls ``run(settings(MODE), Runner())``:

    >>> import tempfile
    >>> cfg = settings("quick", n_train=60, widths=[8, 8], steps=20, seeds=2, n_eval=10, num_evals=3)
    >>> result = run(cfg, Runner("cpu", tempfile.mkdtemp()))
    >>> result.seeds, result.stacked("bound").shape      # (seeds, evaluations, layers)
    ([0, 1], (2, 3, 2))
    >>> bool((result.stacked("lc") <= result.stacked("bound")).all())
    True
    """
    check_settings(cfg)
    runner = runner or Runner()
    d = load_data(cfg, runner.device)
    seeds = list(range(cfg.data_seed, cfg.data_seed + cfg.seeds))
    ens, hists = runner.train_ensemble(
        dict(cache_config(cfg), data=d.name, model="lctools.MLP (PyTorch default init)"),
        lambda: build_model(cfg), seeds, d.X, d.y,
        metrics={"chain": lambda m: rank_bound_terms(m, d.x_eval, cfg)},
        batched_metrics={"acc": lambda e: e.accuracy(d.X, d.y)},
        steps=cfg.steps, lr=cfg.lr, weight_decay=cfg.weight_decay, batch_size=cfg.batch_size,
        optimizer="adamw", loss=cfg.loss, eval_steps=log_steps(cfg.steps, cfg.num_evals))
    hists = [split_chain(h, len(cfg.widths)) for h in hists]
    return Result(cfg, d, ens, hists, summarize(hists, cfg), history_table(hists))


def compute(cfg, runner: Optional[Runner] = None) -> dict:
    """:func:`run`, as ``{"summary": ..., "table": ...}`` (``python -m lctools.reproduce``)."""
    result = run(cfg, runner)
    return dict(summary=result.summary, table=result.table)


def _chain_worst(h: History) -> float:
    """The largest ratio ``term / next term`` over the links of the proposition, the steps
    and the layers (at most 1 where the proposition holds)."""
    ratios = [np.asarray(h[lo]) / np.maximum(np.asarray(h[hi]), 1e-300)
              for lo, hi in zip(INEQUALITIES[:-1], INEQUALITIES[1:])]
    return float(np.max(ratios))


def _one(h: History) -> dict:
    R, C, acc = np.asarray(h["local_rank"]), np.asarray(h["lc"]).sum(1), np.asarray(h["acc"])
    i_fit = first_index(acc >= FIT_ACCURACY)
    late_r, late_c = (R[i_fit:, -1], C[i_fit:]) if i_fit is not None else (R[:0, -1], C[:0])
    return dict(
        seed=int(h.config["seed"]), final_accuracy=float(acc[-1]), fitted=i_fit is not None,
        fit_index=i_fit, fit_step=None if i_fit is None else int(h.steps[i_fit]),
        local_rank_init=R[0].tolist(), local_rank_end=R[-1].tolist(), first_rank_min=float(R[:, 0].min()),
        lc_init=float(C[0]), lc_at_fit=float(C[i_fit if i_fit is not None else -1]), lc_end=float(C[-1]),
        lc_layer_init=np.asarray(h["lc"])[0].tolist(), lc_layer_end=np.asarray(h["lc"])[-1].tolist(),
        chain_worst_ratio=_chain_worst(h),
        late_points=int(len(late_r)),
        late_spearman=spearman(late_r, late_c) if len(late_r) > 2 else None,
    )


def summarize(histories: List[History], cfg) -> dict:
    """Per seed (``per_seed``), the numbers the claims are about; the late-phase Spearman
    correlation of the deepest layer's local rank with the total LC over all seeds' late
    points; the means over seeds of the local ranks and the total LC at initialisation and
    at the end (``local_rank_init``, ``local_rank_end``, ``lc_init``, ``lc_end``) and every
    seed's final accuracy."""
    per_seed = [_one(h) for h in histories]
    late_r, late_c = [], []
    for h, p in zip(histories, per_seed):
        if p["fitted"]:
            late_r.append(np.asarray(h["local_rank"])[p["fit_index"]:, -1])
            late_c.append(np.asarray(h["lc"]).sum(1)[p["fit_index"]:])
    late_r = np.concatenate(late_r) if late_r else np.zeros(0)
    late_c = np.concatenate(late_c) if late_c else np.zeros(0)
    mean = {k: np.mean([p[k] for p in per_seed], axis=0).tolist()
            for k in ("local_rank_init", "local_rank_end", "lc_init", "lc_end")}
    return dict(intrinsic_dim=int(cfg.k), first_width=int(min(cfg.dim, cfg.widths[0])), **mean,
                final_accuracy=[p["final_accuracy"] for p in per_seed],
                late_phase_spearman=spearman(late_r, late_c) if len(late_r) > 2 else None, per_seed=per_seed)


def _fmt(values, spec=".1f") -> str:
    return ", ".join("n/a" if v is None else format(v, spec) for v in values)


def claims(s: dict) -> Claims:
    """Chapter 3's claims about this run, with their tolerances; each claim about a network
    must hold for every seed. ``claims(s).check()`` raises ``AssertionError`` listing those
    that fail.

    The claims: every network fits (training accuracy >= ``FIT_ACCURACY`` at the end);
    ``LR_1 >= 0.95 min(n_1, n_0)`` at every step; ``LR_L`` at the end ``<= 2k`` and ``<= 0.25``
    times its initial value; ``LR_l`` at the end below its initial value for every ``l >= 2``;
    the total LC at the end ``<= 0.6`` times at initialisation and ``<= 0.9`` times at the
    first evaluation with accuracy ``>= FIT_ACCURACY`` (the start of the late phase); the
    chain ``LC_l <= ... <= bound_l`` at every step and layer; over the late phase, the
    Spearman correlation of ``LR_L`` with the total LC ``>= 0.5`` over all seeds' points
    and ``>= 0.3`` within every seed.

    Example
    -------
    >>> import tempfile
    >>> cfg = settings("quick", n_train=60, widths=[8, 8], steps=20, seeds=1, n_eval=10, num_evals=3)
    >>> c = claims(run(cfg, Runner("cpu", tempfile.mkdtemp())).summary)
    >>> c.items[1].text
    'layer 1 keeps its rank at every step (LR_1 >= 0.95 x 8)'
    >>> c.items[1].holds, c.items[0].holds   # 20 steps do not fit the data
    (True, False)
    """
    k, n1, ps, c = s["intrinsic_dim"], s["first_width"], s["per_seed"], Claims()
    seeds = "seeds " + ", ".join(str(p["seed"]) for p in ps)
    init_L, end_L = [p["local_rank_init"][-1] for p in ps], [p["local_rank_end"][-1] for p in ps]
    c.add(f"every network fits the training set (accuracy >= {FIT_ACCURACY} at the end)",
          all(p["fitted"] and p["final_accuracy"] >= FIT_ACCURACY for p in ps),
          f"{seeds}: {_fmt([p['final_accuracy'] for p in ps], '.3f')}")
    c.add(f"layer 1 keeps its rank at every step (LR_1 >= 0.95 x {n1})",
          all(p["first_rank_min"] >= 0.95 * n1 for p in ps),
          f"smallest LR_1: {_fmt([p['first_rank_min'] for p in ps])}")
    c.add(f"the deepest layer collapses towards k = {k} (LR_L at the end <= 2k and <= 0.25 x at initialisation)",
          all(e <= 2 * k and e <= 0.25 * i for i, e in zip(init_L, end_L)),
          "; ".join(f"{i:.1f} -> {e:.1f}" for i, e in zip(init_L, end_L)))
    c.add("every deeper layer loses rank (LR_l at the end < at initialisation, l >= 2)",
          all(e < i for p in ps for i, e in zip(p["local_rank_init"][1:], p["local_rank_end"][1:])),
          "; ".join(f"[{_fmt(p['local_rank_init'][1:])}] -> [{_fmt(p['local_rank_end'][1:])}]" for p in ps))
    c.add("LC falls (the total at the end <= 0.6 x at initialisation)",
          all(p["lc_end"] <= 0.6 * p["lc_init"] for p in ps),
          "; ".join(f"{p['lc_init']:.1f} -> {p['lc_end']:.1f}" for p in ps))
    c.add("... and keeps falling in the late phase (end <= 0.9 x when the network first fits)",
          all(p["fitted"] and p["lc_end"] <= 0.9 * p["lc_at_fit"] for p in ps),
          "; ".join(f"{p['lc_at_fit']:.1f} -> {p['lc_end']:.1f}" for p in ps))
    c.add("the proposition holds at every step and layer (LC_l <= ... <= bound_l)",
          all(p["chain_worst_ratio"] <= 1 + CHAIN_RTOL for p in ps),
          f"largest ratio of a term to the next: {max(p['chain_worst_ratio'] for p in ps):.3g}")
    rho = s["late_phase_spearman"]
    c.add("late in training LC tracks the deepest rank across seeds (Spearman >= 0.5)",
          rho is not None and rho >= 0.5, "n/a (fewer than 3 late points)" if rho is None else f"{rho:.2f}")
    c.add("... and within every seed (Spearman >= 0.3)",
          all(p["late_spearman"] is not None and p["late_spearman"] >= 0.3 for p in ps),
          f"{seeds}: {_fmt([p['late_spearman'] for p in ps], '.2f')}")
    return c


# --------------------------------------------------------------------------- figure


def _nice_below(v: float) -> float:
    """The largest of 1, 2, 5 times a power of ten that is at most ``v > 0`` (a labelled
    tick of the log axis at the bottom)."""
    e = 10.0 ** np.floor(np.log10(v))
    return max(m * e for m in (1, 2, 5) if m * e <= v)


def plot(result, cfg=None, title: bool = True):
    """Local rank (left) and local complexity (right) of every hidden layer during training:
    thin lines seeds, thick lines their mean, black the LC summed over layers (7 in wide).
    ``result`` is a :class:`Result` or :func:`compute`'s dict."""
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    from ..plotting import column_figure

    table = result.table if isinstance(result, Result) else result["table"]
    cfg = cfg if cfg is not None else result.cfg
    steps, R = member_series(table, "local_rank")
    _, C = member_series(table, "lc")
    L, n1 = R.shape[2], min(cfg.dim, cfg.widths[0])
    colors = plt.cm.viridis(np.linspace(0, 0.85, L))
    fig, (ax1, ax2) = column_figure(1, 2, height=3.6, sharex=True)
    for l in range(L):
        for r in R:
            ax1.plot(steps, r[:, l], color=colors[l], lw=0.6, alpha=0.4)
        ax1.plot(steps, R[:, :, l].mean(0), color=colors[l], lw=2, label=f"layer {l + 1}")
        ax2.plot(steps, C[:, :, l].mean(0), color=colors[l], lw=1.5, label=f"layer {l + 1}")
    for c in C:
        ax2.plot(steps, c.sum(1), color="k", lw=0.6, alpha=0.4)
    ax2.plot(steps, C.sum(2).mean(0), color="k", lw=2.5, label="all layers")
    ax1.axhline(cfg.k, color="tab:red", ls="--", lw=1.2)
    ax1.text(1.2, cfg.k * 1.12, f"k = {cfg.k}", color="tab:red")
    ax1.axhline(n1, color="0.5", ls=":", lw=1)
    ax1.text(30, n1 * 1.04, f"$n_0$ = {cfg.dim}", color="0.4", va="bottom")
    ax1.set_ylim(_nice_below(max(min(2, 0.8 * R.min()), 0.5)), 1.7 * n1)  # a rank below 1/2: dead
    ax1.set_ylabel(rf"$\mathrm{{LR}}_l^\varepsilon$ ($\varepsilon$ = {cfg.eps:g})")
    ax1.set_title("local rank")
    ax2.set_ylabel(rf"$\mathrm{{LC}}_l$ ($s$ = {cfg.sigma:g}, plug-in)")
    ax2.set_title("local complexity")
    ax2.set_ylim(_nice_below(max(0.9 * C.min(), 1e-3 * C.max())), 1.25 * C.sum(2).max())
    for ax in (ax1, ax2):
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        symlog_steps(ax, int(steps[-1]))
        ax.set_xlim(0, steps[-1])
    ax1.legend(fontsize="small", loc="center left")
    ax2.legend(fontsize="small", loc="lower left")
    if title:
        fig.suptitle(f"Gaussian mixture in R^{cfg.dim}, {cfg.k}-dim class structure; MLP {len(cfg.widths)}x"
                     f"{cfg.widths[0]}, AdamW lr {cfg.lr:g}, wd {cfg.weight_decay:g}; {len(R)} seeds",
                     fontsize="small")
    return fig
