"""lctools.experiments: one definition per experiment, shared by chapters and reproduce."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lctools import reproduce
from lctools.cache import ResultsCache
from lctools.experiments import Claims, Runner, local_rank, member_series, mnist_dynamics, paper, weight_decay
from lctools.experiments._shared import history_table
from lctools.training import History

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(n_train=100, n_test=100, widths=[16, 16], steps=40, evals=4, n_geom=40, n_rank=20)


def test_claims_report_and_raise():
    c = Claims()
    c.add("true thing", True, "1")
    c.add("false thing", False, "0.3 < 0.5")
    assert "[FAILS] false thing: 0.3 < 0.5" in str(c) and "✗" in c._repr_markdown_()
    with pytest.raises(AssertionError, match="false thing"):
        c.check()
    Claims([c.items[0]]).check()


def _summary(**changes):
    m = dict(train_acc=1.0, fitted=1.0, test_acc=0.88, pgd_acc_best_after_saturation=0.37,
             pgd_acc_best_until_saturation=0.23, pgd_acc_end=0.24, pgd_acc_at_saturation=0.23,
             lc_end_over_peak=0.22, lc_end_over_init=0.24, lc_end=58.0, lc_at_saturation=130.0,
             lc_peak=266.0, deepest_rank_end_over_saturation=0.34, tv_bound_holds=1.0)
    m.update(changes)
    return {"mean": m}


@pytest.mark.parametrize("change, failing", [
    ({}, None),
    ({"test_acc": 0.8}, "generalises"),
    ({"pgd_acc_best_after_saturation": 0.3}, "robustness arrives late"),   # +0.07 < the 0.08 margin
    ({"pgd_acc_end": 0.2}, "not lost by the end"),
    ({"lc_end_over_peak": 0.7}, "LC falls"),
    ({"lc_end": 100.0}, "keeps falling after the fit"),
    ({"deepest_rank_end_over_saturation": 0.6}, "collapse late"),
    ({"tv_bound_holds": 0.99}, "bound of chapter 4"),
])
def test_mnist_claims_each_tolerance(change, failing):
    claims = mnist_dynamics.claims(_summary(**change))
    bad = [c.text for c in claims.items if not c.holds]
    if failing is None:
        assert bad == []
    else:
        assert len(bad) == 1 and failing in bad[0], bad


def test_settings_overrides_and_modes():
    q, f = mnist_dynamics.settings("quick"), mnist_dynamics.settings("full")
    assert set(vars(q)) == set(vars(f))
    # the paper's settings (PAPER.md) in full mode
    assert (f.widths, f.lr, f.weight_decay, f.batch_size, f.steps, f.evals) == ([200] * 4, 1e-4, 0.01, 64,
                                                                                 1_000_000, 50)
    assert f.normalize and not f.decay_biases and f.sigma == 0.01 and f.pgd_steps == 10 and f.n_rank == 128
    assert abs(f.eps - 80 / 255) < 1e-12 and f.init_scale == 1.0
    assert mnist_dynamics.settings("quick", steps=5).steps == 5
    with pytest.raises(ValueError, match="no setting 'stepz'"):
        mnist_dynamics.settings("quick", stepz=5)


def test_one_cached_run_for_chapters_and_reproduce(tmp_path):
    """A chapter's call and `reproduce dynamics` / `robustness` with the same settings share
    one cache entry: the second and third calls train nothing."""
    cache = ResultsCache(tmp_path / "cache")
    cfg = mnist_dynamics.settings("quick", **TINY)
    first = mnist_dynamics.run(cfg, Runner("cpu", cache))
    entries = len(cache)
    assert entries == 1
    for name in ("dynamics", "robustness"):
        paths = reproduce.run(name, mode="quick", device="cpu", out=tmp_path / "out", overrides=TINY,
                              progress=False, cache=cache)
        assert paths["png"].is_file()
    assert len(cache) == entries
    again = mnist_dynamics.run(cfg, Runner("cpu", cache))
    assert again.summary == first.summary
    torch.testing.assert_close(again.model()[0].weight, first.model()[0].weight)
    # the initial model is rebuilt from the seed: the history starts at it
    tv0 = float(mnist_dynamics.metrics(first.data, cfg)["tv"](first.initial_model()))
    assert abs(tv0 - first.history["tv"][0]) <= 1e-4 * tv0


def test_comparison_runs_record_a_subset(tmp_path):
    """Chapter 6's comparison runs record only COMPARISON: their own cache entry (never the
    full run's), the same curves as the full run, and claims without the TV bound."""
    cache = ResultsCache(tmp_path / "cache")
    cfg = mnist_dynamics.settings("quick", **TINY)
    full = mnist_dynamics.run(cfg, Runner("cpu", cache))
    part = mnist_dynamics.run(cfg, Runner("cpu", cache), record=mnist_dynamics.COMPARISON)
    assert len(cache) == 2
    assert set(part.history.metrics) == set(mnist_dynamics.COMPARISON) | {"train_acc", "test_acc"}
    for name in mnist_dynamics.COMPARISON:    # the same training run, the same numbers
        np.testing.assert_allclose(part.history[name], full.history[name], rtol=1e-6)
    m = part.summary["mean"]
    assert "tv_bound_holds" not in m and "lc_released_end" not in m
    assert {k: v for k, v in full.summary["mean"].items() if k in m} == m
    texts = [c.text for c in mnist_dynamics.claims(part.summary).items]
    assert len(texts) == len(mnist_dynamics.claims(full.summary).items) - 1
    assert not any("bound of chapter 4" in t for t in texts)
    for bad in (["lc"], ["pgd_acc", "lc", "tv", "local_rank", "nonsense"]):
        with pytest.raises(ValueError, match="record must name"):
            mnist_dynamics.run(cfg, Runner("cpu", cache), record=bad)


def test_history_table_round_trip(tmp_path):
    cfg = mnist_dynamics.settings("quick", **TINY)
    result = mnist_dynamics.run(cfg, Runner("cpu", tmp_path / "c"))
    steps, lc = member_series(result.table, "lc")
    np.testing.assert_array_equal(steps, result.history.steps)
    np.testing.assert_allclose(lc[0], result.history["lc"])
    _, released = member_series(result.table, "lc_released")     # not mixed up with "lc"
    assert released.shape == (1, len(steps))
    assert history_table(result.histories) == result.table


def test_paper_numbers_are_a_data_structure():
    assert paper.MNIST["lc_released_init"] == 8.5 and paper.MNIST["test_acc"] == 0.9
    assert {r["status"] for r in paper.RESULTS} <= {"reproduced", "different settings", "course version",
                                                     "not covered"}
    assert "PAPER.md" in paper.SOURCE


# --------------------------------------------------------------------------- weight decay (chapter 5)

WD_TINY = dict(n_train=64, widths=[8, 8], steps=40, lambdas=[0.1, 1.0], seeds=2)
CHAPTER5 = Path(__file__).resolve().parents[1] / "book" / "05_representation_cost.ipynb"


def _wd_summary(**changes):
    s = dict(members=24, fit_intercept=20.2, fit_slope_per_log_inverse_lambda=3.7, fit_r2=0.96,
             spearman_lc_vs_lambda=-0.98, spearman_cost_vs_lambda=-1.0, bounds_hold=1.0, max_cost_over_norm=0.61,
             boundary_last_over_first=0.76, lc_last_over_first=0.52, min_accuracy=0.89)
    s.update(changes)
    return s


@pytest.mark.parametrize("change, failing", [
    ({}, None),
    ({"spearman_lc_vs_lambda": -0.79}, "lower LC"),
    ({"spearman_lc_vs_lambda": 0.5}, "lower LC"),
    ({"fit_r2": 0.69}, "a + b log(1/lambda)"),
    ({"fit_slope_per_log_inverse_lambda": -0.1}, "a + b log(1/lambda)"),
    ({"fit_slope_per_log_inverse_lambda": 0.0}, "a + b log(1/lambda)"),
    ({"spearman_cost_vs_lambda": -0.7}, "representation cost falls"),
    ({"bounds_hold": 23 / 24}, "bounds hold"),
    ({"bounds_hold": 0.0}, "bounds hold"),
    ({"max_cost_over_norm": 0.8}, "unbalanced"),
    ({"boundary_last_over_first": 0.52}, "boundary length per area falls less"),
    ({"boundary_last_over_first": 0.4}, "boundary length per area falls less"),
    ({"min_accuracy": 0.79}, "fits the training data"),
])
def test_weight_decay_claims_each_tolerance(change, failing):
    claims = weight_decay.claims(_wd_summary(**change))
    bad = [c.text for c in claims.items if not c.holds]
    if failing is None:
        assert bad == [] and len(claims.items) == 7
        claims.check()
    else:
        assert len(bad) == 1 and failing in bad[0], bad
        with pytest.raises(AssertionError, match="do not hold"):
            claims.check()


def test_weight_decay_settings_are_the_reproduce_settings():
    q, f = weight_decay.settings("quick"), weight_decay.settings("full")
    assert set(vars(q)) == set(vars(f)) and set(weight_decay.TRAINING) < set(vars(q))
    np.testing.assert_array_equal(q.lambdas, np.logspace(-1.5, 0.5, 8).round(4))
    spec = reproduce.FIGURES["weight-decay"]
    assert spec.compute is weight_decay.compute and spec.claims is weight_decay.claims
    for mode in ("quick", "full"):
        assert vars(reproduce.figure_settings(spec, mode)) == vars(weight_decay.settings(mode, data_seed=0))
    with pytest.raises(ValueError, match="no setting 'n_box'"):
        weight_decay.settings("quick", n_box=100)
    with pytest.raises(ValueError, match="task must be one of"):
        weight_decay.load_data(weight_decay.settings("quick", task="moons"))


def test_weight_decay_chapter5_calls_the_experiment():
    """The chapter runs the sweep through the module and asserts through its claims; no copy
    of the sweep (per-run training, scipy's Spearman) is left in it."""
    import nbformat

    code = "\n".join(c.source for c in nbformat.read(CHAPTER5, as_version=4).cells if c.cell_type == "code")
    for needed in ("weight_decay.settings(MODE, data_seed=SEED)", "weight_decay.run(sweep, runner)",
                   "weight_decay.claims(", "display(claims)", "claims.check()"):
        assert needed in code, needed
    for gone in ("cached_train(", "spearmanr", "np.logspace", "lstsq"):
        assert gone not in code, gone


def _no_training(*args, **kwargs):
    raise AssertionError("trained although the cache holds the ensemble")


@pytest.mark.parametrize("first", ["chapter", "reproduce"])
def test_weight_decay_one_cache_entry_for_chapter_and_reproduce(first, tmp_path, monkeypatch):
    """The chapter's call (``weight_decay.run(weight_decay.settings(MODE, data_seed=SEED),
    Runner(DEVICE))``) and ``reproduce weight-decay`` with the same settings share one
    cache entry: whichever runs second trains nothing. The key holds the training settings
    and CACHE_VERSION: another s re-measures without training, another CACHE_VERSION or
    another number of steps trains."""
    import lctools.cache

    cache = ResultsCache(tmp_path / "cache")

    def chapter():
        return weight_decay.run(weight_decay.settings("quick", data_seed=0, **WD_TINY), Runner("cpu", cache))

    def from_reproduce():
        paths = reproduce.run("weight-decay", mode="quick", device="cpu", out=tmp_path / "out",
                              overrides=WD_TINY, progress=False, cache=cache)
        return json.loads(paths["json"].read_text())["summary"]

    result = chapter() if first == "chapter" else None
    summary = from_reproduce() if first == "reproduce" else None
    assert len(cache) == 1
    monkeypatch.setattr(lctools.cache, "train_ensemble", _no_training)
    if first == "chapter":
        summary = from_reproduce()
    else:
        result = chapter()
    assert len(cache) == 1
    # the same networks, measured the same way, through either entry point
    assert json.loads(json.dumps(result.summary)) == summary
    assert [r["lc"] for r in result.table] == _csv_column(tmp_path, "lc")
    # evaluation settings are not part of the key
    weight_decay.run(weight_decay.settings("quick", data_seed=0, s=0.1, noise_draws=1, **WD_TINY),
                     Runner("cpu", cache))
    # training settings and the cache version are
    with pytest.raises(AssertionError, match="trained although"):
        weight_decay.run(weight_decay.settings("quick", data_seed=0, **dict(WD_TINY, steps=41)), Runner("cpu", cache))
    monkeypatch.setattr(lctools.cache, "CACHE_VERSION", lctools.cache.CACHE_VERSION + "-other")
    with pytest.raises(AssertionError, match="trained although"):
        chapter()


def _csv_column(tmp_path, name):
    import csv

    with open(tmp_path / "out" / "weight-decay.csv") as fh:
        return [float(row[name]) for row in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def wd_tiny(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = weight_decay.settings("quick", **WD_TINY)
        yield weight_decay.run(cfg, Runner("cpu", tmp_path_factory.mktemp("wd") / "cache"))
    finally:
        torch.set_num_threads(before)


def test_weight_decay_members_are_their_lambda_and_seed(wd_tiny):
    """Member k of the ensemble is the network that per-run training gives for its
    (lambda, seed): the same initial parameters, minibatches and AdamW updates."""
    from lctools import MLP, training
    from lctools.models import build_seeded

    cfg, X, y = wd_tiny.cfg, wd_tiny.X, wd_tiny.y
    assert [(r["weight_decay"], r["seed"]) for r in wd_tiny.table] == [(0.1, 0), (0.1, 1), (1.0, 0), (1.0, 1)]
    for k in (1, 2):
        row = wd_tiny.table[k]
        net = build_seeded(lambda: MLP(2, cfg.widths, 2), row["seed"])
        training.train(net, X, y, cfg.steps, lr=cfg.lr, weight_decay=row["weight_decay"], batch_size=cfg.batch_size,
                       optimizer="adamw", seed=row["seed"], eval_steps=[cfg.steps], progress=False)
        for a, b in zip(net.parameters(), wd_tiny.model(k).parameters()):
            torch.testing.assert_close(b, a.detach(), rtol=1e-4, atol=1e-5)


def _gradient_bound(net, s):
    """C_bias * sum_l sum_i ||W_l[i, :]|| prod_{k<l} ||W_k||_op, from the weights."""
    Ws = [m.weight.detach().double() for m in net if isinstance(m, torch.nn.Linear)][:-1]
    G, op = 0.0, 1.0
    for W in Ws:
        G += float(W.norm(dim=1).sum()) * op
        op *= float(torch.linalg.matrix_norm(W, ord=2))
    return G / (s * np.sqrt(2 * np.pi))


def test_weight_decay_records_what_it_says(wd_tiny):
    """Every recorded quantity of two members against an independent computation on the
    extracted network."""
    import torch.nn.functional as F

    import lctools
    from lctools import regions
    from lctools import representation as rep

    cfg, X, y = wd_tiny.cfg, wd_tiny.X, wd_tiny.y
    for k in (0, 3):
        row = wd_tiny.table[k]
        net = wd_tiny.ensemble.to_models()[k].eval()            # an independent copy
        with torch.no_grad():
            out = net(X)
        assert row["accuracy"] == pytest.approx(float((out.argmax(1) == y).double().mean()))
        assert row["loss"] == pytest.approx(float(F.cross_entropy(out, y)), rel=1e-5)
        gen = torch.Generator().manual_seed(cfg.data_seed)
        assert row["lc"] == pytest.approx(float(lctools.local_complexity(net, X, cfg.s, noise_draws=cfg.noise_draws,
                                                                         generator=gen)), rel=1e-6)
        norm = sum(float(p.detach().double().square().sum()) for p in net.parameters())
        assert row["norm"] == pytest.approx(norm, rel=1e-6)
        rc = rep.representation_cost(net)
        assert row["cost"] == pytest.approx(rc.value, rel=1e-6) and row["cost"] < row["norm"]
        balanced = rep.balance(net)
        torch.testing.assert_close(balanced(X), out, rtol=1e-4, atol=1e-4)      # the same function
        gen = torch.Generator().manual_seed(cfg.data_seed)
        assert row["lc_balanced"] == pytest.approx(float(lctools.local_complexity(
            balanced, X, cfg.s, noise_draws=cfg.noise_draws, generator=gen)), rel=1e-4)
        assert row["lc_bound_gradients"] == pytest.approx(_gradient_bound(net, cfg.s), rel=1e-9)
        assert row["lc_balanced_bound_gradients"] == pytest.approx(_gradient_bound(balanced, cfg.s), rel=1e-6)
        assert row["bounds_hold"] and row["lc"] <= row["lc_bound_gradients"] <= row["lc_bound_norm"]
        P = regions.partition2d(net, (-1, 1, -1, 1))
        assert row["boundary_per_area"] == pytest.approx(P.boundary_length / 4.0, rel=1e-9)
        assert row["regions"] == P.num_regions == wd_tiny.partition(k).num_regions


def test_weight_decay_summary_against_numpy_and_scipy(wd_tiny):
    stats = pytest.importorskip("scipy.stats")
    rows, s = wd_tiny.table, wd_tiny.summary
    lam = np.array([r["weight_decay"] for r in rows])
    lc = np.array([r["lc"] for r in rows])
    slope, intercept = np.polyfit(np.log(1 / lam), lc, 1)
    assert (s["fit_slope_per_log_inverse_lambda"], s["fit_intercept"]) == pytest.approx((slope, intercept))
    assert s["fit_r2"] == pytest.approx(np.corrcoef(np.log(1 / lam), lc)[0, 1] ** 2)
    for p in s["per_lambda"]:
        mine = [r for r in rows if r["weight_decay"] == p["weight_decay"]]
        for key in weight_decay.AVERAGED:
            assert p[key] == pytest.approx(np.mean([r[key] for r in mine]))
    # a table with more lambdas, where ranks matter: numbers made up
    table = [dict(rows[0], weight_decay=v, seed=j, lc=30 - 3 * i + j + (i == 2) * 5, cost=100 / (i + 1) + j,
                  boundary_per_area=20 - i)
             for i, v in enumerate([0.01, 0.1, 1.0, 3.0, 10.0]) for j in range(2)]
    t = weight_decay.summarize(table)
    means = [np.mean([r["lc"] for r in table if r["weight_decay"] == v]) for v in (0.01, 0.1, 1.0, 3.0, 10.0)]
    assert t["spearman_lc_vs_lambda"] == pytest.approx(stats.spearmanr([0.01, 0.1, 1.0, 3.0, 10.0], means)[0])
    assert t["lc_last_over_first"] == pytest.approx(means[-1] / means[0])
    assert t["boundary_last_over_first"] == pytest.approx(16 / 20)


class _Bound:
    """A stand-in for lctools.representation.LCNormBound with chosen numbers."""

    def __init__(self, by_gradients=10.0, by_norm=20.0, c_bias=1.0, cost_sqrt_sum=None, by_cost=None):
        self.by_gradients, self.by_norm, self.c_bias = by_gradients, by_norm, c_bias
        self.cost_sqrt_sum, self.by_cost = cost_sqrt_sum, by_cost
        self.cost, self.balanced = (None, False) if by_cost is None else (1.0, True)


@pytest.mark.parametrize("lc, bound, holds", [
    (5.0, _Bound(), True),
    (10.0, _Bound(), True),                                       # equality
    (10.1, _Bound(), False),                                      # LC_s > C_bias G
    (5.0, _Bound(by_gradients=21.0), False),                      # C_bias G > the norm bound
    (5.0, _Bound(cost_sqrt_sum=12.0, by_cost=13.0), True),        # part 3: 10 <= 12 <= 13
    (5.0, _Bound(cost_sqrt_sum=9.0, by_cost=13.0), False),        # C_bias G > C_bias sum sqrt(R_i / 2)
    (5.0, _Bound(cost_sqrt_sum=12.0, by_cost=11.0), False),       # ... > C_bias sqrt(n_1 R_hat / 2)
])
def test_weight_decay_bound_check_fails_on_each_violation(monkeypatch, lc, bound, holds):
    monkeypatch.setattr(weight_decay.rep, "lc_norm_bound", lambda model, s: bound)
    monkeypatch.setattr(weight_decay, "local_complexity", lambda *a, **k: torch.tensor(lc, dtype=torch.float64))
    out = weight_decay.lc_and_bounds(None, None, weight_decay.settings("quick"))
    assert out["holds"] is holds and out["lc"] == lc


@pytest.mark.parametrize("widths", [[8], [8, 6], [6, 6, 6]])
def test_weight_decay_bound_check_holds_on_networks_and_balanced(widths):
    """The proposition (a theorem) on random networks and their balanced versions, part 3
    included for one hidden layer."""
    from lctools import MLP, data
    from lctools import representation as rep

    X = data.two_moons(128, seed=1)[0]
    cfg = weight_decay.settings("quick")
    for seed in range(3):
        net = MLP(2, widths, 2, seed=seed)
        for m in (net, rep.balance(net)):
            assert weight_decay.lc_and_bounds(m, X, cfg)["holds"]
# --------------------------------------------------------------------------- local-rank (chapter 3)

LR_TINY = dict(n_train=120, widths=[16, 16], steps=40, seeds=2, n_eval=24, num_evals=5)


def _lr_seed(seed, **changes):
    """One seed's summary numbers, as in a passing quick run (the numbers of chapter 3)."""
    p = dict(seed=seed, final_accuracy=0.98, fitted=True, fit_index=10, fit_step=16,
             local_rank_init=[100.0, 95.0, 82.0, 62.0], local_rank_end=[100.0, 30.0, 8.0, 4.8],
             first_rank_min=100.0, lc_init=510.0, lc_at_fit=310.0, lc_end=175.0, chain_worst_ratio=1.0,
             late_points=14, late_spearman=0.99)
    p.update(changes)
    return p


def _lr_summary(changes=None, seed_index=0, top=None):
    per_seed = [_lr_seed(s, **(changes if s == seed_index else {})) for s in range(3)]
    return {**dict(intrinsic_dim=5, first_width=100, per_seed=per_seed, late_phase_spearman=0.99),
            **(top or {})}


LR_CASES = [  # (changes of one seed, changes of the summary, the claims that must fail)
    ({}, {}, set()),
    ({"final_accuracy": 0.89}, {}, {"fits"}),
    ({"fitted": False, "fit_index": None}, {}, {"fits", "keeps falling"}),
    ({"first_rank_min": 94.9}, {}, {"layer 1 keeps"}),
    ({"local_rank_end": [100.0, 30.0, 8.0, 10.1]}, {}, {"deepest layer"}),           # > 2k
    ({"local_rank_init": [100.0, 95.0, 82.0, 19.0],                                 # > 0.25 x init,
      "local_rank_end": [100.0, 18.0, 8.0, 4.8]}, {}, {"deepest layer"}),          # but <= 2k
    ({"local_rank_end": [100.0, 95.0, 8.0, 4.8]}, {}, {"every deeper layer"}),     # layer 2 keeps its rank
    ({"local_rank_end": [100.0, 30.0, 83.0, 4.8]}, {}, {"every deeper layer"}),    # layer 3 gains
    ({"lc_init": 280.0}, {}, {"LC falls"}),                                        # 175 > 0.6 x 280
    ({"lc_at_fit": 190.0}, {}, {"keeps falling"}),                                 # 175 > 0.9 x 190
    ({"chain_worst_ratio": 1.001}, {}, {"proposition holds"}),
    ({}, {"late_phase_spearman": 0.49}, {"across seeds"}),
    ({}, {"late_phase_spearman": None}, {"across seeds"}),
    ({"late_spearman": 0.29}, {}, {"within every seed"}),
    ({"late_spearman": None, "late_points": 2}, {}, {"within every seed"}),
]


@pytest.mark.parametrize("seed_index", [0, 2])
@pytest.mark.parametrize("changes, top, failing", LR_CASES)
def test_local_rank_claims_fail_for_any_seed_that_breaks_them(changes, top, failing, seed_index):
    """Each claim of chapter 3 is about every seed: one seed that breaks it (the first or the
    last) makes it fail, and only the claims it breaks."""
    claims = local_rank.claims(_lr_summary(changes, seed_index, top))
    bad = [c.text for c in claims.items if not c.holds]
    assert {f for f in failing if any(f in b for b in bad)} == failing and len(bad) == len(failing), bad
    if failing:
        with pytest.raises(AssertionError):
            claims.check()
    else:
        claims.check()


@pytest.mark.parametrize("changes", [
    dict(final_accuracy=0.9), dict(first_rank_min=95.0), dict(chain_worst_ratio=1 + 1e-10),
    dict(late_spearman=0.3), dict(lc_init=500.0, lc_end=300.0, lc_at_fit=400.0),
    dict(lc_at_fit=200.0, lc_end=180.0), dict(local_rank_init=[100.0, 95.0, 82.0, 40.0],
                                                  local_rank_end=[100.0, 30.0, 8.0, 10.0]),
])
def test_local_rank_claims_tolerances_are_inclusive(changes):
    """A seed exactly at a claim's tolerance passes it."""
    local_rank.claims(_lr_summary(changes)).check()


def _history(seed, acc, rank_L, lc_total, L=3, break_chain_at=None):
    """A History as local_rank.run returns it: acc, and every term of CHAIN per layer; LC is
    spread evenly over the layers, each term of the chain twice the one before."""
    E = len(acc)
    lc = np.repeat(np.asarray(lc_total, float)[:, None] / L, L, axis=1)
    metrics = {"acc": np.asarray(acc, float), "lc": lc}
    for j, name in enumerate(local_rank.INEQUALITIES[1:], start=1):
        metrics[name] = lc * 2.0 ** j
    if break_chain_at is not None:
        metrics["frobenius_term"][break_chain_at] = metrics["row_norm_term"][break_chain_at] * 0.99
    rank = np.tile([100.0, 60.0, 0.0], (E, 1))
    rank[:, -1] = rank_L
    metrics.update(local_rank=rank, generic_bound=metrics["bound"] * 3, sigma_max=np.ones((E, L)))
    return History(np.arange(E) * 10, np.zeros(E), metrics, dict(seed=seed))


def test_local_rank_summary_against_an_independent_computation():
    from scipy.stats import spearmanr

    cfg = local_rank.settings("quick", widths=[200, 200, 200])
    acc = [0.1, 0.5, 0.95, 0.97, 0.98, 0.99, 0.99]
    rng = np.random.default_rng(0)
    ranks = [np.sort(rng.uniform(4, 60, 7))[::-1] for _ in range(2)]
    lcs = [np.sort(rng.uniform(150, 500, 7))[::-1] + rng.normal(0, 30, 7) for _ in range(2)]
    hists = [_history(0, acc, ranks[0], lcs[0]), _history(1, [0.1] * 3 + [0.92] * 4, ranks[1], lcs[1],
                                                           break_chain_at=5)]
    s = json.loads(json.dumps(local_rank.summarize(hists, cfg)))   # as reproduce writes it
    a, b = s["per_seed"]
    assert (a["fit_index"], a["fit_step"], b["fit_index"], b["fit_step"]) == (2, 20, 3, 30)
    assert a["late_spearman"] == pytest.approx(spearmanr(ranks[0][2:], lcs[0][2:])[0])
    assert b["late_spearman"] == pytest.approx(spearmanr(ranks[1][3:], lcs[1][3:])[0])
    pooled = spearmanr(np.r_[ranks[0][2:], ranks[1][3:]], np.r_[lcs[0][2:], lcs[1][3:]])[0]
    assert s["late_phase_spearman"] == pytest.approx(pooled)
    assert a["lc_init"] == pytest.approx(lcs[0][0]) and a["lc_at_fit"] == pytest.approx(lcs[0][2])
    assert a["chain_worst_ratio"] == pytest.approx(0.5) and b["chain_worst_ratio"] == pytest.approx(1 / 0.99)
    assert s["first_width"] == 100 and s["intrinsic_dim"] == 5
    # the means over seeds (read by the paper page)
    assert s["lc_end"] == pytest.approx((lcs[0][-1] + lcs[1][-1]) / 2)
    assert s["local_rank_end"] == pytest.approx([100.0, 60.0, (ranks[0][-1] + ranks[1][-1]) / 2])
    assert s["final_accuracy"] == [0.99, 0.92]
    failing = [c.text for c in local_rank.claims(s).items if not c.holds]
    assert any("proposition" in t for t in failing)
    # a network that never fits has no late phase
    never = local_rank.summarize([_history(0, [0.1] * 7, ranks[0], lcs[0])], cfg)
    p = never["per_seed"][0]
    assert not p["fitted"] and p["late_spearman"] is None and never["late_phase_spearman"] is None


def test_local_rank_settings_and_their_checks():
    q, f = local_rank.settings("quick"), local_rank.settings("full")
    assert set(vars(q)) == set(vars(f)) and (q.steps, q.seeds, f.steps, f.seeds) == (1_500, 3, 50_000, 6)
    # the chapter's call and reproduce's give the same settings, hence the same cache key
    for mode in ("quick", "full"):
        spec = reproduce.FIGURES["local-rank"]
        assert vars(reproduce.figure_settings(spec, mode)) == vars(local_rank.settings(mode, data_seed=0))
    with pytest.raises(ValueError, match="no setting 'stepz'"):
        local_rank.settings("quick", stepz=3)
    with pytest.raises(ValueError, match="'loss' of figure 'local-rank' expects a str"):
        reproduce.figure_settings(reproduce.FIGURES["local-rank"], "quick", dict(loss=3))
    for bad, message in ((dict(n_eval=2_000), "n_eval must be between 1 and n_train"),
                         (dict(k=101), "k must be between 1 and dim"), (dict(k=0), "k must be"),
                         (dict(num_evals=1), "num_evals must be >= 2")):
        with pytest.raises(ValueError, match=message):
            local_rank.run(local_rank.settings("quick", **bad), Runner("cpu", ResultsCache(enabled=False)))


@pytest.mark.parametrize("first", ["chapter", "reproduce"])
def test_local_rank_one_cache_entry_for_chapter_and_reproduce(first, tmp_path, monkeypatch):
    """Chapter 3 (local_rank.run) and `reproduce local-rank` with the same settings share one
    cache entry: whichever runs second loads it, and trains nothing."""
    import lctools.cache

    cache = ResultsCache(tmp_path / "cache")
    cfg = local_rank.settings("quick", **LR_TINY)

    def chapter():
        return json.loads(json.dumps(local_rank.run(cfg, Runner("cpu", cache)).summary))

    def via_reproduce():
        paths = reproduce.run("local-rank", mode="quick", device="cpu", out=tmp_path / "out", overrides=LR_TINY,
                              progress=False, cache=cache)
        return json.loads(paths["json"].read_text())["summary"]

    calls = [chapter, via_reproduce] if first == "chapter" else [via_reproduce, chapter]
    one = calls[0]()
    assert len(cache) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of loading the cache entry")

    monkeypatch.setattr(lctools.cache, "train_ensemble", no_training)
    two = calls[1]()
    assert len(cache) == 1 and one == two


def test_local_rank_result_members_and_records(tmp_path):
    """The recorded chain is local_rank_bound of each member, at initialisation (the member
    rebuilt from its seed) and at the end (the trained member)."""
    from lctools.rank import local_rank_bound

    cfg = local_rank.settings("quick", **LR_TINY)
    result = local_rank.run(cfg, Runner("cpu", tmp_path / "c"))
    assert result.seeds == [0, 1] and result.stacked("lc").shape == (2, len(result.steps), 2)
    for k in range(2):
        h = result.histories[k]
        for i, net in ((0, result.initial_model(k)), (-1, result.model(k))):
            rb = local_rank_bound(net, result.data.x_eval, cfg.sigma, cfg.eps)
            for name in local_rank.CHAIN:
                np.testing.assert_allclose(h[name][i], getattr(rb, name).numpy(), rtol=1e-6)
    steps, lc = member_series(result.table, "lc")
    np.testing.assert_array_equal(steps, result.steps)
    np.testing.assert_allclose(lc, result.stacked("lc"))
    _, gb = member_series(result.table, "generic_bound")             # not mixed up with "bound"
    np.testing.assert_allclose(gb, result.stacked("generic_bound"))
