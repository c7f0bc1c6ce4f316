"""Local rank: how many directions of input space each hidden layer's features use.

    LR_l^eps(theta; p) = E_{x~p} #{ singular values of J_l(x) > eps },   J_l = dz_l/dx

for pre-activation features ``z_l`` (``features="pre"``), or ``J_l = d sigma(z_l)/dx =
D_l dz_l/dx`` for post-activation features (``features="post"``).

**How it is computed.**  The reduced Jacobian of ``_jacobian`` has the singular values of
``J_l`` with the input width gone.  We never compute singular values: the number of them
above ``eps`` is the number of positive eigenvalues of ``G - eps^2 I`` for the Gram matrix
``G`` (the smaller of ``T T^T`` and ``T^T T``), and by Sylvester's law of inertia that is the
number of positive pivots of an ``L D L^T`` factorisation of ``G - eps^2 I`` (Bunch-Kaufman,
1x1 and 2x2 blocks) — a third of the work of an eigen-decomposition.  ``G`` and the
factorisation are in float64, so squaring costs no accuracy that matters for the count.
For ``features="pre"`` layer 1 has ``J_1 = W_1`` at every ``x`` and is counted once.
"""
from __future__ import annotations

import torch

from ._jacobian import DEFAULT_BUDGET, chunk_size, hidden_pass
from ._network import check_inputs, chunks, parse_network

FEATURES = ("pre", "post")


def _positive_inertia(A: torch.Tensor) -> torch.Tensor:
    """Number of positive eigenvalues of each symmetric matrix in the batch ``A`` (B, k, k),
    from the block-diagonal ``D`` of ``torch.linalg.ldl_factor_ex`` (LAPACK ``sytrf``, lower).

    A 1x1 block contributes 1 if positive; a 2x2 block ``[[a, b], [b, c]]`` contributes 1 if
    its determinant is negative and 2 if it is positive with ``a > 0`` (0 otherwise).
    LAPACK marks a 2x2 block at ``(k, k+1)`` by negative ``ipiv[k] = ipiv[k+1]``.
    """
    LD, pivots, _ = torch.linalg.ldl_factor_ex(A)
    k = A.shape[-1]
    d = LD.diagonal(dim1=-2, dim2=-1)
    off = LD.diagonal(offset=-1, dim1=-2, dim2=-1)
    neg = pivots < 0
    count = torch.zeros(A.shape[:-2], dtype=torch.long, device=A.device)
    second = torch.zeros_like(count, dtype=torch.bool)  # position k closes a 2x2 block
    for i in range(k):
        start = neg[..., i] & ~second
        single = ~neg[..., i]
        count += (single & (d[..., i] > 0)).long()
        if i + 1 < k:
            a, b, c = d[..., i], off[..., i], d[..., i + 1]
            det = a * c - b * b
            two = torch.where(det < 0, 1, torch.where(a > 0, 2, 0))
            count += torch.where(start, two, 0)
        second = start
    return count


def count_singular_values_above(M: torch.Tensor, eps: float) -> torch.Tensor:
    """``#{ singular values of M[b] > eps }`` for a batch ``M`` of shape (B, m, n), via the
    inertia of ``G - eps^2 I`` with ``G`` the smaller Gram matrix of ``M`` (in float64)."""
    M = M.to(torch.float64)
    G = M @ M.transpose(-1, -2) if M.shape[-2] <= M.shape[-1] else M.transpose(-1, -2) @ M
    eye = torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)
    return _positive_inertia(G - (eps**2) * eye)


@torch.no_grad()
def local_rank(
    model: torch.nn.Module,
    x: torch.Tensor,
    eps: float = 1e-2,
    features: str = "pre",
    reduction: str = "mean",
    budget: int = DEFAULT_BUDGET,
) -> torch.Tensor:
    """Local rank of each hidden layer's features at the inputs ``x`` (module docstring).

    Returns a float tensor of shape ``(L,)`` with ``E_x #{sigma_j(J_l(x)) > eps}`` for
    ``reduction="mean"`` (``"sum"`` sums over points), or the integer counts of shape
    ``(N, L)`` for ``reduction="none"``.
    """
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}.")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}.")
    if not (isinstance(eps, (int, float)) and eps > 0):
        raise ValueError(f"eps (the singular-value threshold) must be a positive number, got {eps!r}.")
    net = parse_network(model)
    x = check_inputs(net, x)
    N, L = x.shape[0], net.depth
    counts = torch.zeros(N, L, dtype=torch.long, device=net.device)
    if features == "pre":
        layer1 = int((torch.linalg.svdvals(net.weights[0].to(torch.float64)) > eps).sum())
    for sl in chunks(N, chunk_size(net, budget)):
        for l, z, T in hidden_pass(net, x[sl]):
            if features == "pre" and l == 1:
                counts[sl, 0] = layer1
                continue
            M = T if features == "pre" else T * net.derivative(l, z).unsqueeze(1)
            counts[sl, l - 1] = count_singular_values_above(M, eps)
    if reduction == "none":
        return counts
    counts = counts.to(net.dtype)
    return counts.mean(dim=0) if reduction == "mean" else counts.sum(dim=0)
