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

from .validation import check_finite, check_slope, compute_dtype

__all__ = ["Network", "parse_network", "check_inputs", "chunks", "SUPPORTED"]

SUPPORTED = (
    "an nn.Sequential of nn.Linear layers with nn.ReLU or nn.LeakyReLU between them "
    "(optionally starting with nn.Flatten), or lctools.MLP"
)


@dataclass
class Network:
    """A ReLU-type MLP as plain tensors.

    Attributes
    ----------
    weights
        List of tensors ``W_1, ..., W_{L+1}`` with ``W_l`` of shape ``(n_l, n_{l-1})``.
    biases
        List of tensors ``b_1, ..., b_{L+1}``.
    slopes
        List of ``L`` negative slopes, one per hidden layer (0.0 for ReLU).
    flatten
        Whether inputs are flattened first (an ``nn.Flatten`` led the model).
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


_PLAIN_FORWARD = {nn.Sequential: nn.Sequential.forward, nn.Linear: nn.Linear.forward, nn.ReLU: nn.ReLU.forward,
                  nn.LeakyReLU: nn.LeakyReLU.forward, nn.Flatten: nn.Flatten.forward}


def _check_plain(module: nn.Module, base: type, what: str) -> None:
    """Refuse what lctools cannot see: a subclass of ``base`` with its own ``forward``, or forward
    hooks (lctools reads the weights, it never calls the model, so it would silently compute
    the plain stack's numbers)."""
    if type(module).forward is not _PLAIN_FORWARD[base]:
        raise ValueError(
            f"{what} ({type(module).__name__}) overrides forward(); lctools reads the layers and never calls "
            f"forward, so it would measure the plain stack, not your function. lctools supports {SUPPORTED}, "
            "with no custom forward."
        )
    hooks = [name for name in ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs")
             if getattr(module, name, None)]
    if hooks:
        raise ValueError(
            f"{what} ({type(module).__name__}) has forward hooks; lctools reads the layers and never calls "
            "forward, so it cannot honour them. Remove the hooks (handle.remove()) first."
        )


def _check_global_hooks() -> None:
    from torch.nn.modules import module as _m

    if getattr(_m, "_global_forward_hooks", None) or getattr(_m, "_global_forward_pre_hooks", None):
        raise ValueError(
            "global forward hooks are registered (torch.nn.modules.module.register_module_forward_hook); "
            "lctools never calls forward and cannot honour them. Remove them first."
        )


def parse_network(model: nn.Module) -> Network:
    """Read ``model`` into a :class:`Network`, or raise ``ValueError`` saying what is wrong.

    The weights are the model's own parameters (no copy), so results follow the model's
    device and dtype, and gradients flow back to it where a caller wants them.  Parameters
    in float16 or bfloat16 are read as float32 copies (their linear algebra is missing or
    too coarse), so every computation runs, in float32.

    Refused with a ``ValueError``: anything but ``lctools.MLP`` or a plain ``nn.Sequential``
    of supported layers; subclasses with their own ``forward`` and modules with forward hooks
    (lctools never calls ``forward``, so it could not see what they do); LeakyReLU slopes
    outside ``[0, 1)`` (:func:`lctools.validation.check_slope`); layers of width 0; NaN or
    infinite parameters; layers on different devices or in different dtypes.

    Example
    -------
    >>> import lctools
    >>> parse_network(lctools.MLP(2, [8, 4], 1)).widths
    [8, 4]
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"expected a torch.nn.Module, got {type(model).__name__}; lctools supports {SUPPORTED}.")
    if isinstance(model, nn.Sequential):
        _check_plain(model, nn.Sequential, "the model")
        layers: Sequence[nn.Module] = list(model)
    else:
        raise ValueError(
            f"unsupported model type {type(model).__name__}; lctools supports {SUPPORTED}."
        )
    _check_global_hooks()
    flatten = False
    if layers and isinstance(layers[0], nn.Flatten):
        _check_plain(layers[0], nn.Flatten, "layer 0")
        if (layers[0].start_dim, layers[0].end_dim) != (1, -1):
            raise ValueError("a leading nn.Flatten must flatten all but the batch axis (start_dim=1, end_dim=-1).")
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
            _check_plain(layer, nn.Linear, f"layer {pos}")
            if layer.in_features == 0 or layer.out_features == 0:
                raise ValueError(f"layer {pos} (nn.Linear({layer.in_features}, {layer.out_features})) has width 0; "
                                 "every layer needs at least one input and one output.")
            weights.append(layer.weight)
            b = layer.bias if layer.bias is not None else torch.zeros(
                layer.out_features, dtype=layer.weight.dtype, device=layer.weight.device
            )
            biases.append(b)
        else:
            if isinstance(layer, nn.ReLU):
                _check_plain(layer, nn.ReLU, f"layer {pos}")
                slopes.append(0.0)
            elif isinstance(layer, nn.LeakyReLU):
                _check_plain(layer, nn.LeakyReLU, f"layer {pos}")
                slopes.append(check_slope(layer.negative_slope, f"layer {pos}: negative_slope"))
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
    devices = {w.device for w in weights + biases}
    dtypes = {w.dtype for w in weights + biases}
    if len(devices) > 1 or len(dtypes) > 1:
        raise ValueError(f"the model's parameters must share one device and one dtype, got devices "
                         f"{sorted(map(str, devices))} and dtypes {sorted(map(str, dtypes))}.")
    dtype = dtypes.pop()
    if not dtype.is_floating_point:
        raise ValueError(f"the model's parameters must be floating point, got {dtype}.")
    if compute_dtype(dtype) != dtype:
        weights = [w.to(compute_dtype(dtype)) for w in weights]
        biases = [b.to(compute_dtype(dtype)) for b in biases]
    for l, (w, b) in enumerate(zip(weights, biases), start=1):
        if not (bool(torch.isfinite(w).all()) and bool(torch.isfinite(b).all())):
            raise ValueError(f"nn.Linear {l} has NaN or infinite parameters; lctools refuses to measure them "
                             "(training diverged? check the learning rate).")
    return Network(weights, biases, slopes, flatten)


def check_inputs(net: Network, x: torch.Tensor) -> torch.Tensor:
    """Validate a batch of inputs for ``net`` and return it as ``(N, n_0)`` on the net's device/dtype.

    Example
    -------
    >>> import torch, lctools
    >>> check_inputs(parse_network(lctools.MLP(2, [4], 1)), torch.zeros(3, 2, dtype=torch.int64)).dtype
    torch.float32
    """
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
    if x.is_complex():
        raise ValueError("x must be real, got a complex tensor.")
    check_finite(x, "x")  # chunked: no full extra copy of x
    return x.to(device=net.device, dtype=net.dtype)


def chunks(n: int, size: int):
    """Yield slices ``[start, stop)`` covering ``range(n)`` in pieces of at most ``size``.

    Example
    -------
    >>> list(chunks(5, 2))
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    size = max(1, int(size))
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))
