"""Benchmark: K networks trained as one ensemble against K sequential training runs.

Network: MLP 784 -> 200 x 4 -> 10 (float32, PyTorch default init), K = 8 members with seeds
0..7, 1000 training points in [0, 1]^784 with 10 classes, AdamW (lr 1e-3, weight decay
0.01), batch size 64.  Measured in the same run:

- baseline: for k = 0..7, build member k under seed k and ``lctools.training.train`` it
  (``seed=k``) for ``--steps`` updates;
- ensemble: ``Ensemble.build`` the same 8 members and ``train_ensemble`` them together (on
  CUDA with its default CUDA graph, and once more without it).

Both evaluate the full-data loss at steps 0 and ``--steps`` only (no metrics), so the timings
are training.  Prints the median wall times, the ratio, and the final training losses of
both (the members follow the same updates as the sequential runs, up to rounding).

Run:  python benchmarks/bench_ensemble.py [--steps 200] [--repeats 3] [--device cpu|cuda] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import lctools
from lctools.ensemble import Ensemble, train_ensemble
from lctools.training import train

WIDTHS, K = [200] * 4, 8


def factory():
    return lctools.MLP(784, WIDTHS, 10)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def sequential(X, y, steps, device):
    nets = []
    for k in range(K):
        torch.manual_seed(k)
        net = factory().to(device)
        train(net, X, y, steps, lr=1e-3, weight_decay=0.01, seed=k, eval_steps=[0, steps], progress=False)
        nets.append(net)
    sync(device)
    return nets


def ensemble(X, y, steps, device, cuda_graph=None):
    ens = Ensemble.build(factory, range(K)).to(device)
    train_ensemble(ens, X, y, steps, lr=1e-3, weight_decay=0.01, seeds=range(K), eval_steps=[0, steps],
                   progress=False, cuda_graph=cuda_graph)
    sync(device)
    return ens


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    X = torch.rand(1000, 784, generator=g).to(device)
    y = torch.randint(0, 10, (1000,), generator=g).to(device)

    # warm-up (CUDA context, kernels, allocator), not timed
    sequential(X, y, 5, device)
    ensemble(X, y, 5, device)
    t_seq, t_ens, t_eager = [], [], []
    cuda = device.type == "cuda"
    for _ in range(args.repeats):
        dt, nets = timed(sequential, X, y, args.steps, device)
        t_seq.append(dt)
        dt, ens = timed(ensemble, X, y, args.steps, device)
        t_ens.append(dt)
        if cuda:  # the ensemble without its CUDA graph, to see what each part contributes
            t_eager.append(timed(ensemble, X, y, args.steps, device, False)[0])
    # The members follow the sequential runs' updates; batched and separate products round
    # differently and Adam amplifies that over long runs, so compare the trained networks' losses.
    with torch.no_grad():
        loss_seq = [torch.nn.functional.cross_entropy(net(X), y).item() for net in nets]
        loss_ens = [torch.nn.functional.cross_entropy(ens.member(k)(X), y).item() for k in range(K)]
    diff = max(abs(a - b) for a, b in zip(loss_seq, loss_ens))
    seq, ens_t = statistics.median(t_seq), statistics.median(t_ens)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; K = {K} members 784-200x4-10, {args.steps} AdamW steps, "
          f"batch 64, medians of {args.repeats}")
    print(f"  {K} sequential runs: {seq:8.3f} s  ({1e3 * seq / (K * args.steps):.3f} ms per member-step)")
    print(f"  one ensemble:      {ens_t:8.3f} s  ({1e3 * ens_t / (K * args.steps):.3f} ms per member-step)")
    print(f"  ratio (sequential / ensemble): {seq / ens_t:.2f}x")
    if cuda:
        eager = statistics.median(t_eager)
        print(f"  ensemble without CUDA graph: {eager:8.3f} s  (ratio {seq / eager:.2f}x)")
    print(f"  final training loss, mean over members: sequential {sum(loss_seq) / K:.4f}, ensemble "
          f"{sum(loss_ens) / K:.4f} (largest difference for one member {diff:.1e})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(device=name, torch=torch.__version__, steps=args.steps, repeats=args.repeats,
                           sequential_s=t_seq, ensemble_s=t_ens, ratio=seq / ens_t, loss_sequential=loss_seq, loss_ensemble=loss_ens), fh, indent=1)


if __name__ == "__main__":
    main()
