"""lctools.rank.local_rank_bound: the local-rank upper bound on per-layer local complexity.

    LC_l = E_x sum_i phi_s(z_{l,i}) ||grad z_{l,i}||
         <= C_bias E_x sum_i ||grad z_{l,i}||
         <= C_bias sqrt(n_l) E_x ||J_l||_F
         <= C_bias sqrt(n_l) E_x sqrt(r(x) sigma_1(x)^2 + (m_l - r(x)) eps^2)
         <= C_bias sqrt(n_l) sqrt(LR_l S_l^2 + (m_l - LR_l) eps^2)

Checked: the chain holds on random and briefly trained networks, and every piece matches
an independent computation from torch.func Jacobians (vmap(jacrev), svdvals).
"""
import math

import pytest
import torch
from torch import nn
from torch.func import jacrev, vmap

import lctools
from helpers import hidden_maps, random_mlp as _random_mlp
from lctools.rank import RankBound, local_rank_bound


def random_mlp(in_dim, widths, out_dim=2, **kw):
    return _random_mlp(in_dim, widths, out_dim, **kw)


pytestmark = pytest.mark.usefixtures("one_thread")


def reference(model, x, sigma, eps):
    """Every piece of the bound from full autograd Jacobians J_l (N, n_l, n_0) and svdvals."""
    c_bias = 1.0 / (sigma * math.sqrt(2 * math.pi))
    out = {k: [] for k in ("lc", "rows", "frob", "pointwise", "bound", "rank", "smax")}
    n0 = x.shape[1]
    for hmap in hidden_maps(model):
        with torch.no_grad():
            z = hmap(x).double()
        J = vmap(jacrev(hmap))(x).double()
        n, m = J.shape[1], min(J.shape[1], n0)
        rows = torch.linalg.vector_norm(J, dim=2)  # (N, n_l)
        phi = torch.exp(-0.5 * (z / sigma) ** 2) * c_bias
        sv = torch.linalg.svdvals(J)  # (N, m)
        assert sv.shape[1] == m
        r = (sv > eps).sum(1).double()
        s1 = sv[:, 0]
        S, LR = s1.max(), r.mean()
        out["lc"].append((phi * rows).sum(1).mean())
        out["rows"].append(c_bias * rows.sum(1).mean())
        out["frob"].append(c_bias * math.sqrt(n) * torch.linalg.matrix_norm(J).mean())
        out["pointwise"].append(c_bias * math.sqrt(n) * torch.sqrt(r * s1**2 + (m - r) * eps**2).mean())
        out["bound"].append(c_bias * math.sqrt(n) * torch.sqrt(LR * S**2 + (m - LR) * eps**2))
        out["rank"].append(LR)
        out["smax"].append(S)
    return {k: torch.stack(v) for k, v in out.items()}


def check_chain(b: RankBound):
    assert b.holds()
    chain = [b.lc, b.row_norm_term, b.frobenius_term, b.pointwise_rank_term, b.bound]
    for lo, hi in zip(chain[:-1], chain[1:]):
        assert (lo <= hi * (1 + 1e-9)).all(), (lo, hi)
    assert (b.bound <= b.generic_bound * (1 + 1e-9) + b.c_bias * torch.sqrt(
        torch.tensor(b.widths, dtype=torch.float64) * b.m) * b.eps).all()
    assert b.total_lc <= b.total_bound


@pytest.mark.parametrize(
    "in_dim, widths, activation, sigma, eps",
    [
        (6, [9, 7, 5], "relu", 0.3, 0.05),    # n_0 < n_1, a narrow last layer
        (12, [8, 10], "relu", 0.5, 0.2),       # n_0 > n_1: the reduced Jacobian has r = n_1 rows
        (5, [8, 8, 8], "leaky_relu", 0.2, 0.1),
    ],
)
def test_pieces_match_torch_func_and_chain_holds(in_dim, widths, activation, sigma, eps):
    net = random_mlp(in_dim, widths, activation=activation, seed=len(widths))
    x = torch.randn(40, in_dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    b = local_rank_bound(net, x, sigma, eps)
    ref = reference(net, x, sigma, eps)
    close = dict(rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(b.lc, ref["lc"], **close)
    torch.testing.assert_close(b.row_norm_term, ref["rows"], **close)
    torch.testing.assert_close(b.frobenius_term, ref["frob"], **close)
    torch.testing.assert_close(b.pointwise_rank_term, ref["pointwise"], **close)
    torch.testing.assert_close(b.bound, ref["bound"], **close)
    torch.testing.assert_close(b.local_rank, ref["rank"], **close)
    torch.testing.assert_close(b.sigma_max, ref["smax"], **close)
    assert b.m.tolist() == [min(n, in_dim) for n in widths]
    assert b.widths == widths
    assert b.c_bias == pytest.approx(1 / (sigma * math.sqrt(2 * math.pi)))
    check_chain(b)
    # agrees with the package's own local complexity and local rank
    torch.testing.assert_close(
        b.lc, lctools.local_complexity(net, x, sigma, noise_draws=0, per_layer=True).double(), **close)
    torch.testing.assert_close(b.local_rank, lctools.local_rank(net, x, eps=eps).double(), **close)


def test_bound_holds_on_random_float32_nets_with_default_init():
    for seed, widths in enumerate([[32, 32, 32], [16, 64], [48, 24, 12, 6]]):
        torch.manual_seed(seed)
        net = lctools.MLP(20, widths, 3)
        x = torch.randn(64, 20)
        for sigma, eps in [(0.05, 1e-3), (0.5, 0.1), (2.0, 1.0)]:
            check_chain(local_rank_bound(net, x, sigma, eps))


def test_bound_holds_on_briefly_trained_nets():
    ds = lctools.data.gaussian_mixture(300, dim=30, intrinsic_dim=3, num_classes=4, seed=0)
    torch.manual_seed(0)
    net = lctools.MLP(30, [40, 40, 40], 4)
    x = ds.X[:64]
    seen = []

    def metric(model):
        b = local_rank_bound(model, x, sigma=0.1, eps=1e-2)
        check_chain(b)
        seen.append(b.local_rank)
        return b.bound

    lctools.training.train(net, ds.X, ds.y, steps=150, lr=3e-3, weight_decay=0.5, loss="mse",
                           metrics={"bound": metric}, eval_steps=[0, 50, 150], progress=False)
    assert len(seen) == 3
    b = local_rank_bound(net, x, sigma=0.1, eps=1e-2)
    check_chain(b)
    torch.testing.assert_close(b.local_rank, lctools.local_rank(net, x, eps=1e-2).double())
    torch.testing.assert_close(
        b.lc, lctools.local_complexity(net, x, 0.1, noise_draws=0, per_layer=True).double(), rtol=1e-5, atol=1e-6)


def test_low_rank_first_layer_gives_low_rank_everywhere():
    """W_1 of rank k: every J_l has at most k nonzero singular values, so LR_l <= k and the
    bound is at most C_bias sqrt(n_l) sqrt(k S^2 + (m - k) eps^2)."""
    net = random_mlp(10, [12, 12, 12])
    k = 2
    with torch.no_grad():
        U, s, Vh = torch.linalg.svd(net[0].weight)
        net[0].weight.copy_(U[:, :k] @ torch.diag(s[:k]) @ Vh[:k])
    x = torch.randn(50, 10, dtype=torch.float64)
    eps = 1e-6
    b = local_rank_bound(net, x, sigma=0.2, eps=eps)
    assert (b.local_rank <= k).all()
    n = torch.tensor(b.widths, dtype=torch.float64)
    cap = b.c_bias * n.sqrt() * torch.sqrt(k * b.sigma_max**2 + (b.m - k) * eps**2)
    assert (b.bound <= cap * (1 + 1e-9)).all()
    check_chain(b)


def test_chunking_and_budget_do_not_change_the_result():
    net = random_mlp(7, [9, 6, 8])
    x = torch.randn(33, 7, dtype=torch.float64)
    a = local_rank_bound(net, x, 0.3, 0.05)
    b = local_rank_bound(net, x, 0.3, 0.05, budget=7 * 9 * 5)  # chunks of 5 points
    for name in ("lc", "row_norm_term", "frobenius_term", "pointwise_rank_term", "bound", "local_rank", "sigma_max"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("kwargs", [dict(sigma=0.0), dict(sigma=-1.0), dict(sigma=0.1, eps=0.0),
                                    dict(sigma=0.1, eps=float("nan"))])
def test_rejects_bad_parameters(kwargs):
    net = random_mlp(3, [4])
    with pytest.raises(ValueError):
        local_rank_bound(net, torch.randn(5, 3, dtype=torch.float64), **kwargs)


def test_rejects_unsupported_models_and_bad_inputs():
    net = random_mlp(3, [4])
    with pytest.raises(ValueError):
        local_rank_bound(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)), torch.randn(5, 3), 0.1)
    with pytest.raises(ValueError):
        local_rank_bound(net, torch.randn(5, 4, dtype=torch.float64), 0.1)
