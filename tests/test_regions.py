"""Checks of lctools.regions against independent computations (analytic geometry, rasters, torch)."""
import copy
import itertools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from helpers import random_mlp  # noqa: E402
from lctools import MLP, regions  # noqa: E402

BOX = (-1.5, 0.5, -0.25, 1.75)  # square, off-centre
RECT = (-2.0, 1.0, -0.5, 1.5)   # non-square and off-centre
pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: one thread is faster


def _mlp(widths, seed, activation="relu", slope=0.1, in_dim=2, bias_scale=0.1):
    return random_mlp(in_dim, widths, 1, seed=seed, bias_std=bias_scale, activation=activation, slope=slope,
                      init="default", dtype=torch.float32)


def _chord_length(w, b, bounds):
    """Length of the line {x : w.x + b = 0} inside the box (Liang-Barsky clipping)."""
    x0, x1, y0, y1 = bounds
    n = np.linalg.norm(w)
    p, d = -b * w / n**2, np.array([-w[1], w[0]]) / n
    lo, hi = -np.inf, np.inf
    for k, (a, c) in enumerate([(x0, x1), (y0, y1)]):
        if abs(d[k]) < 1e-15:
            if not a <= p[k] <= c:
                return 0.0
        else:
            t = sorted([(a - p[k]) / d[k], (c - p[k]) / d[k]])
            lo, hi = max(lo, t[0]), min(hi, t[1])
    return max(0.0, hi - lo)


def _inside(pt, bounds):
    x0, x1, y0, y1 = bounds
    return x0 < pt[0] < x1 and y0 < pt[1] < y1


def _pre_activations(model, x):
    """Hidden pre-activations z_1..z_L of `model` at x, concatenated (a plain torch forward)."""
    zs, h = [], x.to(next(model.parameters()).dtype)
    for layer in model:
        h = layer(h)
        if isinstance(layer, nn.Linear):
            zs.append(h)
    return torch.cat(zs[:-1], dim=1).detach()


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_one_hidden_layer_lines(activation):
    """Boundary length = sum of exact chord lengths; regions = 1 + #chords + #crossings inside."""
    m = _mlp([7], seed=3, activation=activation, bias_scale=0.8)
    W, b = m[0].weight.detach().double().numpy(), m[0].bias.detach().double().numpy()
    P = regions.partition2d(m, RECT)
    chords = [_chord_length(W[i], b[i], RECT) for i in range(len(b))]
    assert P.boundary_length == pytest.approx(sum(chords), rel=1e-5)
    assert P.boundary_length_per_layer.shape == (1,)
    assert P.boundary_length_per_layer[0] == pytest.approx(P.boundary_length)
    crossings = sum(_inside(np.linalg.solve(W[[i, j]], -b[[i, j]]), RECT) for i, j in itertools.combinations(range(7), 2))
    assert sum(c > 0 for c in chords) >= 4  # the test means something
    assert P.num_regions == 1 + sum(c > 0 for c in chords) + crossings
    assert P.area == pytest.approx(6.0)


def test_areas_sum_to_box_and_layers_sum():
    m = _mlp([10, 10, 10], seed=0)
    P = regions.partition2d(m, RECT)
    assert P.area == pytest.approx(6.0)
    assert P.face_areas.sum() == pytest.approx(P.area, rel=1e-5)
    assert (P.face_areas > 0).all()
    assert P.boundary_length_per_layer.shape == (3,)
    assert P.boundary_length_per_layer.sum() == pytest.approx(P.boundary_length)
    assert (P.boundary_length_per_layer > 0).all()
    # every vertex lies in the box; the border alone has the box's perimeter
    x0, x1, y0, y1 = RECT
    assert (P.vertices[:, 0] >= x0 - 1e-5).all() and (P.vertices[:, 0] <= x1 + 1e-5).all()
    assert (P.vertices[:, 1] >= y0 - 1e-5).all() and (P.vertices[:, 1] <= y1 + 1e-5).all()
    assert P.edge_lengths[P.edge_layer == 0].sum() == pytest.approx(2 * (x1 - x0) + 2 * (y1 - y0), rel=1e-5)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_patterns_match_torch_at_centroids(activation):
    m = _mlp([8, 8, 8], seed=1, activation=activation).double()
    P = regions.partition2d(m, BOX)
    z = _pre_activations(m, torch.from_numpy(P.centroids)).numpy()
    assert P.patterns.shape == (P.num_regions, 24)
    clear = np.abs(z) > 1e-5
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(P.patterns[clear], (z > 0)[clear])
    # activation regions are distinct patterns
    assert len({p.tobytes() for p in P.patterns}) == P.num_regions


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_region_count_and_areas_agree_with_raster(activation):
    m = _mlp([12, 12, 12], seed=2, activation=activation)
    P = regions.partition2d(m, RECT)
    res = 500
    M = regions.pattern_map(m, RECT, resolution=res)
    exact = {p.tobytes(): f for f, p in enumerate(P.patterns)}
    raster = [p.tobytes() for p in M.patterns]
    assert set(raster) <= set(exact)               # no pattern the exact partition lacks
    assert 0.9 * P.num_regions <= M.num_patterns <= P.num_regions
    # pixel-count areas agree with exact areas up to a band of one pixel diagonal along the boundary
    counts = np.bincount(M.ids.ravel(), minlength=M.num_patterns)
    pix = (RECT[1] - RECT[0]) * (RECT[3] - RECT[2]) / res**2
    diag = np.hypot((RECT[1] - RECT[0]) / res, (RECT[3] - RECT[2]) / res)
    raster_area = np.zeros(P.num_regions)
    raster_area[[exact[r] for r in raster]] = counts * pix
    perim = np.array([np.linalg.norm(P.vertices[f] - P.vertices[np.roll(f, -1)], axis=1).sum() for f in P.faces])
    assert (np.abs(raster_area - P.face_areas) <= perim * diag + 4 * pix).all()


def test_pattern_map_orientation_and_ids():
    m = _mlp([6, 6], seed=4)
    bounds, res = (-1.0, 2.0, 0.0, 1.0), 37
    M = regions.pattern_map(m, bounds, resolution=res, batch_size=100)  # many small batches
    assert M.ids.shape == (res, res)
    rng = np.random.default_rng(0)
    for i, j in rng.integers(0, res, size=(20, 2)):
        x = torch.tensor([[-1.0 + (j + 0.5) * 3.0 / res, (i + 0.5) / res]])
        with torch.no_grad():
            pat = (_pre_activations(m, x) > 0).numpy()[0]
        np.testing.assert_array_equal(M.patterns[M.ids[i, j]], pat)


def test_through_points_plane_and_composed_net():
    torch.manual_seed(5)
    d = 16
    m = MLP(d, [10, 10], 3)
    pts = torch.randn(3, d)
    P = regions.partition_through_points(m, pts)
    Wp, bp = P.plane_weight, P.plane_bias
    np.testing.assert_allclose(Wp @ Wp.T, np.eye(2), atol=1e-5)  # lengths in plane coords = lengths in R^d
    np.testing.assert_allclose(P.to_input(P.points), pts.numpy(), atol=1e-4)
    x0, x1, y0, y1 = P.bounds
    assert all(x0 < u < x1 and y0 < v < y1 for u, v in P.points)
    assert P.face_areas.sum() == pytest.approx(P.area, rel=1e-4)
    # the net restricted to the plane is a 2D net: same partition
    m2 = copy.deepcopy(m)
    with torch.no_grad():
        W1, b1 = m[0].weight.double(), m[0].bias.double()
        new = nn.Linear(2, 10)
        new.weight.copy_(W1 @ torch.from_numpy(Wp).T)
        new.bias.copy_(W1 @ torch.from_numpy(bp) + b1)
        m2[0] = new
    Q = regions.partition2d(m2, P.bounds)
    assert Q.num_regions == P.num_regions
    assert Q.boundary_length == pytest.approx(P.boundary_length, rel=1e-4)
    np.testing.assert_allclose(Q.boundary_length_per_layer, P.boundary_length_per_layer, rtol=1e-4)
    assert {p.tobytes() for p in Q.patterns} == {p.tobytes() for p in P.patterns}
    # edge lengths measured in R^d agree with lengths in plane coordinates
    plane_len = np.linalg.norm(P.vertices[P.edges[:, 0]] - P.vertices[P.edges[:, 1]], axis=1)
    np.testing.assert_allclose(P.edge_lengths, plane_len, rtol=1e-3, atol=1e-5)


def test_through_points_flatten_images_and_plot():
    torch.manual_seed(6)
    m = MLP(16, [8, 8], 10, flatten=True)
    imgs = torch.rand(3, 1, 4, 4)
    P = regions.partition_through_points(m, imgs, labels=["a", "b", "c"])
    np.testing.assert_allclose(P.to_input(P.points), imgs.reshape(3, -1).numpy(), atol=1e-4)
    ax = P.plot()
    assert [t.get_text() for t in ax.texts] == ["a", "b", "c"]
    plt.close(ax.figure)


def test_dtype_float64_and_plot_smoke():
    m = _mlp([8, 8], seed=7)
    P32 = regions.partition2d(m, BOX)
    P64 = regions.partition2d(copy.deepcopy(m).double(), BOX)
    assert P64.num_regions == P32.num_regions
    assert P64.boundary_length == pytest.approx(P32.boundary_length, rel=1e-6)
    for color_by in ["pattern", "output", None]:
        ax = P32.plot(color_by=color_by)
        assert len(ax.collections) == 2 + 2  # faces, border, one line collection per layer
        assert ax.get_xlim() == (BOX[0], BOX[1])
        plt.close(ax.figure)
    ax = regions.pattern_map(m, BOX, resolution=50).plot()
    assert len(ax.images) == 1
    plt.close(ax.figure)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_model_matches_cpu():
    m = _mlp([16, 16], seed=8)
    P, Pc = regions.partition2d(m, RECT), regions.partition2d(copy.deepcopy(m).cuda(), RECT)
    assert Pc.num_regions == P.num_regions
    assert Pc.boundary_length == pytest.approx(P.boundary_length)
    M, Mc = regions.pattern_map(m, RECT, 200), regions.pattern_map(copy.deepcopy(m).cuda(), RECT, 200)
    assert Mc.num_patterns == M.num_patterns


def test_bad_inputs():
    m = _mlp([4], seed=0)
    with pytest.raises(ValueError, match="2 inputs"):
        regions.partition2d(MLP(3, [4], 1))
    with pytest.raises(ValueError, match="2 inputs"):
        regions.pattern_map(MLP(3, [4], 1))
    for bounds in [(1, 0, 0, 1), (0, 1, 1, 1), (0, 1, 0), (0, 1, 0, float("nan")), "abcd"]:
        with pytest.raises(ValueError, match="bounds"):
            regions.partition2d(m, bounds)
    with pytest.raises(ValueError, match="bounds"):
        regions.pattern_map(m, (0, 0, 0, 1))
    with pytest.raises(ValueError, match="resolution"):
        regions.pattern_map(m, resolution=0)
    with pytest.raises(ValueError):
        regions.partition2d(nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)))
    big = MLP(5, [4], 1)
    with pytest.raises(ValueError, match="three"):
        regions.partition_through_points(big, torch.randn(2, 5))
    with pytest.raises(ValueError, match="expects"):
        regions.partition_through_points(big, torch.randn(3, 6))
    with pytest.raises(ValueError, match="collinear"):
        p = torch.randn(2, 5)
        regions.partition_through_points(big, torch.stack([p[0], p[1], 2 * p[1] - p[0]]))
    with pytest.raises(ValueError, match="Flatten"):
        regions.partition_through_points(MLP(4, [4], 1), torch.randn(3, 2, 2))
    with pytest.raises(ValueError, match="labels"):
        regions.partition_through_points(big, torch.randn(3, 5), labels=["a"])
    with pytest.raises(ValueError, match="color_by"):
        regions.partition2d(m).plot(color_by="nope")


def test_region_count_bounds_and_patterns():
    """serra_bound reduces to the hyperplane-arrangement bound for one layer, bounds exact
    counts from above, and activation_patterns agrees with the exact partition's patterns."""
    from math import comb

    assert regions.arrangement_bound(2, 20) == 1 + 20 + comb(20, 2)
    assert regions.serra_bound(2, [20]) == regions.arrangement_bound(2, 20)
    assert regions.serra_bound(3, [5, 5]) <= regions.arrangement_bound(3, 5) ** 2
    for seed in range(3):
        net = MLP(2, [6, 6], 1, init="he", bias_std=0.5, seed=seed)
        P = regions.partition2d(net, bounds=(-3, 3, -3, 3))
        assert P.num_regions <= regions.serra_bound(2, [6, 6])
        pats = regions.activation_patterns(net, torch.tensor(P.centroids, dtype=torch.float32)).numpy()
        np.testing.assert_array_equal(pats, P.patterns)


def test_mlp_seed_makes_initialisation_reproducible():
    a = MLP(2, [5, 5], 1, init="he", bias_std=0.3, seed=7)
    torch.manual_seed(123)
    b = MLP(2, [5, 5], 1, init="he", bias_std=0.3, seed=7)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    c = MLP(2, [5, 5], 1, seed=7)
    assert c[0].weight.abs().max() <= 1 / 2**0.5 and not torch.equal(c[0].weight, a[0].weight)
