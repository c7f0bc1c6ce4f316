"""lctools.ensemble: K networks trained as one batched computation.

The reference is lctools.training.train run on each member separately (torch.optim's own
AdamW/Adam/SGD): an ensemble member must follow the same updates and record the same metrics.
"""
import copy
import warnings

import numpy as np
import pytest
import torch

import lctools
from lctools import training
from lctools.cache import ResultsCache, cached_train_ensemble
from lctools.ensemble import Ensemble, train_ensemble

pytestmark = pytest.mark.usefixtures("one_thread")

G = torch.Generator().manual_seed(0)
X = torch.rand(300, 20, generator=G)
Y = torch.randint(0, 4, (300,), generator=G)
EVALS = [0, 7, 30, 60]
STEPS = 60  # longer runs drift apart by rounding: Adam rescales near-zero gradients to full steps


def factory():
    return lctools.MLP(20, [32, 24], 4)


def lc(model):
    return lctools.local_complexity(model, X[:100], 0.5, noise_draws=0, per_layer=True)


def sequential(k, seed, **kw):
    torch.manual_seed(k)
    net = factory()
    hist = training.train(net, X, Y, STEPS, seed=seed, batch_size=32, eval_steps=EVALS, progress=False,
                          metrics={"lc": lc, "acc": lambda m: training.accuracy(m, X, Y)}, **kw)
    return net, hist


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd"])
def test_members_follow_sequential_training(optimizer):
    lrs, wds, seeds = [1e-2, 3e-3, 2e-2], [0.1, 0.0, 0.5], [5, 6, 7]
    ens = Ensemble.build(factory, [0, 1, 2])
    hists = train_ensemble(ens, X, Y, STEPS, lr=lrs, weight_decay=wds, optimizer=optimizer, seeds=seeds,
                           batch_size=32, eval_steps=EVALS, progress=False, metrics={"lc": lc},
                           batched_metrics={"acc": lambda e: e.accuracy(X, Y)})
    for k in range(3):
        net, ref = sequential(k, seeds[k], lr=lrs[k], weight_decay=wds[k], optimizer=optimizer)
        for a, b in zip(net.parameters(), ens.member(k).parameters()):
            torch.testing.assert_close(b, a.detach(), rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(hists[k].steps, ref.steps)
        np.testing.assert_allclose(hists[k].loss, ref.loss, rtol=1e-5)
        np.testing.assert_allclose(hists[k]["lc"], ref["lc"], rtol=1e-4)
        assert hists[k]["lc"].shape == (len(EVALS), 2)
        np.testing.assert_allclose(hists[k]["acc"], ref["acc"], atol=1.5 / len(X))  # at most one point flips
        assert hists[k].config["lr"] == lrs[k] and hists[k].config["weight_decay"] == wds[k]


def test_same_hyperparameters_match_torch_adamw_to_rounding():
    """With one lr and weight decay for all members the step is torch.optim.AdamW's arithmetic."""
    ens = Ensemble.build(factory, [3, 4])
    train_ensemble(ens, X, Y, STEPS, lr=1e-2, weight_decay=0.2, seeds=[3, 4], batch_size=32,
                   eval_steps=[0], progress=False)
    for k, seed in enumerate([3, 4]):
        net, _ = sequential(seed, seed, lr=1e-2, weight_decay=0.2)
        for a, b in zip(net.parameters(), ens.member(k).parameters()):
            torch.testing.assert_close(b, a.detach(), rtol=1e-5, atol=1e-6)


def test_forward_members_and_copies():
    nets = [factory() for _ in range(3)]
    ens = Ensemble(nets)
    assert len(ens) == ens.size == 3 and ens.depth == 2
    out = ens(X[:10])
    assert out.shape == (3, 10, 4)
    for k, net in enumerate(nets):
        torch.testing.assert_close(out[k], net(X[:10]))
        torch.testing.assert_close(ens.member(k)(X[:10]), net(X[:10]))
    per = ens(torch.stack([X[:5], X[5:10], X[10:15]]), per_member=True)
    torch.testing.assert_close(per[1], nets[1](X[5:10]))
    # a member is a view: it follows the ensemble; to_models() are independent copies
    view, (copy0, *_) = ens.member(0), ens.to_models()
    with torch.no_grad():
        ens.weights[0][0].mul_(2)
    torch.testing.assert_close(view[0].weight, ens.weights[0][0])
    torch.testing.assert_close(copy0[0].weight, nets[0][0].weight)
    assert all(p.requires_grad for p in copy0.parameters())
    np.testing.assert_allclose(ens.accuracy(X, Y).numpy(),
                               [training.accuracy(m, X, Y) for m in ens.members()])


def test_flatten_and_leaky_members():
    nets = [lctools.MLP(16, [8], 3, activation="leaky_relu", negative_slope=0.2, flatten=True) for _ in range(2)]
    ens = Ensemble(nets)
    x = torch.rand(5, 1, 4, 4)
    torch.testing.assert_close(ens(x)[1], nets[1](x))
    torch.testing.assert_close(ens.member(0)(x), nets[0](x))


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least one"):
        Ensemble([])
    with pytest.raises(ValueError, match="member 1 differs"):
        Ensemble([factory(), lctools.MLP(20, [32, 25], 4)])
    with pytest.raises(ValueError, match="member 1 differs"):
        Ensemble([factory(), lctools.MLP(20, [32, 24], 4, activation="leaky_relu")])
    with pytest.raises(ValueError, match="supports"):
        Ensemble([torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Tanh(), torch.nn.Linear(2, 1))])
    ens = Ensemble.build(factory, [0, 1])
    with pytest.raises(ValueError, match="per_member"):
        ens(X[:4], per_member=True)
    with pytest.raises(IndexError):
        ens.member(2)
    with pytest.raises(ValueError, match="one per member"):
        train_ensemble(ens, X, Y, 5, lr=[1e-3, 1e-3, 1e-3], progress=False)
    with pytest.raises(ValueError, match="one seed per member"):
        train_ensemble(ens, X, Y, 5, seeds=[1], progress=False)
    with pytest.raises(ValueError, match="must be an lctools.ensemble.Ensemble"):
        train_ensemble(factory(), X, Y, 5, progress=False)
    with pytest.raises(ValueError, match="unknown optimizer"):
        train_ensemble(ens, X, Y, 5, optimizer="lbfgs", progress=False)
    with pytest.raises(ValueError, match="K=2 values"):
        train_ensemble(ens, X, Y, 5, eval_steps=[5], batched_metrics={"bad": lambda e: 1.0}, progress=False)


class Interrupt(Exception):
    pass


def test_checkpoint_resume_equals_uninterrupted_run(tmp_path):
    """A run stopped after its step-30 checkpoint and started again gives exactly the result of
    a run that was never stopped."""
    kw = dict(lr=[1e-2, 5e-3], weight_decay=[0.1, 0.3], seeds=[0, 1], batch_size=32, eval_steps=EVALS,
              progress=False, batched_metrics={"acc": lambda e: e.accuracy(X, Y)})
    ref_ens = Ensemble.build(factory, [0, 1])
    ref = train_ensemble(ref_ens, X, Y, STEPS, metrics={"lc": lc}, **kw)

    calls = {"n": 0}

    def stop_at_last_eval(model):  # evaluated at steps 0, 7, 30, 60 for 2 members: stop at the 7th call
        calls["n"] += 1
        if calls["n"] == 7:
            raise Interrupt
        return lc(model)

    path = tmp_path / "run.pt"
    with pytest.raises(Interrupt):
        train_ensemble(Ensemble.build(factory, [0, 1]), X, Y, STEPS, metrics={"lc": stop_at_last_eval},
                       checkpoint=path, checkpoint_interval=1e9, **kw)
    assert torch.load(path, weights_only=False)["step"] == 30
    ens = Ensemble.build(factory, [0, 1])
    hists = train_ensemble(ens, X, Y, STEPS, metrics={"lc": stop_at_last_eval}, checkpoint=path, **kw)
    assert calls["n"] == 9  # only the two step-60 evaluations were run again
    for h, r in zip(hists, ref):
        np.testing.assert_array_equal(h.loss, r.loss)
        np.testing.assert_array_equal(h["lc"], r["lc"])
        np.testing.assert_array_equal(h["acc"], r["acc"])
    for a, b in zip(ens.parameters(), ref_ens.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_checkpoint_of_another_run_is_not_used(tmp_path):
    path = tmp_path / "run.pt"
    train_ensemble(Ensemble.build(factory, [0, 1]), X, Y, 20, checkpoint=path, eval_steps=[0, 20], progress=False)
    other = Ensemble.build(factory, [0, 1])
    with pytest.warns(UserWarning, match="another run"):
        train_ensemble(other, X, Y, 20, lr=2e-3, checkpoint=path, eval_steps=[0, 20], progress=False)
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="could not be read"):
        train_ensemble(Ensemble.build(factory, [0, 1]), X, Y, 20, checkpoint=path, eval_steps=[0, 20],
                       progress=False)


def test_cached_train_ensemble(tmp_path):
    cache = ResultsCache(tmp_path)
    kw = dict(steps=30, lr=1e-2, weight_decay=[0.0, 0.5], batch_size=32, eval_steps=[0, 30], progress=False,
              batched_metrics={"acc": lambda e: e.accuracy(X, Y)})
    ens, hists = cached_train_ensemble({"test": "ensemble"}, factory, [0, 1], X, Y, cache=cache, **kw)
    assert len(cache) == 1 and not list((tmp_path / "checkpoints").glob("*.pt"))  # removed once stored
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ens2, hists2 = cached_train_ensemble({"test": "ensemble"}, factory, [0, 1], X, Y, cache=cache, **kw)
    for h, h2 in zip(hists, hists2):
        np.testing.assert_array_equal(h.loss, h2.loss)
        np.testing.assert_array_equal(h["acc"], h2["acc"])
    for a, b in zip(ens.parameters(), ens2.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert hists[1].config["weight_decay"] == 0.5


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_ensemble_matches_cpu():
    kw = dict(lr=[1e-2, 3e-3], weight_decay=[0.1, 0.0], seeds=[0, 1], batch_size=32, eval_steps=[0, 60],
              progress=False, metrics={"lc": lc}, batched_metrics={"acc": lambda e: e.accuracy(X, Y)})
    cpu = Ensemble.build(factory, [0, 1])
    gpu = copy.deepcopy(cpu)
    h_cpu = train_ensemble(cpu, X, Y, 60, **kw)
    h_gpu = train_ensemble(gpu, X.cuda(), Y.cuda(), 60, device="cuda",
                           **dict(kw, metrics={"lc": lambda m: lctools.local_complexity(
                               m, X[:100].cuda(), 0.5, noise_draws=0, per_layer=True)}))
    assert gpu.weights[0].device.type == "cuda"
    for a, b in zip(cpu.parameters(), gpu.parameters()):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-3, atol=1e-4)
    for hc, hg in zip(h_cpu, h_gpu):
        np.testing.assert_allclose(hg.loss, hc.loss, rtol=1e-4)
        np.testing.assert_allclose(hg["lc"], hc["lc"], rtol=1e-3)


def test_cuda_graph_needs_cuda():
    with pytest.raises(ValueError, match="cuda_graph=True needs"):
        train_ensemble(Ensemble.build(factory, [0]), X, Y, 3, cuda_graph=True, progress=False)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_replays_the_eager_step(tmp_path):
    """Replayed CUDA graphs (one per minibatch size: 300 = 9 x 32 + 12) give the eager result,
    and a checkpointed graphed run resumes."""
    kw = dict(lr=[1e-2, 3e-3], weight_decay=[0.1, 0.0], seeds=[0, 1], batch_size=32, eval_steps=[0, 30, 60],
              progress=False, batched_metrics={"acc": lambda e: e.accuracy(X, Y)})
    Xc, Yc = X.cuda(), Y.cuda()
    eager, graphed = Ensemble.build(factory, [0, 1]).cuda(), Ensemble.build(factory, [0, 1]).cuda()
    h_e = train_ensemble(eager, Xc, Yc, 60, cuda_graph=False, **kw)
    h_g = train_ensemble(graphed, Xc, Yc, 60, cuda_graph=True, **kw)
    for a, b in zip(eager.parameters(), graphed.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    for he, hg in zip(h_e, h_g):
        np.testing.assert_allclose(hg.loss, he.loss, rtol=1e-5)
    # resume a graphed run from its step-30 checkpoint
    path = tmp_path / "run.pt"
    calls = {"n": 0}

    def stop(model):
        calls["n"] += 1
        if calls["n"] == 5:  # steps 0, 30 for two members, then the first call at step 60
            raise Interrupt
        return 0.0

    with pytest.raises(Interrupt):
        train_ensemble(Ensemble.build(factory, [0, 1]).cuda(), Xc, Yc, 60, metrics={"m": stop}, checkpoint=path, **kw)
    resumed = Ensemble.build(factory, [0, 1]).cuda()
    h_r = train_ensemble(resumed, Xc, Yc, 60, metrics={"m": stop}, checkpoint=path, **kw)
    for a, b in zip(graphed.parameters(), resumed.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_r[0].loss, h_g[0].loss, rtol=1e-5)
