"""lctools: the geometry of linear regions of ReLU networks, fast.

Companion package of the course on *On the Local Complexity of Linear Regions in Deep
ReLU Networks* (Patel & Montufar, 2025).  Notation follows the course (book/notation.md):
hidden pre-activations ``z_l = W_l sigma(z_{l-1}) + b_l``, output
``N(x) = W_{L+1} sigma(z_L) + b_{L+1}``.
"""
from . import (cache, checkpoints, course, data, ensemble, hashing, regions, representation, robustness, training,
               validation, versions)
from .complexity import LCBound, gaussian_density, local_complexity, local_complexity_bound
from .models import MLP, perturb_biases, preactivations
from .rank import RankBound, count_singular_values_above, local_rank, local_rank_bound
from .variation import TVBound, input_jacobian, total_variation, total_variation_bound
from .versions import CACHE_VERSION, __version__

__all__ = [
    "cache",
    "course",
    "data",
    "ensemble",
    "regions",
    "representation",
    "robustness",
    "training",
    "checkpoints",
    "hashing",
    "validation",
    "versions",
    "MLP",
    "perturb_biases",
    "preactivations",
    "local_complexity",
    "local_complexity_bound",
    "LCBound",
    "gaussian_density",
    "local_rank",
    "local_rank_bound",
    "RankBound",
    "count_singular_values_above",
    "total_variation",
    "total_variation_bound",
    "TVBound",
    "input_jacobian",
    "__version__",
    "CACHE_VERSION",
]
