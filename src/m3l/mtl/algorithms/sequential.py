"""Sequential training: task by task, ``epochs_per_task`` epochs each.

Sequential (continual) fine-tuning of a shared model over tasks, the setting studied in
Kirkpatrick et al., "Overcoming catastrophic forgetting in neural networks", PNAS 2017,
https://arxiv.org/abs/1612.00796.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch.utils.data import DataLoader

from m3l.errors import M3LError
from m3l.mtl.algorithms.base import Schedule


class Sequential(Schedule):
    """Train on one task for ``epochs_per_task`` epochs, then the next (in ``order``).

    After the last task the schedule starts over, so ``max_epochs`` beyond one round
    revisits the tasks. The train loader is rebuilt each epoch (the module sets
    Lightning's Trainer's ``reload_dataloaders_every_n_epochs=1``); resuming from a checkpoint continues
    with the task of the checkpoint's epoch.
    """

    reloads_each_epoch = True

    def __init__(self, epochs_per_task: int = 1, order: Sequence[str] | None = None) -> None:
        super().__init__(None)
        self.epochs_per_task = int(epochs_per_task)
        self.order = list(order) if order is not None else None

    def task_at(self, epoch: int, names: Sequence[str]) -> str:
        """The task trained at ``epoch``."""
        order = self.order or list(names)
        unknown = [n for n in order if n not in names]
        if unknown:
            raise M3LError(f"Sequential(order=...) names unknown tasks {unknown}; tasks are {list(names)}")
        return order[(epoch // self.epochs_per_task) % len(order)]

    def train_loader(self, loaders: Mapping[str, DataLoader], epoch: int) -> Any:
        return loaders[self.task_at(epoch, list(loaders))]

    def epochs_per_round(self, num_tasks: int) -> int:
        return self.epochs_per_task * len(self.order or range(num_tasks))
