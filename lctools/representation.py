"""Representation cost: the parameter norm, rescalings that keep the function, balancing.

Notation (book/notation.md): ``z_1 = W_1 x + b_1``, ``z_l = W_l sigma(z_{l-1}) + b_l``
(``l = 1..L``), ``N(x) = W_{L+1} sigma(z_L) + b_{L+1}``, with ``sigma`` ReLU or LeakyReLU.

* **Parameter norm.** ``||theta||^2 = sum_{l=1}^{L+1} ||W_l||_F^2 + ||b_l||^2`` over all
  weights and biases of all ``nn.Linear`` layers, output layer included
  (``include_biases=False``: the weights only).
* **Rescalings.** ``sigma`` is positively homogeneous, ``sigma(a t) = a sigma(t)`` for
  ``a > 0``.  Multiplying the incoming weights and the bias of hidden neuron ``(l, i)`` by
  ``alpha_{l,i} > 0`` and its outgoing weights (column ``i`` of ``W_{l+1}``) by
  ``1 / alpha_{l,i}`` multiplies ``z_{l,i}`` by ``alpha_{l,i}`` and leaves every other
  pre-activation, and ``N``, unchanged (:func:`rescale_neurons`).  Its zero set, hence the
  partition into activation regions, is unchanged too.  Layer-wise: ``W_k <- c_k W_k``,
  ``b_k <- (c_1 ... c_k) b_k`` with ``c_1 ... c_{L+1} = 1`` (:func:`rescale_layers`).
* **Representation cost.** ``R(f) = min{ ||theta||^2 : N_theta = f }``.  What we compute
  is the minimum of ``||theta||^2`` over the *rescaling orbit* of a given ``theta``,

      R_hat(theta) = inf_{alpha > 0} ||theta_alpha||^2  >=  R(N_theta),

  the representation cost *of the parametrisation* (the course's name).  For one hidden
  layer, with ``w~_i = (w_i, b_i)`` the incoming weights and bias of neuron ``i`` and
  ``a_i`` its outgoing weights (column ``i`` of ``W_2``), the terms of different neurons
  are independent and ``min_alpha alpha^2 ||w~_i||^2 + ||a_i||^2 / alpha^2 = 2 ||w~_i|| ||a_i||``
  (AM-GM; attained at ``alpha^2 = ||a_i|| / ||w~_i||``), so

      R_hat(theta) = sum_i 2 ||w~_i|| ||a_i|| + ||b_2||^2           (exact, closed form).

  For deep networks there is no closed form.  In the variables ``beta = log alpha`` the
  orbit norm ``sum W_l[i,j]^2 exp(2 beta_{l,i} - 2 beta_{l-1,j}) + b_{l,i}^2 exp(2 beta_{l,i})``
  is a sum of exponentials of linear forms, hence convex; its stationary points are the
  *balanced* parametrisations (incoming norm = outgoing norm for every hidden neuron).
  :func:`balance` minimises it by exact coordinate descent, balancing one layer of neurons
  at a time (each step keeps ``N`` and never increases ``||theta||^2``), and
  :func:`representation_cost` reports the norm it reaches: an upper bound on ``R_hat``
  (equal to it at convergence) and hence on ``R(f)``.

Rescalings keep the function and the exact partition, but not the local complexity at a
fixed noise scale ``s``: adding bias noise ``eps ~ N(0, s^2)`` to the rescaled neuron is the
same as adding noise of scale ``s / alpha_{l,i}`` to the original one
(``phi_s(alpha t) alpha = phi_{s/alpha}(t)``).  Only the limit ``s -> 0`` is invariant.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from ._network import parse_network
from .models import linear_layers
from .validation import check_sigma

__all__ = [
    "parameter_norm",
    "neuron_norms",
    "imbalance",
    "rescale_neurons",
    "rescale_layers",
    "balance",
    "representation_cost",
    "RepresentationCost",
    "METHODS",
    "lc_norm_bound",
    "LCNormBound",
]

AlphaLike = Union[float, int, Sequence[float], np.ndarray, torch.Tensor]


# ----------------------------------------------------------------------------- helpers
def _linears(model: nn.Module) -> List[nn.Linear]:
    """The model's ``nn.Linear`` layers ``W_1..W_{L+1}`` (after validating the model)."""
    parse_network(model)
    return linear_layers(model)


def _check_include_biases(include_biases) -> bool:
    if not isinstance(include_biases, bool):
        raise ValueError(f"include_biases must be True or False, got {include_biases!r}.")
    return include_biases


def _check_layer(layer, depth: int) -> int:
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
        raise ValueError(f"layer must be an integer hidden-layer index 1..{depth}, got {layer!r}.")
    layer = int(layer)
    if not 1 <= layer <= depth:
        raise ValueError(
            f"layer {layer} is out of range: hidden layers are numbered 1..{depth} (1-based, as z_l in the "
            f"course; the output layer {depth + 1} has no activation and cannot be rescaled neuron-wise)."
        )
    return layer


def _as_positive(values, shape_msg: str, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers ({shape_msg}), got {values!r}.") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr}.")
    if np.any(arr <= 0):
        raise ValueError(
            f"{name} must be > 0 (ReLU is positively homogeneous only for positive factors; a factor <= 0 "
            f"would change the function), got {arr}."
        )
    return arr


def _sq(t: torch.Tensor, dim=None) -> torch.Tensor:
    t = t.detach().to(torch.float64)
    return (t * t).sum() if dim is None else (t * t).sum(dim=dim)


# ----------------------------------------------------------------------------- norm
def parameter_norm(model: nn.Module, include_biases: bool = True, differentiable: bool = False) -> torch.Tensor:
    """``||theta||^2 = sum_{l=1}^{L+1} ||W_l||_F^2 + ||b_l||^2``.

    Counted: the weights of *every* ``nn.Linear`` layer, the output layer included, and
    (``include_biases=True``, the default) all their biases, the output bias included;
    ``include_biases=False`` counts the weights only.  (These are all the parameters of an
    ``lctools.MLP``; AdamW's weight decay acts on exactly these.)

    Returns a 0-dim float64 tensor (summed in float64), detached; with
    ``differentiable=True`` it stays attached to the parameters, so that it can serve as an
    explicit penalty ``lambda * parameter_norm(model, differentiable=True)`` in a loss.

    Example
    -------
    >>> import lctools
    >>> float(parameter_norm(lctools.MLP(2, [4], 1, seed=0))) > 0
    True
    """
    include_biases = _check_include_biases(include_biases)
    total = None
    with torch.set_grad_enabled(bool(differentiable) and torch.is_grad_enabled()):
        for lin in _linears(model):
            term = lin.weight.double().pow(2).sum()
            if include_biases and lin.bias is not None:
                term = term + lin.bias.double().pow(2).sum()
            total = term if total is None else total + term
    return total if differentiable else total.detach()


def neuron_norms(model: nn.Module, include_biases: bool = True) -> List[tuple]:
    """Per hidden layer ``l``, the pair ``(incoming, outgoing)`` of float64 tensors ``(n_l,)``:
    ``incoming_i = ||W_l[i, :]||^2 + b_{l,i}^2`` (bias only if ``include_biases``) and
    ``outgoing_i = ||W_{l+1}[:, i]||^2``, the squared norms that a rescaling of neuron
    ``(l, i)`` multiplies by ``alpha^2`` and ``1 / alpha^2``.

    Example
    -------
    >>> import lctools
    >>> len(neuron_norms(lctools.MLP(2, [4, 3], 1, seed=0)))
    2
    """
    include_biases = _check_include_biases(include_biases)
    lins = _linears(model)
    out = []
    for l in range(len(lins) - 1):
        inc = _sq(lins[l].weight, dim=1)
        if include_biases and lins[l].bias is not None:
            inc = inc + lins[l].bias.detach().double() ** 2
        out.append((inc.cpu(), _sq(lins[l + 1].weight, dim=0).cpu()))
    return out


def imbalance(model: nn.Module, include_biases: bool = True) -> float:
    """``max_{l,i} |in_{l,i} - out_{l,i}| / (in_{l,i} + out_{l,i})`` over hidden neurons with
    ``in + out > 0`` (squared incoming/outgoing norms, :func:`neuron_norms`): 0 for a
    balanced parametrisation, at most 1.

    Example
    -------
    >>> import lctools
    >>> imbalance(balance(lctools.MLP(2, [4], 1, seed=0))) < 1e-6
    True
    """
    worst = 0.0
    for inc, outg in neuron_norms(model, include_biases):
        tot = inc + outg
        ok = tot > 0
        if ok.any():
            worst = max(worst, float(((inc - outg).abs()[ok] / tot[ok]).max()))
    return worst


# ----------------------------------------------------------------------------- rescalings
@torch.no_grad()
def _apply_neuron_scales(model: nn.Module, log_alpha: List[np.ndarray]) -> nn.Module:
    """A copy of ``model`` with neuron ``(l, i)`` rescaled by ``exp(log_alpha[l-1][i])`` for all
    hidden layers at once (each parameter is multiplied exactly once)."""
    new = copy.deepcopy(model)
    lins = linear_layers(new)
    L = len(lins) - 1
    for l in range(L + 1):  # python index l: layer l+1 of the course
        W = lins[l].weight
        row = np.exp(log_alpha[l]) if l < L else np.ones(W.shape[0])
        col = np.exp(-log_alpha[l - 1]) if l > 0 else np.ones(W.shape[1])
        scale = torch.from_numpy(np.outer(row, col)).to(device=W.device)
        W.copy_((W.double() * scale).to(W.dtype))
        if lins[l].bias is not None and l < L:
            b = lins[l].bias
            b.copy_((b.double() * torch.from_numpy(row).to(b.device)).to(b.dtype))
    return new


def rescale_neurons(model: nn.Module, layer: int, alpha: AlphaLike) -> nn.Module:
    """A copy of ``model`` with the neurons of hidden layer ``layer`` (1-based, ``1..L``)
    rescaled: row ``i`` of ``W_l`` and ``b_{l,i}`` times ``alpha_i``, column ``i`` of
    ``W_{l+1}`` times ``1 / alpha_i``.

    ``alpha``: a positive number (all neurons) or ``n_l`` positive numbers.  By positive
    homogeneity of ReLU/LeakyReLU, ``z_{l,i}`` becomes ``alpha_i z_{l,i}``, every other
    pre-activation and the output ``N`` are unchanged, and so are the zero sets (the
    activation regions).  The model itself is not modified.

    Raises ``ValueError`` for a layer out of range, a wrong number of factors, or factors
    that are not finite and positive.

    Example
    -------
    >>> import torch, lctools
    >>> net = lctools.MLP(2, [4], 1, seed=0)
    >>> x = torch.rand(5, 2)
    >>> torch.allclose(rescale_neurons(net, 1, 3.0)(x), net(x), atol=1e-6)
    True
    """
    net = parse_network(model)
    layer = _check_layer(layer, net.depth)
    n = net.widths[layer - 1]
    arr = _as_positive(alpha, f"one positive number or {n} of them", "alpha")
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"alpha must be a number or have shape ({n},) (the width of hidden layer {layer}), "
                         f"got shape {arr.shape}.")
    log_alpha = [np.zeros(w) for w in net.widths]
    log_alpha[layer - 1] = np.log(arr)
    return _apply_neuron_scales(model, log_alpha)


@torch.no_grad()
def rescale_layers(model: nn.Module, c: Sequence[float], rtol: float = 1e-6) -> nn.Module:
    """A copy of ``model`` with ``W_k <- c_k W_k`` and ``b_k <- (c_1 ... c_k) b_k`` for
    ``k = 1..L+1``, where ``c`` has ``L + 1`` positive entries with ``c_1 ... c_{L+1} = 1``
    (within relative tolerance ``rtol``).

    Then ``z_k`` becomes ``(c_1 ... c_k) z_k`` (positive homogeneity), and ``N`` is unchanged
    because the product of all factors is 1.  This is the special case of
    :func:`rescale_neurons` with ``alpha_{l,i} = c_1 ... c_l`` for every neuron of layer ``l``.

    Example
    -------
    >>> import torch, lctools
    >>> net = lctools.MLP(2, [4], 1, seed=0)
    >>> x = torch.rand(5, 2)
    >>> torch.allclose(rescale_layers(net, [2.0, 0.5])(x), net(x), atol=1e-6)
    True
    """
    net = parse_network(model)
    arr = _as_positive(c, f"{net.depth + 1} positive numbers, one per nn.Linear layer", "c")
    if arr.shape != (net.depth + 1,):
        raise ValueError(f"c must have one factor per nn.Linear layer, L + 1 = {net.depth + 1}, got shape {arr.shape}.")
    prod = float(np.prod(arr))
    if abs(prod - 1.0) > rtol:
        raise ValueError(f"the factors c must multiply to 1 (so that N is unchanged); their product is {prod!r}.")
    cum = np.cumsum(np.log(arr))[:-1]
    return _apply_neuron_scales(model, [np.full(w, v) for w, v in zip(net.widths, cum)])


# ----------------------------------------------------------------------------- balancing
def _orbit_data(model: nn.Module, include_biases: bool):
    """float64 numpy copies of the squared weights and biases."""
    lins = _linears(model)
    W2 = [lin.weight.detach().double().cpu().numpy() ** 2 for lin in lins]
    b2 = [(lin.bias.detach().double().cpu().numpy() ** 2 if (include_biases and lin.bias is not None)
           else np.zeros(lin.out_features)) for lin in lins]
    return W2, b2


def _orbit_terms(W2, b2, beta, l):
    """Squared incoming and outgoing norms of the neurons of hidden layer ``l`` (python index)
    at the log-scales ``beta``."""
    L = len(W2) - 1
    prev = np.exp(-2 * beta[l - 1]) if l > 0 else np.ones(W2[l].shape[1])
    inc = np.exp(2 * beta[l]) * (W2[l] @ prev + b2[l])
    nxt = np.exp(2 * beta[l + 1]) if l + 1 < L else np.ones(W2[l + 1].shape[0])
    outg = np.exp(-2 * beta[l]) * (nxt @ W2[l + 1])
    return inc, outg


def _orbit_norm(W2, b2, beta) -> float:
    """``||theta_alpha||^2`` at ``alpha = exp(beta)`` (float64)."""
    L = len(W2) - 1
    total = sum(float(_orbit_terms(W2, b2, beta, l)[0].sum()) for l in range(L))  # W_1..W_L and b_1..b_L
    col = np.exp(-2 * beta[L - 1])
    return total + float((W2[L] @ col).sum() + b2[L].sum())  # W_{L+1} and b_{L+1}


@dataclass
class _BalanceResult:
    log_alpha: List[np.ndarray]
    sweeps: int
    converged: bool
    residual: float
    history: List[float]


def _balance_scales(model, include_biases, tol, max_sweeps) -> _BalanceResult:
    W2, b2 = _orbit_data(model, include_biases)
    L = len(W2) - 1
    beta = [np.zeros(W2[l].shape[0]) for l in range(L)]
    residual, sweeps = math.inf, 0
    history = [_orbit_norm(W2, b2, beta)]
    for sweeps in range(1, max_sweeps + 1):
        residual = 0.0
        for l in range(L):
            inc, outg = _orbit_terms(W2, b2, beta, l)
            ok = (inc > 0) & (outg > 0)  # a neuron with a zero side has no minimiser: leave it
            # alpha^2 = sqrt(out / in) balances the neuron: both become sqrt(in * out)
            beta[l][ok] += 0.25 * (np.log(outg[ok]) - np.log(inc[ok]))
            if ok.any():
                residual = max(residual, float(np.max(np.abs(inc[ok] - outg[ok]) / (inc[ok] + outg[ok]))))
        history.append(_orbit_norm(W2, b2, beta))
        if L == 1 or residual <= tol:  # one hidden layer: neurons are independent, one sweep is exact
            # residual was measured before the last update; for L == 1 the update makes it 0
            if L == 1:
                residual = 0.0
            break
    return _BalanceResult(beta, sweeps, residual <= tol, residual, history)


def balance(model: nn.Module, include_biases: bool = True, tol: float = 1e-7, max_sweeps: int = 10_000) -> nn.Module:
    """A rescaled copy of ``model`` with (nearly) minimal ``||theta||^2`` on its rescaling orbit.

    One hidden layer: the neuron-wise balanced rescaling ``alpha_i = sqrt(||a_i|| / ||w~_i||)``
    (``w~_i = (w_i, b_i)`` incoming weights and bias, ``a_i`` outgoing weights), which
    minimises ``alpha^2 ||w~_i||^2 + ||a_i||^2 / alpha^2`` with value ``2 ||w~_i|| ||a_i||``;
    afterwards ``||w~_i|| = ||a_i||`` for every neuron.

    Deep networks: exact coordinate descent on the orbit, sweeping the hidden layers
    ``l = 1..L`` and balancing every neuron of layer ``l`` between its incoming weights (and
    bias) and its outgoing weights, the other layers held fixed (neurons of one layer share
    no parameter, so they are balanced simultaneously).  Every step keeps ``N`` and never
    increases ``||theta||^2``; the iteration stops when every neuron is balanced to within
    ``tol`` (``|in - out| / (in + out) <= tol`` for the squared norms) or after
    ``max_sweeps`` sweeps.  Its fixed points are the minimisers of the (convex in
    ``log alpha``) orbit norm.

    The scales are accumulated in float64 and applied once, so the copy computes the same
    function as ``model`` up to one rounding per parameter.  Neurons whose incoming or
    outgoing weights are all zero are left alone (their orbit infimum is not attained).
    ``include_biases`` says which norm is minimised (:func:`parameter_norm`).

    Example
    -------
    >>> import torch, lctools
    >>> net = lctools.MLP(2, [4], 1, seed=0)
    >>> x = torch.rand(5, 2)
    >>> torch.allclose(balance(net)(x), net(x), atol=1e-5)
    True
    """
    include_biases = _check_include_biases(include_biases)
    _check_tol(tol, max_sweeps)
    res = _balance_scales(model, include_biases, tol, max_sweeps)
    return _apply_neuron_scales(model, res.log_alpha)


def _check_tol(tol, max_sweeps):
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}.")
    if isinstance(max_sweeps, bool) or not isinstance(max_sweeps, (int, np.integer)) or max_sweeps < 1:
        raise ValueError(f"max_sweeps must be an integer >= 1, got {max_sweeps!r}.")


@dataclass
class RepresentationCost:
    """The representation cost of a parametrisation, ``R_hat(theta) = inf_alpha ||theta_alpha||^2``
    over neuron rescalings ``alpha > 0`` (an upper bound on ``R(f) = min{||theta||^2 : N_theta = f}``).

    Attributes
    ----------
    value
        ``R_hat`` (``exact``), or the norm of the balanced parametrisation found by
        :func:`balance` (an upper bound on ``R_hat``, equal to it when ``converged``).
    exact
        True for one hidden layer: ``value = sum_i 2 ||w~_i|| ||a_i|| + ||b_2||^2`` in closed form.
    norm
        ``||theta||^2`` of the given parametrisation (``>= value``).
    fixed
        The part no rescaling changes, ``||b_{L+1}||^2`` (0 without biases).
    per_neuron
        One hidden layer: the terms ``rho_i = 2 ||w~_i|| ||a_i||``; ``None`` for deep nets.
    include_biases
        Which norm (:func:`parameter_norm`).
    sweeps, converged, residual
        Of the balancing iteration (``residual``: the largest
        neuron imbalance ``|in - out| / (in + out)`` before the last sweep's update).
    history
        ``||theta||^2`` before the first sweep and after each sweep (non-increasing).
    balanced
        The balanced copy of the model (same function, smallest norm found).
    """

    value: float
    exact: bool
    norm: float
    fixed: float
    per_neuron: Optional[np.ndarray]
    include_biases: bool
    sweeps: int
    converged: bool
    residual: float
    history: List[float] = field(repr=False, default_factory=list)
    balanced: nn.Module = field(repr=False, default=None)

    @property
    def saving(self) -> float:
        """``norm - value >= 0``: how much of ``||theta||^2`` rescaling can remove."""
        return self.norm - self.value


METHODS = ("auto", "closed_form", "iterative")


def representation_cost(model: nn.Module, include_biases: bool = True, method: str = "auto", tol: float = 1e-7,
                        max_sweeps: int = 10_000) -> RepresentationCost:
    """The minimum of ``||theta||^2`` over the rescaling orbit of ``model``'s parameters.

    Precisely: ``R_hat(theta) = inf { ||theta_alpha||^2 : alpha_{l,i} > 0 }`` where
    ``theta_alpha`` rescales every hidden neuron ``(l, i)`` (incoming weights and bias times
    ``alpha_{l,i}``, outgoing weights divided by it; :func:`rescale_neurons`).  All
    ``theta_alpha`` compute the same function ``f = N_theta``, so ``R_hat(theta) >= R(f) =
    min{||theta'||^2 : N_theta' = f}`` (other parametrisations of ``f``, e.g. with merged or
    split neurons, may be cheaper): the course calls ``R_hat`` the representation cost of
    the parametrisation.

    * One hidden layer (``exact=True``): ``R_hat = sum_i 2 ||w~_i|| ||a_i|| + ||b_2||^2``,
      ``w~_i = (w_i, b_i)`` (``w_i`` only if ``include_biases=False``), ``a_i = W_2[:, i]``.
    * Deep networks (``exact=False``): the norm of :func:`balance`'s output, an upper bound
      on ``R_hat`` (equal to it at convergence, by convexity in ``log alpha``) and on ``R(f)``.

    ``method``: ``"auto"`` (closed form for one hidden layer, else iterative),
    ``"closed_form"`` (one hidden layer only) or ``"iterative"`` (the balancing bound for
    any depth, ``exact=False``; for one hidden layer it agrees with the closed form).

    Example
    -------
    >>> import lctools
    >>> rc = representation_cost(lctools.MLP(2, [4], 1, seed=0))
    >>> rc.value <= float(parameter_norm(lctools.MLP(2, [4], 1, seed=0))) + 1e-9
    True
    """
    include_biases = _check_include_biases(include_biases)
    _check_tol(tol, max_sweeps)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    net = parse_network(model)
    if method == "closed_form" and net.depth != 1:
        raise ValueError(f"method='closed_form' needs one hidden layer (this network has L = {net.depth}); "
                         "use method='iterative' (or 'auto') for the balancing upper bound.")
    res = _balance_scales(model, include_biases, tol, max_sweeps)
    balanced = _apply_neuron_scales(model, res.log_alpha)
    norm = float(parameter_norm(model, include_biases))
    lins = _linears(model)
    out_bias = lins[-1].bias
    fixed = float(_sq(out_bias)) if (include_biases and out_bias is not None) else 0.0
    if net.depth == 1 and method != "iterative":
        inc, outg = neuron_norms(model, include_biases)[0]
        per = (2.0 * torch.sqrt(inc * outg)).numpy()
        value = float(per.sum()) + fixed
        return RepresentationCost(value, True, norm, fixed, per, include_biases, res.sweeps, True, 0.0, res.history,
                                  balanced)
    value = float(parameter_norm(balanced, include_biases))
    return RepresentationCost(value, False, norm, fixed, None, include_biases, res.sweeps, res.converged,
                              res.residual, res.history, balanced)


# ----------------------------------------------------------------------------- LC bound
@dataclass
class LCNormBound:
    """Norm bounds on the local complexity at noise scale ``s`` (chapter 5's proposition).

    For any ReLU/LeakyReLU network, any input distribution and any ``s > 0``,

        LC_s  <=  C_bias * G,      G = sum_{l=1}^L sum_i ||W_l[i, :]|| * prod_{k<l} ||W_k||_op,
              <=  C_bias * sum_{l=1}^L sqrt(n_l) * (S_l / l)^{l/2},   S_l = sum_{k<=l} ||W_k||_F^2,

    with ``C_bias = 1 / (s sqrt(2 pi))`` the largest value of the noise density (for a
    LeakyReLU with negative slope ``|a| > 1`` each factor ``k < l`` also carries ``|a|``).  For one
    hidden layer on a *balanced* parametrisation (``||w~_i|| = ||a_i||``), moreover
    ``G = sum_i ||w_i|| <= sum_i sqrt(rho_i / 2) <= sqrt(n_1 * R_hat / 2)``, with
    ``rho_i = 2 ||w~_i|| ||a_i||`` and ``R_hat`` the representation cost.

    Attributes: ``sigma``, ``c_bias``, ``gradient_sum`` (``G``), ``frobenius`` (the sum in the
    second line, without ``C_bias``), ``widths``, ``cost_sqrt_sum`` and ``cost`` (one hidden
    layer: ``sum_i sqrt(rho_i / 2)`` and ``R_hat``; else ``None``), ``balanced`` (whether the
    given parametrisation is balanced to within ``1e-4``).
    """

    sigma: float
    c_bias: float
    gradient_sum: float
    frobenius: float
    widths: List[int]
    cost_sqrt_sum: Optional[float]
    cost: Optional[float]
    balanced: bool

    @property
    def by_gradients(self) -> float:
        """``C_bias * G``."""
        return self.c_bias * self.gradient_sum

    @property
    def by_norm(self) -> float:
        """``C_bias * sum_l sqrt(n_l) (S_l / l)^{l/2}``."""
        return self.c_bias * self.frobenius

    @property
    def by_cost(self) -> Optional[float]:
        """One hidden layer: ``C_bias * sqrt(n_1 R_hat / 2)``, a bound on ``LC_s`` of the
        balanced parametrisation (``None`` for deep nets)."""
        if self.cost is None:
            return None
        return self.c_bias * math.sqrt(self.widths[0] * self.cost / 2.0)


@torch.no_grad()
def lc_norm_bound(model: nn.Module, sigma: float, include_biases: bool = True) -> LCNormBound:
    """The norm bounds of :class:`LCNormBound` for ``model`` at noise scale ``sigma``.

    ``include_biases`` selects the norm of the representation cost (one hidden layer);
    the gradient and Frobenius bounds involve weights only.

    Example
    -------
    >>> import lctools
    >>> b = lc_norm_bound(lctools.MLP(2, [4], 1, seed=0), sigma=0.5)
    >>> b.by_gradients > 0
    True
    """
    sigma = check_sigma(sigma)
    net = parse_network(model)
    Ws = [w.detach().double().cpu() for w in net.weights]
    G, op_prod, frob, S, gain = 0.0, 1.0, 0.0, 0.0, 1.0
    for l in range(1, net.depth + 1):
        W = Ws[l - 1]
        G += float(torch.linalg.vector_norm(W, dim=1).sum()) * op_prod
        S += float((W * W).sum())
        frob += math.sqrt(W.shape[0]) * (S / l) ** (l / 2) * gain
        slope = max(1.0, abs(net.slopes[l - 1]))  # |sigma'| <= slope: 1 for ReLU and LeakyReLU(a), |a| <= 1
        op_prod *= float(torch.linalg.matrix_norm(W, ord=2)) * slope
        gain *= slope
    cost_sqrt, cost = None, None
    if net.depth == 1:
        rc = representation_cost(model, include_biases)
        cost_sqrt = float(np.sqrt(rc.per_neuron / 2.0).sum())
        cost = rc.value
    return LCNormBound(float(sigma), 1.0 / (sigma * math.sqrt(2 * math.pi)), G, frob, net.widths, cost_sqrt, cost,
                       imbalance(model, include_biases) <= 1e-4)
