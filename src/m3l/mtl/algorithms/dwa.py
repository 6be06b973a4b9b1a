"""Dynamic weight average (DWA): weights from the rate of change of each task's loss.

Liu, Johns and Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019,
https://arxiv.org/abs/1803.10704.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from m3l.mtl.algorithms.base import StepContext, Weighting


class DynamicWeightAverage(Weighting):
    """``w_t = T softmax(r_t / temperature)``, ``r_t = L_t(e-1) / L_t(e-2)`` (epoch means).

    Weights are 1 for the first two epochs, when the ratio is not yet defined.
    """

    def __init__(self, temperature: float = 2.0) -> None:
        super().__init__()
        self.temperature = float(temperature)
        self.register_buffer("history", torch.zeros(2, 0))
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))

    def setup(self, names: Sequence[str]) -> None:
        super().setup(names)
        self.history = torch.zeros(2, len(names))

    def on_train_epoch_end(self, mean_losses: Tensor, epoch: int) -> None:
        latest = mean_losses.detach().to(self.history)
        self.history = torch.stack([self.history[1], latest])
        self.epochs_seen += 1

    def weights(self, losses: Tensor, context: StepContext) -> Tensor:
        if int(self.epochs_seen) < 2:
            return torch.ones_like(losses)
        ratio = self.history[-1] / self.history[-2].clamp_min(1e-12)
        return losses.numel() * torch.softmax(ratio.to(losses) / self.temperature, dim=0)
