"""lctools: the geometry of linear regions of ReLU networks, fast.

Companion package of the course on *On the Local Complexity of Linear Regions in Deep
ReLU Networks* (Patel & Montufar, 2025).  Notation follows the course (DESIGN section 2):
hidden pre-activations ``z_l = W_l sigma(z_{l-1}) + b_l``, output
``N(x) = W_{L+1} sigma(z_L) + b_{L+1}``.
"""
from . import cache, course, data, regions, robustness, training
from .complexity import LCBound, gaussian_density, local_complexity, local_complexity_bound
from .models import MLP, perturb_biases
from .rank import count_singular_values_above, local_rank
from .variation import input_jacobian, total_variation

__version__ = "0.1.0"

__all__ = [
    "cache",
    "course",
    "data",
    "regions",
    "robustness",
    "training",
    "MLP",
    "perturb_biases",
    "local_complexity",
    "local_complexity_bound",
    "LCBound",
    "gaussian_density",
    "local_rank",
    "count_singular_values_above",
    "total_variation",
    "input_jacobian",
    "__version__",
]
