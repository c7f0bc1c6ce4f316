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

**Precision.**  Squaring is harmless only while ``eps^2`` stands well above the rounding
of the Gram matrix (about ``1e-16 ||J||_F^2`` in float64).  When ``eps^2 < 1e-10
||J||_F^2`` (``eps`` below ``1e-5 ||J||_F``), the count is taken from the singular values
themselves (``torch.linalg.svdvals`` in float64) instead.  Every count is at most
``min(n_l, n_0)``, the number of singular values of ``J_l``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional

import torch

from ._jacobian import DEFAULT_BUDGET, chunk_size, hidden_pass, row_norms
from ._network import check_inputs, chunks, parse_network
from .complexity import gaussian_density
from .validation import as_int, check_eps, check_reduction, check_sigma, reduce

__all__ = ["local_rank", "local_rank_bound", "RankBound", "count_singular_values_above"]

FEATURES = ("pre", "post")

# below this ratio eps^2 / ||M||_F^2 the Gram route loses the count to rounding: use the SVD
GRAM_RELATIVE_FLOOR = 1e-10


def _needs_svd(M: torch.Tensor, eps: float, frobenius2: Optional[torch.Tensor] = None) -> bool:
    """Whether ``eps^2`` is too close to the float64 rounding of ``M``'s Gram matrix.
    ``frobenius2``: the squared Frobenius norms of the batch, when the caller has them."""
    if frobenius2 is None:
        frobenius2 = M.detach().to(torch.float64).square().sum(dim=(-2, -1))
    scale = float(frobenius2.max()) if frobenius2.numel() else 0.0
    return eps * eps < GRAM_RELATIVE_FLOOR * scale


def _count_by_svd(M: torch.Tensor, eps: float) -> torch.Tensor:
    return (torch.linalg.svdvals(M.to(torch.float64)) > eps).sum(dim=-1)


def _positive_inertia(A: torch.Tensor) -> torch.Tensor:
    """Number of positive eigenvalues of each symmetric matrix in the batch ``A`` (B, k, k),
    from the block-diagonal ``D`` of ``torch.linalg.ldl_factor_ex`` (LAPACK ``sytrf``, lower).

    A 1x1 block contributes 1 if positive; a 2x2 block ``[[a, b], [b, c]]`` contributes 1 if
    its determinant is negative and 2 if it is positive with ``a > 0`` (0 otherwise).
    LAPACK marks a 2x2 block at ``(k, k+1)`` by negative ``ipiv[k] = ipiv[k+1]``.

    CUDA batches are counted on the CPU: cuSOLVER factors the matrices one at a time and the
    block scan below is a loop over ``k``, so on a GPU both are bound by kernel launches
    (benchmarks/RESULTS.md has the H100 timings before and after this choice).
    """
    if A.device.type != "cpu":
        return _positive_inertia(A.cpu()).to(A.device)
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


def _smaller_gram(M: torch.Tensor) -> torch.Tensor:
    """The smaller of ``M M^T`` and ``M^T M`` for a batch ``M`` (B, m, n), in float64: its
    eigenvalues are the squared singular values of ``M``."""
    M = M.to(torch.float64)
    return M @ M.transpose(-1, -2) if M.shape[-2] <= M.shape[-1] else M.transpose(-1, -2) @ M


def count_singular_values_above(M: torch.Tensor, eps: float) -> torch.Tensor:
    """``#{ singular values of M[b] > eps }`` for a batch ``M`` of shape (B, m, n).

    Computed from the inertia of ``G - eps^2 I`` with ``G`` the smaller Gram matrix of ``M``
    (in float64), or, when ``eps^2`` nears the rounding of ``G`` (module docstring), from
    the singular values themselves.  Returns an int64 tensor ``(B,)``, each entry at most
    ``min(m, n)``.

    Example
    -------
    >>> import torch
    >>> M = torch.diag(torch.tensor([3.0, 1.0, 1e-3])).unsqueeze(0)
    >>> count_singular_values_above(M, 1e-2).tolist()
    [2]
    """
    if not isinstance(M, torch.Tensor) or M.dim() != 3:
        raise ValueError(f"M must be a batch of matrices, a tensor of shape (B, m, n); got "
                         f"{tuple(M.shape) if isinstance(M, torch.Tensor) else type(M).__name__}.")
    eps = check_eps(eps)
    if M.is_complex() or not bool(torch.isfinite(M).all()):
        raise ValueError("M must be real and finite.")
    if M.shape[0] == 0 or min(M.shape[1:]) == 0:
        return torch.zeros(M.shape[0], dtype=torch.long, device=M.device)
    if _needs_svd(M, eps):
        return _count_by_svd(M, eps)
    G = _smaller_gram(M)
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
    matrices whose inertia is counted shrink to the number of active neurons.  When ``eps``
    is tiny against ``||J_l||`` the count comes from float64 singular values (module
    docstring); counts never exceed ``min(n_l, n_0)``.

    Example
    -------
    >>> import torch, lctools
    >>> net = lctools.MLP(2, [16, 16], 1, seed=0)
    >>> lctools.local_rank(net, torch.rand(100, 2), eps=1e-8).max() <= 2
    tensor(True)
    """
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}.")
    check_reduction(reduction)
    eps, budget = check_eps(eps), as_int(budget, "budget", low=1)
    net = parse_network(model)
    x = check_inputs(net, x)
    N, L = x.shape[0], net.depth
    counts = torch.zeros(N, L, dtype=torch.long, device=net.device)
    caps = [min(n, net.in_dim) for n in net.widths]  # the number of singular values of J_l
    if features == "pre":
        layer1 = int((torch.linalg.svdvals(net.weights[0].to(torch.float64)) > eps).sum())
        grams = [None] + [_gram_if_definite(W) for W in net.weights[1:L]]
    for sl in chunks(N, chunk_size(net, budget)):
        prev = None
        for l, z, T, d in hidden_pass(net, x[sl]):
            if features == "pre" and l == 1:
                counts[sl, 0] = layer1
            elif _needs_svd(T, eps):  # eps^2 near the rounding of the Gram matrices
                counts[sl, l - 1] = _count_by_svd(T if features == "pre" else T * d.unsqueeze(1), eps)
            elif features == "post":
                counts[sl, l - 1] = count_singular_values_above(_active_columns(T, d)[0], eps)
            elif grams[l - 1] is not None:
                counts[sl, l - 1] = _count_through_layer(*_active_columns(*prev), grams[l - 1], eps)
            else:
                counts[sl, l - 1] = count_singular_values_above(T, eps)
            counts[sl, l - 1].clamp_(max=caps[l - 1])
            prev = (T, d)
    if reduction == "none":
        return counts
    return reduce(counts.to(net.dtype), reduction)


# ----------------------------------------------------------------------------- rank bound


@dataclass
class RankBound:
    """Per-layer local complexity and its local-rank upper bound (:func:`local_rank_bound`).

    All tensors have shape ``(L,)`` (one entry per hidden layer ``l = 1..L``), dtype float64,
    and are averages over the sample ``x`` (the empirical distribution ``p``).  With
    ``C_bias = 1 / (s sqrt(2 pi))``, ``J_l(x) = dz_l/dx`` (``n_l x n_0``), its singular values
    ``sigma_1(x) >= ... >= sigma_{m_l}(x)``, ``m_l = min(n_l, n_0)`` and
    ``r(x) = #{j : sigma_j(x) > eps}``, the chain of inequalities is

        lc <= row_norm_term <= frobenius_term <= pointwise_rank_term <= bound.

    Attributes
    ----------
    lc
        ``E_x sum_i phi_s(z_{l,i}(x)) ||grad_x z_{l,i}(x)||``, the noiseless plug-in local
        complexity of layer ``l`` (``local_complexity(..., noise_draws=0, per_layer=True)``).
    row_norm_term
        ``C_bias E_x sum_i ||grad_x z_{l,i}(x)||`` (since ``phi_s <= C_bias``).
    frobenius_term
        ``C_bias sqrt(n_l) E_x ||J_l(x)||_F`` (Cauchy-Schwarz over the ``n_l`` rows).
    pointwise_rank_term
        ``C_bias sqrt(n_l) E_x sqrt(r(x) sigma_1(x)^2 + (m_l - r(x)) eps^2)``.
    bound
        ``C_bias sqrt(n_l) sqrt(LR_l S_l^2 + (m_l - LR_l) eps^2)`` (Jensen), the bound in
        terms of the local rank alone and the largest singular value ``S_l``.
    local_rank
        ``LR_l^eps = E_x r(x)`` (pre-activation features, as :func:`local_rank`).
    sigma_max
        ``S_l = max_x sigma_1(J_l(x))`` over the sample.
    m
        ``m_l = min(n_l, n_0)``, the number of singular values of ``J_l``.
    widths
        ``[n_1, ..., n_L]``.
    c_bias
        ``C_bias = sup phi_s = 1 / (s sqrt(2 pi))``.
    sigma, eps
        The noise scale ``s`` and the singular-value threshold ``eps``.
    """

    lc: torch.Tensor
    row_norm_term: torch.Tensor
    frobenius_term: torch.Tensor
    pointwise_rank_term: torch.Tensor
    bound: torch.Tensor
    local_rank: torch.Tensor
    sigma_max: torch.Tensor
    m: torch.Tensor
    widths: List[int]
    c_bias: float
    sigma: float
    eps: float

    @property
    def generic_bound(self) -> torch.Tensor:
        """``C_bias sqrt(n_l m_l) S_l``: the same bound with no rank information
        (every singular value counted as ``S_l``); ``bound / generic_bound ~ sqrt(LR_l / m_l)``."""
        n = torch.tensor(self.widths, dtype=self.bound.dtype, device=self.bound.device)
        return self.c_bias * torch.sqrt(n * self.m.to(self.bound.dtype)) * self.sigma_max

    @property
    def total_lc(self) -> float:
        """``sum_l lc_l``, the plug-in local complexity of the whole network."""
        return float(self.lc.sum())

    @property
    def total_bound(self) -> float:
        """``sum_l bound_l``, an upper bound on :attr:`total_lc`."""
        return float(self.bound.sum())

    def holds(self, rtol: float = 1e-9) -> bool:
        """Whether every link of the chain ``lc <= ... <= bound`` holds in every layer
        (up to a relative rounding tolerance ``rtol``)."""
        chain = [self.lc, self.row_norm_term, self.frobenius_term, self.pointwise_rank_term, self.bound]
        return all(bool((a <= b * (1 + rtol) + 1e-300).all()) for a, b in zip(chain[:-1], chain[1:]))


@torch.no_grad()
def local_rank_bound(
    model: torch.nn.Module,
    x: torch.Tensor,
    sigma: float,
    eps: float = 1e-2,
    budget: int = DEFAULT_BUDGET,
) -> RankBound:
    """Per-layer plug-in local complexity and its upper bound by the local rank.

    For hidden layer ``l`` (width ``n_l``, input width ``n_0``, ``m_l = min(n_l, n_0)``), with
    ``C_bias = sup phi_s = 1 / (s sqrt(2 pi))``, ``grad_x z_{l,i}`` the ``i``-th row of
    ``J_l = dz_l/dx``, ``r(x) = #{sigma_j(J_l(x)) > eps}`` and ``S_l = max_x sigma_1(J_l(x))``:

        LC_l := E_x sum_i phi_s(z_{l,i}) ||grad_x z_{l,i}||
             <= C_bias E_x sum_i ||grad_x z_{l,i}||                         (phi_s <= C_bias)
             <= C_bias sqrt(n_l) E_x ||J_l(x)||_F                          (Cauchy-Schwarz)
             <= C_bias sqrt(n_l) E_x sqrt(r(x) sigma_1(x)^2 + (m_l - r(x)) eps^2)
             <= C_bias sqrt(n_l) sqrt(LR_l^eps S_l^2 + (m_l - LR_l^eps) eps^2)     (Jensen)

    since ``||J||_F^2 = sum_j sigma_j^2`` has ``r`` terms at most ``sigma_1^2`` and
    ``m_l - r`` terms at most ``eps^2``.  Low local rank (few singular values above ``eps``)
    forces low local complexity.  Returns a :class:`RankBound` holding every term of the
    chain, the local rank ``LR_l^eps = E_x r(x)`` and ``S_l``; expectations are means over
    the rows of ``x``.

    ``lc`` equals ``local_complexity(model, x, sigma, noise_draws=0, per_layer=True)`` and
    ``local_rank`` equals ``local_rank(model, x, eps)`` (up to ties at ``eps``).  The
    singular values are computed exactly (up to rounding) from the eigenvalues of the
    smaller Gram matrix of the reduced Jacobian (``_jacobian``; same singular values as
    ``J_l``), in float64; results are float64 tensors on the model's device.

    Example
    -------
    >>> import torch, lctools
    >>> b = local_rank_bound(lctools.MLP(2, [8, 8], 1, seed=0), torch.rand(50, 2), sigma=0.5)
    >>> b.holds()
    True
    """
    sigma, eps, budget = check_sigma(sigma), check_eps(eps), as_int(budget, "budget", low=1)
    net = parse_network(model)
    x = check_inputs(net, x)
    N, L, n0 = x.shape[0], net.depth, net.in_dim
    f64 = dict(dtype=torch.float64, device=net.device)
    widths = list(net.widths)
    m = torch.tensor([min(n, n0) for n in widths], dtype=torch.long, device=net.device)
    c_bias = 1.0 / (sigma * math.sqrt(2 * math.pi))
    sums = {k: torch.zeros(L, **f64) for k in ("lc", "rows", "frob", "pointwise", "rank")}
    smax = torch.zeros(L, **f64)

    def spectrum(T: torch.Tensor, gnorm: torch.Tensor) -> torch.Tensor:
        """Singular values (B, min(r, n_l)) of a float64 batch of reduced Jacobians with row
        norms ``gnorm``, via eigvalsh of the smaller Gram matrix, or svdvals when eps^2 nears
        its rounding (module docstring; ``||T||_F^2`` is the sum of the squared row norms)."""
        if _needs_svd(T, eps, frobenius2=gnorm.square().sum(dim=1)):
            return torch.linalg.svdvals(T)
        return torch.linalg.eigvalsh(_smaller_gram(T)).clamp_min(0).sqrt()

    for sl in chunks(N, chunk_size(net, budget)):
        for l, z, T, _ in hidden_pass(net, x[sl]):
            B, i = z.shape[0], l - 1
            # layer 1: J_1 = W_1 at every x, one spectrum for the batch
            T64 = T[:1].to(torch.float64) if T.stride(0) == 0 else T.to(torch.float64)
            gnorm = row_norms(T64)  # (B, n_l), or (1, n_l) for layer 1
            sv = spectrum(T64, gnorm)
            if T.stride(0) == 0:
                gnorm, sv = gnorm.expand(B, -1), sv.expand(B, -1)
            r = (sv > eps).sum(dim=1).to(torch.float64)
            s1 = sv.max(dim=1).values
            sums["lc"][i] += (gaussian_density(z.to(torch.float64), sigma) * gnorm).sum()
            sums["rows"][i] += gnorm.sum()
            sums["frob"][i] += torch.sqrt((gnorm**2).sum(dim=1)).sum()
            sums["pointwise"][i] += torch.sqrt(r * s1**2 + (m[i] - r) * eps**2).sum()
            sums["rank"][i] += r.sum()
            smax[i] = torch.maximum(smax[i], s1.max())
    mean = {k: v / N for k, v in sums.items()}
    root_n = torch.sqrt(torch.tensor(widths, **f64))
    LR = mean["rank"]
    return RankBound(
        lc=mean["lc"],
        row_norm_term=c_bias * mean["rows"],
        frobenius_term=c_bias * root_n * mean["frob"],
        pointwise_rank_term=c_bias * root_n * mean["pointwise"],
        bound=c_bias * root_n * torch.sqrt(LR * smax**2 + (m - LR) * eps**2),
        local_rank=LR,
        sigma_max=smax,
        m=m,
        widths=widths,
        c_bias=c_bias,
        sigma=float(sigma),
        eps=float(eps),
    )
