"""lctools.explorer: the kernel-free region explorer, checked in a real browser against lctools.

The explorer's JavaScript computes activation patterns and the coarea estimate of local
complexity itself, from exported float32 weights. Here a standalone page with several
networks (depths 1-3, ReLU and LeakyReLU, trained and untrained, two boxes) is opened in
headless Chromium (as tests/test_book.py does) and its numbers are compared with

* regioncam's exact partition (``regions.partition2d``) and torch's raster of patterns
  (``regions.pattern_map`` at the same resolution): the JS count equals the raster count up
  to pixels on a boundary, never exceeds the exact count, and misses only regions too small
  for the raster;
* ``lctools.local_complexity``: the JS estimate agrees within 3 combined standard errors
  (uniform points in the box, independent noise), and the noiseless plug-in agrees to
  float32 rounding on the very same pixel centres.

It also checks that moving a slider redraws the canvas and that the page logs no error.
"""
from __future__ import annotations

import base64
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import lctools
from lctools import data, explorer, regions

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: one thread is faster

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium_path():
    for candidate in (os.environ.get("LCTOOLS_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


# ----------------------------------------------------------------------------- python side


def test_export_roundtrip():
    net = lctools.MLP(2, [5, 3], 4, activation="leaky_relu", negative_slope=0.1, seed=1)
    e = explorer.export_network(net)
    assert e["widths"] == [5, 3] and e["slopes"] == [pytest.approx(0.1)] * 2
    flat = np.frombuffer(base64.b64decode(e["weights"]), dtype="<f4")
    lin = [m for m in net if isinstance(m, torch.nn.Linear)][:-1]   # hidden layers only
    ref = np.concatenate([np.concatenate([m.weight.detach().numpy().ravel(), m.bias.detach().numpy()])
                          for m in lin])
    np.testing.assert_array_equal(flat, ref.astype(np.float32))


@pytest.mark.parametrize("kwargs,match", [
    (dict(runs={}), "non-empty"),
    (dict(runs={"a": []}), "no snapshots"),
    (dict(runs={"a": [(3, "NET"), (1, "NET")]}), "increase"),
    (dict(runs={"a": [(0, "NET"), (1, "NET5")]}), "same architecture"),
    (dict(runs={"a": [(0, "NET3D")]}), "2D"),
    (dict(bounds=(1, -1, 0, 1)), "bounds"),
    (dict(sigma=5.0), "sigma"),
    (dict(sigma_range=(0.0, 1.0)), "sigma_range"),
    (dict(resolution=4), "resolution"),
    (dict(view="3d"), "view"),
    (dict(run=2), "run"),
    (dict(points=np.zeros((3, 3))), "points"),
    (dict(points=np.zeros((3, 2)), labels=[0, 1]), "labels"),
])
def test_region_explorer_rejects_bad_input(kwargs, match):
    nets = {"NET": lctools.MLP(2, [4], 1, seed=0), "NET5": lctools.MLP(2, [5], 1, seed=0),
            "NET3D": lctools.MLP(3, [4], 1, seed=0)}
    runs = kwargs.pop("runs", {"a": [(0, "NET")]})
    runs = {k: [(s, nets[m]) for s, m in v] for k, v in runs.items()}
    with pytest.raises(ValueError, match=match):
        explorer.region_explorer(runs, **kwargs)


def test_export_rejects_nan_and_other_models():
    net = lctools.MLP(2, [4], 1, seed=0)
    with torch.no_grad():
        net[0].bias[0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        explorer.export_network(net)
    with pytest.raises(ValueError):
        explorer.export_network(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1)))


def test_train_snapshots_keeps_copies_at_log_steps():
    X, y = data.two_moons(n=64, seed=0)
    net = lctools.MLP(2, [6, 6], 2, seed=0)
    w0 = net[0].weight.detach().clone()
    snaps = explorer.train_snapshots(net, X, y, steps=30, snapshots=5, lr=1e-2, progress=False)
    assert [s for s, _ in snaps] == list(lctools.training.log_steps(30, 5))
    assert torch.equal(snaps[0][1][0].weight, w0)                       # a copy of the initialisation
    assert torch.equal(snaps[-1][1][0].weight, net[0].weight)           # the final state
    assert not torch.equal(snaps[0][1][0].weight, snaps[-1][1][0].weight)


def test_html_is_self_contained():
    ex = explorer.region_explorer({"a": [(0, lctools.MLP(2, [4], 1, seed=0))]})
    page = ex.html()
    assert "http://" not in page and "https://" not in page and "src=" not in page
    assert explorer.javascript().splitlines()[0] in page
    assert page.count("<script") == 2


# ----------------------------------------------------------------------------- browser side

RES = 200  # pixels per row; the rows follow the box's aspect ratio
SIGMAS = (0.02, 0.1, 0.4)


def _trained(widths, steps, seed, **kw):
    X, y = data.two_moons(n=200, seed=seed)
    X = X / 2.0  # inside [-1, 1]^2
    net = lctools.MLP(2, widths, 2, init="he", bias_std=0.3, seed=seed, **kw)
    return explorer.train_snapshots(net, X, y, steps=steps, snapshots=3, lr=1e-2, progress=False, seed=seed)


@pytest.fixture(scope="module")
def page_and_runs(tmp_path_factory):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.skip(f"browser checks need the playwright Python package ({exc})")
    path = _chromium_path()
    if path is None:
        pytest.skip("browser checks need Chromium (apt-get install chromium chromium-driver)")
    torch.manual_seed(0)
    runs = {
        "depth 1, width 12": _trained([12], 60, 0),
        "depth 2, width 10": _trained([10, 10], 60, 1),
        "depth 3, width 8, leaky": _trained([8, 8, 8], 60, 2, activation="leaky_relu", negative_slope=0.05),
    }
    bounds = (-1.0, 1.0, -0.8, 0.6)
    ex = explorer.region_explorer(runs, bounds=bounds, resolution=RES, sigma=0.1, view="regions", seed=3)
    html_path = tmp_path_factory.mktemp("explorer") / "explorer.html"
    ex.save(html_path)
    errors = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort())
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(html_path.as_uri(), wait_until="load")
        page.wait_for_function(f"document.getElementById('{ex.id}').dataset.frames >= 1")
        yield page, ex, runs, bounds, errors
        context.close()
        browser.close()


def _grid(bounds, nx, ny):
    """The explorer's pixel centres (row 0 at the top), as a float32 tensor (nx * ny, 2)."""
    x0, x1, y0, y1 = bounds
    xs = x0 + (torch.arange(nx, dtype=torch.float64) + 0.5) * (x1 - x0) / nx
    ys = y1 - (torch.arange(ny, dtype=torch.float64) + 0.5) * (y1 - y0) / ny
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], 1).float()


def _raster_count(net, grid):
    """Distinct activation patterns (torch) at the grid points."""
    return len(np.unique(regions.activation_patterns(net, grid).numpy(), axis=0))


def _js(page, ex, expr):
    return page.evaluate(f"(() => {{ const E = window.LCToolsExplorer.instances['{ex.id}']; {expr} }})()")


def test_slider_redraws_and_no_console_error(page_and_runs):
    page, ex, runs, bounds, errors = page_and_runs
    root = f"#{ex.id}"
    before = page.eval_on_selector(f"{root} canvas", "c => c.toDataURL()")
    frames = int(page.get_attribute(root, "data-frames"))
    step = page.locator(f"{root} .lcx-step")
    assert step.get_attribute("max") == "2"
    step.fill("0")                                          # drag to initialisation
    page.wait_for_function(f"document.querySelector('{root}').dataset.frames > {frames}")
    after = page.eval_on_selector(f"{root} canvas", "c => c.toDataURL()")
    assert after != before, "moving the step slider did not change the picture"
    assert page.inner_text(f"{root} .lcx-step-value") == "0"
    for sel, value in [(".lcx-sigma", "900"), (".lcx-run", "1"), (".lcx-view", "lc"), (".lcx-view", "noisy")]:
        frames = int(page.get_attribute(root, "data-frames"))
        loc = page.locator(f"{root} {sel}")
        loc.select_option(value) if sel in (".lcx-run", ".lcx-view") else loc.fill(value)
        page.wait_for_function(f"document.querySelector('{root}').dataset.frames > {frames}")
    readout = page.inner_text(f"{root} .lcx-regions")
    assert readout.isdigit() and int(readout) > 1
    assert "\u00b1" in page.inner_text(f"{root} .lcx-lc")
    assert not errors, errors


@pytest.mark.parametrize("run_index", [0, 1, 2])
def test_region_count_matches_the_exact_partition(page_and_runs, run_index):
    page, ex, runs, bounds, _ = page_and_runs
    snaps = list(runs.values())[run_index]
    for k, (_, net) in enumerate(snaps):
        js = _js(page, ex, f"return E.compute({run_index}, {k}, 0.1, 'regions').regions;")
        exact = regions.partition2d(net, bounds)
        nx, ny = ex.data["nx"], ex.data["ny"]
        assert (nx, ny) == (RES, 140)
        raster = _raster_count(net, _grid(bounds, nx, ny))            # the same pixel centres
        pixel = exact.area / (nx * ny)
        small = int((exact.face_areas < 4 * pixel).sum())      # regions a raster may miss
        print("REG", js, raster, exact.num_regions if "exact" in dir() else None)
        assert abs(js - raster) <= 2, (js, raster)
        assert js <= exact.num_regions, (js, exact.num_regions)
        assert exact.num_regions - js <= small + max(1, 0.02 * exact.num_regions), (js, exact.num_regions, small)


def test_noisy_view_counts_the_perturbed_network(page_and_runs):
    page, ex, runs, bounds, _ = page_and_runs
    s = 0.1
    xi = np.array(_js(page, ex, "return Array.from(E.shared);"), dtype=np.float32)
    for run_index, snaps in enumerate(runs.values()):
        net = snaps[-1][1]
        js = _js(page, ex, f"return E.compute({run_index}, 2, {s}, 'noisy').regions;")
        pert, k = lctools.MLP(2, net.widths, 2, activation=net.activation,
                              negative_slope=net.negative_slope), 0
        pert.load_state_dict(net.state_dict())
        with torch.no_grad():
            for m in pert.hidden_layers:
                m.bias += s * torch.from_numpy(xi[k:k + m.out_features])
                k += m.out_features
        raster = _raster_count(pert, _grid(bounds, ex.data["nx"], ex.data["ny"]))
        print("REG", js, raster, exact.num_regions if "exact" in dir() else None)
        assert abs(js - raster) <= 2, (js, raster)
        assert js <= regions.partition2d(pert, bounds).num_regions


@pytest.mark.parametrize("sigma", SIGMAS)
def test_lc_estimate_matches_lctools(page_and_runs, sigma):
    page, ex, runs, bounds, _ = page_and_runs
    gen = torch.Generator().manual_seed(11)
    grid = _grid(bounds, ex.data["nx"], ex.data["ny"])
    for run_index, snaps in enumerate(runs.values()):
        for k in (0, len(snaps) - 1):
            net = snaps[k][1]
            r = _js(page, ex, f"const r = E.compute({run_index}, {k}, {sigma}, 'regions');"
                              "return {lc: r.lc, se: r.lc_se, plugin: r.plugin};")
            x = data.uniform_box(40_000, bounds, generator=gen)
            v = lctools.local_complexity(net, x, sigma=sigma, noise_draws=2, reduction="none",
                                         generator=gen).double()
            mean, se = float(v.mean()), float(v.std() / math.sqrt(len(v)))
            z = (r["lc"] - mean) / math.hypot(r["se"], se)
            print("LC", run_index, k, sigma, r, mean, se, z)
            assert abs(z) < 3.0, (run_index, k, sigma, r, mean, se)
            assert r["se"] < 0.1 * r["lc"] + 1e-9                      # a useful readout
            plug = float(lctools.local_complexity(net, grid, sigma=sigma, noise_draws=0))
            assert r["plugin"] == pytest.approx(plug, rel=2e-4), (r["plugin"], plug)
