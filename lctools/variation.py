"""Total variation of the network function on the data:

    TV(theta; p) = E_{x~p} || J_x N(x) ||_F,
    J_x N(x) = W_{L+1} D_L W_L D_{L-1} ... D_1 W_1,   D_l = diag(sigma'(z_l(x))).

The output Jacobian is accumulated from the output side (reverse mode, batched): with
``out`` outputs each layer costs ``out x n_l x n_{l-1}`` per point, far less than carrying
the full hidden-layer Jacobians forward.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ._jacobian import DEFAULT_BUDGET, backward_pass, chunk_size, hidden_pass, row_norms
from ._network import Network, check_inputs, chunks, parse_network
from .complexity import gaussian_density
from .validation import as_int, check_bool, check_reduction, check_sigma, reduce

__all__ = ["total_variation", "total_variation_bound", "TVBound", "input_jacobian"]


def _output_jacobian(net: Network, x: torch.Tensor) -> torch.Tensor:
    slopes = [layer.d for layer in hidden_pass(net, x, jacobians=False)]
    for _, A in backward_pass(net, slopes):
        pass
    return A  # l = 0: J_x N


@torch.no_grad()
def input_jacobian(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``J_x N(x)`` for every input, shape ``(N, out, n_0)``.

    Example
    -------
    >>> import torch, lctools
    >>> lctools.input_jacobian(lctools.MLP(3, [8], 2, seed=0), torch.rand(5, 3)).shape
    torch.Size([5, 2, 3])
    """
    net = parse_network(model)
    return _output_jacobian(net, check_inputs(net, x))


def total_variation(
    model: torch.nn.Module,
    x: torch.Tensor,
    reduction: str = "mean",
    budget: int = DEFAULT_BUDGET,
    differentiable: bool = False,
) -> torch.Tensor:
    """``TV = E_x ||J_x N(x)||_F`` (module docstring).

    Parameters
    ----------
    model
        ``lctools.MLP`` or an ``nn.Sequential`` of Linear and ReLU/LeakyReLU layers.
    x
        Inputs ``(N, n_0)``, samples of ``p``.
    reduction
        ``"mean"`` (a 0-dim tensor, the estimate of ``TV``), ``"sum"`` or ``"none"``
        (the per-point norms ``(N,)``).
    budget
        Elements held at once (bounds memory).
    differentiable
        Keep the result attached to the parameters (for a penalty); by default
        it is detached.  The activation pattern is piecewise constant, so the gradient is that
        of ``||W_{L+1} D_L ... D_1 W_1||_F`` with the ``D_l`` held fixed.

    Example
    -------
    >>> import torch, lctools
    >>> net = lctools.MLP(2, [16], 1, seed=0)
    >>> float(lctools.total_variation(net, torch.rand(100, 2))) > 0
    True
    """
    check_reduction(reduction)
    budget, differentiable = as_int(budget, "budget", low=1), check_bool(differentiable, "differentiable")
    with contextlib.nullcontext() if differentiable else torch.no_grad():
        net = parse_network(model)
        x = check_inputs(net, x)
        size = max(1, budget // (net.weights[-1].shape[0] * max(net.in_dim, *net.widths)))
        norms = torch.cat([
            torch.linalg.matrix_norm(_output_jacobian(net, x[sl])) for sl in chunks(x.shape[0], size)
        ])
        return reduce(norms, reduction)


# ----------------------------------------------------------------------------------------
# Total variation bounded by the layer-wise local complexity
# ----------------------------------------------------------------------------------------


@dataclass
class TVBound:
    """Per-point pieces of the bound of ``||J_x N(x)||_F`` by the layer-wise local complexity.

    For each input ``x`` (rows) and hidden layer ``l`` (columns, ``l = 1..L``), with
    ``g_{l,i} = ||grad_x z_{l,i}(x)||``, ``S_l(x) = {i : sigma'(z_{l,i}(x)) > 0}`` (the
    active neurons; every neuron for LeakyReLU) and ``A_l(x) = dN / d sigma(z_l)
    = W_{L+1} D_L W_L ... D_{l+1} W_{l+1}``:

    - ``tv``: ``||J_x N(x)||_F``, shape ``(N,)``;
    - ``lc_layer``: ``LC_l(x) = sum_i phi_s(z_{l,i}(x)) g_{l,i}(x)`` (noiseless plug-in, layer l);
    - ``eta``: ``eta_l(x) = max_{i in S_l(x)} |z_{l,i}(x)|`` (0 if ``S_l(x)`` is empty);
    - ``density_floor``: ``phi_s(eta_l(x))``, the smallest density value among active neurons
      (float64; it may underflow to 0 when ``eta_l(x) >> s``);
    - ``local_lip``: ``kappa_l(x) = max_{i in S_l(x)} ||A_l(x) e_i||`` (0 if ``S_l(x)`` is empty);
    - ``global_lip``: ``Lip_{>l} = prod_{k=l+1}^{L+1} ||W_k||_2``, shape ``(L,)``;
    - ``triangle``: ``sum_i sigma'(z_{l,i}) ||A_l(x) e_i|| g_{l,i}(x)``;
    - ``lc_ratio``: ``LC_l(x) / phi_s(eta_l(x)) = sum_i exp((eta_l^2 - z_{l,i}^2) / (2 s^2)) g_{l,i}``
      (computed in this form, float64; ``>= sum_{i in S_l} g_{l,i}``);
    - ``local_bound``: ``kappa_l(x) LC_l(x) / phi_s(eta_l(x))``;
    - ``global_bound``: ``Lip_{>l} LC_l(x) / phi_s(eta_l(x))``.

    The chain of inequalities (see :func:`total_variation_bound`) is, for every ``x`` and ``l``,
    ``tv <= triangle <= local_bound <= global_bound``.  Per-point tensors have shape
    ``(N, L)``; the properties below take the minimum over layers and the mean over points.
    """

    tv: torch.Tensor
    lc_layer: torch.Tensor
    eta: torch.Tensor
    density_floor: torch.Tensor
    local_lip: torch.Tensor
    global_lip: torch.Tensor
    triangle: torch.Tensor
    lc_ratio: torch.Tensor
    local_bound: torch.Tensor
    global_bound: torch.Tensor
    sigma: float

    @property
    def bound(self) -> torch.Tensor:
        """``min_l Lip_{>l} LC_l(x) / phi_s(eta_l(x))`` per point, shape ``(N,)`` (the proposition)."""
        return self.global_bound.min(dim=1).values

    @property
    def local(self) -> torch.Tensor:
        """``min_l kappa_l(x) LC_l(x) / phi_s(eta_l(x))`` per point, shape ``(N,)``."""
        return self.local_bound.min(dim=1).values

    def summary(self) -> dict:
        """Means over the points, as plain floats: ``tv`` (the estimate of ``TV``), ``lc``
        (``E_x sum_l LC_l(x)``, the plug-in LC), ``triangle``, ``local`` and ``bound`` (each
        ``E_x min_l [...]``), and per layer ``bound_per_layer`` (``E_x`` of the global bound)."""
        return {
            "sigma": self.sigma,
            "tv": float(self.tv.mean()),
            "lc": float(self.lc_layer.sum(dim=1).mean()),
            "triangle": float(self.triangle.min(dim=1).values.mean()),
            "local": float(self.local.mean()),
            "bound": float(self.bound.mean()),
            "bound_per_layer": [float(v) for v in self.global_bound.mean(dim=0)],
        }


@torch.no_grad()
def total_variation_bound(
    model: torch.nn.Module,
    x: torch.Tensor,
    sigma: float,
    budget: int = DEFAULT_BUDGET,
) -> TVBound:
    """The total variation bounded by the layer-wise local complexity, with all its pieces.

    For every input ``x``, every hidden layer ``l`` and every ``s = sigma > 0`` (notation of
    :class:`TVBound`; ``sigma' <= 1`` for ReLU and LeakyReLU):

        ||J_x N(x)||_F <= sum_i sigma'(z_{l,i}) ||A_l(x) e_i|| g_{l,i}(x)               (triangle)
                      <= kappa_l(x) * LC_l(x) / phi_s(eta_l(x))                        (local)
                      <= Lip_{>l}   * LC_l(x) / phi_s(eta_l(x)),                       (global)

    because ``J_x N = sum_i A_l e_i sigma'(z_{l,i}) grad z_{l,i}^T`` (chain rule through layer
    ``l``), ``||A_l e_i|| <= ||A_l||_2 <= Lip_{>l}``, and ``phi_s(z_{l,i}) >= phi_s(eta_l)`` for
    the active neurons.  Averaging the minimum over ``l`` gives
    ``TV = E_x ||J_x N||_F <= E_x min_l Lip_{>l} LC_l(x) / phi_s(eta_l(x))``.

    One forward pass (``hidden_pass``: pre-activations and neuron gradient norms) and one
    backward recursion ``A_{l-1} = (A_l D_l) W_l`` per chunk; returns a :class:`TVBound`.
    Models in float16/bfloat16 are computed in float32.

    Example
    -------
    >>> import torch, lctools
    >>> b = lctools.total_variation_bound(lctools.MLP(2, [16, 16], 1, seed=0), torch.rand(50, 2), 1.0)
    >>> bool((b.tv <= b.bound * (1 + 1e-5)).all())
    True
    """
    sigma, budget = check_sigma(sigma), as_int(budget, "budget", low=1)
    net = parse_network(model)
    x = check_inputs(net, x)
    L = net.depth
    global_lip = torch.stack([
        torch.prod(torch.stack([torch.linalg.matrix_norm(W, ord=2) for W in net.weights[l:]]))
        for l in range(1, L + 1)
    ])  # entry l-1: prod_{k=l+1}^{L+1} ||W_k||_2
    out_dim = net.weights[-1].shape[0]
    size = min(chunk_size(net, budget), max(1, budget // (out_dim * max(net.in_dim, *net.widths))))
    parts = {k: [] for k in ("tv", "lc", "eta", "klip", "tri", "ratio")}
    for sl in chunks(x.shape[0], size):
        xb = x[sl]
        zs, gnorms, slopes = [], [], []
        for _, z, T, d in hidden_pass(net, xb):
            zs.append(z)
            gnorms.append(row_norms(T))
            slopes.append(d)
        # backward: A_L = W_{L+1}, A_{l-1} = (A_l * sigma'(z_l)) W_l; J_x N = (A_1 * sigma'(z_1)) W_1
        lc, eta, klip, tri, ratio = ([None] * L for _ in range(5))
        for l, A in backward_pass(net, slopes):
            if l == 0:
                break
            z, g, d = zs[l - 1], gnorms[l - 1], slopes[l - 1]
            col = torch.linalg.vector_norm(A, dim=1)  # (n, n_l): ||A_l e_i||
            active = d > 0
            zero = torch.zeros((), dtype=z.dtype, device=z.device)
            lc[l - 1] = (gaussian_density(z, sigma) * g).sum(dim=1)
            eta[l - 1] = torch.where(active, z.abs(), zero).amax(dim=1)
            klip[l - 1] = torch.where(active, col, zero).amax(dim=1)
            tri[l - 1] = (d * col * g).sum(dim=1)
            # LC_l(x) / phi_s(eta_l(x)) = sum_i exp((eta^2 - z_i^2) / (2 s^2)) g_i, in float64 so
            # that it neither underflows to 0/0 nor loses the small terms (it may overflow to inf
            # when eta_l(x) >> s: then the bound is honestly void).
            e, zz = eta[l - 1].double().unsqueeze(1), z.double()
            terms = torch.exp((e * e - zz * zz) / (2.0 * sigma**2)) * g.double()
            ratio[l - 1] = torch.where(g > 0, terms, torch.zeros_like(terms)).sum(dim=1)  # no inf * 0
        parts["tv"].append(torch.linalg.matrix_norm(A))
        parts["lc"].append(torch.stack(lc, dim=1))
        parts["eta"].append(torch.stack(eta, dim=1))
        parts["klip"].append(torch.stack(klip, dim=1))
        parts["tri"].append(torch.stack(tri, dim=1))
        parts["ratio"].append(torch.stack(ratio, dim=1))
    tv, lc, eta, klip, tri, ratio = (torch.cat(parts[k]) for k in ("tv", "lc", "eta", "klip", "tri", "ratio"))
    # kappa = 0 (no active neuron, or dead outgoing paths only) means J_x N = 0: the local bound
    # is 0 then (and not 0 * inf).  With no active neuron eta = 0 and the ratio is finite.
    local = torch.where(klip > 0, klip.double() * ratio, torch.zeros_like(ratio))
    glob = global_lip.double() * ratio
    return TVBound(tv=tv, lc_layer=lc, eta=eta, density_floor=gaussian_density(eta.double(), sigma),
                   local_lip=klip, global_lip=global_lip, triangle=tri, lc_ratio=ratio,
                   local_bound=local, global_bound=glob, sigma=float(sigma))
