"""lctools' multilayer perceptron: an ``nn.Sequential`` of Linear and ReLU/LeakyReLU layers."""
from __future__ import annotations

import copy
import math
from typing import Sequence

import torch
from torch import nn

from ._jacobian import hidden_pass
from ._network import check_inputs, chunks, parse_network
from .validation import as_float, as_int, check_bool, check_slope, check_widths

__all__ = ["MLP", "perturb_biases", "preactivations", "build_seeded", "linear_layers", "ACTIVATIONS", "INITS"]

ACTIVATIONS = ("relu", "leaky_relu")
INITS = ("pytorch", "he")


class MLP(nn.Sequential):
    """A fully connected network ``N(x) = W_{L+1} sigma(z_L) + b_{L+1}`` with
    ``z_l = W_l sigma(z_{l-1}) + b_l`` and ``z_1 = W_1 x + b_1``.

    It is a plain ``nn.Sequential`` (``Linear, act, Linear, act, ..., Linear``), so every
    lctools function and any PyTorch code can use it directly.

    Parameters
    ----------
    in_dim
        Input dimension ``n_0``.
    widths
        Hidden widths ``[n_1, ..., n_L]`` (at least one).
    out_dim
        Output dimension.
    activation
        ``"relu"`` or ``"leaky_relu"``.
    negative_slope
        Slope on the negative side for ``"leaky_relu"``.
    flatten
        Put an ``nn.Flatten`` in front (for image inputs).
    init
        ``"pytorch"`` (PyTorch's default uniform initialisation) or ``"he"`` (weights
        ``N(0, 2 / n_{l-1})``, which keeps pre-activations at a constant scale with depth).
    bias_std
        If given, biases are drawn ``N(0, bias_std^2)`` (PyTorch's default biases are
        tiny for wide layers, which puts every zero set close to the origin).
    seed
        If given, the initial parameters are drawn from ``torch.Generator().manual_seed(seed)``
        (layer by layer, weights then biases) instead of torch's global random state.
    """

    def __init__(
        self,
        in_dim: int,
        widths: Sequence[int],
        out_dim: int,
        activation: str = "relu",
        negative_slope: float = 0.01,
        flatten: bool = False,
        init: str = "pytorch",
        bias_std: float | None = None,
        seed: int | None = None,
    ):
        widths = check_widths(widths)
        in_dim, out_dim = as_int(in_dim, "in_dim", low=1), as_int(out_dim, "out_dim", low=1)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}.")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}.")
        if activation == "leaky_relu":
            negative_slope = check_slope(negative_slope)
        flatten = check_bool(flatten, "flatten")
        if bias_std is not None:
            bias_std = as_float(bias_std, "bias_std", low=0.0)
        if seed is not None:
            seed = as_int(seed, "seed")
        layers: list[nn.Module] = [nn.Flatten()] if flatten else []
        dims = [int(in_dim), *widths]
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            layers.append(nn.Linear(d_in, d_out))
            layers.append(nn.ReLU() if activation == "relu" else nn.LeakyReLU(negative_slope))
        layers.append(nn.Linear(dims[-1], int(out_dim)))
        super().__init__(*layers)
        gen = None if seed is None else torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for m in self:
                if not isinstance(m, nn.Linear):
                    continue
                bound = 1.0 / math.sqrt(m.in_features)
                if init == "he":
                    m.weight.normal_(0.0, math.sqrt(2.0 / m.in_features), generator=gen)
                elif gen is not None:  # PyTorch's default distributions, drawn from the seed
                    m.weight.uniform_(-bound, bound, generator=gen)
                if bias_std is not None:
                    m.bias.normal_(0.0, bias_std, generator=gen)
                elif gen is not None:
                    m.bias.uniform_(-bound, bound, generator=gen)
        self.in_dim, self.widths, self.out_dim = int(in_dim), widths, int(out_dim)
        self.activation, self.negative_slope = activation, float(negative_slope)

    def __getitem__(self, idx):
        # Slices are plain nn.Sequential (nn.Sequential would rebuild them with MLP's constructor).
        if isinstance(idx, slice):
            return nn.Sequential(*list(self)[idx])
        return super().__getitem__(idx)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, widths={self.widths}, out_dim={self.out_dim}, activation={self.activation!r}"

    @property
    def hidden_layers(self) -> list[nn.Linear]:
        """The Linear layers that produce the hidden pre-activations ``z_1..z_L``."""
        return linear_layers(self)[:-1]


def linear_layers(model: nn.Module) -> list:
    """The ``nn.Linear`` layers of a sequential model, in order (``W_1, ..., W_{L+1}``): the one
    way lctools lists them.

    Example
    -------
    >>> len(linear_layers(MLP(2, [4, 4], 1)))
    3
    """
    return [m for m in model if isinstance(m, nn.Linear)]


def build_seeded(factory, seed: int) -> nn.Module:
    """``factory()`` called with torch's RNG seeded by ``seed``, inside ``torch.random.fork_rng``
    (the global RNG state, CUDA's included, is left alone): the initial model is a function of
    the seed.

    Example
    -------
    >>> import torch
    >>> a, b = (build_seeded(lambda: torch.nn.Linear(2, 1), 7) for _ in range(2))
    >>> torch.equal(a.weight, b.weight)
    True
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        return factory()


def perturb_biases(model: nn.Module, sigma: float, generator: torch.Generator | None = None) -> nn.Module:
    """A copy of ``model`` whose hidden biases carry Gaussian noise: ``b_l <- b_l + eps_l``,
    ``eps_l ~ N(0, sigma^2 I)`` for ``l = 1..L`` (the output bias is left alone).

    This is the bias noise under which the nonlinear locus becomes a random set with a
    density (book/notation.md); exact partitions of such copies give the expected boundary
    length that local complexity estimates.  ``sigma`` must be a finite number ``>= 0``.

    Example
    -------
    >>> noisy = perturb_biases(MLP(2, [4], 1, seed=0), 0.1, torch.Generator().manual_seed(0))
    >>> isinstance(noisy, MLP)
    True
    """
    sigma = as_float(sigma, "sigma", low=0.0, what=" (the bias-noise scale s)")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}.")
    net = parse_network(model)
    noisy = copy.deepcopy(model)
    hidden = linear_layers(noisy)[: net.depth]
    with torch.no_grad():
        for layer in hidden:
            if layer.bias is None:
                raise ValueError("perturb_biases needs nn.Linear layers with biases (bias=True).")
            eps = torch.randn(layer.bias.shape, generator=generator, dtype=layer.bias.dtype)
            layer.bias.add_(sigma * eps.to(layer.bias.device))
    return noisy


@torch.no_grad()
def preactivations(model: nn.Module, x: torch.Tensor, batch_size: int = 65536) -> list:
    """The hidden pre-activations ``z_l(x) = W_l sigma(z_{l-1}(x)) + b_l`` of every hidden layer.

    Parameters
    ----------
    model
        ``lctools.MLP`` or an ``nn.Sequential`` of Linear and ReLU/LeakyReLU layers.
    x
        Inputs ``(N, n_0)`` (or ``(N, ...)`` for a model that starts with ``nn.Flatten``).
    batch_size
        Points per forward pass (bounds memory).

    Returns
    -------
    list of torch.Tensor
        ``[z_1, ..., z_L]``, ``z_l`` of shape ``(N, n_l)``, detached, on the model's device.

    Example
    -------
    >>> import torch, lctools
    >>> zs = lctools.preactivations(lctools.MLP(2, [8, 4], 1, seed=0), torch.rand(5, 2))
    >>> [tuple(z.shape) for z in zs]
    [(5, 8), (5, 4)]
    """
    net = parse_network(model)
    x = check_inputs(net, x)
    size = as_int(batch_size, "batch_size", low=1)
    parts = [[] for _ in range(net.depth)]
    for sl in chunks(x.shape[0], size):
        for layer in hidden_pass(net, x[sl], jacobians=False):
            parts[layer.l - 1].append(layer.z)
    return [torch.cat(p) for p in parts]
