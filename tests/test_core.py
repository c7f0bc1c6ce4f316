"""lctools' core quantities against independent computations.

- local complexity against the exact expected boundary length of regioncam partitions
  (the coarea theorem, checked in 2D) and against per-neuron autograd gradients;
- local rank and total variation against torch.func (vmap(jacrev), svdvals);
- internal consistency: per-layer sums, reductions, chunking, dtypes and devices.
"""
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import jacrev, vmap

import lctools
from helpers import random_mlp, hidden_maps, reference_pre_jacobians
from lctools import regions
from lctools.rank import _positive_inertia

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: one thread is faster


# --------------------------------------------------------------------------------------
# Local complexity
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "widths, activation, sigma, bounds",
    [
        ([12, 12], "relu", 0.1, (-1.0, 1.0, -1.0, 1.0)),
        ([10, 10, 10], "relu", 0.05, (-0.5, 1.5, -1.0, 0.5)),
        ([12, 12], "leaky_relu", 0.2, (-1.0, 1.0, -1.0, 1.0)),
    ],
)
def test_lc_equals_expected_boundary_length_of_exact_partitions(widths, activation, sigma, bounds):
    """Coarea theorem: for x uniform on the box K, LC_s = E_eps[length(locus ∩ K)] / area(K).

    100 exact partitions per case (each a regioncam partition of a perturbed network) and
    20000 points: the combined standard error is 0.6-1% of the value, so the 4-sigma band is
    at most ~4% and the 5% bound below still binds."""
    net = random_mlp(2, widths, seed=len(widths), activation=activation, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    x0, x1, y0, y1 = bounds
    area = (x1 - x0) * (y1 - y0)
    exact = np.array([
        regions.partition2d(lctools.perturb_biases(net, sigma, gen), bounds=bounds).boundary_length / area
        for _ in range(100)
    ])
    u = torch.rand(20000, 2, generator=gen)
    x = torch.stack([x0 + (x1 - x0) * u[:, 0], y0 + (y1 - y0) * u[:, 1]], dim=1)
    per_point = lctools.local_complexity(net, x, sigma=sigma, noise_draws=16, reduction="none", generator=gen)
    est, exact_mean = per_point.mean().item(), exact.mean()
    stderr = math.sqrt(exact.var() / len(exact) + per_point.var().item() / len(per_point))
    assert abs(est - exact_mean) < 4 * stderr + 1e-9
    assert abs(est - exact_mean) / exact_mean < 0.05


def test_lc_plugin_matches_autograd_reference():
    net = random_mlp(5, [8, 7, 6], out_dim=2, seed=3)
    x = torch.randn(50, 5, dtype=torch.float64)
    sigma = 0.3
    per_layer = lctools.local_complexity(net, x, sigma, noise_draws=0, reduction="none", per_layer=True)
    for l, (m, J) in enumerate(zip(hidden_maps(net), reference_pre_jacobians(net, x))):
        z = m(x)
        ref = (lctools.gaussian_density(z, sigma) * torch.linalg.vector_norm(J, dim=2)).sum(dim=1)
        torch.testing.assert_close(per_layer[:, l], ref.detach(), rtol=1e-10, atol=1e-12)


def test_lc_removes_own_noise_and_keeps_trained_bias():
    """One shared noise draw: sum phi_s(z_pert - eps) ||grad z_pert|| on the perturbed net."""
    net = random_mlp(3, [6, 5], seed=4)
    x = torch.randn(40, 3, dtype=torch.float64)
    sigma = 0.25
    value = lctools.local_complexity(
        net, x, sigma, noise_draws=1, shared_noise=True, generator=torch.Generator().manual_seed(7)
    )
    g = torch.Generator().manual_seed(7)
    eps = [sigma * torch.randn(n, generator=g, dtype=torch.float64) for n in (6, 5)]
    noisy = lctools.MLP(3, [6, 5], 1).to(torch.float64)
    noisy.load_state_dict(net.state_dict())
    with torch.no_grad():
        for layer, e in zip(noisy.hidden_layers, eps):
            layer.bias += e
    ref = 0.0
    for m, J, e in zip(hidden_maps(noisy), reference_pre_jacobians(noisy, x), eps):
        zbar = m(x) - e
        ref = ref + (lctools.gaussian_density(zbar, sigma) * torch.linalg.vector_norm(J, dim=2)).sum(1)
    torch.testing.assert_close(value, ref.mean().detach(), rtol=1e-10, atol=0)


def test_lc_reductions_and_layers_are_consistent():
    net = random_mlp(4, [9, 9, 9], seed=5)
    x = torch.randn(30, 4, dtype=torch.float64)
    kw = dict(sigma=0.2, noise_draws=3)
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    none = lctools.local_complexity(net, x, reduction="none", generator=g(), **kw)
    layered = lctools.local_complexity(net, x, reduction="none", per_layer=True, generator=g(), **kw)
    assert none.shape == (30,) and layered.shape == (30, 3)
    torch.testing.assert_close(layered.sum(1), none)
    torch.testing.assert_close(lctools.local_complexity(net, x, generator=g(), **kw), none.mean())
    torch.testing.assert_close(lctools.local_complexity(net, x, reduction="sum", generator=g(), **kw), none.sum())
    torch.testing.assert_close(
        lctools.local_complexity(net, x, per_layer=True, generator=g(), **kw), layered.mean(0)
    )


def test_lc_chunking_does_not_change_the_result():
    net = random_mlp(6, [10, 10], seed=6)
    x = torch.randn(101, 6, dtype=torch.float64)
    big = lctools.local_complexity(net, x, 0.1, noise_draws=0)
    small = lctools.local_complexity(net, x, 0.1, noise_draws=0, budget=6 * 10 * 7)  # 7 points per chunk
    torch.testing.assert_close(big, small)
    lr_big = lctools.local_rank(net, x, eps=0.05)
    lr_small = lctools.local_rank(net, x, eps=0.05, budget=6 * 10 * 7)
    torch.testing.assert_close(lr_big, lr_small)


def test_lc_bound_holds_and_has_the_stated_constants():
    net = random_mlp(3, [20, 20], seed=8)
    x = torch.randn(200, 3, dtype=torch.float64)
    b = lctools.local_complexity_bound(net, x, sigma=0.1)
    assert b.c_bias == pytest.approx(1 / (0.1 * math.sqrt(2 * math.pi)))
    assert b.num_neurons == 40
    assert 0 < b.value <= b.bound
    assert b.value == pytest.approx(lctools.local_complexity(net, x, 0.1, noise_draws=0).item())
    assert b.c_grad <= b.grad_norm_sup + 1e-12


def test_lc_noise_is_reproducible_with_a_generator():
    net = random_mlp(2, [8, 8], seed=9)
    x = torch.rand(64, 2, dtype=torch.float64)
    a = lctools.local_complexity(net, x, 0.1, noise_draws=4, generator=torch.Generator().manual_seed(3))
    b = lctools.local_complexity(net, x, 0.1, noise_draws=4, generator=torch.Generator().manual_seed(3))
    assert a.item() == b.item()


# --------------------------------------------------------------------------------------
# Local rank
# --------------------------------------------------------------------------------------


def test_positive_inertia_matches_eigenvalues():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(200, 12, 12, generator=g, dtype=torch.float64)
    S = A + A.transpose(1, 2)  # indefinite: exercises 2x2 pivot blocks
    S[:50] = S[:50] @ S[:50].transpose(1, 2) - 2.0 * torch.eye(12, dtype=torch.float64)
    expected = (torch.linalg.eigvalsh(S) > 0).sum(1)
    assert torch.equal(_positive_inertia(S), expected)


@pytest.mark.parametrize("in_dim, widths", [(12, [10, 16, 8]), (3, [20, 20]), (30, [8, 8, 8, 8])])
@pytest.mark.parametrize("eps", [1e-3, 0.1, 0.5])
def test_local_rank_matches_svdvals_of_autograd_jacobians(in_dim, widths, eps):
    net = random_mlp(in_dim, widths, out_dim=3, seed=in_dim)
    x = torch.randn(40, in_dim, dtype=torch.float64)
    counts = lctools.local_rank(net, x, eps=eps, reduction="none")
    counts_post = lctools.local_rank(net, x, eps=eps, features="post", reduction="none")
    for l, (m, J) in enumerate(zip(hidden_maps(net), reference_pre_jacobians(net, x))):
        ref = (torch.linalg.svdvals(J) > eps).sum(1)
        assert torch.equal(counts[:, l], ref)
        Jpost = vmap(jacrev(lambda v: torch.relu(m(v))))(x)
        assert torch.equal(counts_post[:, l], (torch.linalg.svdvals(Jpost) > eps).sum(1))
    mean = lctools.local_rank(net, x, eps=eps)
    torch.testing.assert_close(mean, counts.double().mean(0))
    torch.testing.assert_close(lctools.local_rank(net, x, eps=eps, reduction="sum"), counts.double().sum(0))


def test_local_rank_is_bounded_by_dimensions():
    net = random_mlp(2, [30, 30, 30], seed=1)
    lr = lctools.local_rank(net, torch.randn(100, 2, dtype=torch.float64), eps=1e-6)
    assert torch.all(lr <= 2) and lr[0] == 2


# --------------------------------------------------------------------------------------
# Total variation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_total_variation_matches_autograd(activation):
    net = random_mlp(7, [11, 9, 5], out_dim=4, seed=2, activation=activation)
    x = torch.randn(60, 7, dtype=torch.float64)
    J = vmap(jacrev(net))(x)
    torch.testing.assert_close(lctools.input_jacobian(net, x), J.detach())
    ref = torch.linalg.matrix_norm(J).detach()
    torch.testing.assert_close(lctools.total_variation(net, x, reduction="none"), ref)
    torch.testing.assert_close(lctools.total_variation(net, x), ref.mean())
    torch.testing.assert_close(lctools.total_variation(net, x, reduction="sum"), ref.sum())
    torch.testing.assert_close(lctools.total_variation(net, x, budget=4 * 11 * 3), ref.mean())


# --------------------------------------------------------------------------------------
# Models, dtypes, devices
# --------------------------------------------------------------------------------------


def test_plain_sequential_with_flatten_is_accepted():
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.LeakyReLU(0.1), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(10, 1, 4, 4)
    assert lctools.local_complexity(seq, x, 0.1, noise_draws=0).shape == ()
    assert lctools.local_rank(seq, x).shape == (2,)
    ref = torch.linalg.matrix_norm(vmap(jacrev(seq))(x).reshape(10, 2, 16)).mean()
    torch.testing.assert_close(lctools.total_variation(seq, x), ref.detach())


def test_results_follow_the_model_dtype():
    x = torch.randn(8, 3)
    for dtype in (torch.float32, torch.float64):
        net = random_mlp(3, [5, 5], dtype=dtype)
        assert lctools.local_complexity(net, x, 0.1, noise_draws=2).dtype == dtype
        assert lctools.total_variation(net, x).dtype == dtype
        assert lctools.local_rank(net, x).dtype == dtype


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_agrees_with_cpu():
    net = random_mlp(20, [32, 32, 32], out_dim=5, seed=11, dtype=torch.float32)
    x = torch.randn(300, 20)
    gpu = random_mlp(20, [32, 32, 32], out_dim=5, seed=11, dtype=torch.float32).cuda()
    xg = x.cuda()
    torch.testing.assert_close(
        lctools.local_complexity(gpu, xg, 0.1, noise_draws=0).cpu(),
        lctools.local_complexity(net, x, 0.1, noise_draws=0), rtol=1e-4, atol=1e-5,
    )
    torch.testing.assert_close(lctools.total_variation(gpu, xg).cpu(), lctools.total_variation(net, x), rtol=1e-4, atol=1e-5)
    assert (lctools.local_rank(gpu, xg, eps=0.05).cpu() - lctools.local_rank(net, x, eps=0.05)).abs().max() < 0.05
    lc = lctools.local_complexity(gpu, xg, 0.1, noise_draws=4)
    assert lc.device.type == "cuda"


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, match",
    [
        (nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)), "Tanh"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(4, 1)), "Conv2d"),
        (nn.Sequential(nn.Linear(2, 4), nn.ReLU()), "ends with an activation"),
        (nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.ReLU(), nn.Linear(4, 1)), "expected nn.Linear"),
        (nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(5, 1)), "expects 5 inputs"),
        (nn.Linear(2, 3), "unsupported model type Linear"),
        (nn.Sequential(nn.Linear(2, 3)), "no hidden layer"),
    ],
)
def test_unsupported_models_raise_value_error(model, match):
    for fn in (
        lambda: lctools.local_complexity(model, torch.randn(3, 2), 0.1),
        lambda: lctools.local_rank(model, torch.randn(3, 2)),
        lambda: lctools.total_variation(model, torch.randn(3, 2)),
    ):
        with pytest.raises(ValueError, match=match) as info:
            fn()
        assert "supports" in str(info.value) or "expects" in str(info.value)


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.randn(4, 3), r"shape \(4, 3\).*\(N, 2\)"),
        (torch.empty(0, 2), "empty batch"),
        (torch.tensor([[0.0, float("nan")]]), "NaN or infinite"),
        (torch.tensor([[float("inf"), 0.0]]), "NaN or infinite"),
        (torch.tensor(1.0), "scalar"),
        ([[0.0, 1.0]], "torch.Tensor"),
    ],
)
def test_bad_inputs_raise_value_error(x, match):
    net = random_mlp(2, [4, 4], dtype=torch.float32)
    for fn in (lctools.local_complexity, lctools.local_rank, lctools.total_variation):
        kwargs = {"sigma": 0.1} if fn is lctools.local_complexity else {}
        with pytest.raises(ValueError, match=match):
            fn(net, x, **kwargs)


def test_bad_arguments_raise_value_error():
    net = random_mlp(2, [4, 4], dtype=torch.float32)
    x = torch.randn(5, 2)
    with pytest.raises(ValueError, match="sigma"):
        lctools.local_complexity(net, x, sigma=0.0)
    with pytest.raises(ValueError, match="noise_draws"):
        lctools.local_complexity(net, x, sigma=0.1, noise_draws=-1)
    with pytest.raises(ValueError, match="reduction"):
        lctools.local_complexity(net, x, sigma=0.1, reduction="max")
    with pytest.raises(ValueError, match="features"):
        lctools.local_rank(net, x, features="both")
    with pytest.raises(ValueError, match="eps"):
        lctools.local_rank(net, x, eps=-1.0)
    with pytest.raises(ValueError, match="activation"):
        lctools.MLP(2, [3], 1, activation="tanh")


# --------------------------------------------------------------------------------------
# Small helpers used by the chapters
# --------------------------------------------------------------------------------------


def test_mlp_he_init_bias_std_and_slicing():
    torch.manual_seed(0)
    net = lctools.MLP(400, [300, 300], 1, init="he", bias_std=0.3)
    w = net[2].weight
    assert abs(w.std().item() - math.sqrt(2 / 300)) < 0.01 * math.sqrt(2 / 300) * 10
    assert abs(net[0].bias.std().item() - 0.3) < 0.05
    head = net[:-1]
    assert type(head) is nn.Sequential and len(head) == 4
    with pytest.raises(ValueError, match="init"):
        lctools.MLP(2, [3], 1, init="xavier")


def test_uniform_box_and_preactivation_rms():
    g = torch.Generator().manual_seed(0)
    x = lctools.data.uniform_box(20000, (-0.5, 1.5, 2.0, 3.0), generator=g)
    assert x.shape == (20000, 2) and x.dtype == torch.float32
    assert x[:, 0].min() >= -0.5 and x[:, 0].max() <= 1.5 and x[:, 1].min() >= 2.0 and x[:, 1].max() <= 3.0
    torch.testing.assert_close(x.mean(0), torch.tensor([0.5, 2.5]), atol=0.02, rtol=0)
    with pytest.raises(ValueError):
        lctools.data.uniform_box(10, (1.0, 0.0))
    net = random_mlp(2, [5, 6], seed=3)
    xd = x.double()
    zs = [m(xd) for m in hidden_maps(net)]
    ref = torch.cat(zs, dim=1).square().mean().sqrt().item()
    assert lctools.complexity.preactivation_rms(net, xd) == pytest.approx(ref, rel=1e-10)


def test_distance_to_locus_matches_one_line():
    """One neuron: the locus is the line w.x + b = 0 and the distance is |w.x + b| / ||w||."""
    net = lctools.MLP(2, [1], 1).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 2.0]]))
        net[0].bias.fill_(0.3)
    P = regions.partition2d(net)
    pts = np.random.default_rng(0).uniform(-0.3, 0.3, size=(50, 2))
    ref = np.abs(pts @ np.array([1.0, 2.0]) + 0.3) / math.sqrt(5.0)
    np.testing.assert_allclose(P.distance_to_locus(pts), ref, atol=1e-5)
