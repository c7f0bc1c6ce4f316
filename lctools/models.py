"""lctools' multilayer perceptron: an ``nn.Sequential`` of Linear and ReLU/LeakyReLU layers."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

ACTIVATIONS = ("relu", "leaky_relu")
INITS = ("pytorch", "he")


class MLP(nn.Sequential):
    """A fully connected network ``N(x) = W_{L+1} sigma(z_L) + b_{L+1}`` with
    ``z_l = W_l sigma(z_{l-1}) + b_l`` and ``z_1 = W_1 x + b_1``.

    It is a plain ``nn.Sequential`` (``Linear, act, Linear, act, ..., Linear``), so every
    lctools function and any PyTorch code can use it directly.

    Parameters
    ----------
    in_dim : input dimension ``n_0``.
    widths : hidden widths ``[n_1, ..., n_L]`` (at least one).
    out_dim : output dimension.
    activation : ``"relu"`` or ``"leaky_relu"``.
    negative_slope : slope on the negative side for ``"leaky_relu"``.
    flatten : put an ``nn.Flatten`` in front (for image inputs).
    init : ``"pytorch"`` (PyTorch's default uniform initialisation) or ``"he"`` (weights
        ``N(0, 2 / n_{l-1})``, which keeps pre-activations at a constant scale with depth).
    bias_std : if given, biases are drawn ``N(0, bias_std^2)`` (PyTorch's default biases are
        tiny for wide layers, which puts every zero set close to the origin).
    seed : if given, the initial parameters are drawn from ``torch.Generator().manual_seed(seed)``
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
        widths = [int(w) for w in widths]
        if in_dim < 1 or out_dim < 1 or not widths or min(widths) < 1:
            raise ValueError(
                f"MLP needs in_dim >= 1, out_dim >= 1 and at least one hidden width >= 1; "
                f"got in_dim={in_dim}, widths={widths}, out_dim={out_dim}."
            )
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}.")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}.")
        if bias_std is not None and not bias_std >= 0:
            raise ValueError(f"bias_std must be >= 0, got {bias_std!r}.")
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
        return [m for m in self if isinstance(m, nn.Linear)][:-1]


def build_seeded(factory, seed: int) -> nn.Module:
    """``factory()`` called with torch's RNG seeded by ``seed``, inside ``torch.random.fork_rng``
    (the global RNG state, CUDA's included, is left alone): the initial model is a function of
    the seed."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        return factory()


def perturb_biases(model: nn.Module, sigma: float, generator: torch.Generator | None = None) -> nn.Module:
    """A copy of ``model`` whose hidden biases carry Gaussian noise: ``b_l <- b_l + eps_l``,
    ``eps_l ~ N(0, sigma^2 I)`` for ``l = 1..L`` (the output bias is left alone).

    This is the bias noise under which the nonlinear locus becomes a random set with a
    density (book/notation.md); exact partitions of such copies give the expected boundary
    length that local complexity estimates.
    """
    import copy

    from ._network import parse_network

    net = parse_network(model)
    noisy = copy.deepcopy(model)
    hidden = [m for m in noisy if isinstance(m, nn.Linear)][: net.depth]
    with torch.no_grad():
        for layer in hidden:
            if layer.bias is None:
                raise ValueError("perturb_biases needs nn.Linear layers with biases (bias=True).")
            eps = torch.randn(layer.bias.shape, generator=generator, dtype=layer.bias.dtype)
            layer.bias.add_(sigma * eps.to(layer.bias.device))
    return noisy
