"""Joint training: every step sees a batch of every task, combined by a loss weighting.

The standard hard-parameter-sharing setup; Caruana, "Multitask Learning", Machine Learning
28, 1997, https://doi.org/10.1023/A:1007379606734.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader

from m3l.mtl.algorithms.base import GradientAggregator, Schedule, Weighting


class Joint(Schedule):
    """A batch of every task each step.

    Args:
        weighting: how the losses are combined (default: :class:`EqualWeighting`).
        mode: ``"max_size_cycle"`` (an epoch ends with the longest task, shorter ones cycle)
            or ``"min_size"`` (ends with the shortest), as in Lightning's CombinedLoader.
    """

    def __init__(self, weighting: Weighting | GradientAggregator | None = None, mode: str = "max_size_cycle") -> None:
        super().__init__(weighting)
        self.mode = mode

    def train_loader(self, loaders: Mapping[str, DataLoader], epoch: int) -> Any:
        return CombinedLoader(list(loaders.values()), mode=self.mode)
