"""Tests for lctools.robustness against a two-class linear classifier, where the worst case
in the ball is known in closed form.

For f(x) = W x + b with two outputs and w = w_y - w_o, c = b_y - b_o, the margin is
m(x) = w.x + c. Over ||delta||_q <= eps its minimum is m(x) - eps ||w||_{q*} (q* the dual
norm: L-inf ball -> ||w||_1, L2 ball -> ||w||_2), attained at delta = -eps sign(w) (L-inf)
or delta = -eps w / ||w||_2 (L2).
"""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lctools import MLP, robustness
from lctools.data import two_moons
from lctools.training import train

EPS = 0.3


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def linear():
    """nn.Flatten + nn.Linear(6, 2) in float64, inputs of shape (N, 2, 3)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 2)).double()
    x = torch.randn(200, 2, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (200,))
    return model, x, y


def margins(model, x, y):
    W, b = model[1].weight, model[1].bias
    w = W[y] - W[1 - y]  # (N, 6)
    return (w * x.reshape(len(x), -1)).sum(1) + b[y] - b[1 - y], w


def closed_form(model, x, y, eps, norm):
    m, w = margins(model, x, y)
    dual = w.abs().sum(1) if norm == "inf" else w.norm(dim=1)
    return (m - eps * dual).detach()


@pytest.mark.parametrize("norm", ["inf", "2"])
@pytest.mark.parametrize("loss", ["cross_entropy", "margin"])
def test_fgsm_and_pgd_reach_the_closed_form_worst_case(linear, norm, loss):
    model, x, y = linear
    target = closed_form(model, x, y, EPS, norm)
    gen = torch.Generator().manual_seed(1)
    attacks = {
        "fgsm": robustness.fgsm(model, x, y, EPS, norm=norm, loss=loss),
        "pgd": robustness.pgd(model, x, y, EPS, norm=norm, loss=loss, random_start=False),
        # from a random start the L2 iterate needs larger steps to lose its sideways part
        "pgd_random": robustness.pgd(model, x, y, EPS, norm=norm, loss=loss, generator=gen,
                                     steps=10 if norm == "inf" else 60, step_size=None if norm == "inf" else EPS),
    }
    for name, x_adv in attacks.items():
        assert x_adv.shape == x.shape and x_adv.dtype == torch.float64 and not x_adv.requires_grad
        torch.testing.assert_close(margins(model, x_adv, y)[0].detach(), target, rtol=0, atol=1e-5, msg=name)
        delta = (x_adv - x).reshape(len(x), -1)
        size = delta.abs().amax(1) if norm == "inf" else delta.norm(dim=1)
        assert (size <= EPS + 1e-6).all(), name


def test_optimal_perturbation_is_the_closed_form_one(linear):
    model, x, y = linear
    _, w = margins(model, x, y)
    d_inf = (robustness.pgd(model, x, y, EPS, norm="inf") - x).reshape(len(x), -1)
    torch.testing.assert_close(d_inf, -EPS * w.sign().detach(), rtol=0, atol=1e-9)
    d_2 = (robustness.fgsm(model, x, y, EPS, norm="2") - x).reshape(len(x), -1)
    torch.testing.assert_close(d_2, (-EPS * w / w.norm(dim=1, keepdim=True)).detach(), rtol=0, atol=1e-9)


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_robust_accuracy_matches_closed_form_count(linear, norm):
    model, x, y = linear
    m, _ = margins(model, x, y)
    for eps in (0.0, 0.1, EPS, 1.0):
        expected = (closed_form(model, x, y, eps, norm) > 0).double().mean().item()
        got = robustness.robust_accuracy(model, x, y, eps, norm=norm, steps=10 if norm == "inf" else 40,
                                         random_start=False, batch_size=64)
        assert got == pytest.approx(expected, abs=1e-12), eps
    assert robustness.robust_accuracy(model, x, y, 0.0) == (m > 0).double().mean().item()


def test_project():
    torch.manual_seed(0)
    d = torch.randn(5, 3, 4, dtype=torch.float64)
    p = robustness.project(d, 0.5, "inf")
    torch.testing.assert_close(p, d.clamp(-0.5, 0.5))
    n = d.reshape(5, -1).norm(dim=1)
    eps = n[2].item()  # example 2 sits on the sphere, smaller ones inside are unchanged
    p = robustness.project(d, eps, "2")
    pn = p.reshape(5, -1).norm(dim=1)
    for i in range(5):
        if n[i] <= eps:
            assert torch.equal(p[i], d[i])
        else:
            assert pn[i].item() == pytest.approx(eps, rel=1e-12)
            torch.testing.assert_close(p[i] / pn[i], d[i] / n[i])  # same direction
    assert torch.equal(robustness.project(d, 0.0, "2"), torch.zeros_like(d))
    assert torch.equal(robustness.project(torch.zeros(2, 3), 1.0, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="norm"):
        robustness.project(d, 1.0, "1")


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_clamp_is_respected(norm):
    torch.manual_seed(1)
    model = MLP(8, [16], 3)
    x, y = torch.rand(64, 8), torch.randint(0, 3, (64,))
    for x_adv in (
        robustness.fgsm(model, x, y, EPS, norm=norm, clamp=(0, 1)),
        robustness.pgd(model, x, y, EPS, norm=norm, clamp=(0, 1), generator=torch.Generator().manual_seed(0)),
    ):
        assert x_adv.min() >= 0 and x_adv.max() <= 1
        d = (x_adv - x)
        size = d.abs().amax(1) if norm == "inf" else d.norm(dim=1)
        assert (size <= EPS + 1e-6).all()
    with pytest.raises(ValueError, match="clamp"):
        robustness.pgd(model, x + 2, y, EPS, clamp=(0, 1))


def test_parameters_and_modes_untouched():
    torch.manual_seed(2)
    model = MLP(4, [8, 8], 3)
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    model[0].weight.grad = torch.ones_like(model[0].weight)  # the others stay None
    before = copy.deepcopy(model.state_dict())
    model.train()
    model[1].eval()  # a mixed train/eval state must come back as it was
    robustness.robust_accuracy(model, x, y, 0.1, steps=3)
    robustness.fgsm(model, x, y, 0.1, norm="2")
    assert torch.equal(model[0].weight.grad, torch.ones_like(model[0].weight))
    assert all(p.grad is None for name, p in model.named_parameters() if name != "0.weight")
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert model.training and not model[1].training and model[2].training


def test_works_under_no_grad_and_is_batch_size_independent(linear):
    model, x, y = linear
    ref = robustness.pgd(model, x, y, EPS, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a = robustness.pgd(model, x, y, EPS, generator=torch.Generator().manual_seed(3), batch_size=7)
        acc = robustness.robust_accuracy(model, x, y, EPS, batch_size=50)
    torch.testing.assert_close(a, ref, rtol=0, atol=1e-12)
    assert 0.0 <= acc <= 1.0
    # pgd_step is one step of pgd without a random start
    step = robustness.pgd_step(model, x, x, y, EPS, 0.1, "inf")
    torch.testing.assert_close(step, robustness.pgd(model, x, y, EPS, steps=1, step_size=0.1, random_start=False))


def test_inputs_follow_model_dtype_and_callable_loss(linear):
    model, x, y = linear
    x_adv = robustness.fgsm(model, x.float(), y, EPS)
    assert x_adv.dtype == torch.float64
    custom = robustness.fgsm(model, x, y, EPS, loss=lambda out, t: F.cross_entropy(out, t, reduction="none"))
    torch.testing.assert_close(custom, robustness.fgsm(model, x, y, EPS))


def test_errors(linear):
    model, x, y = linear
    with pytest.raises(ValueError, match="eps"):
        robustness.pgd(model, x, y, -0.1)
    with pytest.raises(ValueError, match="norm"):
        robustness.fgsm(model, x, y, 0.1, norm="1")
    with pytest.raises(ValueError, match="same number"):
        robustness.pgd(model, x, y[:-1], 0.1)
    bad = x.clone()
    bad[3, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        robustness.robust_accuracy(model, bad, y, 0.1)
    with pytest.raises(ValueError, match="loss"):
        robustness.pgd(model, x, y, 0.1, loss="hinge")
    with pytest.raises(ValueError, match="steps"):
        robustness.pgd(model, x, y, 0.1, steps=-1)
    with pytest.raises(ValueError, match="integer class labels"):
        robustness.pgd(model, x, y.double(), 0.1)


def test_relu_mlp_sanity():
    """On a trained ReLU MLP: mean loss at PGD points >= at FGSM points >= clean."""
    X, y = two_moons(n=256, noise=0.1, seed=0)
    torch.manual_seed(0)
    model = MLP(2, [32, 32], 2)
    train(model, X, y, steps=150, lr=1e-2, progress=False, eval_steps=[0])
    eps = 0.1
    with torch.no_grad():
        clean = F.cross_entropy(model(X), y).item()
        one = F.cross_entropy(model(robustness.fgsm(model, X, y, eps)), y).item()
        many = F.cross_entropy(model(robustness.pgd(model, X, y, eps, steps=20,
                                                    generator=torch.Generator().manual_seed(0))), y).item()
    assert many >= one >= clean
    assert robustness.robust_accuracy(model, X, y, eps) <= robustness.robust_accuracy(model, X, y, 0.0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_closed_form(linear):
    model, x, y = linear
    gpu = copy.deepcopy(model).cuda()
    x_adv = robustness.pgd(gpu, x, y, EPS, generator=torch.Generator().manual_seed(0))  # CPU inputs, CUDA model
    assert x_adv.device.type == "cuda"
    torch.testing.assert_close(margins(model, x_adv.cpu(), y)[0].detach(), closed_form(model, x, y, EPS, "inf"),
                               rtol=0, atol=1e-5)
    acc = robustness.robust_accuracy(gpu, x.cuda(), y.cuda(), EPS, norm="2", steps=40, random_start=False)
    assert acc == pytest.approx((closed_form(model, x, y, EPS, "2") > 0).double().mean().item())
