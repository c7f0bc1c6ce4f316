"""``decay_biases``: weight decay on the weights only (the paper's setting), in ``train``,
``train_ensemble`` and the cached wrappers.

The reference is a hand-written loop over ``torch.optim``'s optimizers with two parameter
groups (weights with the decay, biases with none), fed the same minibatches.
"""
import pytest
import torch
import torch.nn.functional as F

import lctools
from lctools import training
from lctools.cache import ResultsCache, cached_train, cached_train_ensemble
from lctools.ensemble import Ensemble, train_ensemble

pytestmark = pytest.mark.usefixtures("one_thread")

G = torch.Generator().manual_seed(3)
X = torch.rand(120, 5, generator=G)
Y = torch.randint(0, 3, (120,), generator=G)
STEPS, BATCH = 25, 16


def factory():
    return lctools.MLP(5, [12, 10], 3, bias_std=0.5)


def build(seed=0):
    return lctools.models.build_seeded(factory, seed)


def reference(model, optimizer, lr, wd, seed, decay_biases):
    """torch.optim with parameter groups, on the minibatches train() draws."""
    weights = [p for k, p in model.named_parameters() if not k.endswith("bias")]
    biases = [p for k, p in model.named_parameters() if k.endswith("bias")]
    groups = [{"params": weights, "weight_decay": wd},
              {"params": biases, "weight_decay": wd if decay_biases else 0.0}]
    fused = {} if optimizer == "sgd" else {"fused": True}  # train() runs torch's fused kernel on the CPU
    opt = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}[optimizer](groups, lr=lr,
                                                                                                   **fused)
    gen = torch.Generator().manual_seed(seed)
    pos, perm = len(X), None
    for _ in range(STEPS):
        if pos >= len(X):
            perm, pos = torch.randperm(len(X), generator=gen), 0
        idx = perm[pos: pos + BATCH]
        pos += BATCH
        opt.zero_grad()
        F.cross_entropy(model(X[idx]), Y[idx]).backward()
        opt.step()
    return model


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd"])
@pytest.mark.parametrize("decay_biases", [False, True])
def test_train_matches_torch_param_groups(optimizer, decay_biases):
    lr, wd = 3e-2, 0.4
    net = build()
    training.train(net, X, Y, STEPS, lr=lr, weight_decay=wd, batch_size=BATCH, optimizer=optimizer,
                   progress=False, decay_biases=decay_biases, eval_steps=[])
    ref = reference(build(), optimizer, lr, wd, 0, decay_biases)
    for (k, a), b in zip(net.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)


def test_biases_are_not_decayed_when_their_gradient_is_zero():
    # one SGD step with zero output weights: the hidden layers get no loss gradient, so their
    # weights shrink by (1 - lr wd) and their biases stay put
    net = build()
    with torch.no_grad():
        net[-1].weight.zero_()
        net[-1].bias.zero_()
    before = {k: p.detach().clone() for k, p in net.named_parameters()}
    training.train(net, X, Y, 1, lr=0.1, weight_decay=0.5, optimizer="sgd", loss="mse", progress=False,
                   decay_biases=False, eval_steps=[], batch_size=len(X))
    for k in ("0.bias", "2.bias"):
        torch.testing.assert_close(dict(net.named_parameters())[k], before[k], rtol=0, atol=0)
    torch.testing.assert_close(net[0].weight, before["0.weight"] * (1 - 0.05))
    torch.testing.assert_close(net[2].weight, before["2.weight"] * (1 - 0.05))


def test_decay_biases_changes_the_result():
    a, b = build(), build()
    for net, flag in ((a, True), (b, False)):
        training.train(net, X, Y, STEPS, lr=1e-2, weight_decay=0.5, progress=False, decay_biases=flag,
                       eval_steps=[])
    assert not torch.equal(a[0].bias, b[0].bias)


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd"])
def test_ensemble_members_follow_train(optimizer):
    lrs, wds, seeds = [1e-2, 3e-2], [0.3, 0.05], [4, 9]
    ens = Ensemble.build(factory, [0, 1])
    train_ensemble(ens, X, Y, STEPS, lr=lrs, weight_decay=wds, seeds=seeds, batch_size=BATCH,
                   optimizer=optimizer, progress=False, eval_steps=[], decay_biases=False)
    for k in range(2):
        ref = reference(build(k), optimizer, lrs[k], wds[k], seeds[k], decay_biases=False)
        for a, b in zip(ens.member(k).parameters(), ref.parameters()):
            torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-6)


def test_ensemble_uniform_hyperparameters_fused_path():
    ens = Ensemble.build(factory, [0, 1])
    train_ensemble(ens, X, Y, STEPS, lr=1e-2, weight_decay=0.3, seeds=[0, 1], batch_size=BATCH,
                   progress=False, eval_steps=[], decay_biases=False)
    for k in range(2):
        ref = reference(build(k), "adamw", 1e-2, 0.3, k, decay_biases=False)
        for a, b in zip(ens.member(k).parameters(), ref.parameters()):
            torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-6)


def test_ensemble_checkpoint_resume_with_groups(tmp_path):
    ckpt = tmp_path / "run.pt"
    kw = dict(lr=1e-2, weight_decay=0.3, batch_size=BATCH, progress=False, eval_steps=[0, 10, STEPS],
              decay_biases=False)
    full = Ensemble.build(factory, [0, 1])
    train_ensemble(full, X, Y, STEPS, **kw)
    part = Ensemble.build(factory, [0, 1])
    train_ensemble(part, X, Y, STEPS, checkpoint=ckpt, **kw)  # leaves the final state
    resumed = Ensemble.build(factory, [0, 1])
    train_ensemble(resumed, X, Y, STEPS, checkpoint=ckpt, **kw)
    for a, b in zip(full.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_cache_key_includes_decay_biases(tmp_path):
    cache = ResultsCache(tmp_path)
    kw = dict(steps=5, lr=1e-2, weight_decay=0.3, progress=False, eval_steps=[0, 5])
    a, ha = cached_train({"x": 1}, factory, X, Y, cache=cache, decay_biases=False, **kw)
    b, hb = cached_train({"x": 1}, factory, X, Y, cache=cache, decay_biases=True, **kw)
    c, hc = cached_train({"x": 1}, factory, X, Y, cache=cache, **kw)  # the default is True: a hit
    assert len(cache) == 2
    assert ha.config["decay_biases"] is False and hb.config["decay_biases"] is True
    assert not torch.equal(a[0].bias, b[0].bias)
    torch.testing.assert_close(b[0].bias, c[0].bias, rtol=0, atol=0)
    e1, _ = cached_train_ensemble({"x": 1}, factory, [0, 1], X, Y, cache=cache, decay_biases=False, **kw)
    e2, _ = cached_train_ensemble({"x": 1}, factory, [0, 1], X, Y, cache=cache, decay_biases=True, **kw)
    assert len(cache) == 4
    torch.testing.assert_close(e1.member(0)[0].weight, a[0].weight, rtol=1e-5, atol=1e-6)
    assert not torch.equal(e1.biases[0], e2.biases[0])
    with pytest.raises(ValueError, match="decay_biases"):
        cached_train({"x": 1}, factory, X, Y, cache=cache, decay_biases="no", **kw)
