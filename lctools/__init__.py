"""lctools: the geometry of linear regions of ReLU networks, fast.

Companion package of the course on *On the Local Complexity of Linear Regions in Deep
ReLU Networks* (Patel & Montufar, 2025).  Notation follows the course (book/notation.md):
hidden pre-activations ``z_l = W_l sigma(z_{l-1}) + b_l``, output
``N(x) = W_{L+1} sigma(z_L) + b_{L+1}``.
"""
from . import cache, course, data, ensemble, regions, representation, robustness, training
from .complexity import LCBound, gaussian_density, local_complexity, local_complexity_bound
from .models import MLP, perturb_biases
from .rank import RankBound, count_singular_values_above, local_rank, local_rank_bound
from .variation import TVBound, input_jacobian, total_variation, total_variation_bound

__version__ = "0.1.0"

__all__ = [
    "cache",
    "course",
    "data",
    "ensemble",
    "regions",
    "representation",
    "robustness",
    "training",
    "MLP",
    "perturb_biases",
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
]
