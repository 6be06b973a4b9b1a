"""The multi-task datamodule: one loader per task, combined by the algorithm's schedule.

Every per-task loader yields ``{task_name: batch}`` so a step knows which task a batch
belongs to whatever the combination (Lightning drops the loader index during training).
The schedule owns the combination (:meth:`train_loader` of ``Joint``, ``Alternating``,
``Sequential``); the datamodule is handed it, as ``schedule=`` or by :meth:`use_schedule`,
which :class:`~m3l.mtl.module.MultiTaskModule` calls with its algorithm when a fit starts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import lightning as L
from torch.utils.data import DataLoader, Dataset, default_collate

from m3l.errors import M3LError

if TYPE_CHECKING:
    from m3l.mtl.tasks import Task

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


class TrainSchedule(Protocol):
    """What the datamodule needs of a schedule: the train loader of an epoch."""

    def train_loader(self, loaders: Mapping[str, DataLoader], epoch: int) -> Any: ...


class TaskCollate:
    """Collate a task's samples and tag the batch with the task's name (picklable)."""

    def __init__(self, task: str) -> None:
        self.task = task

    def __call__(self, samples: list[Any]) -> dict[str, Any]:
        return {self.task: default_collate(samples)}


def merge_task_batches(batch: Any) -> dict[str, Any]:
    """``{task: batch}`` from what a (combined) loader yields."""
    if isinstance(batch, (list, tuple)):
        merged: dict[str, Any] = {}
        for part in batch:
            if part is not None:
                merged.update(part)
        return merged
    return dict(batch)


class MultiTaskDataModule(L.LightningDataModule):
    """Per-task datasets and batch sizes.

    Args:
        datasets: ``{task: {"train": ds, "val": ds, "test": ds}}`` (splits optional).
        batch_size: one size for every task, or ``{task: size}``.
        num_workers: loader workers per task.
        shuffle: shuffle the train splits.
        eval_splits: the splits evaluated at the end of every training epoch, logged as
            ``val/<head>/<metric>``, ``eval_train/<head>/<metric>`` and
            ``eval_test/<head>/<metric>`` (with ``<prefix>/<head>/loss`` and
            ``<prefix>/loss``). Default ``["val"]``; ``["train", "test"]`` is what EMTL did
            each epoch (a full pass over each training set costs as much as training on it).
        correct_dir: accepted for the command line's data contract; unused for multi-task.
        schedule: combines the per-task train loaders each epoch (e.g. ``mtl.Joint()``); a
            :class:`~m3l.mtl.module.MultiTaskModule` hands its own algorithm when a fit starts
            (:meth:`use_schedule`), so only a datamodule trained without one needs it.
    """

    def __init__(
        self,
        datasets: Mapping[str, Mapping[str, Dataset | None]],
        batch_size: int | Mapping[str, int] = 32,
        num_workers: int = 0,
        shuffle: bool = True,
        pin_memory: bool = False,
        eval_splits: Sequence[str] = ("val",),
        correct_dir: str | None = None,
        schedule: TrainSchedule | None = None,
    ) -> None:
        super().__init__()
        if not datasets:
            raise M3LError("MultiTaskDataModule: no datasets given.\n  fix: datasets={task: {train: ..., val: ...}}")
        self.datasets = {name: dict(splits) for name, splits in datasets.items()}
        for name, splits in self.datasets.items():
            unknown = sorted(set(splits) - set(SPLITS))
            if unknown:
                raise M3LError(
                    f"MultiTaskDataModule: task {name!r} has unknown splits {unknown}; expected some of {list(SPLITS)}"
                )
        self.batch_size = batch_size
        self.num_workers, self.shuffle, self.pin_memory = num_workers, shuffle, pin_memory
        if isinstance(eval_splits, str):
            eval_splits = [eval_splits]
        unknown = [s for s in eval_splits if s not in SPLITS]
        if unknown or len(set(eval_splits)) != len(list(eval_splits)):
            raise M3LError(
                f"MultiTaskDataModule: eval_splits={list(eval_splits)}; expected distinct splits among "
                f"{list(SPLITS)}, e.g. eval_splits=[train, test] to evaluate both every epoch as EMTL did"
            )
        self.eval_splits = list(eval_splits)
        self.val_loader_splits: list[str] = []
        self.schedule = schedule

    def use_schedule(self, schedule: TrainSchedule) -> None:
        """Combine the train loaders with ``schedule`` from now on (the algorithm's)."""
        self.schedule = schedule

    @classmethod
    def from_tasks(cls, tasks: Sequence[Task], **kwargs: Any) -> MultiTaskDataModule:
        """The datamodule of tasks that carry their own datasets."""
        return cls(
            {t.name: t.datasets() for t in tasks},
            batch_size={t.name: t.batch_size for t in tasks},
            **kwargs,
        )

    @property
    def task_names(self) -> list[str]:
        return list(self.datasets)

    def dataset(self, task: str, split: str) -> Dataset | None:
        return self.datasets.get(task, {}).get(split)

    def batch_size_of(self, task: str) -> int:
        if isinstance(self.batch_size, Mapping):
            return int(self.batch_size.get(task, 32))
        return int(self.batch_size)

    def task_loader(self, task: str, split: str, shuffle: bool | None = None) -> DataLoader:
        """The loader of one task's split; its batches are ``{task: batch}``."""
        dataset = self.dataset(task, split)
        if dataset is None:
            raise M3LError(f"task {task!r} has no {split} dataset")
        return DataLoader(
            dataset,
            batch_size=self.batch_size_of(task),
            shuffle=(self.shuffle and split == "train") if shuffle is None else shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
            collate_fn=TaskCollate(task),
        )

    def _loaders(self, split: str) -> dict[str, DataLoader]:
        return {n: self.task_loader(n, split) for n in self.datasets if self.dataset(n, split) is not None}

    def train_dataloader(self) -> Any:
        loaders = self._loaders("train")
        if not loaders:
            raise M3LError("no task has a train dataset: give each task train=...")
        if self.schedule is None:
            raise M3LError(
                "MultiTaskDataModule.train_dataloader: no schedule combines the tasks' train loaders.\n  fix: "
                "train it with a MultiTaskModule (it hands its algorithm), or pass schedule=mtl.Joint() "
                "(or mtl.Alternating(), mtl.Sequential(...)) to MultiTaskDataModule, or call use_schedule()"
            )
        trainer = getattr(self, "trainer", None)
        epoch = int(getattr(trainer, "current_epoch", 0) or 0) if trainer is not None else 0
        return self.schedule.train_loader(loaders, epoch)

    def val_dataloader(self) -> list[DataLoader]:
        """One loader per task and split of ``eval_splits`` (in that order); the split of loader
        ``i`` is ``val_loader_splits[i]``. The train split is read in order, unshuffled."""
        loaders, splits = [], []
        for split in self.eval_splits:
            for name in self.datasets:
                if self.dataset(name, split) is not None:
                    loaders.append(self.task_loader(name, split, shuffle=False))
                    splits.append(split)
        self.val_loader_splits = splits
        return loaders

    def test_dataloader(self) -> list[DataLoader]:
        return list(self._loaders("test").values())
