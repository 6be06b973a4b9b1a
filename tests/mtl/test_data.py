"""The datamodule is handed the schedule that combines the tasks' train loaders."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from m3l import mtl
from m3l.errors import M3LError
from m3l.mtl.data import merge_task_batches

from .conftest import LeNet, make_task


def test_without_a_schedule_the_train_loader_says_what_to_pass(digits):
    data = mtl.MultiTaskDataModule.from_tasks([make_task(digits, "left")])
    with pytest.raises(M3LError, match=r"(?s)no schedule combines.*schedule=mtl.Joint\(\)"):
        data.train_dataloader()
    data.use_schedule(mtl.Alternating())
    assert set(merge_task_batches(next(iter(data.train_dataloader())))) == {"left"}


def test_a_schedule_given_at_construction_combines_the_loaders(digits):
    tasks = [make_task(digits, "left"), make_task(digits, "right", batch_size=16)]
    data = mtl.MultiTaskDataModule.from_tasks(tasks, schedule=mtl.Alternating())
    tags = [next(iter(merge_task_batches(b))) for b in data.train_dataloader()]
    assert tags == ["left"] * 3 + ["right"] * 6


@pytest.mark.slow
def test_a_plain_lightning_fit_hands_the_modules_algorithm_each_epoch(digits, adam):
    """No m3l front: Lightning's Trainer, the module's Sequential reloads the loader each epoch."""
    tasks = [make_task(digits, "left"), make_task(digits, "right")]
    seen: dict[int, set[str]] = {}

    class Seen(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.setdefault(trainer.current_epoch, set()).update(merge_task_batches(batch))

    algorithm = mtl.Sequential(epochs_per_task=1)
    module = mtl.MultiTaskModule(LeNet(), tasks, algorithm=algorithm, optimizer=adam)
    data = mtl.MultiTaskDataModule.from_tasks(tasks)  # no schedule: the module hands its own
    torch.manual_seed(0)
    L.Trainer(
        accelerator="cpu",
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Seen()],
    ).fit(module, datamodule=data)
    assert data.schedule is algorithm
    assert seen == {0: {"left"}, 1: {"right"}}


@pytest.mark.slow
def test_the_config_path_hands_a_reloading_schedule_to_the_datamodule(tmp_path):
    """``python -m m3l.run.train model=mtl_multimnist net.algorithm=...`` through Experiment."""
    from m3l import Experiment
    from m3l.config import compose

    seen: dict[int, set[str]] = {}

    class Seen(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.setdefault(trainer.current_epoch, set()).update(merge_task_batches(batch))

    cfg = compose(
        "mtl_multimnist",
        [
            "net.algorithm._target_=m3l.mtl.Sequential",
            "~net.algorithm.method",
            "+net.algorithm.epochs_per_task=1",
            f"paths.runs_dir={tmp_path}",
            "trainer.max_epochs=2",
            "+trainer.limit_train_batches=2",
            "+trainer.limit_val_batches=1",
            "trainer.accelerator=cpu",
            "logger=none",
            "callbacks=none",
            "+trainer.enable_progress_bar=false",
        ],
    )
    experiment = Experiment(cfg, callbacks=[Seen()])
    experiment.fit()
    assert isinstance(experiment.data.schedule, mtl.Sequential) and experiment.data.schedule is experiment.net.algorithm
    assert seen == {0: {"left"}, 1: {"right"}}  # the train loader rebuilt by the schedule each epoch
