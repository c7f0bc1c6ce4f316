"""lctools.experiments: one definition per experiment, shared by chapters and reproduce."""
import numpy as np
import pytest
import torch

from lctools import reproduce
from lctools.cache import ResultsCache
from lctools.experiments import Claims, Runner, member_series, mnist_dynamics, paper
from lctools.experiments._shared import history_table

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
