"""lctools.representation: parameter norm, function-preserving rescalings, balancing and the
representation cost, checked against brute-force minimisation and exact 2D partitions."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import lctools
from helpers import random_mlp
from lctools import regions
from lctools import representation as rep
from lctools.complexity import gaussian_density

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: one thread is faster


def _net(widths, in_dim=2, out_dim=1, seed=0, bias_std=0.3, activation="relu", dtype=torch.float32, flatten=False):
    """He-normal weights and N(0, bias_std^2) biases, so that the zero sets cross [-1, 1]^2."""
    return random_mlp(in_dim, widths, out_dim, seed=seed, bias_std=bias_std, activation=activation, dtype=dtype,
                      slope=0.01, init="he", flatten=flatten)


def _log_uniform(n, lo, hi, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.exp(torch.empty(n, dtype=torch.float64).uniform_(math.log(lo), math.log(hi), generator=g))


def _box(n, seed):
    return torch.rand(n, 2, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _stratified(k, seed):
    """k^2 points uniform on [-1, 1]^2, one in each cell of a k x k grid (low-variance averages)."""
    i = torch.arange(k)
    cells = torch.stack(torch.meshgrid(i, i, indexing="ij"), -1).reshape(-1, 2).float()
    return (cells + torch.rand(cells.shape, generator=torch.Generator().manual_seed(seed))) / k * 2 - 1


# ----------------------------------------------------------------------------- norm
def test_parameter_norm_counts_all_weights_and_biases():
    net = _net([5, 4], out_dim=3)
    lins = [m for m in net if isinstance(m, nn.Linear)]
    w = sum(float((m.weight.detach().double() ** 2).sum()) for m in lins)
    b = sum(float((m.bias.detach().double() ** 2).sum()) for m in lins)
    assert float(rep.parameter_norm(net)) == pytest.approx(w + b, rel=1e-6)
    assert float(rep.parameter_norm(net, include_biases=False)) == pytest.approx(w, rel=1e-6)
    assert not rep.parameter_norm(net).requires_grad
    # differentiable on request: d||theta||^2 / dtheta = 2 theta
    rep.parameter_norm(net, differentiable=True).backward()
    assert torch.allclose(lins[0].weight.grad, 2 * lins[0].weight)


def test_plain_sequential_and_missing_bias():
    seq = nn.Sequential(nn.Linear(2, 3, bias=False), nn.LeakyReLU(0.1), nn.Linear(3, 1))
    x = _box(100, 0)
    alt = rep.rescale_neurons(seq, 1, [0.5, 2.0, 3.0])
    assert torch.allclose(seq(x), alt(x), atol=1e-6)
    with torch.no_grad():
        expected = float((seq[0].weight ** 2).sum() + (seq[2].weight ** 2).sum() + seq[2].bias ** 2)
    assert float(rep.parameter_norm(seq)) == pytest.approx(expected, rel=1e-6)


# ----------------------------------------------------------------------------- rescalings
@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_rescaled_nets_compute_the_same_function_and_partition(activation):
    net = _net([12, 12], activation=activation, seed=1)
    alt = rep.rescale_neurons(net, 1, _log_uniform(12, 0.1, 10, 2))
    alt = rep.rescale_neurons(alt, 2, _log_uniform(12, 0.1, 10, 3))
    alt = rep.rescale_layers(alt, [4.0, 0.5, 0.5])
    x = _box(4000, 4)
    with torch.no_grad():
        assert torch.allclose(net(x), alt(x), rtol=1e-4, atol=1e-5)
    P, Q = regions.partition2d(net), regions.partition2d(alt)
    assert P.num_regions == Q.num_regions
    assert Q.boundary_length == pytest.approx(P.boundary_length, rel=1e-4)
    assert np.allclose(P.boundary_length_per_layer, Q.boundary_length_per_layer, rtol=1e-4)
    assert float(rep.parameter_norm(alt)) > 2 * float(rep.parameter_norm(net))  # a different parametrisation
    assert net[0].weight.data_ptr() != alt[0].weight.data_ptr()  # a copy: the original is untouched


def test_rescale_neurons_scales_the_preactivation():
    net = _net([6, 5], seed=2)
    alpha = _log_uniform(5, 0.2, 5, 7)
    alt = rep.rescale_neurons(net, 2, alpha)
    x = _box(50, 1)
    with torch.no_grad():
        z2, z2_alt = nn.Sequential(*list(net)[:3])(x), nn.Sequential(*list(alt)[:3])(x)
    assert torch.allclose(z2_alt, z2 * alpha.float(), rtol=1e-5, atol=1e-6)


def test_rescale_layers_is_neuronwise_with_cumulative_factors():
    net = _net([4, 3])
    c = [2.0, 0.25, 2.0]
    a = rep.rescale_layers(net, c)
    b = rep.rescale_neurons(rep.rescale_neurons(net, 1, 2.0), 2, 0.5)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, rtol=1e-6)
    assert torch.allclose(a[0].weight, 2 * net[0].weight) and torch.allclose(a[2].bias, 0.5 * net[2].bias)


def test_lc_at_fixed_s_changes_but_its_small_s_limit_does_not():
    net = _net([16], seed=3)
    x = _box(20_000, 5)
    shrunk = rep.rescale_layers(net, [0.05, 20.0])  # every neuron alpha = 0.05: noise s acts like s / 0.05
    lc = lambda m, s: float(lctools.local_complexity(m, x, sigma=s, noise_draws=2,  # noqa: E731
                                                     generator=torch.Generator().manual_seed(0)))
    s = 0.1
    before, after = lc(net, s), lc(shrunk, s)
    assert after < 0.5 * before, (before, after)  # a clear change at a fixed noise scale
    # why: rescaling neuron i by alpha_i is the same as noise of scale s / alpha_i on it
    alpha = _log_uniform(16, 0.3, 3, 8)
    alt = rep.rescale_neurons(net, 1, alpha)
    W, b = net[0].weight.detach(), net[0].bias.detach()
    z = x @ W.T + b
    predicted = torch.stack([gaussian_density(z[:, i], s / float(alpha[i])) for i in range(16)], 1) * W.norm(dim=1)
    assert lc(alt, s) == pytest.approx(float(predicted.sum(1).mean()), rel=1e-4)
    # s -> 0: both tend to the exact boundary length per unit area of [-1, 1]^2
    P = regions.partition2d(net)
    density = P.boundary_length / P.area
    xs = _stratified(300, 6)
    small = [float(lctools.local_complexity(m, xs, sigma=0.004, noise_draws=0)) for m in (net, alt, shrunk)]
    big = [float(lctools.local_complexity(m, xs, sigma=1.0, noise_draws=0)) for m in (net, alt, shrunk)]
    for v in small[:2]:
        assert v == pytest.approx(density, rel=0.05), (small, density)
    assert abs(small[0] - small[1]) / density < 0.05
    assert abs(big[0] - big[2]) / big[0] > 0.5  # at a large s the parametrisation matters a lot


def test_lc_change_in_a_deep_net_with_noise():
    net = _net([10, 10], seed=4)
    alt = rep.rescale_layers(net, [5.0, 1.0, 0.2])  # alpha = 5 for every neuron
    x = _box(3000, 2)
    kw = dict(sigma=0.5, noise_draws=4)
    a = float(lctools.local_complexity(net, x, generator=torch.Generator().manual_seed(1), **kw))
    b = float(lctools.local_complexity(alt, x, generator=torch.Generator().manual_seed(1), **kw))
    assert b > 1.2 * a, (a, b)  # larger weights: the same noise is relatively smaller
    assert regions.partition2d(alt).boundary_length == pytest.approx(regions.partition2d(net).boundary_length, rel=1e-4)


# ----------------------------------------------------------------------------- cost and balancing
def _brute_force_one_layer(net, include_biases=True):
    """min over a dense grid of log alpha, neuron by neuron (the terms are independent)."""
    W, b = net[0].weight.detach().double(), net[0].bias.detach().double()
    A, c = net[2].weight.detach().double(), net[2].bias.detach().double()
    u = (W ** 2).sum(1) + (b ** 2 if include_biases else 0)
    v = (A ** 2).sum(0)
    beta = torch.linspace(-8, 8, 40_001, dtype=torch.float64)
    per = (u[:, None] * torch.exp(2 * beta) + v[:, None] * torch.exp(-2 * beta)).min(1).values
    return float(per.sum() + ((c ** 2).sum() if include_biases else 0)), per


@pytest.mark.parametrize("include_biases", [True, False])
def test_one_layer_cost_equals_brute_force_minimum(include_biases):
    net = _net([20], out_dim=3, seed=5, dtype=torch.float64)
    rc = rep.representation_cost(net, include_biases=include_biases)
    assert rc.exact and rc.value <= rc.norm
    brute, per = _brute_force_one_layer(net, include_biases)
    assert rc.value == pytest.approx(brute, rel=1e-7)
    assert np.allclose(rc.per_neuron, per.numpy(), rtol=1e-6)
    # the balanced copy attains it and is balanced
    assert float(rep.parameter_norm(rc.balanced, include_biases)) == pytest.approx(rc.value, rel=1e-10)
    assert rep.imbalance(rc.balanced, include_biases) < 1e-10
    # random joint rescalings never beat it
    W = rep.parameter_norm
    for k in range(200):
        alt = rep.rescale_neurons(net, 1, _log_uniform(20, 0.05, 20, 100 + k))
        assert float(W(alt, include_biases)) >= rc.value * (1 - 1e-12)
    # nor do small perturbations of the optimum
    for k in range(50):
        alt = rep.rescale_neurons(rc.balanced, 1, _log_uniform(20, 0.98, 1.02, 400 + k))
        assert float(W(alt, include_biases)) >= rc.value * (1 - 1e-12)


def test_one_layer_cost_formula_and_scipy():
    scipy_opt = pytest.importorskip("scipy.optimize")
    net = _net([6], in_dim=3, out_dim=2, seed=6, dtype=torch.float64)
    W, b, A, c = (t.detach() for t in (net[0].weight, net[0].bias, net[2].weight, net[2].bias))
    formula = float(2 * (torch.sqrt((W ** 2).sum(1) + b ** 2) * A.norm(dim=0)).sum() + (c ** 2).sum())
    rc = rep.representation_cost(net)
    assert rc.value == pytest.approx(formula, rel=1e-12)
    f = lambda beta: float(rep.parameter_norm(rep.rescale_neurons(net, 1, np.exp(beta))))  # noqa: E731
    res = scipy_opt.minimize(f, np.zeros(6), method="BFGS", options=dict(gtol=1e-10))
    assert res.fun == pytest.approx(rc.value, rel=1e-6) and res.fun >= rc.value * (1 - 1e-12)


def test_iterative_bound_on_one_layer_is_at_least_the_exact_value():
    net = _net([15], seed=7, dtype=torch.float64)
    exact = rep.representation_cost(net)
    it = rep.representation_cost(net, method="iterative")
    assert exact.exact and not it.exact
    assert it.value >= exact.value * (1 - 1e-12)
    assert it.value == pytest.approx(exact.value, rel=1e-9)


def test_deep_balancing_matches_an_exact_chain_cost():
    """Second hidden layer = diag(d) with zero bias: neuron chains w~_i -> d_i -> a_i are independent,
    and min alpha^2 u + beta^2 d^2 / alpha^2 + v / beta^2 = 3 (u d^2 v)^(1/3) (AM-GM with three terms)."""
    one = _net([8], seed=8, dtype=torch.float64)
    d = torch.linspace(0.5, 2.0, 8, dtype=torch.float64)
    deep = lctools.MLP(2, [8, 8], 1).double()
    with torch.no_grad():
        deep[0].weight.copy_(one[0].weight); deep[0].bias.copy_(one[0].bias)
        deep[2].weight.copy_(torch.diag(d)); deep[2].bias.zero_()
        deep[4].weight.copy_(one[2].weight / d); deep[4].bias.copy_(one[2].bias)
    x = _box(500, 3).double()
    with torch.no_grad():
        assert torch.allclose(deep(x), one(x))  # same function as the one-layer net
    with torch.no_grad():
        u = (one[0].weight ** 2).sum(1) + one[0].bias ** 2
        v = (deep[4].weight ** 2).sum(0)
        chain = float((3 * (u * d ** 2 * v) ** (1 / 3)).sum() + one[2].bias ** 2)
    rc = rep.representation_cost(deep, tol=1e-12)
    assert not rc.exact and rc.converged
    assert rc.value == pytest.approx(chain, rel=1e-8) and rc.value >= chain * (1 - 1e-10)


def test_deep_balancing_reaches_the_orbit_minimum():
    scipy_opt = pytest.importorskip("scipy.optimize")
    net = _net([5, 4, 3], seed=9, dtype=torch.float64)
    rc = rep.representation_cost(net, tol=1e-12)
    assert rc.converged and rc.value < rc.norm

    # ||theta||^2 along the orbit in closed form: neuron i of layer l scaled by a_i = exp(beta_i)
    # multiplies its incoming row and bias by a_i and its outgoing column by 1 / a_i
    lins = [m for m in net if isinstance(m, nn.Linear)]
    Ws = [m.weight.detach().double().numpy() for m in lins]
    bs = [m.bias.detach().double().numpy() for m in lins]
    cuts = np.cumsum([0] + [m.out_features for m in lins[:-1]])

    def f(beta):
        a = [np.ones(2)] + [np.exp(beta[i:j]) for i, j in zip(cuts[:-1], cuts[1:])] + [np.ones(1)]
        return sum(float(((a[l + 1][:, None] * W / a[l][None, :]) ** 2).sum() + ((a[l + 1] * b) ** 2).sum())
                   for l, (W, b) in enumerate(zip(Ws, bs)))

    beta = np.random.default_rng(0).normal(size=12)  # the closed form is the library's rescaling
    m = rep.rescale_neurons(rep.rescale_neurons(rep.rescale_neurons(net, 1, np.exp(beta[:5])), 2,
                                                np.exp(beta[5:9])), 3, np.exp(beta[9:]))
    assert f(beta) == pytest.approx(float(rep.parameter_norm(m)), rel=1e-12)
    res = scipy_opt.minimize(f, np.zeros(12), method="BFGS", options=dict(gtol=1e-10))
    assert rc.value == pytest.approx(res.fun, rel=1e-6)
    assert rc.value <= res.fun * (1 + 1e-6)


@pytest.mark.parametrize("widths, activation, flatten", [([7], "relu", False), ([6, 6], "leaky_relu", False),
                                                         ([8, 5, 6], "relu", True)])
def test_balance_never_increases_the_norm_and_keeps_the_function(widths, activation, flatten):
    net = _net(widths, in_dim=4, out_dim=2, seed=10, activation=activation, flatten=flatten)
    net = rep.rescale_layers(net, [3.0] + [1.0] * (len(widths) - 1) + [1 / 3])  # start unbalanced
    x = torch.randn(300, 4, generator=torch.Generator().manual_seed(0))
    norms = [float(rep.parameter_norm(net))]
    for k in (1, 2, 3, 5, 10, 100):
        b = rep.balance(net, max_sweeps=k)
        norms.append(float(rep.parameter_norm(b)))
        with torch.no_grad():
            assert torch.allclose(b(x), net(x), rtol=1e-4, atol=1e-5)
    assert all(n1 <= n0 * (1 + 1e-6) for n0, n1 in zip(norms, norms[1:])), norms
    assert norms[-1] < norms[0]
    full = rep.balance(net)
    assert rep.imbalance(full) < 1e-5
    hist = rep.representation_cost(net).history  # the norm after each sweep, computed in float64
    assert hist[0] == pytest.approx(norms[0], rel=1e-6) and hist[-1] == pytest.approx(norms[-1], rel=1e-5)
    assert all(h1 <= h0 * (1 + 1e-12) for h0, h1 in zip(hist, hist[1:]))
    assert float(rep.parameter_norm(rep.balance(full))) == pytest.approx(float(rep.parameter_norm(full)), rel=1e-6)
    rc = rep.representation_cost(net)
    assert rc.value == pytest.approx(float(rep.parameter_norm(full)), rel=1e-5)
    assert rc.value <= rc.norm


def test_representation_cost_is_invariant_under_rescaling():
    net = _net([6, 6], seed=11, dtype=torch.float64)
    alt = rep.rescale_neurons(rep.rescale_neurons(net, 1, _log_uniform(6, 0.1, 10, 1)), 2, _log_uniform(6, 0.1, 10, 2))
    a, b = rep.representation_cost(net, tol=1e-12), rep.representation_cost(alt, tol=1e-12)
    assert a.value == pytest.approx(b.value, rel=1e-8) and b.norm > a.norm


# ----------------------------------------------------------------------------- LC <= norm bounds
def test_lc_norm_bounds_hold():
    x = _box(2000, 12)
    for widths in ([16], [8, 8], [6, 6, 6]):
        for seed in range(2):
            net = _net(widths, seed=seed)
            for s in (0.05, 0.5):
                B = rep.lc_norm_bound(net, s)
                lc = float(lctools.local_complexity(net, x, sigma=s, noise_draws=2,
                                                    generator=torch.Generator().manual_seed(0)))
                assert lc <= B.by_gradients <= B.by_norm * (1 + 1e-9)
                if len(widths) == 1:
                    bal = rep.balance(net)
                    Bb = rep.lc_norm_bound(bal, s)
                    lc_bal = float(lctools.local_complexity(bal, x, sigma=s, noise_draws=0))
                    assert Bb.balanced and not B.balanced
                    assert lc_bal <= Bb.by_gradients <= Bb.c_bias * Bb.cost_sqrt_sum * (1 + 1e-9)
                    assert Bb.c_bias * Bb.cost_sqrt_sum <= Bb.by_cost * (1 + 1e-9)
                else:
                    assert B.by_cost is None


# ----------------------------------------------------------------------------- errors
def test_clear_errors():
    net = _net([4, 3])
    with pytest.raises(ValueError, match="> 0"):
        rep.rescale_neurons(net, 1, [1.0, 0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="> 0"):
        rep.rescale_neurons(net, 1, -2.0)
    with pytest.raises(ValueError, match="finite"):
        rep.rescale_neurons(net, 1, [1.0, float("nan"), 1.0, 1.0])
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        rep.rescale_neurons(net, 1, [1.0, 2.0])
    with pytest.raises(ValueError, match="out of range"):
        rep.rescale_neurons(net, 0, 1.0)
    with pytest.raises(ValueError, match="out of range"):
        rep.rescale_neurons(net, 3, 1.0)  # the output layer
    with pytest.raises(ValueError, match="integer"):
        rep.rescale_neurons(net, 1.5, 1.0)
    with pytest.raises(ValueError, match="multiply to 1"):
        rep.rescale_layers(net, [2.0, 2.0, 2.0])
    with pytest.raises(ValueError, match="one factor per nn.Linear"):
        rep.rescale_layers(net, [2.0, 0.5])
    with pytest.raises(ValueError, match="> 0"):
        rep.rescale_layers(net, [-1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="not a supported activation"):
        rep.balance(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)))
    with pytest.raises(ValueError, match="no hidden layer"):
        rep.representation_cost(nn.Sequential(nn.Linear(2, 1)))
    with pytest.raises(ValueError, match="closed_form"):
        rep.representation_cost(net, method="closed_form")
    with pytest.raises(ValueError, match="method"):
        rep.representation_cost(net, method="exact")
    with pytest.raises(ValueError, match="include_biases"):
        rep.parameter_norm(net, include_biases="yes")
    with pytest.raises(ValueError, match="sigma"):
        rep.lc_norm_bound(net, 0.0)
    with pytest.raises(ValueError, match="max_sweeps"):
        rep.balance(net, max_sweeps=0)
