"""FAMO: fast adaptive multitask optimization with O(1) extra cost per step.

Liu, Liu, Stone and Liu, "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023,
https://arxiv.org/abs/2306.03792.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from m3l.mtl.algorithms.base import OptimizerFactory, StepContext, Weighting


class FAMO(Weighting):
    """Minimizes ``sum_t z_t log(L_t - min_t) / c`` with logits updated to balance the
    decrease rates of the log-losses (``z = softmax(logits)``).

    The logits' update uses the losses of the next step as the "after update" losses (the
    paper's cheap variant), so one forward/backward per step suffices.
    """

    def __init__(self, lr: float = 0.025, weight_decay: float = 1e-3, min_loss: float = 0.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.min_loss, self.eps = float(min_loss), float(eps)
        self.logits = nn.Parameter(torch.zeros(0))
        self.register_buffer("previous", torch.zeros(0))
        self._has_previous = False

    def setup(self, names: Sequence[str]) -> None:
        super().setup(names)
        self.logits = nn.Parameter(torch.zeros(len(names)))
        self.previous = torch.zeros(len(names))

    def _shifted(self, losses: Tensor) -> Tensor:
        return (losses - self.min_loss).clamp_min(0) + self.eps

    def combine(self, losses: Tensor, context: StepContext) -> Tensor:
        current = self._shifted(losses.detach())
        if not self._has_previous:  # one host sync, on the first step only
            self._has_previous = bool((self.previous > 0).all())
        if self._has_previous:
            delta = self.previous.log() - current.log()
            with torch.enable_grad():
                z = torch.softmax(self.logits, dim=0)
                (grad,) = torch.autograd.grad(z, self.logits, grad_outputs=delta.to(z))
            self.logits.grad = grad
        self.previous = current
        z = torch.softmax(self.logits.detach(), dim=0)
        shifted = self._shifted(losses)
        c = (z / current).sum()
        self.last_weights = z / (c * current)
        return (z * shifted.log()).sum() / c

    def make_optimizer(self, default: OptimizerFactory) -> torch.optim.Optimizer:
        return torch.optim.Adam([self.logits], lr=self.lr, weight_decay=self.weight_decay)
