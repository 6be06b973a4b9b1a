"""GradNorm: learned weights that balance the gradient norms of the tasks.

Chen, Badrinarayanan, Lee and Rabinovich, "GradNorm: Gradient Normalization for Adaptive Loss
Balancing in Deep Multitask Networks", ICML 2018, https://arxiv.org/abs/1711.02257.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from m3l.mtl.algorithms.base import OptimizerFactory, StepContext, Weighting


class GradNorm(Weighting):
    """Weights ``w_t`` trained so ``||grad_W w_t L_t||`` tracks ``mean_G * r_t^alpha``.

    ``W`` is the last shared layer (``parameters="last"``) or every shared parameter
    (``"all"``); ``r_t`` is the task's relative inverse training rate ``L_t / L_t(0)``
    normalized by its mean. Weights are renormalized to sum to ``T`` after each step.
    """

    def __init__(self, alpha: float = 1.5, lr: float = 0.025, parameters: str = "last") -> None:
        super().__init__()
        self.alpha, self.lr, self.which = float(alpha), float(lr), parameters
        self.task_weights = nn.Parameter(torch.ones(0))
        self.register_buffer("initial_losses", torch.zeros(0))
        self._initialized = False

    def setup(self, names: Sequence[str]) -> None:
        super().setup(names)
        self.task_weights = nn.Parameter(torch.ones(len(names)))
        self.initial_losses = torch.zeros(len(names))

    def weights(self, losses: Tensor, context: StepContext) -> Tensor:
        return self.task_weights.detach()

    def combine(self, losses: Tensor, context: StepContext) -> Tensor:
        detached = losses.detach()
        if not self._initialized:  # one host sync, on the first step only
            if not bool((self.initial_losses != 0).any()):
                self.initial_losses = detached.clone()
            self._initialized = True
        params = context.last_shared_parameters if self.which == "last" else context.shared_parameters
        if params:
            norms = context.gradients(losses, params).norm(dim=1)
            weighted = self.task_weights * norms
            ratio = detached / self.initial_losses.clamp_min(1e-12)
            target = (weighted.mean() * (ratio / ratio.mean()) ** self.alpha).detach()
            balance = (weighted - target).abs().sum()
            (grad,) = torch.autograd.grad(balance, self.task_weights)
            self.task_weights.grad = grad
        weights = self.task_weights.detach()
        self.last_weights = weights
        return (weights * losses).sum()

    def after_step(self, losses: Tensor, context: StepContext) -> None:
        with torch.no_grad():
            w = self.task_weights.clamp_min(1e-6)
            self.task_weights.copy_(w * len(self.names) / w.sum())

    def make_optimizer(self, default: OptimizerFactory) -> torch.optim.Optimizer:
        return torch.optim.Adam([self.task_weights], lr=self.lr)
