"""Benchmark: lctools' LC, local rank and TV against per-layer torch.func baselines.

Network: MLP 784 -> 200 x 4 -> 10 (float32), inputs uniform in [0, 1]^784, N = 256 and 512.
Baselines, measured in the same run (the approach of the paper's released code: one
Jacobian per layer):

- LC (noiseless plug-in): for each hidden layer l, ``vmap(jacfwd(x -> z_l))`` then
  ``sum phi_s(z) ||row||``;
- local rank: for each hidden layer, ``vmap(jacrev(x -> z_l))`` then ``svdvals > eps``;
- TV: ``vmap(jacrev(net))`` then the Frobenius norm.

Prints median wall times, the speed-up ratio and whether the values agree, and the peak
memory of LC on 10,000 MNIST-sized points (in a fresh subprocess).

Run:  python benchmarks/bench_core.py [--repeats 5] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
from torch import nn
from torch.func import jacfwd, jacrev, vmap

import lctools

SIGMA, EPS = 0.05, 1e-2


def hidden_maps(model):
    layers = list(model)
    return [nn.Sequential(*layers[: 2 * l - 1]) for l in range(1, len(layers) // 2 + 1)]


@torch.no_grad()
def baseline_lc(model, x):
    total = 0.0
    for m in hidden_maps(model):
        J = vmap(jacfwd(m))(x)
        z = m(x)
        total = total + (lctools.gaussian_density(z, SIGMA) * torch.linalg.vector_norm(J, dim=2)).sum(1)
    return total.mean()


@torch.no_grad()
def baseline_lr(model, x):
    return torch.stack([
        (torch.linalg.svdvals(vmap(jacrev(m))(x)) > EPS).sum(1).float().mean() for m in hidden_maps(model)
    ])


@torch.no_grad()
def baseline_tv(model, x):
    return torch.linalg.matrix_norm(vmap(jacrev(model))(x)).mean()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats):
    fn()  # warm-up
    sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def peak_memory_lc(n_points=10_000):
    """Peak resident memory (MiB) of LC on n_points x 784 through 784-200x4-10, in a fresh
    process: the high-water mark VmHWM before and after the call (ru_maxrss would carry
    this benchmark's own peak across exec)."""
    code = (
        "import torch, lctools\n"
        "def hwm():\n"
        "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) / 1024\n"
        "torch.manual_seed(0)\n"
        "net = lctools.MLP(784, [200]*4, 10)\n"
        f"x = torch.rand({n_points}, 784)\n"
        "base = hwm()\n"
        "lctools.local_complexity(net, x, sigma=0.05, noise_draws=0)\n"
        "lctools.local_rank(net, x[:2000])\n"
        "print(hwm() - base, hwm())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    extra, total = map(float, out.split())
    return extra, total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    net = lctools.MLP(784, [200] * 4, 10).to(device)
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"net=784-200x4-10 sigma={SIGMA} eps={EPS} repeats={args.repeats}")
    print(f"{'quantity':<10}{'N':>6}{'lctools [s]':>14}{'baseline [s]':>14}{'ratio':>9}  agree")
    results = []
    for n in args.sizes:
        x = torch.rand(n, 784, device=device)
        cases = [
            ("LC", lambda: lctools.local_complexity(net, x, SIGMA, noise_draws=0), lambda: baseline_lc(net, x),
             lambda a, b: torch.allclose(a, b, rtol=1e-4)),
            ("LR", lambda: lctools.local_rank(net, x, eps=EPS), lambda: baseline_lr(net, x),
             lambda a, b: bool((a - b).abs().max() <= 0.01)),
            ("TV", lambda: lctools.total_variation(net, x), lambda: baseline_tv(net, x),
             lambda a, b: torch.allclose(a, b, rtol=1e-4)),
        ]
        for name, ours, base, agree in cases:
            t_ours, v_ours = timed(ours, device, args.repeats)
            t_base, v_base = timed(base, device, args.repeats)
            ok = agree(v_ours, v_base)
            ratio = t_base / t_ours
            print(f"{name:<10}{n:>6}{t_ours:>14.4f}{t_base:>14.4f}{ratio:>8.1f}x  {ok}")
            results.append(dict(quantity=name, n=n, lctools_s=t_ours, baseline_s=t_base, ratio=ratio, agree=ok))
    if device.type == "cpu":
        extra, total = peak_memory_lc()
        print(f"memory: LC on 10,000 x 784 (+ LR on 2,000): peak RSS {total:.0f} MiB ({extra:.0f} MiB above start)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=str(device), torch=torch.__version__, results=results), f, indent=2)
    if not all(r["agree"] for r in results):
        sys.exit("values disagree with the baseline")


if __name__ == "__main__":
    main()
