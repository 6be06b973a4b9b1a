"""Alternating training: each epoch is one pass over each task's data in turn.

Task-alternating optimization as in Dong et al., "Multi-Task Learning for Multiple Language
Translation", ACL 2015, https://aclanthology.org/P15-1166, and Luong et al., "Multi-task
Sequence to Sequence Learning", ICLR 2016, https://arxiv.org/abs/1511.06114.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch.utils.data import DataLoader

from m3l.mtl.algorithms.base import Schedule
from m3l.mtl.data import ChainedLoader


class Alternating(Schedule):
    """Per epoch: all of task 1's batches, then all of task 2's, ... (one task per step)."""

    def __init__(self) -> None:
        super().__init__(None)

    def train_loader(self, loaders: Mapping[str, DataLoader], epoch: int) -> Any:
        return ChainedLoader(list(loaders.values()))
