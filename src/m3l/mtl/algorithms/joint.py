"""Joint training: every step sees a batch of every task; a method (a loss weighting or a
gradient aggregator) turns their losses into the update.

The standard hard-parameter-sharing setup; Caruana, "Multitask Learning", Machine Learning
28, 1997, https://doi.org/10.1023/A:1007379606734.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader

from m3l.mtl.algorithms.base import Method, Schedule


class Joint(Schedule):
    """A batch of every task each step.

    Args:
        method: the :class:`~m3l.mtl.Method` that makes each step's gradients from the losses,
            a weighting or an aggregator (default: :class:`EqualWeighting`).
        mode: ``"max_size_cycle"`` (an epoch ends with the longest task, shorter ones cycle)
            or ``"min_size"`` (ends with the shortest), as in Lightning's CombinedLoader.
        weighting: the old name of ``method`` (deprecated: warns).
    """

    def __init__(
        self, method: Method | None = None, mode: str = "max_size_cycle", *, weighting: Method | None = None
    ) -> None:
        super().__init__(method, weighting=weighting)
        self.mode = mode

    def train_loader(self, loaders: Mapping[str, DataLoader], epoch: int) -> Any:
        return CombinedLoader(list(loaders.values()), mode=self.mode)
