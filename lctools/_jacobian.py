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

The output Jacobian ``J_x N = W_{L+1} D_L W_L ... D_1 W_1`` is accumulated from the output
side by :func:`backward_pass` (``A_L = W_{L+1}``, ``A_{l-1} = (A_l D_l) W_l``): with few
outputs this costs ``out x n_l x n_{l-1}`` per point and layer.  These two passes are the
only code in lctools that walks a network's layers.
"""
from __future__ import annotations

from typing import Iterator, List, NamedTuple, Optional, Tuple

import torch

from ._network import Network

__all__ = ["DEFAULT_BUDGET", "Layer", "input_factor", "chunk_size", "hidden_pass", "backward_pass", "row_norms"]

# Elements of the reduced Jacobian held at once; the chunk size follows from it.
# 2**25 float32 elements = 128 MiB per tensor.
DEFAULT_BUDGET = 2**25


def input_factor(net: Network) -> torch.Tensor:
    """``R`` of shape ``(r, n_1)`` with ``W_1 = R^T Q^T`` and ``Q`` orthonormal (see module doc).

    Example
    -------
    >>> import lctools
    >>> from lctools._network import parse_network
    >>> input_factor(parse_network(lctools.MLP(5, [3], 1))).shape  # r = min(n_0, n_1) = 3
    torch.Size([3, 3])
    """
    W1 = net.weights[0]
    n1, n0 = W1.shape
    if n0 <= n1:
        return W1.T
    return torch.linalg.qr(W1.T, mode="reduced").R


def chunk_size(net: Network, budget: int = DEFAULT_BUDGET) -> int:
    """Points per chunk so that one reduced Jacobian has at most ``budget`` elements.

    Example
    -------
    >>> import lctools
    >>> from lctools._network import parse_network
    >>> chunk_size(parse_network(lctools.MLP(2, [8], 1)), budget=160)
    10
    """
    r = min(net.in_dim, net.widths[0])
    return max(1, budget // (r * max(net.widths)))


class Layer(NamedTuple):
    """One hidden layer ``l`` of :func:`hidden_pass`: pre-activations ``z`` (N, n_l), the
    transposed reduced Jacobian ``T`` (N, r, n_l) or ``None``, and the slopes
    ``d = sigma'(z)`` (N, n_l)."""

    l: int
    z: torch.Tensor
    T: Optional[torch.Tensor]
    d: torch.Tensor


def hidden_pass(
    net: Network,
    x: torch.Tensor,
    noise: Optional[List[torch.Tensor]] = None,
    jacobians: bool = True,
) -> Iterator[Layer]:
    """Yield a :class:`Layer` ``(l, z_l, T_l, d_l)`` for the hidden layers ``l = 1..L`` of one
    batch ``x`` (N, n_0), with ``d_l = sigma'(z_l)``.

    ``noise`` (optional) holds one tensor per hidden layer, broadcastable to ``(N, n_l)``,
    added to the bias: ``z_l = W_l sigma(z_{l-1}) + b_l + eps_l``.  ``T_l`` (N, r, n_l) is the
    transposed reduced Jacobian of ``z_l`` (module doc); it is ``None`` when
    ``jacobians=False``.  The factor ``R`` is computed once per call.

    Example
    -------
    >>> import torch, lctools
    >>> from lctools._network import parse_network
    >>> [tuple(layer.T.shape) for layer in hidden_pass(parse_network(lctools.MLP(2, [8, 4], 1)), torch.rand(5, 2))]
    [(5, 2, 8), (5, 2, 4)]
    """
    R = input_factor(net) if jacobians else None
    h, T, d = x, None, None
    for l in range(1, net.depth + 1):
        W, b = net.weights[l - 1], net.biases[l - 1]
        z = torch.addmm(b, h, W.T)
        if noise is not None:
            z = z + noise[l - 1]
        if jacobians:
            T = R.expand(x.shape[0], *R.shape) if l == 1 else torch.matmul(T * d.unsqueeze(1), W.T)
        d = net.derivative(l, z)
        yield Layer(l, z, T, d)
        h = net.activation(l, z)


def backward_pass(net: Network, slopes: List[torch.Tensor]) -> Iterator[Tuple[int, torch.Tensor]]:
    """The output Jacobian from the output side: yield ``(l, A_l)`` for ``l = L, ..., 1`` with
    ``A_l = dN / d sigma(z_l)`` (N, out, n_l), ``A_L = W_{L+1}``, ``A_{l-1} = (A_l D_l) W_l``,
    and finally ``(0, J_x N)`` (N, out, n_0).  ``slopes[l - 1]`` is ``d_l = sigma'(z_l)``.

    Example
    -------
    >>> import torch, lctools
    >>> from lctools._network import parse_network
    >>> net = parse_network(lctools.MLP(2, [8], 3))
    >>> d = [layer.d for layer in hidden_pass(net, torch.rand(5, 2), jacobians=False)]
    >>> [(l, tuple(A.shape)) for l, A in backward_pass(net, d)]
    [(1, (5, 3, 8)), (0, (5, 3, 2))]
    """
    n = slopes[0].shape[0]
    A = net.weights[-1].expand(n, *net.weights[-1].shape)
    for l in range(net.depth, 0, -1):
        yield l, A
        A = (A * slopes[l - 1].unsqueeze(1)) @ net.weights[l - 1]
    yield 0, A


def _sqrt(total: torch.Tensor, differentiable: bool) -> torch.Tensor:
    """``sqrt(total)``; with ``differentiable`` its gradient is 0 (not NaN) where ``total = 0``."""
    if not differentiable:
        return total.sqrt()
    positive = total > 0
    return torch.where(positive, torch.where(positive, total, torch.ones_like(total)).sqrt(), torch.zeros_like(total))


def row_norms(T: torch.Tensor, dtype: Optional[torch.dtype] = None, differentiable: bool = False) -> torch.Tensor:
    """``||grad_x z_{l,i}||`` for every point and neuron, shape ``(N, n_l)``: the norms of ``T``
    (N, r, n_l) over ``r`` (optionally computed in ``dtype``).  Layer 1's ``T`` is ``R``
    expanded over the batch (``grad z_{1,i} = W_1[i]`` at every ``x``): its norms are taken once.

    Example
    -------
    >>> import torch
    >>> row_norms(torch.tensor([[[3.0], [4.0]]]))
    tensor([[5.]])
    """
    if T.stride(0) == 0:
        return row_norms(T[0].unsqueeze(0).to(dtype).contiguous(), None, differentiable).expand(T.shape[0], -1)
    T = T if dtype is None else T.to(dtype)
    if T.shape[1] > 16:  # (its gradient at a zero row is 0)
        return torch.linalg.vector_norm(T, dim=1)
    total = T[:, 0, :].square()  # few input directions (e.g. 2D inputs): a short loop is fastest
    for j in range(1, T.shape[1]):
        total = total.addcmul(T[:, j, :], T[:, j, :])
    return _sqrt(total, differentiable)
