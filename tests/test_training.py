"""Tests for lctools.training: log_steps, train(), History and accuracy."""
import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from lctools import MLP
from lctools.data import two_moons
from lctools.training import History, accuracy, log_steps, train


def make_model(seed=0, widths=(16, 16)):
    torch.manual_seed(seed)
    return MLP(2, list(widths), 2)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def moons():
    return two_moons(n=256, noise=0.1, seed=0)


def test_log_steps():
    s = log_steps(1000, 50)
    assert s[0] == 0 and s[-1] == 1000 and len(s) <= 50
    assert s.dtype == np.int64 and np.all(np.diff(s) > 0)
    assert np.all(np.isin([0, 1, 2, 3], s))  # dense at the start
    assert log_steps(0).tolist() == [0]
    assert log_steps(1).tolist() == [0, 1]
    assert log_steps(10**6, 30)[-1] == 10**6
    with pytest.raises(ValueError):
        log_steps(-1)


def test_determinism_and_seed(moons):
    X, y = moons
    metric = {"w": lambda m: m[0].weight.norm()}
    runs = [train(make_model(), X, y, 60, lr=1e-2, seed=s, progress=False, metrics=metric) for s in (7, 7, 8)]
    a, b, c = runs
    np.testing.assert_array_equal(a.steps, b.steps)
    np.testing.assert_allclose(a.loss, b.loss, rtol=0, atol=0)
    np.testing.assert_allclose(a["w"], b["w"], rtol=0, atol=0)
    assert a.loss[0] == c.loss[0]  # same init, step 0 is before any update
    assert not np.allclose(a.loss[1:], c.loss[1:], rtol=0, atol=0)  # different minibatch order


def test_learns_two_moons(moons):
    X, y = moons
    model = make_model(widths=(32, 32))
    hist = train(
        model, X, y, 400, lr=1e-2, batch_size=32, progress=False,
        metrics={"acc": lambda m: accuracy(m, X, y)},
    )
    assert hist.loss[-1] < 0.5 * hist.loss[0]
    assert hist["acc"][-1] > 0.9 and accuracy(model, X, y) == pytest.approx(hist["acc"][-1])
    assert hist.config["optimizer"] == "adamw" and hist.config["steps"] == 400


def test_eval_steps_and_vector_metrics(moons):
    X, y = moons
    seen = []

    def per_layer(model):  # a vector metric: weight norm of each Linear layer
        seen.append(torch.is_grad_enabled())
        return torch.stack([m.weight.norm() for m in model if isinstance(m, torch.nn.Linear)])

    hist = train(make_model(), X, y, 20, eval_steps=[20, 0, 5, 5], metrics={"norms": per_layer},
                 progress=False, optimizer="sgd", loss="mse", schedule="cosine")
    assert hist.steps.tolist() == [0, 5, 20] and len(hist) == 3
    assert hist["norms"].shape == (3, 3) and hist.loss.shape == (3,)
    assert seen == [False, False, False]  # metrics run under torch.no_grad()
    default = train(make_model(), X, y, 30, progress=False)
    np.testing.assert_array_equal(default.steps, log_steps(30, 50))
    assert default.metrics == {}


def test_metric_zero_steps_records_init(moons):
    X, y = moons
    model = make_model()
    before = [p.clone() for p in model.parameters()]
    hist = train(model, X, y, 0, progress=False, optimizer="adam")
    assert hist.steps.tolist() == [0]
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))


def test_history_roundtrip_and_plot(moons):
    X, y = moons
    hist = train(make_model(), X, y, 10, progress=False, metrics={
        "scalar": lambda m: 1.5, "vec": lambda m: np.array([1.0, 2.0])})
    d = json.loads(json.dumps(hist.to_dict()))
    back = History.from_dict(d)
    np.testing.assert_array_equal(back.steps, hist.steps)
    np.testing.assert_array_equal(back.loss, hist.loss)
    for k in hist.metrics:
        np.testing.assert_array_equal(back[k], hist[k])
    assert back.config == hist.config and back["vec"].shape == (len(hist), 2)
    assert "vec" in back and "nope" not in back
    with pytest.raises(KeyError):
        back["nope"]
    ax = back.plot(["loss", "vec"])
    assert len(ax.lines) == 3 and ax.get_xscale() == "symlog"
    ax2 = back.plot("scalar", logx=False)
    assert ax2.get_xscale() == "linear"
    plt.close("all")


def test_bad_arguments(moons):
    X, y = moons
    m = make_model()
    bad = [
        dict(optimizer="lbfgs"), dict(loss="hinge"), dict(steps=-1), dict(batch_size=0),
        dict(y=y[:-1]), dict(eval_steps=[0, 11]), dict(metrics={"x": 3}), dict(schedule="step"),
        dict(y=y.float()), dict(lr=-1.0), dict(metrics={"loss": lambda m: 0.0}),
    ]
    for kwargs in bad:
        args = dict(X=X, y=y, steps=10, progress=False)
        args.update(kwargs)
        with pytest.raises(ValueError):
            train(m, **args)
    with pytest.raises(ValueError):
        accuracy(m, X, y[:3])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_train_on_cuda_matches_cpu(moons):
    X, y = moons
    runs = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        net = MLP(2, [16, 16], 2)
        runs[device] = train(net, X, y, 50, lr=1e-2, eval_steps=[0, 25, 50], progress=False, device=device,
                             metrics={"acc": lambda m: accuracy(m, X, y)})
        assert next(net.parameters()).device.type == device
    np.testing.assert_allclose(runs["cuda"].loss, runs["cpu"].loss, rtol=1e-3)


# ----------------------------------------------------------------------------- clear errors
def _trainers():
    from lctools.ensemble import Ensemble, train_ensemble

    yield "train", lambda X, y, **kw: train(make_model(), X, y, 2, progress=False, **kw)
    yield "train_ensemble", lambda X, y, **kw: train_ensemble(
        Ensemble.build(lambda: make_model(), [0, 1]), X, y, 2, progress=False, **kw)


TRAINERS = dict(_trainers())


@pytest.mark.parametrize("trainer", list(TRAINERS))
@pytest.mark.parametrize("labels, loss", [
    ([0, 1, 2], "cross_entropy"), ([-1, 0, 1], "cross_entropy"), ([0, 1, 5], "mse"), ([0, -3, 1], "mse"),
])
def test_labels_out_of_range(moons, trainer, labels, loss):
    X, _ = moons
    y = torch.tensor(labels * (len(X) // 3) + labels[: len(X) % 3])
    with pytest.raises(ValueError, match=r"labels y must lie in 0\.\.1"):
        TRAINERS[trainer](X, y, loss=loss)


@pytest.mark.parametrize("trainer", list(TRAINERS))
@pytest.mark.parametrize("width", [1, 3, 10])
def test_inputs_of_the_wrong_width(moons, trainer, width):
    X, y = moons
    with pytest.raises(ValueError, match="cannot take X of shape"):
        TRAINERS[trainer](torch.rand(len(X), width), y)


@pytest.mark.parametrize("trainer", list(TRAINERS))
def test_float_targets_of_the_wrong_width(moons, trainer):
    X, _ = moons
    with pytest.raises(ValueError, match="2 values per point"):
        TRAINERS[trainer](X, torch.rand(len(X), 3), loss="mse")
    with pytest.raises(ValueError, match="cross_entropy.*one integer label per point"):
        TRAINERS[trainer](X, torch.zeros(len(X), 2, dtype=torch.long))


@pytest.mark.parametrize("trainer", list(TRAINERS))
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "tpu", "mps", "nonsense"])
def test_unavailable_device_gets_a_clean_message(moons, trainer, device):
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    X, y = moons
    with pytest.raises(ValueError, match="device|torch sees no"):
        TRAINERS[trainer](X, y, device=device)
