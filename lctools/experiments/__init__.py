"""The course's experiments, each defined once.

Every main experiment of chapters 2-6 lives in one module here: its quick and full
settings (``QUICK``, ``FULL``), its computation (training through the results cache, and
evaluation), its summary, its figure and its ``check`` (the chapter's claims, with their
tolerances, as assertions). The chapter notebook and ``python -m lctools.reproduce`` call
the same functions, so they cannot drift apart.

=====================  =======  ==================================================
module                 chapter  experiment
=====================  =======  ==================================================
``lc_estimate``        2        the coarea estimate against exact boundary lengths
``local_rank``         3        local rank and LC during training (synthetic data)
``mnist_dynamics``     4, 6     the paper's MNIST run: accuracy, PGD, LC, TV, LR
``weight_decay``       5        LC against the weight decay (one ensemble)
``paper``              --       the paper's reported numbers (from PAPER.md)
=====================  =======  ==================================================
"""
from ._shared import Claims, Runner, fixed_generator, member_series, spearman, symlog_steps  # noqa: E402

__all__ = ["Claims", "Runner", "fixed_generator", "member_series", "spearman", "symlog_steps"]
