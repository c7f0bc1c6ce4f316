"""One forward pass that carries every hidden layer's input Jacobian, in reduced form.

Notation (book/notation.md): ``z_1 = W_1 x + b_1``, ``z_l = W_l sigma(z_{l-1}) + b_l``,
``J_l(x) = dz_l/dx = W_l D_{l-1} W_{l-1} ... D_1 W_1`` with ``D_l = diag(sigma'(z_l))``.

**The reduction.**  Factor ``W_1^T = Q R`` with ``Q`` (n_0 x r) having orthonormal columns
and ``R`` (r x n_1), ``r = min(n_0, n_1)`` (a reduced QR; when ``n_0 <= n_1`` simply
``Q = I``, ``R = W_1^T``).  Then

    J_l = P_l W_1 = (P_l R^T) Q^T,        P_l = dz_l/dz_1,

and since ``Q^T`` has orthonormal rows, the *reduced Jacobian* ``Jr_l = P_l R^T``
(``n_l x r``) has the same row norms (``||grad_x z_{l,i}||``), the same singular values and
the same Frobenius norm as ``J_l``.  The input width ``n_0`` drops out of the cost: each
layer costs one batched ``(N r) x n_{l-1} x n_l`` matrix product.  (Equivalently the rows'
norms are given by the Gram matrix ``W_1 W_1^T = R^T R``.)

We store ``T_l = Jr_l^T`` of shape ``(N, r, n_l)`` so that the recursion

    T_1 = R,          T_{l+1} = (T_l * sigma'(z_l)[:, None, :]) @ W_{l+1}^T

is a single large matrix product per layer.
"""
from __future__ import annotations

from typing import Iterator, List, Optional, Tuple

import torch

from ._network import Network

# Elements of the reduced Jacobian held at once; the chunk size follows from it.
# 2**25 float32 elements = 128 MiB per tensor.
DEFAULT_BUDGET = 2**25


def input_factor(net: Network) -> torch.Tensor:
    """``R`` of shape ``(r, n_1)`` with ``W_1 = R^T Q^T`` and ``Q`` orthonormal (see module doc)."""
    W1 = net.weights[0]
    n1, n0 = W1.shape
    if n0 <= n1:
        return W1.T
    return torch.linalg.qr(W1.T, mode="reduced").R


def chunk_size(net: Network, budget: int = DEFAULT_BUDGET) -> int:
    """Points per chunk so that one reduced Jacobian has at most ``budget`` elements."""
    r = min(net.in_dim, net.widths[0])
    return max(1, budget // (r * max(net.widths)))


def hidden_pass(
    net: Network,
    x: torch.Tensor,
    noise: Optional[List[torch.Tensor]] = None,
    jacobians: bool = True,
) -> Iterator[Tuple[int, torch.Tensor, Optional[torch.Tensor]]]:
    """Yield ``(l, z_l, T_l)`` for the hidden layers ``l = 1..L`` of one batch ``x`` (N, n_0).

    ``noise`` (optional) holds one tensor per hidden layer, broadcastable to ``(N, n_l)``,
    added to the bias: ``z_l = W_l sigma(z_{l-1}) + b_l + eps_l``.  ``T_l`` (N, r, n_l) is the
    transposed reduced Jacobian of ``z_l`` (module doc); it is ``None`` when
    ``jacobians=False``.  The factor ``R`` is computed once per call.
    """
    R = input_factor(net) if jacobians else None
    h = x
    T = None
    for l in range(1, net.depth + 1):
        W, b = net.weights[l - 1], net.biases[l - 1]
        z = torch.addmm(b, h, W.T)
        if noise is not None:
            z = z + noise[l - 1]
        if jacobians:
            if l == 1:
                T = R.expand(x.shape[0], *R.shape)
            else:
                T = torch.matmul(T * d_prev.unsqueeze(1), W.T)
        yield l, z, T
        if jacobians:
            d_prev = net.derivative(l, z)
        h = net.activation(l, z)


def row_norms(T: torch.Tensor, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """``||grad_x z_{l,i}||`` for every point and neuron, shape ``(N, n_l)``: the norms of ``T``
    (N, r, n_l) over ``r`` (optionally computed in ``dtype``).  Layer 1's ``T`` is ``R``
    expanded over the batch (``grad z_{1,i} = W_1[i]`` at every ``x``): its norms are taken once."""
    if T.stride(0) == 0:
        return row_norms(T[0].unsqueeze(0).to(dtype).contiguous()).expand(T.shape[0], -1)
    T = T if dtype is None else T.to(dtype)
    if T.shape[1] > 16:
        return torch.linalg.vector_norm(T, dim=1)
    total = T[:, 0, :].square()  # few input directions (e.g. 2D inputs): a short loop is fastest
    for j in range(1, T.shape[1]):
        total = total.addcmul(T[:, j, :], T[:, j, :])
    return total.sqrt()
