"""Deprecated: the old home of equal weighting (EW), kept so that configs and code written for m3l
0.1 (``_target_: m3l.mtl.algorithms.equal.EqualWeighting``) keep working; importing it warns
(``FutureWarning``). :class:`~m3l.mtl.algorithms.base.EqualWeighting`, the plain sum of the task
losses, lives in :mod:`m3l.mtl.algorithms.base`, since every schedule defaults to it.
"""

from __future__ import annotations

import warnings

from m3l.mtl.algorithms.base import EqualWeighting

__all__ = ["EqualWeighting"]

warnings.warn(
    "m3l.mtl.algorithms.equal is deprecated and will be removed in a later release: write "
    "m3l.mtl.algorithms.EqualWeighting in configs and imports.",
    FutureWarning,
    stacklevel=2,
)
