"""Local complexity: the density of the nonlinear locus, by the coarea formula.

With bias noise ``eps_l ~ N(0, s^2 I)`` added to every hidden bias (book/notation.md: zeta),

    LC_s(theta; p) = E_eps E_{x~p} sum_{l,i} phi_s( zbar_{l,i}(x; eps) ) * || grad_x z_{l,i}(x; eps) ||,

where ``phi_s`` is the N(0, s^2) density, ``z_{l,i}(x; eps)`` the pre-activation of the
perturbed network and ``zbar_{l,i} = z_{l,i} - eps_{l,i}`` leaves out the neuron's own noise
(its trained bias stays in).  For ``p`` uniform on a box ``K`` this is the expected length
(area, volume) of the region boundaries inside ``K`` per unit volume of ``K``.

``noise_draws=0`` gives the noiseless plug-in ``E_x sum phi_s(z) ||grad z||`` at ``eps = 0``.

Results are detached unless ``differentiable=True`` (then they carry the graph back to the
parameters, for a penalty ``loss + lambda * LC``; the activation pattern is piecewise
constant, so the gradient is that of the formula with the pattern held fixed).  When the
noise scale is so small that few sample points lie near a boundary, the estimate rests on
those few points: a :class:`LCWarning` says so (from its standard error), and a NaN or
infinite estimate is refused.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from typing import List, Optional

import torch
from tqdm.auto import tqdm

from ._jacobian import DEFAULT_BUDGET, chunk_size, hidden_pass, row_norms
from ._network import check_inputs, chunks, parse_network
from .validation import as_int, check_bool, check_noise_draws, check_reduction, check_sigma, reduce

__all__ = ["local_complexity", "local_complexity_bound", "LCBound", "LCWarning", "gaussian_density",
           "released_code_density", "preactivation_rms"]

CONVENTIONS = ("coarea", "released-code")
"""The estimators ``local_complexity`` computes (its ``convention`` argument)."""

# the relative standard error above which an estimate is reported as resting on too few points
MAX_RELATIVE_SE = 0.5


class LCWarning(UserWarning):
    """A local-complexity estimate rests on too few points near a boundary to mean much."""


def gaussian_density(t: torch.Tensor, s: float) -> torch.Tensor:
    """``phi_s(t) = exp(-t^2 / (2 s^2)) / (s sqrt(2 pi))``, the N(0, s^2) density.

    Example
    -------
    >>> import torch
    >>> round(float(gaussian_density(torch.tensor(0.0), 1.0)), 4)
    0.3989
    """
    s = check_sigma(s, "s")
    return torch.exp(-0.5 * (t / s) ** 2) / (s * math.sqrt(2 * math.pi))


def _refuse_nan(per_point: torch.Tensor, sigma: float) -> None:
    if not bool(torch.isfinite(per_point.detach()).all()):
        raise ValueError(
            f"the local complexity is NaN or infinite at sigma={sigma:g}: the bias noise or the densities "
            "overflow the model's dtype. Use a moderate sigma (a fraction of the pre-activations' scale, "
            "see preactivation_rms) or a float64 model."
        )


def _check_estimate(per_point: torch.Tensor, grad_max: float, sigma: float) -> None:
    """Warn when the estimate (the mean over points) rests on too few points (module docstring)."""
    values = per_point.detach().sum(dim=1).double()
    N, mean = values.numel(), float(values.mean())
    if mean == 0.0:
        if grad_max > 0:
            warnings.warn(
                f"local complexity is 0 at sigma={sigma:g}: no sample point lies within reach of a region "
                "boundary (every density term underflows), so the estimate says nothing about the limit. "
                "Increase sigma or the number of points.", LCWarning, stacklevel=3)
        return
    if N >= 2:
        rel_se = float(values.std()) / math.sqrt(N) / mean
        if rel_se > MAX_RELATIVE_SE:
            warnings.warn(
                f"the local complexity estimate at sigma={sigma:g} rests on few points near a region boundary: "
                f"its relative standard error is {rel_se:.2f}. Increase sigma or the number of points.",
                LCWarning, stacklevel=3)


def released_code_density(zbar: torch.Tensor, bias: torch.Tensor, s: float) -> torch.Tensor:
    """The paper's released code's weight ``exp(-(zbar - b)^2 / (2 s^2))``: an *unnormalised*
    Gaussian (no ``1 / (s sqrt(2 pi))``) at the pre-activation *without* the neuron's trained
    bias ``b`` (``zbar - b = W_l sigma(z_{l-1})``). See :func:`local_complexity`.

    Example
    -------
    >>> import torch
    >>> released_code_density(torch.tensor([0.3]), torch.tensor([0.3]), 0.1)
    tensor([1.])
    """
    return torch.exp(-0.5 * ((zbar - bias) / s) ** 2)


@dataclass
class _Terms:
    per_point: torch.Tensor  # (N, L): sum_i phi_s(zbar) ||grad z||, averaged over noise draws
    grad_norm_mean: List[torch.Tensor]  # per layer (n_l,): E_{eps,x} ||grad z_{l,i}||
    grad_norm_max: float  # max over neurons, points and draws of ||grad z_{l,i}||


def _lc_terms(model, x, sigma, noise_draws, shared_noise, generator, budget, progress,
              differentiable=False, convention="coarea") -> _Terms:
    with contextlib.nullcontext() if differentiable else torch.no_grad():
        return _lc_terms_impl(model, x, sigma, noise_draws, shared_noise, generator, budget, progress,
                              differentiable, convention)


def _lc_terms_impl(model, x, sigma, noise_draws, shared_noise, generator, budget, progress, differentiable,
                   convention):
    sigma, noise_draws = check_sigma(sigma), check_noise_draws(noise_draws)
    shared_noise, budget = check_bool(shared_noise, "shared_noise"), as_int(budget, "budget", low=1)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}.")
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}.")
    net = parse_network(model)
    x = check_inputs(net, x)
    N, L = x.shape[0], net.depth
    per_point = [[] for _ in range(L)]  # per layer, per draw, per chunk: (n,) terms
    grad_sum = [torch.zeros(n, dtype=net.dtype, device=net.device) for n in net.widths]
    grad_max = torch.zeros((), dtype=net.dtype, device=net.device)
    draws = max(noise_draws, 1)
    noise_device = generator.device if generator is not None else net.device
    size = chunk_size(net, budget)

    def draw(shape):
        e = torch.randn(shape, generator=generator, dtype=net.dtype, device=noise_device)
        return (sigma * e).to(net.device)

    for _ in tqdm(range(draws), desc="local complexity", disable=not progress or draws == 1, leave=False):
        shared = [draw((n,)) for n in net.widths] if noise_draws and shared_noise else None
        for sl in chunks(N, size):
            xb = x[sl]
            if noise_draws == 0:
                noise = None
            elif shared is not None:
                noise = shared
            else:
                noise = [draw((xb.shape[0], n)) for n in net.widths]
            for l, z, T, _ in hidden_pass(net, xb, noise):
                zbar = z if noise is None else z - noise[l - 1]
                gnorm = row_norms(T, differentiable=differentiable)  # (n, n_l): ||grad_x z_{l,i}||
                if convention == "coarea":
                    weight = gaussian_density(zbar, sigma)
                else:
                    weight = released_code_density(zbar, net.biases[l - 1], sigma)
                per_point[l - 1].append((weight * gnorm).sum(dim=1))
                g = gnorm.detach()
                grad_sum[l - 1] += g.sum(dim=0)
                grad_max = torch.maximum(grad_max, g.max())
    # (N, L): chunks concatenated, draws averaged (kept as a graph when differentiable)
    per_point = torch.stack([torch.cat(p).view(draws, N).mean(dim=0) for p in per_point], dim=1)
    _refuse_nan(per_point, sigma)
    return _Terms(per_point, [g / (N * draws) for g in grad_sum], float(grad_max))


def _reduce(per_point: torch.Tensor, reduction: str, per_layer: bool) -> torch.Tensor:
    return reduce(per_point if per_layer else per_point.sum(dim=1), reduction)


def local_complexity(
    model: torch.nn.Module,
    x: torch.Tensor,
    sigma: float,
    noise_draws: int = 8,
    reduction: str = "mean",
    per_layer: bool = False,
    shared_noise: bool = False,
    generator: Optional[torch.Generator] = None,
    budget: int = DEFAULT_BUDGET,
    progress: bool = False,
    differentiable: bool = False,
    convention: str = "coarea",
) -> torch.Tensor:
    """Local complexity ``LC_s`` of ``model`` at the inputs ``x`` (module docstring).

    Parameters
    ----------
    model
        ``lctools.MLP`` or an ``nn.Sequential`` of Linear and ReLU/LeakyReLU layers.
    x
        Inputs, shape ``(N, n_0)`` (or ``(N, ...)`` if the model starts with ``nn.Flatten``);
        samples of the input distribution ``p``.
    sigma
        The bias-noise scale ``s``.
    noise_draws
        Number of bias-noise draws ``eps`` per input point; ``0`` gives the
        noiseless plug-in ``sum_{l,i} phi_s(z_{l,i}(x)) ||grad z_{l,i}(x)||``.  The formula
        integrates each neuron's own noise exactly, so the draws only average over the
        noise of the *other* neurons; the spread of the estimate comes mostly from the
        points (chapter 2 measures it), and more points beat more draws at equal cost.
    reduction
        ``"mean"`` (the estimate of ``LC_s``, a 0-dim tensor), ``"sum"`` or
        ``"none"`` (per point, shape ``(N,)``: the inner sum averaged over noise draws).
    per_layer
        Add a trailing layer axis (the terms of each hidden layer ``l``); the
        layers sum to the total.
    shared_noise
        Draw one ``eps`` per draw for the whole batch instead of one per point
        (cheaper to explain, higher variance).
    generator
        A ``torch.Generator`` for the noise (its device is used to draw it).
    budget
        Elements of a reduced Jacobian held at once (bounds memory; see ``_jacobian``).
    progress
        Show a progress bar over noise draws.
    differentiable
        Keep the result attached to the model's parameters (for a penalty
        ``loss + lambda * LC``); by default it is detached.
    convention
        ``"coarea"`` (default) computes the formula above, whose value is a
        boundary density. ``"released-code"`` computes the estimator of the paper's
        released code, to compare with the paper's numbers in the paper's units:
        ``sum_{l,i} exp(-(zbar_{l,i} - b_{l,i})^2 / (2 s^2)) ||grad_x z_{l,i}||``
        (:func:`released_code_density`). It is not the coarea formula, for two reasons:
        the Gaussian lacks its normalisation ``1 / (s sqrt(2 pi))`` (about 40 at
        ``s = 0.01``, so its values are about ``0.025`` times the density's when the two
        agree otherwise), and it is evaluated at the pre-activation *without* the neuron's
        trained bias ``b_{l,i}``, which measures distance to the zero set of
        ``W_l sigma(z_{l-1})`` rather than of ``z_{l,i}``: the two agree only where the
        trained biases are zero (at an initialisation with zero biases, say).

    Returns
    -------
    torch.Tensor
        0-dim (``"mean"``, ``"sum"``), ``(N,)`` (``"none"``), with a trailing ``(L,)`` axis
        if ``per_layer``.  For ``"mean"`` and ``"sum"`` a :class:`LCWarning` is issued when
        the estimate's relative standard error over the points exceeds 0.5 (or every term
        underflows to 0): too few points lie within reach of a boundary at this ``sigma``.
        NaN results are refused.

    Example
    -------
    >>> import torch, lctools
    >>> net = lctools.MLP(2, [16, 16], 1, seed=0)
    >>> x = torch.rand(500, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    >>> lc = lctools.local_complexity(net, x, sigma=0.5, noise_draws=0)
    >>> lc.shape, bool(lc > 0)
    (torch.Size([]), True)
    >>> paper_units = lctools.local_complexity(net, x, 0.5, noise_draws=0,
    ...                                        convention="released-code")
    """
    check_reduction(reduction)
    per_layer, differentiable = check_bool(per_layer, "per_layer"), check_bool(differentiable, "differentiable")
    terms = _lc_terms(model, x, sigma, noise_draws, shared_noise, generator, budget, progress, differentiable,
                      convention)
    if reduction != "none":  # per-point values are the caller's to aggregate
        _check_estimate(terms.per_point, terms.grad_norm_max, float(sigma))
    return _reduce(terms.per_point, reduction, per_layer)


@dataclass
class LCBound:
    """The corollary's upper bound ``LC_s <= C_bias * C_grad * #neurons``.

    ``C_bias = sup phi_s = 1 / (s sqrt(2 pi))`` is the sup of the bias-noise density and
    ``C_grad = max_{l,i} E ||grad_x z_{l,i}||`` bounds the neurons' mean gradient norms
    (estimated on the same samples as ``value``), so that
    ``LC = sum_{l,i} E[phi_s ||grad z||] <= C_bias sum_{l,i} E||grad z|| <= C_bias C_grad #neurons``
    holds for the estimates themselves.  ``grad_norm_sup`` is the largest gradient norm seen
    (the cruder pointwise constant).
    """

    value: float
    c_bias: float
    c_grad: float
    num_neurons: int
    grad_norm_sup: float

    @property
    def bound(self) -> float:
        return self.c_bias * self.c_grad * self.num_neurons

    @property
    def ratio(self) -> float:
        """``value / bound`` (in [0, 1])."""
        return self.value / self.bound if self.bound > 0 else 0.0


def local_complexity_bound(
    model: torch.nn.Module,
    x: torch.Tensor,
    sigma: float,
    noise_draws: int = 0,
    shared_noise: bool = False,
    generator: Optional[torch.Generator] = None,
    budget: int = DEFAULT_BUDGET,
) -> LCBound:
    """``LC_s`` together with the upper bound ``C_bias * C_grad * #neurons`` (see :class:`LCBound`).

    Example
    -------
    >>> import torch, lctools
    >>> net = lctools.MLP(2, [8], 1, seed=0)
    >>> b = lctools.local_complexity_bound(net, torch.rand(200, 2) - 0.5, sigma=0.5)
    >>> b.value <= b.bound
    True
    """
    sigma = check_sigma(sigma)
    terms = _lc_terms(model, x, sigma, noise_draws, shared_noise, generator, budget, False)
    _check_estimate(terms.per_point, terms.grad_norm_max, sigma)
    c_grad = max(float(g.max()) for g in terms.grad_norm_mean)
    return LCBound(
        value=float(terms.per_point.sum(dim=1).mean()),
        c_bias=1.0 / (sigma * math.sqrt(2 * math.pi)),
        c_grad=c_grad,
        num_neurons=sum(g.numel() for g in terms.grad_norm_mean),
        grad_norm_sup=terms.grad_norm_max,
    )


@torch.no_grad()
def preactivation_rms(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Root mean square of all hidden pre-activations, ``sqrt(mean_{x,l,i} z_{l,i}(x)^2)``.

    The scale against which a noise scale ``s`` is small or large: the course chooses
    ``s`` as a fraction of it when comparing networks whose pre-activations differ in size.

    Example
    -------
    >>> import torch, lctools
    >>> preactivation_rms(lctools.MLP(2, [8], 1, seed=0), torch.zeros(3, 2)) > 0
    True
    """
    net = parse_network(model)
    x = check_inputs(net, x)
    total, count = 0.0, 0
    for sl in chunks(x.shape[0], chunk_size(net)):
        for layer in hidden_pass(net, x[sl], jacobians=False):
            z = layer.z
            total += float(z.double().square().sum())
            count += z.numel()
    return math.sqrt(total / count)
