"""lctools.complexity and lctools.variation as penalties (``differentiable=True``) and at
noise scales where the estimate means little.

Gradients are checked against central finite differences of the same function (the
activation pattern does not change within the step), for every parameter of small nets.
"""
import math
import warnings

import pytest
import torch

import lctools
from helpers import random_mlp

pytestmark = pytest.mark.usefixtures("one_thread")

X = torch.rand(60, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1


def lc_fn(**kw):
    return lambda m: lctools.local_complexity(m, X, 0.7, differentiable=True,
                                              generator=torch.Generator().manual_seed(5), **kw)


def tv_fn(**kw):
    return lambda m: lctools.total_variation(m, X, differentiable=True, **kw)


FUNCTIONS = {
    "lc plug-in": lc_fn(noise_draws=0),
    "lc 3 draws": lc_fn(noise_draws=3),
    "lc shared noise": lc_fn(noise_draws=2, shared_noise=True),
    "lc sum per layer": lambda m: lctools.local_complexity(m, X, 0.4, noise_draws=0, reduction="sum",
                                                           per_layer=True, differentiable=True)[1],
    "lc small budget": lc_fn(noise_draws=0, budget=64),
    "tv": tv_fn(),
    "tv sum": tv_fn(reduction="sum"),
}


def finite_difference_grads(fn, model, h=1e-6):
    grads = []
    for p in model.parameters():
        g = torch.zeros_like(p)
        flat = p.data.view(-1)
        for i in range(flat.numel()):
            old = flat[i].item()
            flat[i] = old + h
            up = float(fn(model))
            flat[i] = old - h
            down = float(fn(model))
            flat[i] = old
            g.view(-1)[i] = (up - down) / (2 * h)
        grads.append(g)
    return grads


@pytest.mark.parametrize("name", list(FUNCTIONS))
@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_gradient_matches_finite_differences(name, activation):
    net = random_mlp(3, [5, 4], 2, seed=1, activation=activation)
    fn = FUNCTIONS[name]
    value = fn(net)
    assert value.requires_grad
    params = list(net.parameters())
    auto = torch.autograd.grad(value, params, allow_unused=True)  # LC does not use the output layer
    auto = [torch.zeros_like(p) if a is None else a for a, p in zip(auto, params)]
    with torch.no_grad():
        numeric = finite_difference_grads(fn, net)
    for a, b in zip(auto, numeric):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert any(float(a.abs().max()) > 0 for a in auto)


@pytest.mark.parametrize("name", ["lc plug-in", "tv"])
def test_default_is_detached_and_equal(name):
    net = random_mlp(3, [5, 4], 2)
    attached = FUNCTIONS[name](net)
    plain = (lctools.local_complexity(net, X, 0.7, noise_draws=0) if name.startswith("lc")
             else lctools.total_variation(net, X))
    assert not plain.requires_grad and attached.requires_grad
    torch.testing.assert_close(attached.detach(), plain, rtol=1e-12, atol=0)


def test_penalty_trains():
    """loss + lambda * LC as a training objective: the penalty has a gradient and lowers LC."""
    net = random_mlp(3, [8, 8], 1, dtype=torch.float32)
    x = X.float()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    start = float(lctools.local_complexity(net, x, 0.5, noise_draws=0))
    for _ in range(20):
        opt.zero_grad()
        lctools.local_complexity(net, x, 0.5, noise_draws=0, differentiable=True).backward()
        opt.step()
    assert float(lctools.local_complexity(net, x, 0.5, noise_draws=0)) < start


def test_dead_neurons_give_zero_not_nan_gradients():
    net = random_mlp(3, [6, 6], 1)
    with torch.no_grad():
        net[2].bias[:3] = -100.0  # three neurons of layer 2 dead everywhere: zero rows of later Jacobians
        net[0].bias[0] = -100.0
    for fn in (FUNCTIONS["lc plug-in"], FUNCTIONS["tv"]):
        grads = torch.autograd.grad(fn(net), list(net.parameters()), allow_unused=True)
        assert all(g is None or bool(torch.isfinite(g).all()) for g in grads)


# ----------------------------------------------------------------------------- tiny and extreme s
def square_net():
    return random_mlp(2, [16, 16], 1, seed=0, bias_std=0.3, dtype=torch.float32)


XS = torch.rand(400, 2, generator=torch.Generator().manual_seed(3)) * 2 - 1


@pytest.mark.parametrize("sigma", [1e-9, 1e-12, 1e-30])
@pytest.mark.parametrize("noise_draws", [0, 2])
def test_tiny_sigma_warns_that_the_estimate_means_nothing(sigma, noise_draws):
    with pytest.warns(lctools.complexity.LCWarning, match="no sample point|few points"):
        lctools.local_complexity(square_net(), XS, sigma, noise_draws=noise_draws)
    with pytest.warns(lctools.complexity.LCWarning):
        lctools.local_complexity_bound(square_net(), XS, sigma)


@pytest.mark.parametrize("n, sigma", [(5, 2e-3), (40, 1e-3), (400, 1e-4)])
def test_few_points_near_a_boundary_warn_from_the_standard_error(n, sigma):
    """Relative standard errors of 1.0, 0.8 and 0.54 (the limit LC is about 16 here)."""
    with pytest.warns(lctools.complexity.LCWarning, match="relative standard error"):
        lctools.local_complexity(square_net(), XS[:n], sigma, noise_draws=0)


@pytest.mark.parametrize("sigma", [0.05, 0.3, 2.0])
def test_ordinary_sigma_is_silent(sigma):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lctools.local_complexity(square_net(), XS, sigma)


def test_dead_network_has_lc_zero_without_warning():
    net = square_net()
    with torch.no_grad():
        net[0].weight.zero_()  # every gradient norm is 0: LC = 0 exactly
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert float(lctools.local_complexity(net, XS, 1e-9)) == 0.0


@pytest.mark.parametrize("sigma, dtype", [(1e39, torch.float32), (1e300, torch.float64), (1e-320, torch.float32)])
def test_nan_results_are_refused(sigma, dtype):
    net = square_net().to(dtype)
    try:
        value = lctools.local_complexity(net, XS.to(dtype), sigma, noise_draws=2)
    except ValueError as exc:
        assert "NaN or infinite" in str(exc)
    else:  # a finite answer is acceptable; a NaN never is
        assert math.isfinite(float(value))


def test_per_point_values_do_not_warn():
    """reduction='none' hands the points to the caller (chapter 2 sweeps s with it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = lctools.local_complexity(square_net(), XS, 1e-9, reduction="none")
    assert float(values.sum()) == 0.0
