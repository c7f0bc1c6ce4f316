"""lctools.experiments: one definition per experiment, shared by chapters and reproduce."""
import json

import numpy as np
import pytest
import torch

from lctools import reproduce
from lctools.cache import ResultsCache
from lctools.experiments import Claims, Runner, local_rank, member_series, mnist_dynamics, paper
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
