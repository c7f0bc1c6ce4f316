"""Adversarial attacks in L-infinity and L2 balls: FGSM, PGD and robust accuracy.

The course uses them to measure robustness alongside total variation (the paper ties low
local complexity / total variation to robustness, and sees PGD accuracy rise only late
in training: "delayed robustness").

For an input ``x`` with label ``y`` and a loss ``ell(N(x'), y)`` to be *maximised* over
the ball ``B_q(x, eps) = { x' : ||x' - x||_q <= eps }``, one projected gradient step of
size ``alpha`` from ``x'`` is, with ``g = grad_{x'} ell(N(x'), y)``,

    L-inf:  x' <- Pi( x' + alpha * sign(g) )
    L2:     x' <- Pi( x' + alpha * g / ||g||_2 )      (a zero gradient gives a zero step)

where ``Pi`` projects ``x' - x`` onto the ball (:func:`project`; per example) and then, if
``clamp=(lo, hi)`` is given, clips ``x'`` to the box ``[lo, hi]`` (e.g. valid pixel
values).  For ``x`` inside the box, clipping only shrinks every coordinate of ``x' - x``,
so the result stays in the ball.  :func:`fgsm` is one such step of size ``eps`` from
``x``; :func:`pgd` takes ``steps`` of them from ``x`` or from a uniform random point of
the ball (Madry et al. 2018) and returns the last iterate.

Conventions shared by all functions here:

- inputs ``x`` of any shape ``(N, ...)`` (the model may start with ``nn.Flatten``); norms
  are taken per example over all non-batch dimensions; results lie on the model's device
  and in its dtype, and are detached;
- gradients are taken with respect to the input only (``torch.autograd.grad``): the
  parameters' ``.grad`` are untouched.  Gradients are switched on inside, so the attacks
  also work when called under ``torch.no_grad()`` (e.g. as a training metric);
- the model runs in eval mode during the attack; every submodule's train/eval mode is
  restored afterwards;
- ``loss``: ``"cross_entropy"`` (default), ``"margin"`` (``max_{j != y} N_j - N_y``, the
  Carlini-Wagner margin; its gradient does not vanish on very confident points, where the
  float32 cross-entropy gradient underflows), or a callable ``loss(output, y)`` returning
  a scalar (or per-example values, which are summed) to maximise.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ._network import chunks
from .validation import as_float, check_finite

__all__ = ["fgsm", "pgd", "pgd_step", "project", "robust_accuracy"]

LOSSES = ("cross_entropy", "margin")
Loss = Union[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]


# ----------------------------------------------------------------------------- checks
def _check_norm(norm) -> str:
    """``"inf"`` or ``"2"`` from the spellings we accept (``"inf"``, ``"linf"``, ``math.inf``,
    ``"2"``, ``"l2"``, ``2``)."""
    if isinstance(norm, (int, float)) and not isinstance(norm, bool):
        if norm == math.inf:
            return "inf"
        if norm == 2:
            return "2"
    elif isinstance(norm, str):
        s = norm.strip().lower()
        if s in ("inf", "linf", "l_inf"):
            return "inf"
        if s in ("2", "l2"):
            return "2"
    raise ValueError(f"unknown norm {norm!r}: use 'inf' (L-infinity ball) or '2' (L2 ball).")


def _check_nonneg(value, name: str) -> float:
    return as_float(value, name, low=0.0)


def _check_clamp(clamp) -> Optional[Tuple[float, float]]:
    if clamp is None:
        return None
    try:
        lo, hi = (float(c) for c in clamp)
    except (TypeError, ValueError):
        raise ValueError(f"clamp must be None or a pair (lo, hi), got {clamp!r}.") from None
    if not lo < hi:
        raise ValueError(f"clamp must be a pair (lo, hi) with lo < hi, got {clamp!r}.")
    return lo, hi


def _device_dtype(model: nn.Module):
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    p = next(model.parameters(), None)
    if p is None:
        return torch.device("cpu"), torch.get_default_dtype()
    return p.device, (p.dtype if p.is_floating_point() else torch.get_default_dtype())


def _prepare(model, x, y, loss, clamp):
    """Validate and move ``x`` (N, ...) and ``y`` (N,) to the model's device/dtype."""
    if torch.is_inference_mode_enabled():
        raise RuntimeError("adversarial attacks need autograd; they cannot run under torch.inference_mode().")
    device, dtype = _device_dtype(model)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor of shape (N, ...), got {type(x).__name__}.")
    if x.dim() == 0 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch of shape (N, ...), got shape {tuple(x.shape)}.")
    if not isinstance(y, torch.Tensor):
        y = torch.as_tensor(y)
    if y.dim() == 0 or y.shape[0] != x.shape[0]:
        raise ValueError(f"x and y must have the same number of examples N, got x {tuple(x.shape)} and y {tuple(y.shape)}.")
    if not callable(loss):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES} or pass a callable loss(output, y).")
        if y.dim() != 1 or y.is_floating_point() or y.is_complex():
            raise ValueError(f"loss={loss!r} needs integer class labels y of shape (N,), got {y.dtype} {tuple(y.shape)}.")
    check_finite(x, "x")
    x = x.detach().to(device=device, dtype=dtype)
    if clamp is not None and (x.min() < clamp[0] or x.max() > clamp[1]):
        raise ValueError(
            f"x has values in [{x.min().item():.4g}, {x.max().item():.4g}], outside clamp={clamp}; "
            "clamp is the range of valid inputs, so the clean inputs must lie in it (or pass clamp=None)."
        )
    return x, y.detach().to(device)


def _attack_loss(loss: Loss):
    if callable(loss):
        return loss
    if loss == "cross_entropy":
        return lambda out, y: F.cross_entropy(out, y, reduction="sum")

    def margin(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if out.dim() != 2 or out.shape[1] < 2:
            raise ValueError(f"loss='margin' needs outputs of shape (N, C) with C >= 2, got {tuple(out.shape)}.")
        true = out.gather(1, y[:, None]).squeeze(1)
        other = out.scatter(1, y[:, None], float("-inf")).amax(dim=1)
        return (other - true).sum()

    return margin


@contextmanager
def _eval_mode(model: nn.Module):
    """Run in eval mode, then restore every submodule's own train/eval flag."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _per_example(norms: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return norms.reshape(-1, *([1] * (like.dim() - 1)))


def _l2(t: torch.Tensor) -> torch.Tensor:
    return _per_example(t.reshape(t.shape[0], -1).norm(dim=1), t)


# ----------------------------------------------------------------------------- pieces
def project(delta: torch.Tensor, eps: float, norm="inf") -> torch.Tensor:
    """Euclidean projection of each example's perturbation ``delta[i]`` onto the ball
    ``{ ||d||_q <= eps }``: L-inf clips every coordinate to ``[-eps, eps]``; L2 rescales
    ``delta[i]`` by ``min(1, eps / ||delta[i]||_2)`` (points inside the ball are unchanged).

    Example
    -------
    >>> import torch
    >>> project(torch.tensor([[3.0, 4.0]]), 1.0, norm="2")
    tensor([[0.6000, 0.8000]])
    """
    if not isinstance(delta, torch.Tensor) or delta.dim() == 0:
        raise ValueError("delta must be a tensor of shape (N, ...).")
    eps, norm = _check_nonneg(eps, "eps"), _check_norm(norm)
    if norm == "inf":
        return delta.clamp(-eps, eps)
    n = _l2(delta)
    return delta * torch.where(n > eps, eps / n.clamp_min(torch.finfo(n.dtype).tiny), torch.ones_like(n))


def _input_grad(model, x_adv, y, loss_fn) -> torch.Tensor:
    """``grad_x loss(model(x), y)`` at ``x_adv``; parameter gradients are not touched."""
    with torch.enable_grad():
        xa = x_adv.detach().requires_grad_(True)
        value = loss_fn(model(xa), y)
        if value.dim() > 0:
            value = value.sum()
        (g,) = torch.autograd.grad(value, xa, allow_unused=True)
    return torch.zeros_like(xa) if g is None else g


def _step(model, x_adv, x, y, eps, step_size, norm, loss_fn, clamp):
    g = _input_grad(model, x_adv, y, loss_fn)
    direction = g.sign() if norm == "inf" else g / _l2(g).clamp_min(torch.finfo(g.dtype).tiny)
    x_new = x + project(x_adv + step_size * direction - x, eps, norm)
    if clamp is not None:
        x_new = x_new.clamp(*clamp)
    return x_new.detach()


def _random_start(x, eps, norm, generator) -> torch.Tensor:
    """A uniform random point of the ball (drawn on the generator's device, then moved)."""
    dev = generator.device if generator is not None else x.device
    if norm == "inf":
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=dev)
        return ((2 * u - 1) * eps).to(x.device)
    g = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=dev)
    d = x[0].numel()
    r = torch.rand(x.shape[0], generator=generator, dtype=x.dtype, device=dev) ** (1.0 / d)
    g = g / _l2(g).clamp_min(torch.finfo(g.dtype).tiny)
    return (eps * _per_example(r, g) * g).to(x.device)


# ----------------------------------------------------------------------------- attacks
def pgd_step(
    model: nn.Module,
    x_adv: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    step_size: float,
    norm="inf",
    loss: Loss = "cross_entropy",
    clamp: Optional[Sequence[float]] = None,
) -> torch.Tensor:
    """One projected gradient-ascent step from ``x_adv`` in the ball of radius ``eps``
    around ``x`` (module docstring):

        L-inf: x_adv <- Pi(x_adv + step_size * sign(g)),
        L2:    x_adv <- Pi(x_adv + step_size * g / ||g||_2),   g = grad_x loss(N(x_adv), y).

    Returns the new ``x_adv`` (detached, on the model's device and dtype).

    Example
    -------
    >>> import torch, lctools
    >>> net, x, y = lctools.MLP(2, [8], 2, seed=0), torch.rand(4, 2), torch.tensor([0, 1, 0, 1])
    >>> pgd_step(net, x, x, y, 0.1, 0.05).shape
    torch.Size([4, 2])
    """
    norm, clamp = _check_norm(norm), _check_clamp(clamp)
    eps, step_size = _check_nonneg(eps, "eps"), _check_nonneg(step_size, "step_size")
    x, y = _prepare(model, x, y, loss, clamp)
    if not isinstance(x_adv, torch.Tensor) or x_adv.shape != x.shape:
        raise ValueError(f"x_adv must be a tensor of the same shape as x {tuple(x.shape)}.")
    x_adv = x_adv.detach().to(device=x.device, dtype=x.dtype)
    if not torch.isfinite(x_adv).all():
        raise ValueError("x_adv contains NaN or infinite values.")
    with _eval_mode(model):
        return _step(model, x_adv, x, y, eps, step_size, norm, _attack_loss(loss), clamp)


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    norm="inf",
    loss: Loss = "cross_entropy",
    clamp: Optional[Sequence[float]] = None,
) -> torch.Tensor:
    """Fast gradient (sign) method: one step of size ``eps`` from ``x``,

        L-inf: x_adv = x + eps * sign(g),   L2: x_adv = x + eps * g / ||g||_2,

    with ``g = grad_x loss(N(x), y)``, then clipped to ``clamp`` if given.  For a model
    that is linear in the input this is the exact worst case in the ball.

    Example
    -------
    >>> import torch, lctools
    >>> net, x, y = lctools.MLP(2, [8], 2, seed=0), torch.rand(4, 2), torch.tensor([0, 1, 0, 1])
    >>> bool(((fgsm(net, x, y, 0.1) - x).abs() <= 0.1 + 1e-7).all())
    True
    """
    return pgd(model, x, y, eps, steps=1, step_size=eps, norm=norm, random_start=False, loss=loss, clamp=clamp)


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int = 10,
    step_size: Optional[float] = None,
    norm="inf",
    random_start: bool = True,
    loss: Loss = "cross_entropy",
    clamp: Optional[Sequence[float]] = None,
    generator: Optional[torch.Generator] = None,
    batch_size: Optional[int] = None,
) -> torch.Tensor:
    """Projected gradient descent (ascent on the loss) in the ball ``||x' - x||_q <= eps``.

    Starts at ``x`` or, with ``random_start``, at a uniform random point of the ball (drawn
    from ``generator`` for all of ``x`` at once, so the result does not depend on
    ``batch_size``), then takes ``steps`` calls of :func:`pgd_step` with ``step_size``
    (default ``2.5 * eps / steps``, enough to cross the ball) and returns the last iterate.
    ``batch_size`` bounds how many examples are attacked at once (``None``: all).

    Example
    -------
    >>> import torch, lctools
    >>> net, x, y = lctools.MLP(2, [8], 2, seed=0), torch.rand(4, 2), torch.tensor([0, 1, 0, 1])
    >>> bool(((pgd(net, x, y, 0.1, steps=3) - x).abs() <= 0.1 + 1e-7).all())
    True
    """
    norm, clamp = _check_norm(norm), _check_clamp(clamp)
    eps = _check_nonneg(eps, "eps")
    if isinstance(steps, bool) or int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}.")
    steps = int(steps)
    step_size = 2.5 * eps / max(steps, 1) if step_size is None else _check_nonneg(step_size, "step_size")
    if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
        raise ValueError(f"batch_size must be None or an integer >= 1, got {batch_size!r}.")
    x, y = _prepare(model, x, y, loss, clamp)
    loss_fn = _attack_loss(loss)

    x_adv = x.clone()
    if random_start and eps > 0:
        x_adv = x + _random_start(x, eps, norm, generator)
        if clamp is not None:
            x_adv = x_adv.clamp(*clamp)
    with _eval_mode(model):
        for sl in chunks(x.shape[0], batch_size or x.shape[0]):
            xa = x_adv[sl]
            for _ in range(steps):
                xa = _step(model, xa, x[sl], y[sl], eps, step_size, norm, loss_fn, clamp)
            x_adv[sl] = xa
    return x_adv


def robust_accuracy(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    norm="inf",
    steps: int = 10,
    step_size: Optional[float] = None,
    random_start: bool = True,
    loss: Loss = "cross_entropy",
    clamp: Optional[Sequence[float]] = None,
    generator: Optional[torch.Generator] = None,
    batch_size: int = 1024,
) -> float:
    """Fraction of examples classified correctly (``argmax_j N(x)_j == y``) both at ``x``
    and at the PGD point ``pgd(model, X, y, eps, ...)``; both lie in the ball, so this is an
    upper bound on the true robust accuracy (exact for models linear in the input).
    ``eps = 0`` gives the clean accuracy.  Works under ``torch.no_grad()``.

    Example
    -------
    >>> import torch, lctools
    >>> net, x, y = lctools.MLP(2, [8], 2, seed=0), torch.rand(20, 2), torch.randint(0, 2, (20,))
    >>> 0.0 <= robust_accuracy(net, x, y, 0.1, steps=3) <= 1.0
    True
    """
    x_adv = pgd(model, X, y, eps, steps=steps, step_size=step_size, norm=norm, random_start=random_start,
                loss=loss, clamp=clamp, generator=generator, batch_size=batch_size)
    x, y = _prepare(model, X, y, loss, _check_clamp(clamp))
    if y.dim() != 1 or y.is_floating_point():
        raise ValueError("robust_accuracy needs integer class labels y of shape (N,).")
    correct = 0
    with torch.no_grad(), _eval_mode(model):
        for sl in chunks(x.shape[0], batch_size):
            ok = (model(x[sl]).argmax(dim=1) == y[sl]) & (model(x_adv[sl]).argmax(dim=1) == y[sl])
            correct += int(ok.sum().item())
    return correct / x.shape[0]
