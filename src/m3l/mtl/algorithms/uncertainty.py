"""Uncertainty weighting with learned homoscedastic task uncertainty.

Kendall, Gal and Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
Geometry and Semantics", CVPR 2018, https://arxiv.org/abs/1705.07115.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from m3l.mtl.algorithms.base import StepContext, Weighting


class UncertaintyWeighting(Weighting):
    """Loss ``sum_t 0.5 * exp(-s_t) * L_t + 0.5 * s_t`` with learned ``s_t = log sigma_t^2``."""

    def __init__(self) -> None:
        super().__init__()
        self.log_vars = nn.Parameter(torch.zeros(0))

    def setup(self, names: Sequence[str]) -> None:
        super().setup(names)
        self.log_vars = nn.Parameter(torch.zeros(len(names)))

    def weights(self, losses: Tensor, context: StepContext) -> Tensor:
        return 0.5 * torch.exp(-self.log_vars)

    def combine(self, losses: Tensor, context: StepContext) -> Tensor:
        weights = self.weights(losses, context)
        self.last_weights = weights.detach()
        return (weights * losses + 0.5 * self.log_vars).sum()
