"""Ensembles: ``K`` networks of one shape trained as one batched computation.

An :class:`Ensemble` holds the parameters of ``K`` MLPs stacked along a leading *member*
axis, ``W_l`` of shape ``(K, n_l, n_{l-1})`` and ``b_l`` of shape ``(K, n_l)``.  Its forward
pass is one batched matrix product per layer,

    z_l^(k) = sigma(z_{l-1}^(k)) W_l^(k)T + b_l^(k)        for all members k at once,

and :func:`train_ensemble` updates every member with one batched optimizer step.  Members
may differ in their initialisation, their minibatch order (``seeds``), their learning rate
and their weight decay: the seed and hyperparameter sweeps of the course (chapters 3 and 5)
are one ensemble each.

Member ``k`` follows exactly the update rule of :func:`lctools.training.train` with
``seed=seeds[k]``, ``lr=lr[k]`` and ``weight_decay=weight_decay[k]`` (the same minibatches,
the same AdamW/Adam/SGD step): an ensemble member *is* the network ``train`` would give,
up to floating-point rounding (the tests check this).  Batched and separate matrix products
round differently, and over long runs Adam amplifies such differences where a gradient is
nearly zero (it rescales every coordinate to a step of size about ``lr``), so long runs agree
in distribution, not digit for digit.

Metrics are recorded for all members at every evaluation step.  ``batched_metrics`` are
functions of the ensemble returning one value per member (e.g. :meth:`Ensemble.accuracy`);
``metrics`` are functions of one network, evaluated on each member in turn through
:meth:`Ensemble.member`, a view that shares the ensemble's storage (no copy), so every
lctools function (local complexity, local rank, total variation, PGD) applies unchanged.

A run can be *checkpointed* (``checkpoint=PATH``): the whole training state (parameters,
optimizer moments, the minibatch generators and the metrics recorded so far) is written
atomically at evaluation steps and at least every ``checkpoint_interval`` seconds, and a
later call with the same arguments resumes from it and gives the same result as a run that
was never interrupted.
"""
from __future__ import annotations

import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ._network import parse_network
from .checkpoints import CheckpointWarning, TrainingInterrupted, deferred_interrupt, load_checkpoint, save_atomic
from .hashing import canonical, digest, tensor_fingerprint
from .models import build_seeded
from .training import (History, MinibatchOrder, Recorder, check_model_fits, check_train_args, correct_fraction,
                       evaluate_metrics, full_data_loss, loss_function)
from .validation import as_float, check_bool, check_device

__all__ = ["Ensemble", "train_ensemble"]

Number = Union[int, float]


class Ensemble(nn.Module):
    """``K`` ReLU/LeakyReLU MLPs of one architecture, with parameters stacked along axis 0.

    ``Ensemble(models)`` copies the parameters of the given networks (``lctools.MLP`` or any
    ``nn.Sequential`` lctools supports; all of the same widths and activations).
    :meth:`build` makes the members from a factory and a list of seeds.

    Attributes
    ----------
    weights_t, biases
        ``nn.ParameterList`` of ``W_l^T`` ``(K, n_{l-1}, n_l)`` (stored transposed:
        the forward pass multiplies by ``W_l^T`` and its gradient comes out contiguous) and
        ``b_l`` ``(K, n_l)``, ``l = 1..L+1``.
    weights
        Views ``W_l`` of shape ``(K, n_l, n_{l-1})``, as in ``nn.Linear``.
    slopes
        Negative slope of each hidden activation (0 for ReLU).
    flatten
        Whether inputs are flattened first.
    """

    def __init__(self, models: Sequence[nn.Module]):
        super().__init__()
        models = list(models)
        if not models:
            raise ValueError("an Ensemble needs at least one network.")
        nets = [parse_network(m) for m in models]
        first = nets[0]
        shapes = [tuple(w.shape) for w in first.weights]
        for k, net in enumerate(nets[1:], start=1):
            if [tuple(w.shape) for w in net.weights] != shapes or net.slopes != first.slopes or net.flatten != first.flatten:
                raise ValueError(
                    f"member {k} differs from member 0 in shape or activation: every member of an "
                    f"Ensemble must have the architecture {shapes} with slopes {first.slopes}."
                )
        self.weights_t = nn.ParameterList(
            [nn.Parameter(torch.stack([n.weights[l].detach().T for n in nets]).contiguous()) for l in range(len(shapes))]
        )
        self.biases = nn.ParameterList(
            [nn.Parameter(torch.stack([n.biases[l].detach() for n in nets]).clone()) for l in range(len(shapes))]
        )
        self.slopes = list(first.slopes)
        self.flatten = bool(first.flatten)

    @classmethod
    def build(cls, factory: Callable[[], nn.Module], seeds: Sequence[int]) -> "Ensemble":
        """Members ``factory()`` built with torch's RNG seeded by each of ``seeds`` (as
        :func:`lctools.cache.cached_train` builds its model), the global RNG left alone."""
        return cls([build_seeded(factory, s) for s in seeds])

    def __len__(self) -> int:
        return self.weights_t[0].shape[0]

    def extra_repr(self) -> str:
        # part of the cache's model fingerprint: everything that is not a parameter
        widths = [w.shape[2] for w in self.weights_t]
        return f"size={len(self)}, in_dim={self.weights_t[0].shape[1]}, widths={widths}, slopes={self.slopes}, " \
               f"flatten={self.flatten}"

    @property
    def weights(self) -> List[torch.Tensor]:
        """``W_l`` of shape ``(K, n_l, n_{l-1})`` for ``l = 1..L+1`` (views of ``weights_t``)."""
        return [w.transpose(1, 2) for w in self.weights_t]

    @property
    def size(self) -> int:
        """The number of members ``K``."""
        return len(self)

    @property
    def depth(self) -> int:
        """Number of hidden layers ``L``."""
        return len(self.slopes)

    def _activation(self, l: int, z: torch.Tensor) -> torch.Tensor:
        a = self.slopes[l]
        return torch.relu(z) if a == 0.0 else F.leaky_relu(z, a)

    def forward(self, x: torch.Tensor, per_member: bool = False) -> torch.Tensor:
        """Outputs of every member, shape ``(K, N, out_dim)``.

        ``x`` is one batch ``(N, n_0)`` given to all members, or with ``per_member=True`` one
        batch per member, ``(K, N, n_0)`` (inputs are flattened first when the members
        started with ``nn.Flatten``).
        """
        if self.flatten:
            x = x.flatten(start_dim=2 if per_member else 1)
        if per_member and (x.dim() != 3 or x.shape[0] != len(self)):
            raise ValueError(f"per_member inputs must have shape (K={len(self)}, N, n_0), got {tuple(x.shape)}.")
        h = x
        for l, (Wt, b) in enumerate(zip(self.weights_t, self.biases)):
            if h.dim() == 3:
                h = torch.baddbmm(b.unsqueeze(1), h, Wt)
            else:  # the shared first-layer input
                h = torch.matmul(h, Wt) + b.unsqueeze(1)
            if l < self.depth:
                h = self._activation(l, h)
        return h

    def member(self, k: int) -> nn.Sequential:
        """Member ``k`` as an ``nn.Sequential`` whose parameters are *views* of the ensemble's
        (no copy, no gradient): it follows later training of the ensemble.  Use
        :meth:`to_models` for independent copies."""
        if not -len(self) <= k < len(self):
            raise IndexError(f"member {k} out of range for an ensemble of {len(self)}.")
        layers: List[nn.Module] = [nn.Flatten()] if self.flatten else []
        for l, (W, b) in enumerate(zip(self.weights, self.biases)):
            lin = nn.Linear(W.shape[2], W.shape[1], device="meta")
            lin.weight = nn.Parameter(W[k].detach(), requires_grad=False)
            lin.bias = nn.Parameter(b[k].detach(), requires_grad=False)
            layers.append(lin)
            if l < self.depth:
                layers.append(nn.ReLU() if self.slopes[l] == 0.0 else nn.LeakyReLU(self.slopes[l]))
        return nn.Sequential(*layers).eval()

    def members(self) -> List[nn.Sequential]:
        """All members as views (see :meth:`member`)."""
        return [self.member(k) for k in range(len(self))]

    def to_models(self) -> List[nn.Sequential]:
        """Independent copies of the members (trainable ``nn.Sequential`` networks)."""
        models = []
        for view in self.members():
            for p in view.parameters():
                p.data = p.data.clone(memory_format=torch.contiguous_format)
                p.requires_grad_(True)
            models.append(view.train())
        return models

    def accuracy(self, X: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """Fraction of points with ``argmax_j N^(k)(x)_j == y``, for every member: shape ``(K,)``.

        Example
        -------
        >>> import torch, lctools
        >>> ens = Ensemble.build(lambda: lctools.MLP(2, [4], 2), seeds=[0, 1, 2])
        >>> ens.accuracy(torch.rand(10, 2), torch.zeros(10, dtype=torch.long)).shape
        torch.Size([3])
        """
        return correct_fraction(self, X, y, self.weights_t[0].device, batch_size)


class _StackedOptimizer:
    """AdamW, Adam or SGD over stacked parameters, with one learning rate and weight decay per
    member.  The arithmetic is that of ``torch.optim``'s multi-tensor implementations
    (``foreach``): with the same hyperparameters for all members the update of each member is
    exactly ``torch.optim.AdamW``'s (Adam's, SGD's) update of that network.

    AdamW, with ``g`` the gradient, ``t`` the step count and per-member ``eta``, ``lambda``:
    ``p <- p (1 - eta lambda)``, ``m <- beta1 m + (1 - beta1) g``,
    ``v <- beta2 v + (1 - beta2) g^2``,
    ``p <- p - eta / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)``.
    Adam adds ``lambda p`` to ``g`` instead (L2); SGD is ``p <- p - eta (g + lambda p)``.

    On the CPU, with one learning rate and weight decay for all members, AdamW and Adam use
    torch's fused kernel (what ``torch.optim.AdamW(fused=True)`` runs: one pass over memory
    instead of one per operation), when this torch has it; it rounds slightly differently.

    On CUDA the step is *capturable* (as ``torch.optim``'s ``capturable=True``): the step
    count lives on the device and the per-member factors are made once, so the step can be
    recorded in a CUDA graph; there it is one plain loop over the parameters (in a graph the
    number of kernels costs nothing).
    """

    def __init__(self, params: List[torch.Tensor], kind: str, lr: np.ndarray, weight_decay: np.ndarray,
                 betas=(0.9, 0.999), eps: float = 1e-8):
        self.params, self.kind, self.betas, self.eps = params, kind, betas, eps
        self.uniform = bool(np.all(lr == lr[0]) and np.all(weight_decay == weight_decay[0]))
        self.lr, self.wd = lr, weight_decay
        self.t = 0
        self.m = [torch.zeros_like(p) for p in params] if kind != "sgd" else []
        self.v = [torch.zeros_like(p) for p in params] if kind != "sgd" else []
        self.capturable = params[0].device.type == "cuda"
        # the per-member factors that do not change from step to step, made once
        self.lr_t, self.wd_t = self._member_factor(lr), self._member_factor(weight_decay)
        self.decay_t = self._member_factor(1 - lr * weight_decay)
        self.fused = None
        if self.uniform and kind in ("adamw", "adam") and not self.capturable:
            self.fused = _fused_kernel(kind, params[0].device)
            self.t_tensor = torch.zeros((), dtype=torch.float32, device=params[0].device)
        if self.capturable:
            self.t_dev = torch.zeros((), dtype=torch.float32, device=params[0].device)

    def _member_factor(self, values: np.ndarray) -> List[torch.Tensor]:
        """``values`` (K,) as one broadcastable tensor per parameter, in the parameter's dtype."""
        out = []
        for p in self.params:
            t = torch.as_tensor(values, dtype=torch.float64, device=p.device).to(p.dtype)
            out.append(t.view(-1, *([1] * (p.dim() - 1))))
        return out

    @torch.no_grad()
    def _capturable_step(self) -> None:
        beta1, beta2 = self.betas
        self.t_dev.add_(1)
        bias_correction1 = 1 - torch.pow(beta1, self.t_dev)
        bias_correction2_sqrt = torch.sqrt(1 - torch.pow(beta2, self.t_dev))
        for i, p in enumerate(self.params):
            g, lr, wd = p.grad, self.lr_t[i], self.wd_t[i]
            if self.kind == "sgd":
                p.sub_(lr * (g + wd * p))
                continue
            if self.kind == "adamw":
                p.mul_(self.decay_t[i])
            else:
                g = g + wd * p
            self.m[i].lerp_(g, 1 - beta1)
            self.v[i].mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = (self.v[i].sqrt() / bias_correction2_sqrt).add_(self.eps)
            p.sub_((lr / bias_correction1) * self.m[i] / denom)

    @torch.no_grad()
    def step(self) -> None:
        if self.capturable:
            return self._capturable_step()
        params, grads = self.params, [p.grad for p in self.params]
        lr0, wd0 = float(self.lr[0]), float(self.wd[0])
        self.t += 1
        if self.kind == "sgd":
            if self.uniform:
                if wd0 != 0:
                    grads = torch._foreach_add(grads, params, alpha=wd0)
                torch._foreach_add_(params, grads, alpha=-lr0)
            else:
                grads = torch._foreach_add(grads, torch._foreach_mul(params, self.wd_t))
                torch._foreach_sub_(params, torch._foreach_mul(grads, self.lr_t))
            return
        beta1, beta2 = self.betas
        if self.fused is not None:  # one pass over memory, as torch.optim's fused=True
            self.t_tensor.fill_(self.t)
            self.fused(params, grads, self.m, self.v, [], [self.t_tensor] * len(params), lr=lr0, beta1=beta1,
                       beta2=beta2, weight_decay=wd0, eps=self.eps, amsgrad=False, maximize=False)
            return
        if self.kind == "adamw":
            if self.uniform:
                torch._foreach_mul_(params, 1 - lr0 * wd0)
            else:
                torch._foreach_mul_(params, self.decay_t)
        elif self.uniform and wd0 != 0:
            grads = torch._foreach_add(grads, params, alpha=wd0)
        elif not self.uniform:
            grads = torch._foreach_add(grads, torch._foreach_mul(params, self.wd_t))
        torch._foreach_lerp_(self.m, grads, 1 - beta1)
        torch._foreach_mul_(self.v, beta2)
        torch._foreach_addcmul_(self.v, grads, grads, 1 - beta2)
        bias_correction1 = 1 - beta1**self.t
        bias_correction2_sqrt = math.sqrt(1 - beta2**self.t)
        denom = torch._foreach_sqrt(self.v)
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, self.eps)
        if self.uniform:
            torch._foreach_addcdiv_(params, self.m, denom, -lr0 / bias_correction1)
        else:
            update = torch._foreach_div(self.m, denom)
            torch._foreach_mul_(update, self._member_factor(self.lr / bias_correction1))
            torch._foreach_sub_(params, update)

    def state_dict(self) -> dict:
        t = int(self.t_dev.item()) if self.capturable else self.t
        return {"t": t, "m": [m.detach().cpu() for m in self.m], "v": [v.detach().cpu() for v in self.v]}

    def load_state_dict(self, state: dict) -> None:
        self.t = int(state["t"])
        if self.capturable:
            self.t_dev.fill_(self.t)
        for dst, src in zip(self.m + self.v, list(state["m"]) + list(state["v"])):
            dst.copy_(src)


class _GroupedOptimizer:
    """Two :class:`_StackedOptimizer` stepping together: the weights with the members' weight
    decay and the biases with none (``decay_biases=False``, as ``torch.optim`` parameter
    groups).  Each keeps its own moments and step count; both count the same steps."""

    def __init__(self, groups):
        self.parts = groups

    def step(self) -> None:
        for part in self.parts:
            part.step()

    def state_dict(self) -> dict:
        return {"groups": [part.state_dict() for part in self.parts]}

    def load_state_dict(self, state: dict) -> None:
        for part, saved in zip(self.parts, state["groups"]):
            part.load_state_dict(saved)


def _make_optimizer(ensemble: "Ensemble", kind: str, lr: np.ndarray, weight_decay: np.ndarray,
                    decay_biases: bool):
    if decay_biases:
        return _StackedOptimizer(list(ensemble.parameters()), kind, lr, weight_decay)
    return _GroupedOptimizer([_StackedOptimizer(list(ensemble.weights_t), kind, lr, weight_decay),
                              _StackedOptimizer(list(ensemble.biases), kind, lr, np.zeros_like(weight_decay))])


def _fused_kernel(kind: str, device: torch.device):
    """torch's fused AdamW/Adam kernel if it runs on ``device`` in this torch version, else None."""
    fn = getattr(torch, "_fused_adamw_" if kind == "adamw" else "_fused_adam_", None)
    if fn is None:
        return None
    try:
        z = [torch.zeros(2, device=device)]
        fn([torch.zeros(2, device=device)], [torch.ones(2, device=device)], z, [torch.zeros(2, device=device)], [],
           [torch.ones((), device=device)], lr=0.1, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8,
           amsgrad=False, maximize=False)
    except (RuntimeError, TypeError, NotImplementedError):
        return None
    return fn


_GRAPH_WARMUP = 3  # eager steps before a CUDA graph is recorded


def _capture(step_fn, idx: torch.Tensor):
    """Record ``step_fn(static_idx)`` as a CUDA graph; returns ``(graph, static_idx)``.  Fill
    ``static_idx`` and call ``graph.replay()`` to run one step."""
    static_idx = idx.clone()
    graph = torch.cuda.CUDAGraph()
    torch.cuda.synchronize()
    with torch.cuda.graph(graph):
        step_fn(static_idx)
    return graph, static_idx


def _run_fingerprint(tensors: Dict[str, torch.Tensor], settings: dict) -> str:
    """sha256 of what determines a training run (checkpoints from another run are refused):
    the fingerprints of ``tensors`` and the canonical JSON of ``settings``."""
    return digest({"tensors": {k: tensor_fingerprint(t) for k, t in tensors.items()},
                   "settings": canonical(settings, "settings")})


CHECKPOINT_FORMAT = 2  # part of the run's fingerprint: checkpoints of another layout start afresh


def train_ensemble(
    ensemble: Ensemble,
    X: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    lr: Union[Number, Sequence[Number]] = 1e-3,
    weight_decay: Union[Number, Sequence[Number]] = 0.0,
    batch_size: int = 64,
    optimizer: str = "adamw",
    loss: str = "cross_entropy",
    metrics: Optional[Dict[str, Callable[[nn.Module], object]]] = None,
    batched_metrics: Optional[Dict[str, Callable[[Ensemble], object]]] = None,
    eval_steps=None,
    seeds: Optional[Sequence[int]] = None,
    progress: bool = True,
    device=None,
    checkpoint: Union[str, os.PathLike, None] = None,
    checkpoint_interval: float = 60.0,
    cuda_graph: Optional[bool] = None,
    decay_biases: bool = True,
) -> List[History]:
    """Train all members of ``ensemble`` in place for ``steps`` minibatch updates; return one
    :class:`~lctools.training.History` per member.

    Each member follows :func:`lctools.training.train`'s rule (see there for ``loss``,
    ``optimizer``, ``batch_size`` and the step convention): member ``k`` draws its
    minibatches from ``torch.Generator().manual_seed(seeds[k])`` (default ``seeds = 0..K-1``)
    and is updated with learning rate ``lr[k]`` and weight decay ``weight_decay[k]`` (a
    number applies to all members).  ``decay_biases=False`` applies the weight decay to the
    weights only (the paper's setting), as :func:`lctools.training.train` does.

    At every step of ``eval_steps`` (default ``log_steps(steps, 50)``) it records, in eval
    mode and without gradients, each member's full-data training loss, ``metrics[name](net)``
    for each member ``net`` (a view, :meth:`Ensemble.member`) and ``batched_metrics[name](ensemble)``
    (one value, or a leading axis of ``K`` values, per member).

    ``checkpoint``: a file where the training state is saved atomically at evaluation steps
    and whenever ``checkpoint_interval`` seconds have passed since the last save.  If the
    file exists when the call starts and belongs to the same run (same initial parameters,
    data, settings and metric names), training resumes from it; the result equals that of an
    uninterrupted run.  The file is left in place at the end (holding the final state).

    ``cuda_graph`` (default: on when training on CUDA): after a few warm-up steps, record the
    training step (minibatch gather, forward, loss, backward, optimizer step) as a CUDA graph
    per minibatch size and replay it.  A small network's step is bound by kernel launches on a
    GPU; a replay is one launch.  The arithmetic is that of the eager step.

    Example
    -------
    >>> import torch, lctools
    >>> X, y = torch.rand(32, 2), torch.randint(0, 2, (32,))
    >>> ens = Ensemble.build(lambda: lctools.MLP(2, [4], 2), seeds=[0, 1])
    >>> hists = train_ensemble(ens, X, y, steps=5, lr=[1e-2, 1e-3], progress=False)
    >>> [h.config["lr"] for h in hists]
    [0.01, 0.001]
    """
    if not isinstance(ensemble, Ensemble):
        raise ValueError(f"ensemble must be an lctools.ensemble.Ensemble, got {type(ensemble).__name__}.")
    K = len(ensemble)
    metrics, evals, steps, batch_size, lr_k, wd_k = check_train_args(
        X, y, steps, lr, weight_decay, batch_size, optimizer, loss, None, metrics, eval_steps, members=K)
    decay_biases = check_bool(decay_biases, "decay_biases")
    batched_metrics = dict(batched_metrics or {})
    for name, fn in batched_metrics.items():
        if not callable(fn) or name in metrics or name in ("loss", "steps", "step"):
            raise ValueError(f"batched metric {name!r} must be callable, not reserved, and not also in metrics.")
    seeds = list(range(K)) if seeds is None else [int(s) for s in seeds]
    if len(seeds) != K:
        raise ValueError(f"seeds must hold one seed per member ({K}), got {len(seeds)}.")
    checkpoint_interval = as_float(checkpoint_interval, "checkpoint_interval", low=0.0, what=" (seconds)")

    device = check_device(device) or ensemble.weights_t[0].device
    ensemble.to(device)
    X, y = X.to(device), y.to(device)
    check_model_fits(lambda xb: ensemble(xb)[0], X, y, loss)
    params = list(ensemble.parameters())
    opt = _make_optimizer(ensemble, optimizer, lr_k, wd_k, bool(decay_biases))
    loss_fn = loss_function(loss)
    orders = [MinibatchOrder(len(X), s, device) for s in seeds]
    n = len(X)
    eval_set = set(int(s) for s in evals)
    names = list(metrics) + list(batched_metrics)
    recorder = Recorder(names, K)
    start_step = 0

    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    fingerprint = None
    if ckpt_path is not None:
        fingerprint = _run_fingerprint(
            dict(params=torch.cat([p.detach().double().flatten() for p in params]), X=X, y=y),
            dict(steps=steps, lr=lr_k.tolist(), weight_decay=wd_k.tolist(), batch_size=batch_size, optimizer=optimizer,
                 loss=loss, seeds=seeds, evals=sorted(eval_set), slopes=ensemble.slopes, metrics=sorted(names),
                 checkpoint_format=CHECKPOINT_FORMAT, **({} if decay_biases else {"decay_biases": False})),
        )
        state = load_checkpoint(ckpt_path, fingerprint)
        if state is not None:
            with torch.no_grad():
                for p, saved in zip(params, state["params"]):
                    p.copy_(saved)
            opt.load_state_dict(state["optimizer"])
            for order, saved in zip(orders, state["orders"]):
                order.load_state_dict(saved)
            start_step = int(state["step"])
            recorder.load_state_dict(state["records"])
            print(f"resumed from checkpoint {ckpt_path} at step {start_step} of {steps}", file=sys.stderr)

    def save(step: int) -> None:
        """Write the state after ``step`` updates (and the evaluations recorded so far).  A
        checkpoint that cannot be written is reported once, and training goes on without."""
        nonlocal ckpt_path
        if ckpt_path is None:
            return
        try:
            save_atomic(dict(
                fingerprint=fingerprint, step=step, params=[p.detach().cpu() for p in params],
                optimizer=opt.state_dict(), orders=[o.state_dict() for o in orders], records=recorder.state_dict(),
            ), ckpt_path)
        except OSError as exc:
            warnings.warn(f"checkpoint {ckpt_path} cannot be written ({exc}); training goes on without "
                          "checkpoints.", CheckpointWarning, stacklevel=3)
            ckpt_path = None

    def evaluate() -> None:
        """Record one evaluation; all of it or nothing (an interrupt mid-way records nothing)."""
        with torch.no_grad():
            loss_now = full_data_loss(ensemble, X, y, loss_fn)
            row = evaluate_metrics(metrics, ensemble.members() if metrics else [])
            for name, fn in batched_metrics.items():
                value = fn(ensemble)
                value = value.detach().cpu().double().numpy() if isinstance(value, torch.Tensor) else np.asarray(value, float)
                if value.ndim == 0 or value.shape[0] != K or value.ndim > 2:
                    raise ValueError(f"batched metric {name!r} must return K={K} values (shape (K,) or (K, k)), "
                                     f"got shape {value.shape}.")
                row[name] = value
        recorder.add(loss_now, row)

    def train_step(idx, X, y):
        for p in params:
            p.grad = None
        out = ensemble(X[idx], per_member=True)  # (K, b, out)
        b = idx.shape[1]
        # sum over members of each member's mean loss: member k's gradient is its own
        loss_value = loss_fn(out.reshape(K * b, -1), y[idx].reshape(K * b, *y.shape[1:])) * K
        loss_value.backward()
        opt.step()

    use_graph = device.type == "cuda" if cuda_graph is None else bool(cuda_graph)
    if use_graph and device.type != "cuda":
        raise ValueError("cuda_graph=True needs the ensemble and data on a CUDA device.")
    graphs: dict = {}  # minibatch size -> (graph, its index buffer)
    warm, side = 0, torch.cuda.Stream(device) if use_graph else None

    last_save = time.monotonic()
    ensemble.train()
    desc = f"train ensemble of {K}"
    done, in_step = start_step, False  # updates done; whether an update is half-way
    try:
        with deferred_interrupt(ckpt_path is not None) as interrupt, \
                tqdm(total=steps, initial=start_step, disable=not progress, desc=desc, leave=False) as bar:
            if len(recorder) < sum(1 for s in eval_set if s <= start_step):
                ensemble.eval()  # the evaluation at start_step was interrupted before it was recorded
                evaluate()
                ensemble.train()
            if interrupt.requested:
                raise KeyboardInterrupt
            for step in range(start_step + 1, steps + 1):
                in_step = True
                idx = torch.stack([order.next(batch_size) for order in orders])  # (K, b): each member's own
                if use_graph and warm >= _GRAPH_WARMUP:
                    b = idx.shape[1]
                    if b not in graphs:  # records the step without running it
                        graphs[b] = _capture(lambda i: train_step(i, X, y), idx)
                    graphs[b][1].copy_(idx)
                    graphs[b][0].replay()
                elif use_graph:  # warm-up steps, on a side stream as capture requires
                    side.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(side):
                        train_step(idx, X, y)
                    torch.cuda.current_stream().wait_stream(side)
                    warm += 1
                else:
                    train_step(idx, X, y)
                done, in_step = step, False
                bar.update(1)
                if step in eval_set:
                    ensemble.eval()
                    evaluate()
                    ensemble.train()
                    bar.set_postfix(train_loss=f"{float(np.mean(recorder.loss[-1])):.4g}")
                if ckpt_path is not None and (step in eval_set or time.monotonic() - last_save >= checkpoint_interval):
                    save(step)
                    last_save = time.monotonic()
                if interrupt.requested:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        ensemble.train()
        if ckpt_path is None:
            raise TrainingInterrupted(done, steps, None) from None
        if in_step:  # a second Ctrl-C mid-update: the parameters are half-updated, keep the last save
            saved = load_checkpoint(ckpt_path, fingerprint)
            raise TrainingInterrupted(0 if saved is None else int(saved["step"]), steps, ckpt_path) from None
        save(done)  # the state after `done` updates; an unfinished evaluation is redone on resume
        raise TrainingInterrupted(done, steps, ckpt_path) from None
    if ckpt_path is not None and start_step == steps == 0 and 0 in eval_set:
        save(0)

    configs = [dict(steps=steps, lr=float(lr_k[k]), weight_decay=float(wd_k[k]), batch_size=batch_size,
                    optimizer=optimizer, loss=loss, seed=seeds[k], schedule=None, n_train=n, member=k,
                    ensemble_size=K, decay_biases=bool(decay_biases)) for k in range(K)]
    return recorder.histories(eval_set, configs)
