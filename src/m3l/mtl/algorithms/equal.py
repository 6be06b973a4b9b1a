"""Equal weighting (EW): the plain sum of the task losses.

The usual baseline of the multi-task literature, e.g. the "Equal" rows in Vandenhende et al.,
"Multi-Task Learning for Dense Prediction Tasks: A Survey", TPAMI 2021,
https://arxiv.org/abs/2004.13379.
"""

from __future__ import annotations

import torch
from torch import Tensor

from m3l.mtl.algorithms.base import StepContext, Weighting


class EqualWeighting(Weighting):
    """Every objective has weight 1 (task metadata ``weight`` already scales its loss)."""

    def weights(self, losses: Tensor, context: StepContext) -> Tensor:
        return torch.ones_like(losses)

    def combine(self, losses: Tensor, context: StepContext) -> Tensor:
        return losses.sum()
