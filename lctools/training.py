"""Training with metrics tracked on a log-spaced schedule.

:func:`train` runs minibatch training (AdamW by default, as in the paper) and evaluates the
full-data training loss and any user metrics (local complexity, local rank, accuracy, ...)
at chosen steps, by default :func:`log_steps`: the paper's effects (LC falling, local rank
collapsing, delayed robustness) unfold over orders of magnitude of steps. The result is a
:class:`History`, which serialises to plain JSON for a results cache and plots itself.

Step convention: "step ``t``" means "after ``t`` optimizer updates"; step 0 is the
initialisation, evaluated before any update.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .validation import as_int, check_bool, check_device, check_hyperparameter

__all__ = ["History", "log_steps", "train", "accuracy", "decay_groups", "is_bias", "loss_function",
           "metric_array", "check_train_args", "check_model_fits", "MinibatchOrder", "Recorder",
           "full_data_loss", "correct_fraction", "evaluate_metrics", "EVAL_CHUNK",
           "OPTIMIZERS", "LOSSES", "SCHEDULES"]

OPTIMIZERS = ("adamw", "adam", "sgd")
LOSSES = ("cross_entropy", "mse")
SCHEDULES = (None, "cosine")


def log_steps(total_steps: int, num: int = 50) -> np.ndarray:
    """At most ``num`` distinct integer steps from 0 to ``total_steps`` (both included),
    spaced evenly in ``log(1 + t)``: ``round(geomspace(1, total_steps + 1, num) - 1)``,
    duplicates removed. Returns a sorted int64 array.

    Example
    -------
    >>> log_steps(1000, 5).tolist()
    [0, 5, 31, 177, 1000]
    """
    if int(total_steps) != total_steps or total_steps < 0:
        raise ValueError(f"total_steps must be an integer >= 0, got {total_steps!r}.")
    if num < 2:
        raise ValueError(f"num must be >= 2 (to include 0 and total_steps), got {num!r}.")
    steps = np.round(np.geomspace(1, int(total_steps) + 1, int(num)) - 1).astype(np.int64)
    return np.unique(np.concatenate([[0, int(total_steps)], steps]))


@dataclass
class History:
    """What :func:`train` recorded, one row per evaluation step.

    Attributes
    ----------
    steps
        Int64 array ``(E,)`` of evaluation steps (number of updates done).
    loss
        Float array ``(E,)``, the training loss on the full data set at those steps.
    metrics
        Dict ``name -> array`` of shape ``(E,)`` (scalar metrics) or ``(E, k)``
        (vector metrics, e.g. a per-layer local rank).
    config
        The training settings (lr, weight decay, ...), for the record.

    ``history["loss"]``, ``history["steps"]`` and ``history[name]`` give the arrays.
    """

    steps: np.ndarray
    loss: np.ndarray
    metrics: Dict[str, np.ndarray] = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        if name in ("steps", "step"):
            return self.steps
        if name == "loss":
            return self.loss
        if name in self.metrics:
            return self.metrics[name]
        raise KeyError(f"no metric {name!r}; recorded: {['steps', 'loss', *self.metrics]}.")

    def __contains__(self, name: str) -> bool:
        return name in ("steps", "step", "loss") or name in self.metrics

    def __len__(self) -> int:
        return len(self.steps)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (lists of numbers); inverse of :meth:`from_dict`."""
        return {
            "steps": [int(s) for s in self.steps],
            "loss": [float(v) for v in self.loss],
            "metrics": {k: np.asarray(v, dtype=float).tolist() for k, v in self.metrics.items()},
            "config": dict(self.config),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        """Rebuild a :class:`History` from :meth:`to_dict`'s output (e.g. loaded from JSON)."""
        return cls(
            steps=np.asarray(d["steps"], dtype=np.int64),
            loss=np.asarray(d["loss"], dtype=float),
            metrics={k: np.asarray(v, dtype=float) for k, v in d.get("metrics", {}).items()},
            config=dict(d.get("config", {})),
        )

    def plot(self, names: Union[str, Sequence[str], None] = None, ax=None, logx: bool = True):
        """Plot metrics (default: all of them, or the loss if there are none) against the step.

        Vector metrics get one line per component, labelled ``"name 1"``, ``"name 2"``, ...
        (1-based, like layers). With ``logx`` the x axis is symlog (linear on ``[0, 1]``,
        logarithmic beyond), so step 0 (initialisation) is shown. Returns the axes.
        """
        import matplotlib.pyplot as plt

        if names is None:
            names = list(self.metrics) or ["loss"]
        elif isinstance(names, str):
            names = [names]
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        for name in names:
            values = np.asarray(self[name], dtype=float)
            if values.ndim == 1:
                ax.plot(self.steps, values, marker=".", label=name)
            else:
                for j in range(values.shape[1]):
                    ax.plot(self.steps, values[:, j], marker=".", label=f"{name} {j + 1}")
        if logx:
            ax.set_xscale("symlog", linthresh=1)
            ax.set_xlim(left=0)
        ax.set_xlabel("step")
        if len(names) == 1:
            ax.set_ylabel(names[0])
        ax.legend()
        return ax


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> float:
    """Fraction of points with ``argmax_j N(x)_j == y`` (evaluated in chunks, no gradients).

    Example
    -------
    >>> import torch, lctools
    >>> 0.0 <= accuracy(lctools.MLP(2, [8], 2, seed=0), torch.rand(10, 2), torch.zeros(10, dtype=torch.long)) <= 1.0
    True
    """
    return float(correct_fraction(lambda xb: model(xb).unsqueeze(0), X, y, _model_device(model), batch_size)[0])


def is_bias(name: str) -> bool:
    """Whether the parameter called ``name`` (as in ``model.named_parameters()``) is a bias:
    its last component is ``bias`` (``nn.Linear``) or it sits in a list called ``biases``
    (:class:`lctools.ensemble.Ensemble`).

    Example
    -------
    >>> is_bias("0.bias"), is_bias("biases.1"), is_bias("0.weight")
    (True, True, False)
    """
    parts = name.split(".")
    return parts[-1] == "bias" or (len(parts) > 1 and parts[-2] == "biases")


def decay_groups(model: nn.Module, weight_decay: float, decay_biases: bool = True) -> list:
    """Optimizer parameter groups: every trainable parameter with ``weight_decay``, or, with
    ``decay_biases=False``, the weights with ``weight_decay`` and the biases (:func:`is_bias`)
    with none.  Empty groups are left out.

    Example
    -------
    >>> import lctools
    >>> [g["weight_decay"] for g in decay_groups(lctools.MLP(2, [4], 1), 0.1, decay_biases=False)]
    [0.1, 0.0]
    """
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    if decay_biases:
        return [{"params": [p for _, p in named], "weight_decay": weight_decay}]
    groups = [{"params": [p for k, p in named if not is_bias(k)], "weight_decay": weight_decay},
              {"params": [p for k, p in named if is_bias(k)], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def loss_function(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss ``name`` as a function ``(output, target) -> mean loss``:
    ``"cross_entropy"``, or ``"mse"`` (squared error to one-hot targets for integer labels,
    to the targets themselves for float targets).

    Example
    -------
    >>> import torch
    >>> float(loss_function("mse")(torch.zeros(2, 2), torch.tensor([0, 1])))
    0.5
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {LOSSES}.")
    if name == "cross_entropy":
        return F.cross_entropy

    def mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not target.is_floating_point():  # class labels -> one-hot targets
            target = F.one_hot(target, out.shape[1]).to(out.dtype)
        return F.mse_loss(out, target.reshape(out.shape))

    return mse


def metric_array(value, name: str) -> np.ndarray:
    """A metric's value as a float array of 0 or 1 dimensions (``ValueError`` otherwise).

    Example
    -------
    >>> import torch
    >>> metric_array(torch.tensor([1.0, 2.0]), "lr").tolist()
    [1.0, 2.0]
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()
    arr = np.asarray(value, dtype=float)
    if arr.ndim > 1:
        raise ValueError(f"metric {name!r} returned shape {arr.shape}; metrics must be scalars or 1-dim.")
    return arr


def check_train_args(X, y, steps, lr, weight_decay, batch_size, optimizer, loss, schedule, metrics, eval_steps,
                     members: Optional[int] = None):
    """Validate the arguments shared by :func:`train` and
    :func:`lctools.ensemble.train_ensemble` (there ``lr`` and ``weight_decay`` may hold one
    value per member: pass ``members``).  Returns ``(metrics, eval_steps, steps, batch_size,
    lr, weight_decay)`` in canonical form.

    Example
    -------
    >>> import torch
    >>> check_train_args(torch.rand(4, 2), torch.zeros(4, dtype=torch.long), 10, 1e-3, 0.0, 2, "adamw",
    ...                  "cross_entropy", None, None, [0, 10])[2:]
    (10, 2, 0.001, 0.0)
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS}.")
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}.")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}.")
    steps = as_int(steps, "steps", low=0)
    batch_size = as_int(batch_size, "batch_size", low=1)
    lr = check_hyperparameter(lr, "lr", members)
    weight_decay = check_hyperparameter(weight_decay, "weight_decay", members)
    if not isinstance(X, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ValueError("X and y must be torch tensors.")
    if X.dim() == 0 or y.dim() == 0:
        raise ValueError("X and y must have a leading batch axis (one row per training point).")
    if len(X) != len(y):
        raise ValueError(f"X and y have different lengths: {len(X)} and {len(y)}.")
    if len(X) == 0:
        raise ValueError("X is empty: give at least one training point.")
    if not X.is_floating_point():
        raise ValueError(f"X must be a floating-point tensor, got {X.dtype}.")
    if loss == "cross_entropy" and (y.is_floating_point() or y.is_complex() or y.dtype == torch.bool):
        raise ValueError("loss='cross_entropy' needs integer class labels y (int64); use loss='mse' for float targets.")
    if loss == "cross_entropy" and y.dim() != 1:
        raise ValueError(f"loss='cross_entropy' needs one integer label per point, y of shape (N,); got {tuple(y.shape)}.")
    metrics = dict(metrics or {})
    for name, fn in metrics.items():
        if not callable(fn):
            raise ValueError(f"metric {name!r} is not callable; metrics map names to functions of the model.")
        if name in ("loss", "steps", "step"):
            raise ValueError(f"metric name {name!r} is reserved.")
    evals = log_steps(steps, 50) if eval_steps is None else np.unique(np.asarray(list(eval_steps), dtype=np.int64))
    if len(evals) and (evals.min() < 0 or evals.max() > steps):
        raise ValueError(f"eval_steps must lie in [0, steps={steps}], got {evals.min()}..{evals.max()}.")
    return metrics, evals, steps, batch_size, lr, weight_decay


def check_model_fits(forward: Callable[[torch.Tensor], torch.Tensor], X: torch.Tensor, y: torch.Tensor,
                     loss: str) -> None:
    """One forward pass on the first point: ``X`` must fit the model, the labels the outputs.

    Class labels (``cross_entropy``, or integer labels with ``mse``) must lie in
    ``0..out_dim - 1``; float targets must have ``out_dim`` values per point.

    Example
    -------
    >>> import torch, lctools
    >>> check_model_fits(lctools.MLP(2, [4], 2), torch.rand(3, 2), torch.tensor([0, 1, 2]), "cross_entropy")
    Traceback (most recent call last):
    ...
    ValueError: labels y must lie in 0..1 (the model has 2 outputs), got labels from 0 to 2.
    """
    try:
        with torch.no_grad():
            out = forward(X[:1])
    except RuntimeError as exc:
        raise ValueError(f"the model cannot take X of shape {tuple(X.shape)} (one row per point): {exc}") from None
    if out.dim() != 2:
        raise ValueError(f"the model must output one row of scores per point, got output shape {tuple(out.shape)}.")
    out_dim = out.shape[1]
    if not y.is_floating_point():
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= out_dim:
            raise ValueError(f"labels y must lie in 0..{out_dim - 1} (the model has {out_dim} outputs), "
                             f"got labels from {lo} to {hi}.")
    elif y[0].numel() != out_dim:
        raise ValueError(f"float targets y must have {out_dim} values per point (the model's outputs), "
                         f"got shape {tuple(y.shape)}.")


# ----------------------------------------------------------------------------- the core shared with ensembles
EVAL_CHUNK = 8192  # points per forward pass when evaluating the full-data loss


class MinibatchOrder:
    """The minibatch order of :func:`train` (and of each ensemble member): epochs of a random
    permutation drawn from ``torch.Generator().manual_seed(seed)``, cut into consecutive
    batches of ``batch_size`` (the last batch of an epoch may be smaller).

    Example
    -------
    >>> order = MinibatchOrder(5, seed=0)
    >>> [len(order.next(2)) for _ in range(4)]
    [2, 2, 1, 2]
    """

    def __init__(self, n: int, seed: int, device=None):
        self.n, self.device = int(n), device
        self.generator = torch.Generator().manual_seed(int(seed))
        self.perm: Optional[torch.Tensor] = None
        self.pos = self.n

    def next(self, batch_size: int) -> torch.Tensor:
        """The indices of the next minibatch (on ``device``)."""
        if self.pos >= self.n:
            self.perm, self.pos = torch.randperm(self.n, generator=self.generator).to(self.device), 0
        idx = self.perm[self.pos: self.pos + batch_size]
        self.pos += batch_size
        return idx

    def state_dict(self) -> dict:
        """The generator's state, the current permutation and the position in it."""
        return {"generator": self.generator.get_state(), "pos": self.pos,
                "perm": None if self.perm is None else self.perm.cpu()}

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`'s output."""
        self.generator.set_state(state["generator"])
        self.pos = int(state["pos"])
        self.perm = None if state["perm"] is None else state["perm"].to(self.device)


@torch.no_grad()
def full_data_loss(outputs: Callable[[torch.Tensor], torch.Tensor], X: torch.Tensor, y: torch.Tensor,
                   loss_fn: Callable) -> np.ndarray:
    """The mean loss over all of ``(X, y)`` of each of ``K`` networks, float64 ``(K,)``;
    ``outputs(xb)`` returns their outputs ``(K, b, out)`` (chunks of ``EVAL_CHUNK`` points).

    Example
    -------
    >>> import torch
    >>> outputs = lambda xb: torch.zeros(2, len(xb), 3)  # two networks with constant outputs
    >>> full_data_loss(outputs, torch.rand(4, 1), torch.zeros(4, dtype=torch.long), loss_function("mse")).tolist()
    [0.3333333432674408, 0.3333333432674408]
    """
    total = None
    for start in range(0, len(X), EVAL_CHUNK):
        xb, yb = X[start: start + EVAL_CHUNK], y[start: start + EVAL_CHUNK]
        out = outputs(xb)
        part = torch.stack([loss_fn(o, yb) for o in out]).double().cpu() * len(xb)
        total = part if total is None else total + part
    return (total / len(X)).numpy()


@torch.no_grad()
def correct_fraction(outputs: Callable[[torch.Tensor], torch.Tensor], X: torch.Tensor, y: torch.Tensor,
                     device, batch_size: int = 4096) -> torch.Tensor:
    """Fraction of points with ``argmax_j N^(k)(x)_j == y`` for each of ``K`` networks, float64
    ``(K,)`` on the CPU; ``outputs(xb)`` returns ``(K, b, out)``.

    Example
    -------
    >>> import torch
    >>> outputs = lambda xb: torch.tensor([[[1.0, 0.0]] * len(xb)])  # one network that always says 0
    >>> correct_fraction(outputs, torch.rand(4, 2), torch.tensor([0, 0, 1, 1]), "cpu").tolist()
    [0.5]
    """
    if len(X) != len(y):
        raise ValueError(f"X and y have different lengths: {len(X)} and {len(y)}.")
    if len(X) == 0:
        raise ValueError("accuracy of an empty data set is undefined.")
    correct = None
    for start in range(0, len(X), batch_size):
        out = outputs(X[start: start + batch_size].to(device))
        hits = (out.argmax(dim=2) == y[start: start + batch_size].to(device)).sum(dim=1)
        correct = hits if correct is None else correct + hits
    return correct.double().cpu() / len(X)


class Recorder:
    """What a training run records at its evaluation steps, for ``K`` networks at once:
    the full-data loss ``(K,)`` and each metric ``(K,)`` or ``(K, k)``.  An evaluation is
    added all at once (:meth:`add`), so an interrupted one leaves no trace.

    Example
    -------
    >>> r = Recorder(["acc"], K=1)
    >>> r.add(np.array([0.5]), {"acc": np.array([0.9])})
    >>> r.histories([0], [{}])[0]["acc"].tolist()
    [0.9]
    """

    def __init__(self, names: Sequence[str], K: int):
        self.names, self.K = list(names), int(K)
        self.loss: list = []
        self.metrics: Dict[str, list] = {name: [] for name in self.names}

    def __len__(self) -> int:
        return len(self.loss)

    def add(self, loss: np.ndarray, row: Dict[str, np.ndarray]) -> None:
        """Record one evaluation: ``loss`` ``(K,)`` and ``row[name]`` ``(K, ...)`` for every metric."""
        for name in self.names:
            if self.metrics[name] and row[name].shape != self.metrics[name][0].shape:
                raise ValueError(f"metric {name!r} changed shape from {self.metrics[name][0].shape[1:]} "
                                 f"to {row[name].shape[1:]}.")
        self.loss.append(np.asarray(loss, dtype=float))
        for name in self.names:
            self.metrics[name].append(row[name])

    def histories(self, evals: Sequence[int], configs: Sequence[dict]) -> List[History]:
        """One :class:`History` per network (``configs[k]`` its settings)."""
        steps = np.asarray(sorted(int(s) for s in evals), dtype=np.int64)
        losses = np.stack(self.loss) if self.loss else np.zeros((0, self.K))
        stacked = {name: np.stack(v) if v else np.zeros((0, self.K)) for name, v in self.metrics.items()}
        return [History(steps=steps, loss=losses[:, k], metrics={name: v[:, k] for name, v in stacked.items()},
                        config=dict(configs[k])) for k in range(self.K)]

    def state_dict(self) -> dict:
        """The records as tensors (checkpoints are loaded with ``weights_only=True``)."""
        as_t = lambda rows: [torch.from_numpy(np.ascontiguousarray(r)) for r in rows]  # noqa: E731
        return {"loss": as_t(self.loss), "metrics": {k: as_t(v) for k, v in self.metrics.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`'s output."""
        self.loss = [t.numpy() for t in state["loss"]]
        self.metrics = {k: [t.numpy() for t in v] for k, v in state["metrics"].items()}


def evaluate_metrics(metrics: Dict[str, Callable], networks: Sequence[nn.Module]) -> Dict[str, np.ndarray]:
    """``metrics[name](net)`` for every network, stacked: ``name -> (K,)`` or ``(K, k)``.

    Example
    -------
    >>> import lctools
    >>> evaluate_metrics({"width": lambda m: m[0].out_features}, [lctools.MLP(2, [4], 1)] * 3)["width"].tolist()
    [4.0, 4.0, 4.0]
    """
    return {name: np.stack([metric_array(fn(net), name) for net in networks]) for name, fn in metrics.items()}


def _optimizer(opt_cls, groups, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """``opt_cls(groups, lr=lr)``; on the CPU, Adam and AdamW run torch's fused kernel
    (``fused=True``: one pass over memory per step instead of one per operation, about 1.4x
    faster on the paper's MNIST network) when this torch has it, as the ensemble trainer
    does. It rounds slightly differently from the unfused update."""
    groups = list(groups)
    if opt_cls is not torch.optim.SGD and torch.device(device).type == "cpu":
        try:
            return opt_cls(groups, lr=lr, fused=True)
        except (RuntimeError, TypeError, ValueError):  # an older torch: no fused CPU kernel
            pass
    return opt_cls(groups, lr=lr)


def train(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    batch_size: int = 64,
    optimizer: str = "adamw",
    loss: str = "cross_entropy",
    metrics: Optional[Dict[str, Callable[[nn.Module], object]]] = None,
    eval_steps: Optional[Iterable[int]] = None,
    seed: int = 0,
    schedule: Optional[str] = None,
    progress: bool = True,
    device=None,
    decay_biases: bool = True,
) -> History:
    """Train ``model`` in place for ``steps`` minibatch updates and record a :class:`History`.

    Each update draws a minibatch of ``batch_size`` points (epochs of a random permutation,
    the last batch of an epoch may be smaller; ``batch_size >= len(X)`` is full-batch),
    computes ``loss`` (``"cross_entropy"`` on integer labels, or ``"mse"``: squared error to
    one-hot targets for integer labels, to ``y`` itself for float targets) and takes one
    step of ``optimizer`` (``"adamw"``, ``"adam"`` or ``"sgd"``) with learning rate ``lr``
    and weight decay ``weight_decay`` (decoupled for AdamW, L2 for Adam/SGD).
    ``schedule="cosine"`` anneals the learning rate to 0 over ``steps``.
    ``decay_biases=False`` applies the weight decay to the weights only (parameters whose
    name does not end in ``bias``), the paper's setting; the default decays every parameter.

    At every step in ``eval_steps`` (default ``log_steps(steps, 50)``; 0 is the
    initialisation, before any update) it records, under ``torch.no_grad()`` and in eval
    mode, the full-data training loss and ``metrics[name](model)`` for each metric (a
    number, or a 0- or 1-dim tensor/array). A metric that needs input gradients (e.g. a PGD
    attack) must switch them on itself with ``torch.enable_grad()``.

    Seed semantics: ``seed`` seeds a private ``torch.Generator`` that draws the minibatch
    order, and nothing else; the model's initialisation is the caller's (e.g.
    ``torch.manual_seed`` before building it). On CPU, the same initial model, data and
    seed give an identical History.

    The model and data are moved to ``device`` (default: the model's device).

    Example
    -------
    >>> import torch, lctools
    >>> X, y = torch.rand(64, 2), torch.randint(0, 2, (64,))
    >>> h = train(lctools.MLP(2, [8], 2, seed=0), X, y, steps=20, lr=1e-2, progress=False, eval_steps=[0, 20])
    >>> h.steps.tolist()
    [0, 20]
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    metrics, evals, steps, batch_size, lr, weight_decay = check_train_args(
        X, y, steps, lr, weight_decay, batch_size, optimizer, loss, schedule, metrics, eval_steps)
    decay_biases = check_bool(decay_biases, "decay_biases")
    seed = as_int(seed, "seed")

    device = check_device(device) or _model_device(model)
    model.to(device)
    X, y = X.to(device), y.to(device)
    was_training = model.training
    model.eval()
    check_model_fits(model, X, y, loss)
    model.train(was_training)
    opt_cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}[optimizer]
    opt = _optimizer(opt_cls, decay_groups(model, weight_decay, decay_biases), lr, device)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1)) if schedule == "cosine" else None
    loss_fn = loss_function(loss)
    order = MinibatchOrder(len(X), seed, device)
    recorder = Recorder(list(metrics), K=1)

    def evaluate() -> float:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            loss_now = full_data_loss(lambda xb: model(xb).unsqueeze(0), X, y, loss_fn)
            recorder.add(loss_now, evaluate_metrics(metrics, [model]))
        model.train(was_training)
        return float(loss_now[0])

    eval_set = set(int(s) for s in evals)
    postfix_every = max(1, steps // 200)
    model.train()
    with tqdm(total=steps, disable=not progress, desc="train", leave=False) as bar:
        postfix = {}
        if 0 in eval_set:
            postfix["train_loss"] = f"{evaluate():.4g}"
            bar.set_postfix(postfix)
        for step in range(1, steps + 1):
            idx = order.next(batch_size)
            opt.zero_grad(set_to_none=True)
            batch_loss = loss_fn(model(X[idx]), y[idx])
            batch_loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            bar.update(1)
            if step in eval_set or step % postfix_every == 0:
                postfix["batch_loss"] = f"{batch_loss.item():.4g}"
                if step in eval_set:
                    postfix["train_loss"] = f"{evaluate():.4g}"
                bar.set_postfix(postfix)

    config = dict(
        steps=steps, lr=lr, weight_decay=weight_decay, batch_size=batch_size, optimizer=optimizer,
        loss=loss, seed=int(seed), schedule=schedule, n_train=len(X), decay_biases=bool(decay_biases),
    )
    return recorder.histories(eval_set, [config])[0]
