"""Total variation of the network function on the data:

    TV(theta; p) = E_{x~p} || J_x N(x) ||_F,
    J_x N(x) = W_{L+1} D_L W_L D_{L-1} ... D_1 W_1,   D_l = diag(sigma'(z_l(x))).

The output Jacobian is accumulated from the output side (reverse mode, batched): with
``out`` outputs each layer costs ``out x n_l x n_{l-1}`` per point, far less than carrying
the full hidden-layer Jacobians forward.
"""
from __future__ import annotations

import torch

from ._jacobian import DEFAULT_BUDGET, hidden_pass
from ._network import Network
from ._network import check_inputs, chunks, parse_network


def _output_jacobian(net: Network, x: torch.Tensor) -> torch.Tensor:
    slopes = [net.derivative(l, z) for l, z, _ in hidden_pass(net, x, jacobians=False)]
    V = net.weights[-1].expand(x.shape[0], *net.weights[-1].shape)  # (N, out, n_L)
    for l in range(net.depth, 0, -1):
        V = (V * slopes[l - 1].unsqueeze(1)) @ net.weights[l - 1]
    return V


@torch.no_grad()
def input_jacobian(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``J_x N(x)`` for every input, shape ``(N, out, n_0)``."""
    net = parse_network(model)
    return _output_jacobian(net, check_inputs(net, x))


@torch.no_grad()
def total_variation(
    model: torch.nn.Module,
    x: torch.Tensor,
    reduction: str = "mean",
    budget: int = DEFAULT_BUDGET,
) -> torch.Tensor:
    """``TV = E_x ||J_x N(x)||_F`` (module docstring): a 0-dim tensor for ``reduction="mean"``
    (``"sum"`` sums over points), or the per-point norms ``(N,)`` for ``reduction="none"``."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}.")
    net = parse_network(model)
    x = check_inputs(net, x)
    size = max(1, budget // (net.weights[-1].shape[0] * max(net.in_dim, *net.widths)))
    norms = torch.cat([
        torch.linalg.matrix_norm(_output_jacobian(net, x[sl])) for sl in chunks(x.shape[0], size)
    ])
    if reduction == "none":
        return norms
    return norms.mean() if reduction == "mean" else norms.sum()
