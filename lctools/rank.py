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


def _active_columns(M: torch.Tensor, d: torch.Tensor):
    """Columns of ``M * d`` (``M`` (N, r, n), ``d`` (N, n) the slopes sigma'(z)) with nonzero
    ``d``, packed to the front: ``(M_A, idx)`` of shapes ``(N, r, a)`` and ``(N, a)`` where
    ``a`` is the batch's largest count of active neurons (padding columns are zero)."""
    a = max(int((d != 0).sum(dim=1).max()), 1)
    d_sorted, idx = torch.sort(d.abs(), dim=1, descending=True, stable=True)
    idx = idx[:, :a]
    cols = torch.gather(M, 2, idx.unsqueeze(1).expand(-1, M.shape[1], -1))
    return cols * torch.gather(d, 1, idx).unsqueeze(1), idx


def _count_through_layer(M_A: torch.Tensor, idx: torch.Tensor, H: torch.Tensor, eps: float) -> torch.Tensor:
    """``#{sigma_j(M_A W_A^T) > eps}`` for ``W_A`` the active columns of the next layer's
    weight, without forming the product's Gram matrix.

    With ``K = M_A^T M_A`` and ``H_A = (W^T W)_{A,A}`` (positive definite), the squared
    singular values are the eigenvalues of ``K H_A``, and ``H_A K H_A - eps^2 H_A =
    H_A (K - eps^2 H_A^{-1}) H_A`` is congruent to a matrix with exactly as many positive
    eigenvalues as ``K H_A`` has above ``eps^2``: all ``a x a`` instead of ``n x n``.
    """
    M_A = M_A.to(torch.float64)
    K = M_A.transpose(-1, -2) @ M_A
    H_A = H[idx.unsqueeze(2), idx.unsqueeze(1)]
    return _positive_inertia(H_A @ K @ H_A - (eps**2) * H_A)


def _gram_if_definite(W: torch.Tensor):
    """``W^T W`` in float64 if it is safely positive definite (full column rank), else None."""
    H = W.to(torch.float64).T @ W.to(torch.float64)
    ev = torch.linalg.eigvalsh(H)
    return H if ev[0] > 1e-10 * ev[-1] else None


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

    Only the active neurons matter: ``J_l = W_l D_{l-1} J_{l-1}`` (pre) and ``D_l J_l``
    (post) involve the columns of neurons with ``sigma' != 0`` only, so for ReLU the
    matrices whose inertia is counted shrink to the number of active neurons.
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
        grams = [None] + [_gram_if_definite(W) for W in net.weights[1:L]]
    for sl in chunks(N, chunk_size(net, budget)):
        prev = None
        for l, z, T in hidden_pass(net, x[sl]):
            d = net.derivative(l, z)
            if features == "post":
                counts[sl, l - 1] = count_singular_values_above(_active_columns(T, d)[0], eps)
            elif l == 1:
                counts[sl, 0] = layer1
            elif grams[l - 1] is not None:
                counts[sl, l - 1] = _count_through_layer(*_active_columns(*prev), grams[l - 1], eps)
            else:
                counts[sl, l - 1] = count_singular_values_above(T, eps)
            prev = (T, d)
    if reduction == "none":
        return counts
    counts = counts.to(net.dtype)
    return counts.mean(dim=0) if reduction == "mean" else counts.sum(dim=0)
