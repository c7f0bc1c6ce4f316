"""Local complexity: the density of the nonlinear locus, by the coarea formula.

With bias noise ``eps_l ~ N(0, s^2 I)`` added to every hidden bias (book/notation.md: zeta),

    LC_s(theta; p) = E_eps E_{x~p} sum_{l,i} phi_s( zbar_{l,i}(x; eps) ) * || grad_x z_{l,i}(x; eps) ||,

where ``phi_s`` is the N(0, s^2) density, ``z_{l,i}(x; eps)`` the pre-activation of the
perturbed network and ``zbar_{l,i} = z_{l,i} - eps_{l,i}`` leaves out the neuron's own noise
(its trained bias stays in).  For ``p`` uniform on a box ``K`` this is the expected length
(area, volume) of the region boundaries inside ``K`` per unit volume of ``K``.

``noise_draws=0`` gives the noiseless plug-in ``E_x sum phi_s(z) ||grad z||`` at ``eps = 0``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional

import torch
from tqdm.auto import tqdm

from ._jacobian import DEFAULT_BUDGET, chunk_size, hidden_pass, row_norms
from ._network import check_inputs, chunks, parse_network

REDUCTIONS = ("mean", "sum", "none")
CONVENTIONS = ("coarea", "released-code")


def gaussian_density(t: torch.Tensor, s: float) -> torch.Tensor:
    """``phi_s(t) = exp(-t^2 / (2 s^2)) / (s sqrt(2 pi))``, the N(0, s^2) density."""
    return torch.exp(-0.5 * (t / s) ** 2) / (s * math.sqrt(2 * math.pi))


def released_code_density(zbar: torch.Tensor, bias: torch.Tensor, s: float) -> torch.Tensor:
    """The paper's released code's weight ``exp(-(zbar - b)^2 / (2 s^2))``: an *unnormalised*
    Gaussian (no ``1 / (s sqrt(2 pi))``) at the pre-activation *without* the neuron's trained
    bias ``b`` (``zbar - b = W_l sigma(z_{l-1})``). See :func:`local_complexity`."""
    return torch.exp(-0.5 * ((zbar - bias) / s) ** 2)


def _check_common(sigma: float, noise_draws: int, reduction: str) -> None:
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma (the bias-noise scale s) must be a positive number, got {sigma!r}.")
    if not isinstance(noise_draws, int) or noise_draws < 0:
        raise ValueError(f"noise_draws must be an integer >= 0 (0: noiseless plug-in), got {noise_draws!r}.")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}.")


@dataclass
class _Terms:
    per_point: torch.Tensor  # (N, L): sum_i phi_s(zbar) ||grad z||, averaged over noise draws
    grad_norm_mean: List[torch.Tensor]  # per layer (n_l,): E_{eps,x} ||grad z_{l,i}||
    grad_norm_max: float  # max over neurons, points and draws of ||grad z_{l,i}||


@torch.no_grad()
def _lc_terms(model, x, sigma, noise_draws, shared_noise, generator, budget, progress,
              convention="coarea") -> _Terms:
    _check_common(sigma, noise_draws, "mean")
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}.")
    net = parse_network(model)
    x = check_inputs(net, x)
    N, L = x.shape[0], net.depth
    per_point = torch.zeros(N, L, dtype=net.dtype, device=net.device)
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
            for l, z, T in hidden_pass(net, xb, noise):
                zbar = z if noise is None else z - noise[l - 1]
                gnorm = row_norms(T)  # (n, n_l): ||grad_x z_{l,i}||
                if convention == "coarea":
                    weight = gaussian_density(zbar, sigma)
                else:
                    weight = released_code_density(zbar, net.biases[l - 1], sigma)
                per_point[sl, l - 1] += (weight * gnorm).sum(dim=1)
                grad_sum[l - 1] += gnorm.sum(dim=0)
                grad_max = torch.maximum(grad_max, gnorm.max())
    per_point /= draws
    return _Terms(per_point, [g / (N * draws) for g in grad_sum], float(grad_max))


def _reduce(per_point: torch.Tensor, reduction: str, per_layer: bool) -> torch.Tensor:
    values = per_point if per_layer else per_point.sum(dim=1)
    if reduction == "none":
        return values
    return values.mean(dim=0) if reduction == "mean" else values.sum(dim=0)


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
    convention: str = "coarea",
) -> torch.Tensor:
    """Local complexity ``LC_s`` of ``model`` at the inputs ``x`` (module docstring).

    Parameters
    ----------
    model : ``lctools.MLP`` or an ``nn.Sequential`` of Linear and ReLU/LeakyReLU layers.
    x : inputs, shape ``(N, n_0)`` (or ``(N, ...)`` if the model starts with ``nn.Flatten``);
        samples of the input distribution ``p``.
    sigma : the bias-noise scale ``s``.
    noise_draws : number of bias-noise draws ``eps`` per input point; ``0`` gives the
        noiseless plug-in ``sum_{l,i} phi_s(z_{l,i}(x)) ||grad z_{l,i}(x)||``.  The formula
        integrates each neuron's own noise exactly, so the draws only average over the
        noise of the *other* neurons; the spread of the estimate comes mostly from the
        points (chapter 2 measures it), and more points beat more draws at equal cost.
    reduction : ``"mean"`` (the estimate of ``LC_s``, a 0-dim tensor), ``"sum"`` or
        ``"none"`` (per point, shape ``(N,)``: the inner sum averaged over noise draws).
    per_layer : add a trailing layer axis (the terms of each hidden layer ``l``); the
        layers sum to the total.
    shared_noise : draw one ``eps`` per draw for the whole batch instead of one per point
        (cheaper to explain, higher variance).
    generator : a ``torch.Generator`` for the noise (its device is used to draw it).
    budget : elements of a reduced Jacobian held at once (bounds memory; see ``_jacobian``).
    progress : show a progress bar over noise draws.
    convention : ``"coarea"`` (default) computes the formula above, whose value is a
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

    Examples
    --------
    >>> import torch, lctools
    >>> net = lctools.MLP(2, [8, 8], 1, seed=0)
    >>> x = torch.rand(100, 2)
    >>> lc = lctools.local_complexity(net, x, sigma=0.1, noise_draws=0)
    >>> paper_units = lctools.local_complexity(net, x, 0.1, noise_draws=0,
    ...                                        convention="released-code")
    """
    _check_common(sigma, noise_draws, reduction)
    terms = _lc_terms(model, x, sigma, noise_draws, shared_noise, generator, budget, progress,
                      convention)
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
    """``LC_s`` together with the upper bound ``C_bias * C_grad * #neurons`` (see :class:`LCBound`)."""
    terms = _lc_terms(model, x, sigma, noise_draws, shared_noise, generator, budget, False)
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
    """
    net = parse_network(model)
    x = check_inputs(net, x)
    total, count = 0.0, 0
    for sl in chunks(x.shape[0], chunk_size(net)):
        for _, z, _ in hidden_pass(net, x[sl], jacobians=False):
            total += float(z.double().square().sum())
            count += z.numel()
    return math.sqrt(total / count)
