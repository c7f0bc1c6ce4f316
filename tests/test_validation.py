"""lctools.validation: one rule per argument, applied by every public function.

Each class of argument is probed through every public function that takes it: numpy
scalars and 0-d tensors are accepted where a number is meant, and NaN, infinity, bools,
wrong signs and non-integers are refused with a ValueError that names the argument.
"""
import math

import numpy as np
import pytest
import torch

import lctools
from helpers import UNWRITABLE, random_mlp, unwritable_folder
from lctools import validation
from lctools.ensemble import Ensemble, train_ensemble
from lctools.training import train

NET = random_mlp(3, [8, 6], 2)
X = torch.rand(40, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
Y = torch.randint(0, 2, (40,), generator=torch.Generator().manual_seed(1))
BAD_POSITIVE = [0.0, -1.0, float("nan"), float("inf"), -float("inf"), True, "0.5", [0.5], torch.ones(2)]
NUMBER_FORMS = [0.5, np.float32(0.5), np.float64(0.5), torch.tensor(0.5), torch.tensor(0.5, dtype=torch.float64),
                np.array(0.5)]

SIGMA_FUNCTIONS = {
    "local_complexity": lambda s: lctools.local_complexity(NET, X, s, noise_draws=0),
    "local_complexity_bound": lambda s: lctools.local_complexity_bound(NET, X, s),
    "local_rank_bound": lambda s: lctools.local_rank_bound(NET, X, s),
    "total_variation_bound": lambda s: lctools.total_variation_bound(NET, X, s),
    "lc_norm_bound": lambda s: lctools.representation.lc_norm_bound(NET, s),
    "gaussian_density": lambda s: lctools.gaussian_density(torch.zeros(3), s),
}
EPS_FUNCTIONS = {
    "local_rank": lambda e: lctools.local_rank(NET, X, eps=e),
    "local_rank_post": lambda e: lctools.local_rank(NET, X, eps=e, features="post"),
    "local_rank_bound": lambda e: lctools.local_rank_bound(NET, X, 0.5, eps=e),
    "count_singular_values_above": lambda e: lctools.count_singular_values_above(torch.rand(2, 3, 4), e),
}
REDUCTION_FUNCTIONS = {
    "local_complexity": lambda r: lctools.local_complexity(NET, X, 0.5, noise_draws=0, reduction=r),
    "local_rank": lambda r: lctools.local_rank(NET, X, reduction=r),
    "total_variation": lambda r: lctools.total_variation(NET, X, reduction=r),
}


#: each threshold's functions and the word its refusals name
POSITIVE_RULES = {"sigma": (SIGMA_FUNCTIONS, "sigma|^s "), "eps": (EPS_FUNCTIONS, "eps")}
POSITIVE_CASES = [(rule, name) for rule, (functions, _) in POSITIVE_RULES.items() for name in functions]


@pytest.mark.parametrize("rule,name", POSITIVE_CASES)
@pytest.mark.parametrize("bad", BAD_POSITIVE, ids=repr)
def test_positive_thresholds_are_refused_everywhere_by_one_rule(rule, name, bad):
    """sigma and eps: one rule (a finite number > 0) in every function that takes them
    (local_rank used to accept eps=inf while local_rank_bound refused it)."""
    functions, match = POSITIVE_RULES[rule]
    with pytest.raises(ValueError, match=match):
        functions[name](bad)


@pytest.mark.parametrize("rule,name", POSITIVE_CASES)
@pytest.mark.parametrize("good", NUMBER_FORMS, ids=repr)
def test_positive_thresholds_accept_numpy_scalars_and_0d_tensors(rule, name, good):
    POSITIVE_RULES[rule][0][name](good)


@pytest.mark.parametrize("name", REDUCTION_FUNCTIONS)
def test_reduction_one_rule_and_one_meaning(name):
    f = REDUCTION_FUNCTIONS[name]
    none = f("none")
    torch.testing.assert_close(f("mean"), none.to(f("mean").dtype).mean(dim=0))
    torch.testing.assert_close(f("sum"), none.to(f("sum").dtype).sum(dim=0))
    for bad in ("avg", "MEAN", None, 0, ["mean"]):
        with pytest.raises(ValueError, match="reduction"):
            f(bad)


@pytest.mark.parametrize("bad", [-1, 2.5, float("nan"), "3", True, torch.tensor([1, 2])], ids=repr)
def test_noise_draws(bad):
    with pytest.raises(ValueError, match="noise_draws"):
        lctools.local_complexity(NET, X, 0.5, noise_draws=bad)


@pytest.mark.parametrize("good", [3, np.int64(3), torch.tensor(3), 3.0])
def test_noise_draws_forms(good):
    g = torch.Generator().manual_seed(0)
    a = lctools.local_complexity(NET, X, 0.5, noise_draws=good, generator=g)
    b = lctools.local_complexity(NET, X, 0.5, noise_draws=3, generator=torch.Generator().manual_seed(0))
    assert float(a) == float(b)


@pytest.mark.parametrize("what", ["lr", "weight_decay"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1e-3, True, "1e-3"], ids=repr)
def test_train_hyperparameters(what, bad):
    with pytest.raises(ValueError, match=what):
        train(random_mlp(3, [4], 2, dtype=torch.float32), X.float(), Y, 3, progress=False, **{what: bad})


@pytest.mark.parametrize("what", ["lr", "weight_decay"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, [1e-3, float("nan")], [1e-3], "x"], ids=repr)
def test_train_ensemble_hyperparameters(what, bad):
    ens = Ensemble([random_mlp(3, [4], 2, seed=k, dtype=torch.float32) for k in range(2)])
    with pytest.raises(ValueError, match=what):
        train_ensemble(ens, X.float(), Y, 3, progress=False, **{what: bad})


def test_hyperparameters_accept_numpy_and_tensors():
    net = random_mlp(3, [4], 2, dtype=torch.float32)
    h = train(net, X.float(), Y, np.int64(2), lr=np.float32(1e-2), weight_decay=torch.tensor(0.1), progress=False)
    assert h.config["steps"] == 2 and isinstance(h.config["lr"], float)
    ens = Ensemble([random_mlp(3, [4], 2, seed=k, dtype=torch.float32) for k in range(2)])
    hs = train_ensemble(ens, X.float(), Y, 2, lr=np.array([1e-2, 2e-2]), weight_decay=torch.tensor(0.1),
                        progress=False)
    assert [h.config["lr"] for h in hs] == [1e-2, 2e-2]


@pytest.mark.parametrize("widths", [[2.7], [0], [-3], [], [4, 0], "16", 16, [float("nan")], [True]], ids=repr)
def test_mlp_widths(widths):
    with pytest.raises(ValueError, match="widths"):
        lctools.MLP(2, widths, 1)


def test_mlp_width_forms():
    net = lctools.MLP(np.int64(2), (np.int64(3), torch.tensor(4), 5.0), 1)
    assert net.widths == [3, 4, 5]


@pytest.mark.parametrize("slope", [1.0, 1.5, -0.5, -1.0, float("nan"), float("inf")], ids=repr)
def test_mlp_slope(slope):
    with pytest.raises(ValueError, match="negative_slope"):
        lctools.MLP(2, [4], 1, activation="leaky_relu", negative_slope=slope)


@pytest.mark.parametrize("sigma", [float("nan"), float("inf"), -0.1, "0.1"], ids=repr)
def test_perturb_biases_sigma(sigma):
    with pytest.raises(ValueError, match="sigma"):
        lctools.perturb_biases(NET, sigma)


def test_perturb_biases_zero_sigma_is_a_copy():
    copy = lctools.perturb_biases(NET, np.float64(0.0))
    for a, b in zip(copy.parameters(), NET.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_inputs_must_be_finite_everywhere(bad):
    x = X.clone()
    x[7, 1] = bad
    for f in (lambda: lctools.local_complexity(NET, x, 0.5), lambda: lctools.local_rank(NET, x),
              lambda: lctools.total_variation(NET, x), lambda: lctools.total_variation_bound(NET, x, 0.5),
              lambda: lctools.local_rank_bound(NET, x, 0.5), lambda: lctools.input_jacobian(NET, x),
              lambda: lctools.regions.activation_patterns(NET, x)):
        with pytest.raises(ValueError, match="NaN or infinite"):
            f()


def test_finite_check_is_chunked_without_a_full_copy(monkeypatch):
    """check_finite never calls isfinite on more than ``chunk`` elements at once, whatever x's layout."""
    seen = []
    real = torch.isfinite

    def spy(t):
        seen.append(t.numel())
        return real(t)

    monkeypatch.setattr(torch, "isfinite", spy)
    x = torch.rand(1000, 30)
    validation.check_finite(x, chunk=4096)
    assert max(seen) <= 4096 and sum(seen) == x.numel()
    seen.clear()
    validation.check_finite(x.T, chunk=4096)  # not contiguous: chunks of rows
    assert max(seen) <= 4096 and sum(seen) == x.numel()
    x[999, 29] = float("nan")
    with pytest.raises(ValueError):
        validation.check_finite(x, chunk=4096)


def test_as_int_and_as_float_messages():
    with pytest.raises(ValueError, match=r"steps must be an integer >= 0, got -1"):
        validation.as_int(-1, "steps", low=0)
    with pytest.raises(ValueError, match="bool"):
        validation.as_float(np.bool_(True), "lr")
    assert validation.as_float(torch.tensor(2, dtype=torch.int32), "x") == 2.0
    assert math.isinf(validation.as_float(float("inf"), "x", finite=False))


@pytest.mark.parametrize("device", ["tpu", "meta", "nonsense"])
def test_check_device_types_refuses_other_devices(device):
    """``types=`` refuses a device of another type (reproduce computes on cpu or cuda only)."""
    with pytest.raises(ValueError, match="device"):
        validation.check_device(device, types=("cpu", "cuda"))
    assert validation.check_device("cpu", types=("cpu", "cuda")) == torch.device("cpu")


@pytest.mark.parametrize("kind", [k for k in UNWRITABLE if k != "disk full"])
def test_check_writable_is_the_one_writability_probe(tmp_path, monkeypatch, kind):
    """The output folder of reproduce and the results cache are probed by the same helper:
    a folder made, renamed and removed (what ResultsCache.store does)."""
    from lctools.cache import ResultsCache

    folder = unwritable_folder(kind, tmp_path, monkeypatch)
    with pytest.raises(ValueError, match="output folder .* is not writable"):
        validation.check_writable(folder, "output folder")
    assert ResultsCache(folder).writable() is False
    monkeypatch.undo()
    ok = tmp_path / "ok"
    assert validation.check_writable(ok, "output folder") == ok and list(ok.iterdir()) == []
    assert ResultsCache(ok).writable() is True
