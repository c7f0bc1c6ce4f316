"""lctools.variation.total_variation_bound: TV bounded by the layer-wise local complexity.

For every input x and hidden layer l (notation of lctools.variation.TVBound):

    ||J_x N(x)||_F <= sum_i sigma'(z_{l,i}) ||A_l e_i|| ||grad z_{l,i}||      (triangle)
                  <= kappa_l(x) LC_l(x) / phi_s(eta_l(x))                     (local)
                  <= Lip_{>l}   LC_l(x) / phi_s(eta_l(x))                     (global)

The tests check the chain on random and briefly trained nets, and every piece against an
independent torch.func computation (vmap(jacrev) of the head x -> z_l and of the tail
sigma(z_l) -> N, spectral norms from svdvals).
"""
import math

import pytest
import torch
from torch import nn
from torch.func import jacrev, vmap

import lctools
from helpers import random_mlp
from lctools.variation import TVBound, total_variation_bound

RTOL = 1e-9  # float64 nets: the inequalities hold up to rounding


def phi(t, s):
    return torch.exp(-0.5 * (t / s) ** 2) / (s * math.sqrt(2 * math.pi))


def reference(net, x, sigma):
    """Every piece of the bound, computed independently with torch.func, per layer."""
    layers = list(net)
    L = len(layers) // 2
    slope = [getattr(layers[2 * l - 1], "negative_slope", 0.0) for l in range(1, L + 1)]
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    out = {k: [] for k in ("lc", "eta", "klip", "tri", "glip")}
    J = vmap(jacrev(net))(x)
    for l in range(1, L + 1):
        head = nn.Sequential(*layers[: 2 * l - 1])          # x -> z_l
        tail = nn.Sequential(*layers[2 * l:])               # sigma(z_l) -> N
        z = head(x)
        G = vmap(jacrev(head))(x)                           # (N, n_l, n_0)
        g = torch.linalg.vector_norm(G, dim=2)              # ||grad z_{l,i}||
        A = vmap(jacrev(tail))(layers[2 * l - 1](z))        # (N, out, n_l) = dN / d sigma(z_l)
        col = torch.linalg.vector_norm(A, dim=1)
        d = torch.where(z > 0, torch.ones_like(z), torch.full_like(z, slope[l - 1]))
        active = d > 0
        out["lc"].append((phi(z, sigma) * g).sum(1))
        out["eta"].append(torch.where(active, z.abs(), torch.zeros_like(z)).amax(1))
        out["klip"].append(torch.where(active, col, torch.zeros_like(col)).amax(1))
        out["tri"].append((d * col * g).sum(1))
        out["glip"].append(math.prod(float(torch.linalg.svdvals(W.weight.detach())[0]) for W in linears[l:]))
        # the chain rule through layer l, exactly: J = sum_i A e_i sigma'(z_i) grad z_i^T
        assert torch.allclose(J, torch.einsum("noi,ni,nid->nod", A, d, G), atol=1e-10)
    return {k: torch.stack(v, 1) if k != "glip" else torch.tensor(v, dtype=x.dtype) for k, v in out.items()}


def check_chain(b: TVBound, rtol=RTOL):
    tv = b.tv.double()[:, None]
    assert (tv <= b.triangle.double() * (1 + rtol) + 1e-12).all()
    assert (b.triangle.double() <= b.local_bound * (1 + rtol) + 1e-12).all()
    assert (b.local_bound <= b.global_bound * (1 + rtol) + 1e-12).all()
    assert (b.tv.double() <= b.bound * (1 + rtol) + 1e-12).all()
    assert not torch.isnan(b.global_bound).any() and not torch.isnan(b.local_bound).any()


@pytest.mark.parametrize(
    "widths, out_dim, activation, sigma",
    [([7], 1, "relu", 0.3), ([8, 6, 5], 3, "relu", 0.5), ([6, 6], 2, "leaky_relu", 1.0), ([10, 9, 8, 7], 4, "relu", 2.0)],
)
def test_pieces_match_torch_func_and_chain_holds(widths, out_dim, activation, sigma):
    net = random_mlp(5, widths, out_dim, seed=len(widths), activation=activation)
    x = torch.randn(64, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    b = total_variation_bound(net, x, sigma)
    ref = reference(net, x, sigma)
    J = vmap(jacrev(net))(x)
    torch.testing.assert_close(b.tv, torch.linalg.matrix_norm(J))
    torch.testing.assert_close(b.tv, lctools.total_variation(net, x, reduction="none"))
    torch.testing.assert_close(b.lc_layer, ref["lc"])
    torch.testing.assert_close(
        b.lc_layer, lctools.local_complexity(net, x, sigma, noise_draws=0, per_layer=True, reduction="none"))
    torch.testing.assert_close(b.eta, ref["eta"])
    torch.testing.assert_close(b.local_lip, ref["klip"])
    torch.testing.assert_close(b.triangle, ref["tri"])
    torch.testing.assert_close(b.global_lip, ref["glip"])
    torch.testing.assert_close(b.density_floor, phi(ref["eta"], sigma))
    torch.testing.assert_close(b.lc_ratio, ref["lc"] / phi(ref["eta"], sigma))
    torch.testing.assert_close(b.global_bound, ref["glip"] * ref["lc"] / phi(ref["eta"], sigma))
    check_chain(b)
    s = b.summary()
    assert s["tv"] <= s["triangle"] <= s["local"] <= s["bound"]
    assert math.isclose(s["lc"], float(lctools.local_complexity(net, x, sigma, noise_draws=0)), rel_tol=1e-9)
    assert s["bound"] <= min(s["bound_per_layer"]) * (1 + 1e-12)  # E min <= min E


def test_bound_holds_on_briefly_trained_nets(one_thread):
    """A float32 net trained on a 2D toy problem, at several points of training."""
    X, y = lctools.data.two_moons(256, seed=0)
    torch.manual_seed(0)
    net = lctools.MLP(2, [16, 16, 16], 2)
    for steps in (0, 40, 120):
        if steps:
            lctools.training.train(net, X, y, steps=steps, lr=1e-2, weight_decay=0.01, batch_size=256,
                                   progress=False, eval_steps=[])
        for sigma in (0.1, 1.0):
            b = total_variation_bound(net, X, sigma)
            check_chain(b, rtol=1e-5)  # float32 pieces
            J = vmap(jacrev(net))(X)
            torch.testing.assert_close(b.tv, torch.linalg.matrix_norm(J), rtol=1e-4, atol=1e-5)
    assert lctools.training.accuracy(net, X, y) > 0.8  # it did train


def test_chunking_flatten_and_float32():
    net = random_mlp(12, [9, 7], 3, dtype=torch.float32)
    x = torch.randn(50, 12, generator=torch.Generator().manual_seed(2))
    full = total_variation_bound(net, x, 0.4)
    small = total_variation_bound(net, x, 0.4, budget=9 * 9 * 3)  # a few points per chunk
    for name in ("tv", "lc_layer", "eta", "local_lip", "triangle", "global_bound"):
        torch.testing.assert_close(getattr(full, name), getattr(small, name), rtol=1e-5, atol=1e-6)
    flat = nn.Sequential(nn.Flatten(), *list(net))
    torch.testing.assert_close(total_variation_bound(flat, x.reshape(50, 3, 4), 0.4).global_bound, full.global_bound,
                               rtol=1e-5, atol=1e-6)
    assert full.tv.dtype == torch.float32 and full.global_bound.dtype == torch.float64


def test_dead_layer_and_overflow_are_handled():
    net = random_mlp(4, [6, 6], 2)
    with torch.no_grad():
        net[2].bias.fill_(-100.0)  # layer 2 is off everywhere: N is constant
    x = torch.randn(20, 4, dtype=torch.float64)
    b = total_variation_bound(net, x, 0.5)
    assert (b.tv == 0).all() and (b.local_bound[:, 1] == 0).all() and (b.eta[:, 1] == 0).all()
    check_chain(b)
    # a tiny sigma: phi_s(eta) underflows; the bound is +inf (void), never NaN, and still a bound
    net = random_mlp(4, [6, 6], 2, bias_std=1.0)
    b = total_variation_bound(net, x, 1e-3)
    assert torch.isinf(b.global_bound).any() and not torch.isnan(b.global_bound).any()
    check_chain(b)


def test_bad_sigma_raises():
    net = random_mlp(3, [4], 1)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="sigma"):
            total_variation_bound(net, torch.zeros(2, 3, dtype=torch.float64), bad)
