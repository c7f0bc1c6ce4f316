"""local_complexity(..., convention="released-code") against a per-neuron autograd loop."""
import copy
import math

import pytest
import torch

import lctools
from helpers import random_mlp
from lctools.complexity import released_code_density


def per_neuron_reference(model, x, s, noise=None, convention="released-code"):
    """sum_{l,i} w(zbar_{l,i}) ||grad_x z_{l,i}||, one autograd call per neuron and point
    (independent of lctools' batched Jacobians). ``noise``: per-layer bias noise (n_l,)."""
    net = copy.deepcopy(model).double()
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    trained = [lin.bias.detach().clone() for lin in linears]
    if noise is not None:
        with torch.no_grad():
            for lin, e in zip(linears, noise):
                lin.bias += e
    total = torch.zeros(len(x), dtype=torch.float64)
    for n, x0 in enumerate(x.double()):
        for l in range(len(linears) - 1):
            for i in range(linears[l].out_features):
                xi = x0.clone().requires_grad_(True)
                h = xi
                for k in range(l + 1):
                    z = linears[k](h)
                    h = torch.relu(z)
                (grad,) = torch.autograd.grad(z[i], xi)
                zbar = z[i].item() - (0.0 if noise is None else noise[l][i].item())
                if convention == "released-code":
                    t = zbar - trained[l][i].item()
                    w = math.exp(-0.5 * (t / s) ** 2)
                else:
                    w = math.exp(-0.5 * (zbar / s) ** 2) / (s * math.sqrt(2 * math.pi))
                total[n] += w * grad.norm().item()
    return total


@pytest.mark.parametrize("s", [0.05, 0.5, 2.0])
@pytest.mark.parametrize("widths", [[5], [4, 6, 3]])
def test_released_code_matches_per_neuron_loop(s, widths):
    # trained-looking, nonzero biases: the two conventions differ
    net = random_mlp(3, widths, 2, seed=1, bias_std=0.5, init="default")
    x = torch.randn(7, 3, dtype=torch.float64)
    got = lctools.local_complexity(net, x, s, noise_draws=0, reduction="none", convention="released-code")
    torch.testing.assert_close(got, per_neuron_reference(net, x, s), rtol=1e-10, atol=1e-12)
    ours = lctools.local_complexity(net, x, s, noise_draws=0, reduction="none")
    torch.testing.assert_close(ours, per_neuron_reference(net, x, s, convention="coarea"), rtol=1e-10, atol=1e-12)
    assert not torch.allclose(got, ours * s * math.sqrt(2 * math.pi))  # not a rescaling of ours


def test_released_code_with_one_shared_noise_draw():
    net = random_mlp(2, [6, 5], 1, seed=2, bias_std=0.3, init="default")
    x, s = torch.randn(5, 2, dtype=torch.float64), 0.3
    got = lctools.local_complexity(net, x, s, noise_draws=1, shared_noise=True, reduction="none",
                                   generator=torch.Generator().manual_seed(7), convention="released-code")
    gen = torch.Generator().manual_seed(7)  # the same draws, in lctools' documented order (layer by layer)
    noise = [s * torch.randn(n, generator=gen, dtype=torch.float64) for n in (6, 5)]
    torch.testing.assert_close(got, per_neuron_reference(net, x, s, noise), rtol=1e-10, atol=1e-12)


def test_conventions_agree_up_to_normalisation_when_biases_are_zero():
    net = lctools.MLP(4, [8, 8], 3, seed=0).double()
    with torch.no_grad():
        for m in net:
            if isinstance(m, torch.nn.Linear):
                m.bias.zero_()
    x, s = torch.rand(50, 4, dtype=torch.float64), 0.01
    ours = lctools.local_complexity(net, x, s, noise_draws=0, per_layer=True)
    paper = lctools.local_complexity(net, x, s, noise_draws=0, per_layer=True, convention="released-code")
    torch.testing.assert_close(paper, ours * s * math.sqrt(2 * math.pi))
    assert released_code_density(torch.zeros(1), torch.zeros(1), s).item() == 1.0


def test_convention_is_checked():
    net = lctools.MLP(2, [3], 1, seed=0)
    with pytest.raises(ValueError, match="convention"):
        lctools.local_complexity(net, torch.rand(4, 2), 0.1, convention="paper")
