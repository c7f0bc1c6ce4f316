"""Shared pieces of the package tests: random networks and autograd references.

Import with ``from helpers import random_mlp`` (pytest puts ``tests/`` on the path).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import jacrev, vmap

import lctools


def random_mlp(in_dim, widths, out_dim=1, seed=0, bias_std=0.3, activation="relu", dtype=torch.float64,
               slope=0.2):
    """An ``lctools.MLP`` with weights ``N(0, 1/fan_in)`` and biases ``N(0, bias_std^2)`` drawn
    after ``torch.manual_seed(seed)`` (PyTorch's default init gives tiny biases for wide
    layers, which puts every zero set near the origin), in ``dtype``; LeakyReLU nets use
    negative slope ``slope``."""
    torch.manual_seed(seed)
    net = lctools.MLP(in_dim, widths, out_dim, activation=activation, negative_slope=slope)
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=1.0 / math.sqrt(m.in_features))
            nn.init.normal_(m.bias, std=bias_std)
    return net.to(dtype)


def hidden_maps(model):
    """``x -> z_l`` for each hidden layer ``l``, as separate modules (the reference computations)."""
    layers = list(model)
    start = 1 if layers and isinstance(layers[0], nn.Flatten) else 0
    layers = layers[start:]
    return [nn.Sequential(*layers[: 2 * l - 1]) for l in range(1, len(layers) // 2 + 1)]


def reference_pre_jacobians(model, x):
    """``J_l(x) = dz_l/dx`` by autograd for every hidden layer: a list of ``(N, n_l, n_0)``."""
    return [vmap(jacrev(m))(x) for m in hidden_maps(model)]
