"""Reading a ReLU network into the layer list that every lctools computation uses.

lctools works on plain PyTorch models of the form

    [nn.Flatten] -> nn.Linear -> act -> nn.Linear -> act -> ... -> nn.Linear

with ``act`` an ``nn.ReLU`` or ``nn.LeakyReLU`` (lctools' own :class:`~lctools.MLP` is
such an ``nn.Sequential``).  In the notation of the course,

    z_0 = x,   z_l = W_l sigma(z_{l-1}) + b_l  (l = 1..L, no activation on the input),
    N(x) = W_{L+1} sigma(z_L) + b_{L+1}.

:func:`parse_network` turns the model into a :class:`Network`: the weights
``W_1..W_{L+1}``, biases, and the negative slope of each activation (0 for ReLU).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

import torch
from torch import nn

SUPPORTED = (
    "an nn.Sequential of nn.Linear layers with nn.ReLU or nn.LeakyReLU between them "
    "(optionally starting with nn.Flatten), or lctools.MLP"
)


@dataclass
class Network:
    """A ReLU-type MLP as plain tensors.

    Attributes
    ----------
    weights : list of tensors ``W_1, ..., W_{L+1}`` with ``W_l`` of shape ``(n_l, n_{l-1})``.
    biases : list of tensors ``b_1, ..., b_{L+1}``.
    slopes : list of ``L`` negative slopes, one per hidden layer (0.0 for ReLU).
    flatten : whether inputs are flattened first (an ``nn.Flatten`` led the model).
    """

    weights: List[torch.Tensor]
    biases: List[torch.Tensor]
    slopes: List[float]
    flatten: bool = False

    @property
    def depth(self) -> int:
        """Number of hidden layers ``L``."""
        return len(self.slopes)

    @property
    def in_dim(self) -> int:
        return self.weights[0].shape[1]

    @property
    def widths(self) -> List[int]:
        """Hidden widths ``n_1, ..., n_L``."""
        return [w.shape[0] for w in self.weights[:-1]]

    @property
    def num_neurons(self) -> int:
        return sum(self.widths)

    @property
    def device(self) -> torch.device:
        return self.weights[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.weights[0].dtype

    def activation(self, l: int, z: torch.Tensor) -> torch.Tensor:
        """sigma applied to the pre-activations of hidden layer ``l`` (1-based)."""
        a = self.slopes[l - 1]
        return torch.relu(z) if a == 0.0 else torch.nn.functional.leaky_relu(z, a)

    def derivative(self, l: int, z: torch.Tensor) -> torch.Tensor:
        """sigma'(z) for hidden layer ``l``: 1 where z > 0, the negative slope elsewhere."""
        a = self.slopes[l - 1]
        one = torch.ones((), dtype=z.dtype, device=z.device)
        return torch.where(z > 0, one, one * a)


def _describe(module: nn.Module) -> str:
    return module.__class__.__name__


def parse_network(model: nn.Module) -> Network:
    """Read ``model`` into a :class:`Network`, or raise ``ValueError`` saying what is wrong.

    The weights are the model's own parameters (no copy), so results follow the model's
    device and dtype, and gradients flow back to it where a caller wants them.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"expected a torch.nn.Module, got {type(model).__name__}; lctools supports {SUPPORTED}.")
    if isinstance(model, nn.Sequential):
        layers: Sequence[nn.Module] = list(model)
    else:
        raise ValueError(
            f"unsupported model type {type(model).__name__}; lctools supports {SUPPORTED}."
        )
    flatten = False
    if layers and isinstance(layers[0], nn.Flatten):
        flatten = True
        layers = layers[1:]
    if not layers:
        raise ValueError(f"the model has no nn.Linear layer; lctools supports {SUPPORTED}.")

    weights, biases, slopes = [], [], []
    expect_linear = True
    for pos, layer in enumerate(layers, start=int(flatten)):
        if expect_linear:
            if not isinstance(layer, nn.Linear):
                raise ValueError(
                    f"layer {pos} ({_describe(layer)}) is not supported here: expected nn.Linear. "
                    f"lctools supports {SUPPORTED}."
                )
            weights.append(layer.weight)
            b = layer.bias if layer.bias is not None else torch.zeros(
                layer.out_features, dtype=layer.weight.dtype, device=layer.weight.device
            )
            biases.append(b)
        else:
            if isinstance(layer, nn.ReLU):
                slopes.append(0.0)
            elif isinstance(layer, nn.LeakyReLU):
                slopes.append(float(layer.negative_slope))
            else:
                raise ValueError(
                    f"layer {pos} ({_describe(layer)}) is not a supported activation: only nn.ReLU and "
                    f"nn.LeakyReLU (continuous piecewise-linear) are. lctools supports {SUPPORTED}."
                )
        expect_linear = not expect_linear
    if expect_linear:
        raise ValueError(
            f"the model ends with an activation ({_describe(layers[-1])}); it must end with nn.Linear. "
            f"lctools supports {SUPPORTED}."
        )
    if not slopes:
        raise ValueError(
            "the model has no hidden layer (a single nn.Linear is affine and has no linear regions); "
            f"lctools supports {SUPPORTED}."
        )
    for l in range(1, len(weights)):
        if weights[l].shape[1] != weights[l - 1].shape[0]:
            raise ValueError(
                f"nn.Linear {l + 1} expects {weights[l].shape[1]} inputs but the previous layer has "
                f"{weights[l - 1].shape[0]} outputs."
            )
    return Network(weights, biases, slopes, flatten)


def check_inputs(net: Network, x: torch.Tensor) -> torch.Tensor:
    """Validate a batch of inputs for ``net`` and return it as ``(N, n_0)`` on the net's device/dtype."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor of shape (N, {net.in_dim}), got {type(x).__name__}.")
    if x.dim() == 0:
        raise ValueError(f"x must be a batch of shape (N, {net.in_dim}), got a scalar.")
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch (N = 0): give at least one input point.")
    if net.flatten and x.dim() > 2:
        x = x.reshape(x.shape[0], -1)
    if x.dim() != 2 or x.shape[1] != net.in_dim:
        raise ValueError(
            f"x has shape {tuple(x.shape)} but the network expects inputs of shape (N, {net.in_dim})"
            + (" (or (N, ...) flattening to that)" if net.flatten else "")
            + "."
        )
    if not x.is_floating_point():
        x = x.to(net.dtype)
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or infinite values; all inputs must be finite.")
    return x.to(device=net.device, dtype=net.dtype)


def chunks(n: int, size: int):
    """Yield slices ``[start, stop)`` covering ``range(n)`` in pieces of at most ``size``."""
    size = max(1, int(size))
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))
