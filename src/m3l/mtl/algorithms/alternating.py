"""Alternating training: each epoch is one pass over each task's data in turn.

Task-alternating optimization as in Dong et al., "Multi-Task Learning for Multiple Language
Translation", ACL 2015, https://aclanthology.org/P15-1166, and Luong et al., "Multi-task
Sequence to Sequence Learning", ICLR 2016, https://arxiv.org/abs/1511.06114.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch.utils.data import DataLoader

from m3l.mtl.algorithms.base import Schedule


class ChainedLoader:
    """All batches of each loader in turn (a sized iterable Lightning can train on)."""

    def __init__(self, loaders: Sequence[DataLoader]) -> None:
        self.loaders = list(loaders)

    def __len__(self) -> int:
        return sum(len(loader) for loader in self.loaders)

    def __iter__(self) -> Any:
        for loader in self.loaders:
            yield from loader


class Alternating(Schedule):
    """Per epoch: all of task 1's batches, then all of task 2's, ... (one task per step)."""

    def __init__(self) -> None:
        super().__init__(None)

    def train_loader(self, loaders: Mapping[str, DataLoader], epoch: int) -> Any:
        return ChainedLoader(list(loaders.values()))
