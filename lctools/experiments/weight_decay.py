"""Chapter 5's weight-decay sweep (``reproduce weight-decay``): stronger weight decay, lower LC.

One :class:`~lctools.ensemble.Ensemble` holds every pair (weight decay ``lambda``, seed):
members differ in ``lambda`` and in their seed (initialisation and minibatch order; the
members of one seed share both across ``lambda``), and train together with AdamW through
the results cache. After training, for every member ``theta``:

* ``accuracy`` and ``loss`` on the training data;
* ``lc``: the local complexity ``LC_s(theta; p)`` with ``p`` the empirical distribution of
  the *training data* (the paper's measurement), ``noise_draws`` bias-noise draws per point
  from ``fixed_generator(data_seed)`` (the same draws for every member);
* ``boundary_per_area``: the exact boundary length of the linear regions per unit area, of
  ``K = [-1, 1]^2`` for a 2-d task, of the plane through three training inputs (one of each
  of the classes 0, 1, 2) for images: the rescaling-invariant ``s -> 0`` quantity;
* ``norm = ||theta||^2`` and ``cost = R_hat(theta)``
  (:func:`lctools.representation.representation_cost`: exact for one hidden layer, the
  balancing upper bound for deep networks);
* the bounds of chapter 5's proposition (:func:`lctools.representation.lc_norm_bound`),
  ``LC_s <= C_bias G <= C_bias sum_l sqrt(n_l) (Q_l / l)^{l/2}`` (and, for a balanced
  network with one hidden layer, ``C_bias G <= C_bias sum_i sqrt(R_i / 2) <= C_bias
  sqrt(n_1 R_hat / 2)``), for ``theta`` and for its balanced version ``theta*``, whose
  ``LC_s`` is measured the same way; ``bounds_hold`` says whether all of them hold.

The summary fits ``LC_s ~ a + b log(1/lambda)`` by least squares over all members and
averages every quantity over the seeds of each ``lambda`` (``per_lambda``); :func:`claims`
states the chapter's claims with their tolerances. Chapter 5 and ``python -m
lctools.reproduce weight-decay`` call :func:`run` / :func:`compute` with the same settings
and so share one results-cache entry: the cache key holds the training settings only
(:data:`TRAINING`), so changing ``s`` or ``noise_draws`` re-evaluates without retraining.
"""
from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from .. import data, regions
from .. import representation as rep
from ..complexity import local_complexity
from ..models import MLP
from ._shared import Claims, Runner, fixed_generator, make_settings, spearman

NAME = "weight-decay"
#: the square ``K`` of the exact partition for 2-d tasks
BOX = (-1.0, 1.0, -1.0, 1.0)
#: the tasks :func:`load_data` knows (the 2-d ones of :mod:`lctools.data`, and MNIST)
TASKS = ("two_moons", "xor_blobs", "circles", "spirals", "mnist")
#: the settings the trained ensemble depends on (the results-cache key holds these only)
TRAINING = ("task", "n_train", "data_seed", "widths", "steps", "lr", "batch_size", "lambdas", "seeds")

QUICK = dict(task="two_moons", n_train=256, data_seed=0, widths=[32, 32], steps=1_000, lr=1e-2,
             batch_size=64, lambdas=np.logspace(-1.5, 0.5, 8).round(4).tolist(), seeds=3, s=0.2,
             noise_draws=2)
FULL = dict(task="two_moons", n_train=1_000, data_seed=0, widths=[64, 64, 64], steps=5_000, lr=1e-2,
            batch_size=64, lambdas=np.logspace(-2, 0.5, 11).round(4).tolist(), seeds=5, s=0.2,
            noise_draws=8)
settings = make_settings(NAME, QUICK, FULL)

#: relative slack of the bound checks (LC_s is float32; the bounds are float64)
LC_RTOL, BOUND_RTOL = 1e-6, 1e-9


# --------------------------------------------------------------------------- data and model


def load_data(cfg, device="cpu"):
    """``(X, y, name)``: ``n_train`` points of the 2-d task ``cfg.task`` drawn with
    ``data_seed``, or, for ``task="mnist"``, a class-balanced subset of ``n_train`` training
    images (:func:`lctools.data.mnist`; ``name`` says whether they are MNIST)."""
    if cfg.task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {cfg.task!r}.")
    if cfg.task == "mnist":
        ds = data.mnist(train=True, subset=cfg.n_train, seed=cfg.data_seed)
        X, y, name = ds.X, ds.y, ds.name
    else:
        X, y = getattr(data, cfg.task)(n=cfg.n_train, seed=cfg.data_seed)
        name = cfg.task
    dev = torch.device(device)
    return X.to(dev), y.to(dev), name


def pairs(cfg) -> List[tuple]:
    """The members' ``(lambda, seed)``, lambda-major: seeds ``data_seed, ..., data_seed + seeds - 1``."""
    return [(float(lam), cfg.data_seed + j) for lam in cfg.lambdas for j in range(cfg.seeds)]


def cache_config(cfg, data_name: str) -> dict:
    """The cache key's description of the training run (:data:`TRAINING` settings only)."""
    return dict(experiment=NAME, model="lctools.MLP (PyTorch default init)", data=data_name,
                **{k: getattr(cfg, k) for k in TRAINING})


def exact_partition(model, X, y) -> regions.Partition:
    """The exact partition on which ``boundary_per_area`` is measured: of ``K`` (:data:`BOX`)
    for 2-d inputs, else of the plane through the first training inputs of classes 0, 1, 2."""
    model = model.cpu()
    if X.shape[1] == 2:
        return regions.partition2d(model, BOX)
    picks = [int(torch.nonzero(y == c)[0]) for c in range(3)]
    return regions.partition_through_points(model, X[picks].cpu())


# --------------------------------------------------------------------------- measurements


def lc_and_bounds(model, X, cfg) -> Dict[str, Any]:
    """``LC_s(model)`` on ``X`` and the bounds of chapter 5's proposition at ``s = cfg.s``.

    Returns ``lc``, ``by_gradients = C_bias G``, ``by_norm = C_bias sum_l sqrt(n_l)
    (Q_l / l)^{l/2}`` and ``holds``: ``lc <= by_gradients <= by_norm`` and, for a balanced
    network with one hidden layer, ``by_gradients <= C_bias sum_i sqrt(R_i / 2) <= C_bias
    sqrt(n_1 R_hat / 2)`` (part 3), each up to a relative slack (``LC_RTOL``, ``BOUND_RTOL``).

    Example
    -------
    >>> import lctools
    >>> cfg = settings("quick")
    >>> out = lc_and_bounds(lctools.MLP(2, [8], 2, seed=0), lctools.data.two_moons(64)[0], cfg)
    >>> out["holds"], out["lc"] <= out["by_gradients"] <= out["by_norm"]
    (True, True)
    """
    B = rep.lc_norm_bound(model, cfg.s)
    lc = float(local_complexity(model, X, cfg.s, noise_draws=cfg.noise_draws,
                                generator=fixed_generator(cfg.data_seed)))
    holds = lc <= B.by_gradients * (1 + LC_RTOL) and B.by_gradients <= B.by_norm * (1 + BOUND_RTOL)
    if B.cost is not None and B.balanced:
        by_cost_terms = B.c_bias * B.cost_sqrt_sum  # part 3: one hidden layer, balanced
        holds = (holds and B.by_gradients <= by_cost_terms * (1 + BOUND_RTOL)
                 and by_cost_terms <= B.by_cost * (1 + BOUND_RTOL))
    return dict(lc=lc, by_gradients=B.by_gradients, by_norm=B.by_norm, holds=bool(holds))


def measure(model, X, y, cfg) -> Dict[str, Any]:
    """Everything the chapter shows about one trained network (module docstring), without
    its accuracy and loss (those come from training)."""
    net = model.eval()
    rc = rep.representation_cost(net.cpu())
    P = exact_partition(net, X, y)
    own = lc_and_bounds(net.to(X.device), X, cfg)
    bal = lc_and_bounds(rc.balanced.to(X.device), X, cfg)
    return dict(lc=own["lc"], lc_bound_gradients=own["by_gradients"], lc_bound_norm=own["by_norm"],
                lc_balanced=bal["lc"], lc_balanced_bound_gradients=bal["by_gradients"],
                lc_balanced_bound_norm=bal["by_norm"], bounds_hold=own["holds"] and bal["holds"],
                norm=rc.norm, cost=rc.value, cost_exact=rc.exact,
                boundary_per_area=P.boundary_length / P.area, regions=P.num_regions)


@dataclass
class Result:
    """What :func:`run` returns: the settings, the data, the trained ensemble, one
    :class:`~lctools.training.History` per member, the summary and the table (one row per
    member, in the order of :func:`pairs`)."""

    cfg: types.SimpleNamespace
    X: torch.Tensor
    y: torch.Tensor
    data: str
    ensemble: Any
    histories: list
    summary: dict
    table: List[dict]

    def model(self, k: int):
        """Member ``k`` as a plain ``nn.Sequential`` (a view of the ensemble, eval mode)."""
        return self.ensemble.member(k).eval()

    def partition(self, k: int) -> regions.Partition:
        """The exact partition of member ``k`` on which ``boundary_per_area`` was measured."""
        return exact_partition(self.model(k), self.X, self.y)

    def as_dict(self) -> dict:
        """``{"summary", "table"}``, what :func:`compute` returns."""
        return dict(summary=self.summary, table=self.table)


def run(cfg, runner: Optional[Runner] = None) -> Result:
    """Train-or-load the ensemble of :func:`pairs`, then measure every member (:func:`measure`).

    Example
    -------
    A tiny sweep (seconds on a CPU; the chapter runs ``settings(MODE, data_seed=SEED)``):

    >>> import tempfile
    >>> cfg = settings("quick", n_train=64, widths=[8, 8], steps=40, lambdas=[0.1, 1.0], seeds=2)
    >>> result = run(cfg, Runner("cpu", tempfile.mkdtemp()))
    >>> [(r["weight_decay"], r["seed"]) for r in result.table]
    [(0.1, 0), (0.1, 1), (1.0, 0), (1.0, 1)]
    >>> all(r["bounds_hold"] for r in result.table)
    True
    """
    runner = runner or Runner()
    X, y, name = load_data(cfg, runner.device)
    members = pairs(cfg)
    n_classes = int(y.max()) + 1
    ens, hists = runner.train_ensemble(
        cache_config(cfg, name), lambda: MLP(X.shape[1], cfg.widths, n_classes), [s for _, s in members], X, y,
        batched_metrics={"accuracy": lambda e: e.accuracy(X, y)}, steps=cfg.steps, lr=cfg.lr,
        weight_decay=[lam for lam, _ in members], batch_size=cfg.batch_size, optimizer="adamw",
        eval_steps=[0, cfg.steps])
    table = []
    for k, ((lam, seed), h) in enumerate(zip(members, hists)):
        row = dict(member=k, weight_decay=lam, seed=seed, accuracy=float(h["accuracy"][-1]),
                   loss=float(h.loss[-1]))
        row.update(measure(ens.member(k), X, y, cfg))
        table.append(row)
    return Result(cfg, X, y, name, ens, hists, summarize(table, name), table)


def compute(cfg, runner: Optional[Runner] = None) -> dict:
    """:func:`run` as ``{"summary", "table"}`` (for ``python -m lctools.reproduce``)."""
    return run(cfg, runner).as_dict()


# --------------------------------------------------------------------------- summary and claims

#: the per-member quantities averaged over the seeds of each lambda
AVERAGED = ("accuracy", "loss", "lc", "lc_balanced", "boundary_per_area", "regions", "norm", "cost")


def fit_log_inverse(lams, values) -> tuple:
    """Least squares ``values ~ a + b log(1/lambda)``: ``(a, b, R^2)``.

    Example
    -------
    >>> a, b, r2 = fit_log_inverse([0.01, 0.1, 1.0], [5 + 2 * np.log(100), 5 + 2 * np.log(10), 5])
    >>> round(a, 6), round(b, 6), round(r2, 6)
    (5.0, 2.0, 1.0)
    """
    lams, values = np.asarray(lams, float), np.asarray(values, float)
    design = np.column_stack([np.ones_like(lams), np.log(1 / lams)])
    (a, b), *_ = np.linalg.lstsq(design, values, rcond=None)
    r2 = 1 - np.sum((values - design @ [a, b]) ** 2) / np.sum((values - values.mean()) ** 2)
    return float(a), float(b), float(r2)


def summarize(table: List[dict], data_name: str = "") -> dict:
    """The numbers the claims are about: the fit of ``lc`` over all members, ``per_lambda``
    means over seeds (:data:`AVERAGED`), Spearman correlations of ``lambda`` with the means
    (``lctools.experiments.spearman``), the falls from the weakest to the strongest
    ``lambda`` (``*_last_over_first``, of the means), the worst accuracy, the fraction of
    members whose bounds hold, and the largest ``R_hat / ||theta||^2``."""
    lam = np.array([r["weight_decay"] for r in table])
    lams = np.unique(lam)
    per_lambda = [dict(weight_decay=float(v), **{k: float(np.mean([r[k] for r in table if r["weight_decay"] == v]))
                                                for k in AVERAGED}) for v in lams]
    mean = {k: np.array([p[k] for p in per_lambda]) for k in AVERAGED}
    a, b, r2 = fit_log_inverse(lam, [r["lc"] for r in table])
    return dict(
        data=data_name, members=len(table), lambdas=len(lams),
        fit_intercept=a, fit_slope_per_log_inverse_lambda=b, fit_r2=r2,
        spearman_lc_vs_lambda=spearman(lams, mean["lc"]),
        spearman_cost_vs_lambda=spearman(lams, mean["cost"]),
        spearman_norm_vs_lambda=spearman(lams, mean["norm"]),
        spearman_boundary_vs_lambda=spearman(lams, mean["boundary_per_area"]),
        lc_last_over_first=float(mean["lc"][-1] / mean["lc"][0]),
        boundary_last_over_first=float(mean["boundary_per_area"][-1] / mean["boundary_per_area"][0]),
        min_accuracy=float(min(r["accuracy"] for r in table)),
        bounds_hold=float(np.mean([bool(r["bounds_hold"]) for r in table])),
        max_cost_over_norm=float(max(r["cost"] / r["norm"] for r in table)),
        per_lambda=per_lambda,
    )


#: the tolerances of :func:`claims`
SPEARMAN_MAX, R2_MIN, ACCURACY_MIN, COST_OVER_NORM_MAX = -0.8, 0.7, 0.8, 0.75


def claims(s: dict) -> Claims:
    """Chapter 5's claims about the sweep, with their tolerances (module constants).
    ``claims(summary).check()`` raises ``AssertionError`` listing those that fail.

    ``s`` is a :func:`summarize` summary: LC falls with ``lambda`` (Spearman of ``lambda``
    and the mean ``LC_s`` over seeds ``<= SPEARMAN_MAX``); ``LC_s ~ a + b log(1/lambda)``
    with ``b > 0`` and ``R^2 >= R2_MIN``; ``R_hat`` falls with ``lambda`` (Spearman ``<=
    SPEARMAN_MAX``); the proposition's bounds hold on every member and its balanced
    version; ``R_hat <= COST_OVER_NORM_MAX ||theta||^2`` on every member (AdamW does not
    balance); the boundary length per area falls less than ``LC_s`` (ratio of the means at
    the strongest and the weakest ``lambda``); every accuracy ``>= ACCURACY_MIN``.

    Example
    -------
    >>> c = claims(dict(members=2, fit_intercept=1.0, fit_slope_per_log_inverse_lambda=0.5, fit_r2=0.9,
    ...                 spearman_lc_vs_lambda=-1.0, spearman_cost_vs_lambda=-1.0, bounds_hold=1.0,
    ...                 max_cost_over_norm=0.5, boundary_last_over_first=0.9, lc_last_over_first=0.5,
    ...                 min_accuracy=0.7))
    >>> [claim.text for claim in c.items if not claim.holds]
    ['every network fits the training data (accuracy >= 0.8)']
    """
    c = Claims()
    c.add(f"stronger weight decay, lower LC (Spearman of lambda and the mean LC_s <= {SPEARMAN_MAX})",
          s["spearman_lc_vs_lambda"] <= SPEARMAN_MAX, f"{s['spearman_lc_vs_lambda']:.2f}")
    c.add(f"LC_s is close to a + b log(1/lambda) with b > 0 (R^2 >= {R2_MIN} over all networks)",
          s["fit_r2"] >= R2_MIN and s["fit_slope_per_log_inverse_lambda"] > 0,
          f"a = {s['fit_intercept']:.2f}, b = {s['fit_slope_per_log_inverse_lambda']:.2f}, R^2 = {s['fit_r2']:.2f}")
    c.add(f"the representation cost falls with the weight decay (Spearman <= {SPEARMAN_MAX})",
          s["spearman_cost_vs_lambda"] <= SPEARMAN_MAX, f"{s['spearman_cost_vs_lambda']:.2f}")
    c.add("the proposition's bounds hold on every network and on its balanced version",
          s["bounds_hold"] == 1, f"fraction {s['bounds_hold']:.3f} of {s['members']} networks")
    c.add(f"AdamW leaves the networks unbalanced (R_hat <= {COST_OVER_NORM_MAX} ||theta||^2 for every network)",
          s["max_cost_over_norm"] <= COST_OVER_NORM_MAX, f"largest R_hat / ||theta||^2 = {s['max_cost_over_norm']:.2f}")
    c.add("the exact boundary length per area falls less than LC_s (strongest / weakest lambda)",
          s["boundary_last_over_first"] > s["lc_last_over_first"],
          f"boundary x{s['boundary_last_over_first']:.2f}, LC_s x{s['lc_last_over_first']:.2f}")
    c.add(f"every network fits the training data (accuracy >= {ACCURACY_MIN})", s["min_accuracy"] >= ACCURACY_MIN,
          f"lowest {s['min_accuracy']:.3f}")
    return c


# --------------------------------------------------------------------------- figure


def plot(result, cfg, suptitle: bool = True):
    """The sweep's main figure (chapter 5 and ``reproduce weight-decay``): ``LC_s`` on the
    training data against ``lambda`` with the fit (left); ``||theta||^2`` and ``R_hat``
    (right). ``result``: a :class:`Result` or :func:`compute`'s dict."""
    from ..plotting import column_figure

    rows, s = (result.table, result.summary) if isinstance(result, Result) else (result["table"], result["summary"])
    lam_all = np.array([r["weight_decay"] for r in rows])
    lams = np.array([p["weight_decay"] for p in s["per_lambda"]])
    mean = {k: np.array([p[k] for p in s["per_lambda"]]) for k in ("lc", "norm", "cost")}
    a, b, r2 = s["fit_intercept"], s["fit_slope_per_log_inverse_lambda"], s["fit_r2"]
    fig, (ax, ax2) = column_figure(1, 2, height=3.9)
    ax.semilogx(lam_all, [r["lc"] for r in rows], "o", color="C0", alpha=0.5, label="one network")
    ax.semilogx(lams, mean["lc"], "s", color="C0", ms=8, label="mean over seeds")
    fine = np.geomspace(lams[0], lams[-1], 100)
    ax.semilogx(fine, a + b * np.log(1 / fine), "k--",
                label=rf"${a:.1f} + {b:.2f}\,\log(1/\lambda)$, $R^2 = {r2:.2f}$")
    ax.set(xlabel=r"weight decay $\lambda$ (AdamW)", ylabel=rf"$\mathrm{{LC}}_{{{cfg.s}}}$ on the training data",
           title=f"LC falls with weight decay\n(Spearman {s['spearman_lc_vs_lambda']:.2f})")
    ax.legend(fontsize="small")
    for key, color, label in (("norm", "C1", r"$\|\theta\|^2$ (trained)"),
                              ("cost", "C2", r"$\|\theta^\star\|^2 \geq \widehat R(\theta)$ (balanced)")):
        ax2.loglog(lam_all, [r[key] for r in rows], "o", color=color, alpha=0.5)
        ax2.loglog(lams, mean[key], "s-", color=color, label=label)
    ax2.set(xlabel=r"weight decay $\lambda$", ylabel="squared parameter norm", title="norm and representation cost")
    ax2.legend(fontsize="small")
    if suptitle:
        fig.suptitle(f"{s['data']}, MLP {'-'.join(map(str, cfg.widths))}, {cfg.steps} AdamW steps, "
                     f"{len(rows)} networks trained as one ensemble", fontsize="medium")
    return fig
