"""lctools.rank at small eps: never above min(n_l, n_0), equal to a float64 SVD count.

The reference is independent: autograd Jacobians J_l(x) of the float64 network
(torch.func) and their singular values (torch.linalg.svdvals), counted above eps.
"""
import pytest
import torch

import lctools
from helpers import hidden_maps, random_mlp, reference_pre_jacobians

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_counts(model, x, eps, features):
    counts = []
    for J, head in zip(reference_pre_jacobians(model, x), hidden_maps(model)):
        if features == "post":  # d sigma(z_l)/dx = D_l J_l (ReLU nets here)
            J = J * (head(x) > 0).to(J.dtype).unsqueeze(-1)
        counts.append((torch.linalg.svdvals(J) > eps).sum(dim=1))
    return torch.stack(counts, dim=1)


CASES = [  # (n_0, widths, bias_std): narrow layers with large biases have many rank-deficient points
    (2, [16, 16, 16], 0.5),
    (2, [3, 3, 3], 1.5),
    (3, [4, 2, 5], 1.0),
    (10, [4, 6, 3], 1.0),
    (6, [12, 12], 2.0),
]


@pytest.mark.parametrize("features", ["pre", "post"])
@pytest.mark.parametrize("eps", [1e-12, 1e-8, 1e-6, 1e-3, 1e-1])
@pytest.mark.parametrize("n0, widths, bias_std", CASES)
def test_local_rank_matches_float64_svd_at_every_eps(n0, widths, bias_std, eps, features):
    net = random_mlp(n0, widths, 1, seed=n0 + len(widths), bias_std=bias_std)
    x = torch.rand(200, n0, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 4 - 2
    counts = lctools.local_rank(net, x, eps=eps, features=features, reduction="none")
    ref = reference_counts(net, x, eps, features)
    caps = torch.tensor([min(n, n0) for n in widths])
    assert bool((counts <= caps).all()), counts.max(dim=0).values
    assert torch.equal(counts, ref)
    if features == "pre":
        bound = lctools.local_rank_bound(net, x, 0.5, eps)
        torch.testing.assert_close(bound.local_rank, ref.double().mean(dim=0))


def test_the_reported_example_never_exceeds_n0():
    """The issue's case: eps = 1e-8 on a 2-input net gave [2, 6.36, 2.29]."""
    for seed in range(5):
        net = random_mlp(2, [32, 32, 32], 1, seed=seed, bias_std=0.5)
        x = torch.rand(300, 2, dtype=torch.float64) * 2 - 1
        for features in ("pre", "post"):
            assert float(lctools.local_rank(net, x, eps=1e-8, features=features).max()) <= 2.0


@pytest.mark.parametrize("eps", [1e-14, 1e-9, 1e-5, 0.5])
def test_count_singular_values_above_matches_svd(eps):
    g = torch.Generator().manual_seed(0)
    # low-rank matrices with singular values spread over many orders of magnitude
    U = torch.linalg.qr(torch.randn(20, 7, 7, dtype=torch.float64, generator=g)).Q
    V = torch.linalg.qr(torch.randn(20, 9, 7, dtype=torch.float64, generator=g)).Q
    s = 10.0 ** torch.empty(20, 7, dtype=torch.float64).uniform_(-12, 1, generator=g)
    s[:, 5:] = 0  # rank <= 5
    M = U @ torch.diag_embed(s) @ V.transpose(1, 2)
    ref = (torch.linalg.svdvals(M) > eps).sum(dim=1)
    assert torch.equal(lctools.count_singular_values_above(M, eps), ref)
    assert torch.equal(lctools.count_singular_values_above(M.transpose(1, 2), eps), ref)
    assert int(lctools.count_singular_values_above(M, eps).max()) <= 5


def test_count_singular_values_above_shapes():
    with pytest.raises(ValueError, match="shape"):
        lctools.count_singular_values_above(torch.rand(3, 3), 0.1)
    with pytest.raises(ValueError, match="finite"):
        lctools.count_singular_values_above(torch.full((1, 2, 2), float("nan")), 0.1)
    assert lctools.count_singular_values_above(torch.rand(0, 3, 3), 0.1).shape == (0,)
