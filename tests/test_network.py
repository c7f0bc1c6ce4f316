"""lctools._network.parse_network: what lctools can see, and the clear refusal of the rest.

lctools reads a model's layers and never calls its forward, so anything whose function is
not the plain stack of its layers must be refused (or it would silently be measured as the
plain stack): custom forwards, forward hooks, subclassed layers.  Slopes, widths, NaN
parameters and low-precision dtypes each follow one rule.
"""
import pytest
import torch
from torch import nn

import lctools
from helpers import random_mlp
from lctools import regions

X2 = torch.rand(64, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1

# every public function that reads a model, on a 2-input model
READERS = {
    "local_complexity": lambda m: lctools.local_complexity(m, X2, 0.5, noise_draws=0),
    "local_complexity_bound": lambda m: lctools.local_complexity_bound(m, X2, 0.5),
    "local_rank": lambda m: lctools.local_rank(m, X2),
    "local_rank_bound": lambda m: lctools.local_rank_bound(m, X2, 0.5),
    "total_variation": lambda m: lctools.total_variation(m, X2),
    "total_variation_bound": lambda m: lctools.total_variation_bound(m, X2, 0.5),
    "input_jacobian": lambda m: lctools.input_jacobian(m, X2),
    "partition2d": lambda m: regions.partition2d(m),
    "pattern_map": lambda m: regions.pattern_map(m, resolution=8),
    "activation_patterns": lambda m: regions.activation_patterns(m, X2),
    "perturb_biases": lambda m: lctools.perturb_biases(m, 0.1),
    "parameter_norm": lambda m: lctools.representation.parameter_norm(m),
    "Ensemble": lambda m: lctools.ensemble.Ensemble([m]),
}


class Doubled(nn.Sequential):
    """A Sequential subclass with its own forward: N(x) = 2 * stack(x) + stack(-x)."""

    def forward(self, x):
        return 2 * super().forward(x) + super().forward(-x)


class ScaledLinear(nn.Linear):
    def forward(self, x):
        return 10 * super().forward(x)


class ShiftedReLU(nn.ReLU):
    def forward(self, x):
        return torch.relu(x - 1)


def custom_models():
    base = [nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1)]
    torch.manual_seed(0)
    yield "Sequential subclass with forward", Doubled(*base)
    yield "Linear subclass with forward", nn.Sequential(ScaledLinear(2, 8), nn.ReLU(), nn.Linear(8, 1))
    yield "ReLU subclass with forward", nn.Sequential(nn.Linear(2, 8), ShiftedReLU(), nn.Linear(8, 1))
    hooked = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))
    hooked.register_forward_hook(lambda mod, inp, out: out * 3)
    yield "forward hook on the model", hooked
    inner = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))
    inner[1].register_forward_hook(lambda mod, inp, out: out + 1)
    yield "forward hook on a layer", inner
    pre = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))
    pre[0].register_forward_pre_hook(lambda mod, inp: (inp[0] * 2,))
    yield "forward pre-hook on a layer", pre
    mlp = lctools.MLP(2, [8], 1)
    mlp.register_forward_hook(lambda mod, inp, out: out.abs())
    yield "forward hook on an lctools.MLP", mlp


@pytest.mark.parametrize("name", list(READERS))
@pytest.mark.parametrize("case", list(custom_models()), ids=lambda c: c[0])
def test_models_lctools_cannot_see_are_refused(case, name):
    _, model = case
    with pytest.raises(ValueError, match="forward|hook"):
        READERS[name](model)


def test_global_forward_hooks_are_refused():
    handle = nn.modules.module.register_module_forward_hook(lambda mod, inp, out: out)
    try:
        with pytest.raises(ValueError, match="global forward hooks"):
            lctools.local_complexity(lctools.MLP(2, [4], 1), X2, 0.5)
    finally:
        handle.remove()
    lctools.local_complexity(lctools.MLP(2, [4], 1), X2, 0.5)  # fine once removed


def test_plain_models_are_read_and_removed_hooks_are_fine():
    net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))
    handle = net.register_forward_hook(lambda mod, inp, out: out * 3)
    handle.remove()
    for f in READERS.values():
        f(net)
        f(lctools.MLP(2, [8], 1))


@pytest.mark.parametrize("slope", [1.0, 1.5, -0.5, -1.0, float("nan"), float("inf")], ids=repr)
@pytest.mark.parametrize("name", ["local_complexity", "partition2d", "total_variation_bound", "local_rank",
                                  "Ensemble"])
def test_leaky_slopes_outside_0_1_are_refused(slope, name):
    """slope 1: the network is affine (yet its zero sets would be counted as regions); slope < 0
    or > 1 breaks 0 <= sigma' <= 1, on which the TV chain rests; NaN means nothing."""
    model = nn.Sequential(nn.Linear(2, 8), nn.LeakyReLU(slope), nn.Linear(8, 1))
    with pytest.raises(ValueError, match="negative_slope"):
        READERS[name](model)


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.5, 0.99])
def test_leaky_slopes_in_0_1_work(slope):
    model = nn.Sequential(nn.Linear(2, 8), nn.LeakyReLU(slope), nn.Linear(8, 1))
    b = lctools.total_variation_bound(model, X2, 0.5)
    assert bool((b.tv <= b.triangle.min(dim=1).values * (1 + 1e-5) + 1e-7).all())


@pytest.mark.parametrize("layers", [
    [nn.Linear(2, 0), nn.ReLU(), nn.Linear(0, 1)],
    [nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 0), nn.ReLU(), nn.Linear(0, 1)],
    [nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 0)],
    [nn.Linear(0, 4), nn.ReLU(), nn.Linear(4, 1)],
], ids=["first hidden", "second hidden", "output", "input"])
@pytest.mark.parametrize("name", ["local_complexity", "local_rank", "total_variation", "partition2d"])
def test_zero_width_layers_give_value_error(layers, name):
    with pytest.raises(ValueError, match="width 0"):
        READERS[name](nn.Sequential(*layers))


@pytest.mark.parametrize("where", ["weight", "bias"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("name", ["partition2d", "pattern_map", "local_complexity", "local_rank", "total_variation",
                                  "activation_patterns"])
def test_nan_parameters_are_refused(where, value, name):
    net = lctools.MLP(2, [8, 8], 1, seed=0)
    with torch.no_grad():
        getattr(net[2], where)[0] = value
    with pytest.raises(ValueError, match="NaN or infinite parameters"):
        READERS[name](net)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", list(READERS))
def test_low_precision_models_work(dtype, name):
    """float16/bfloat16 models are computed in float32 (their copies), and agree with the
    float32 model of the same (rounded) parameters."""
    if name == "Ensemble":
        pytest.skip("an Ensemble stores its own parameters")
    low = random_mlp(2, [8, 8], 1, dtype=dtype)
    ref = random_mlp(2, [8, 8], 1, dtype=dtype).float()
    a, b = READERS[name](low), READERS[name](ref)
    if name in ("partition2d",):
        assert a.num_regions == b.num_regions and abs(a.boundary_length - b.boundary_length) < 1e-5
    elif name == "total_variation_bound":
        torch.testing.assert_close(a.tv, b.tv)
        torch.testing.assert_close(a.global_bound, b.global_bound)
    elif isinstance(a, torch.Tensor):
        torch.testing.assert_close(a.float(), b.float())


def test_mixed_devices_or_dtypes_are_refused():
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1).double())
    with pytest.raises(ValueError, match="one device and one dtype"):
        lctools.local_complexity(net, X2, 0.5)


@pytest.mark.parametrize("flatten", [nn.Flatten(start_dim=2), nn.Flatten(0, -1)], ids=["start 2", "start 0"])
def test_a_partial_flatten_is_refused(flatten):
    with pytest.raises(ValueError, match="Flatten"):
        lctools.local_complexity(nn.Sequential(flatten, nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)), X2, 0.5)
