"""Equal weighting (EW): the plain sum of the task losses.

The usual baseline of the multi-task literature, e.g. the "Equal" rows in Vandenhende et al.,
"Multi-Task Learning for Dense Prediction Tasks: A Survey", TPAMI 2021,
https://arxiv.org/abs/2004.13379.

It lives in :mod:`m3l.mtl.algorithms.base`, since every schedule defaults to it.
"""

from __future__ import annotations

from m3l.mtl.algorithms.base import EqualWeighting

__all__ = ["EqualWeighting"]
