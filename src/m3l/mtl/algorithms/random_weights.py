"""Random loss weighting (RLW): weights drawn from a softmax of standard normals each step.

Lin et al., "Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task
Learning", TMLR 2022, https://arxiv.org/abs/2111.10603.
"""

from __future__ import annotations

import torch
from torch import Tensor

from m3l.mtl.algorithms.base import StepContext, Weighting


class RandomWeighting(Weighting):
    """``w = T * softmax(z)``, ``z ~ N(0, I)`` per step (scaled so the mean weight is 1)."""

    def weights(self, losses: Tensor, context: StepContext) -> Tensor:
        z = torch.randn(losses.shape, device=losses.device, dtype=losses.dtype)
        return losses.numel() * torch.softmax(z, dim=0)
