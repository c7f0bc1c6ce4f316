"""Version numbers of lctools (a leaf module: it imports nothing from lctools).

``__version__`` is the package's release.  ``CACHE_VERSION`` is part of every results-cache
key (:mod:`lctools.cache`) and of every training checkpoint's fingerprint: **bump it
whenever a change alters the numbers a cached computation returns** (a metric's formula or
its floating-point order, the training update, a model's initialisation, the key's own
layout), so that entries computed before the change are recomputed instead of served.
Changes that leave every number identical keep it, and with it every stored entry.

History: ``"0.1.0"`` keys used the package version; ``"2"`` adds the model's architecture
and initial parameters to the keys of trained models, ``decay_biases``, and the
local-complexity estimate averaged over draws in one reduction; ``"3"``: :func:`lctools.training.train`
uses torch's fused AdamW/Adam kernel on the CPU.

Example
-------
>>> from lctools.versions import CACHE_VERSION
>>> isinstance(CACHE_VERSION, str)
True
"""

__all__ = ["__version__", "CACHE_VERSION"]

__version__ = "0.1.0"
CACHE_VERSION = "3"
