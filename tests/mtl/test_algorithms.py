"""Schedules and loss weightings: shared properties, real short training runs, resume."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from m3l import mtl
from m3l.mtl.algorithms.base import StepContext
from m3l.mtl.data import merge_task_batches

from .conftest import FAST, LeNet, make_task

WEIGHTINGS = {
    "ew": mtl.EqualWeighting,
    "uncertainty": mtl.UncertaintyWeighting,
    "dwa": mtl.DynamicWeightAverage,
    "gradnorm": mtl.GradNorm,
    "rlw": mtl.RandomWeighting,
    "famo": mtl.FAMO,
    "fixed": lambda: mtl.FixedWeighting({"left": 2.0, "right": 0.5}),
}


class SeenTasks(Callback):
    """Records the tasks of every training batch, per epoch."""

    def __init__(self) -> None:
        self.by_epoch: dict[int, set[str]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.by_epoch.setdefault(trainer.current_epoch, set()).update(merge_task_batches(batch))


def real_losses(tasks) -> tuple[torch.Tensor, StepContext, mtl.MultiTaskModule]:
    module = mtl.MultiTaskModule(LeNet(), tasks)
    losses = []
    for task in tasks:
        x, y = next(iter(torch.utils.data.DataLoader(task.train, batch_size=16)))
        losses.append(task.objectives[0].criterion(task.head(module.backbone(x)), y))
    return torch.stack(losses), module.step_context(module.objective_names), module


@pytest.mark.parametrize("name", sorted(WEIGHTINGS))
def test_weighting_properties(name, tasks):
    weighting = WEIGHTINGS[name]()
    losses, context, _ = real_losses(tasks)
    weighting.setup(context.names)
    total = weighting.combine(losses, context)
    assert total.dim() == 0 and torch.isfinite(total)
    assert weighting.last_weights.shape == (2,)
    assert torch.all(weighting.last_weights > 0)
    total.backward()  # differentiable to the shared parameters
    assert context.shared_parameters[0].grad is not None
    assert torch.isfinite(context.shared_parameters[0].grad).all()


@pytest.mark.parametrize("name", ["ew", "uncertainty", "dwa"])
def test_symmetric_weightings_are_permutation_equivariant(name, tasks):
    losses, context, _ = real_losses(tasks)
    a, b = WEIGHTINGS[name](), WEIGHTINGS[name]()
    a.setup(["left", "right"])
    b.setup(["right", "left"])
    wa = a.weights(losses, context)
    wb = b.weights(losses.flip(0), context)
    assert torch.allclose(wa, wb.flip(0))


def test_gradnorm_moves_weights_and_keeps_their_sum(tasks):
    losses, context, _ = real_losses(tasks)
    gn = mtl.GradNorm(alpha=1.5)
    gn.setup(context.names)
    opt = gn.make_optimizer(None)
    gn.combine(losses, context)
    assert gn.task_weights.grad is not None and gn.task_weights.grad.abs().sum() > 0
    opt.step()
    gn.after_step(losses.detach(), context)
    assert gn.task_weights.sum().item() == pytest.approx(2.0)
    assert not torch.allclose(gn.task_weights.detach(), torch.ones(2))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(WEIGHTINGS))
def test_joint_training_with_each_weighting(name, tmp_path, tasks, adam):
    torch.manual_seed(0)
    results = mtl.Trainer(
        LeNet(), tasks, optimizer=adam, root_dir=tmp_path, max_epochs=2, limit_train_batches=3, **FAST
    ).launch(mtl.Joint(WEIGHTINGS[name]()))
    metrics = results.module.trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"])
    assert {"weights/left", "weights/right"} <= set(metrics)
    assert all(results.metrics[h]["loss"] < 3.0 for h in ("left", "right"))


@pytest.mark.slow
def test_sequential_trains_one_task_per_block_and_resumes_mid_schedule(tmp_path, digits, adam):
    seen = SeenTasks()
    kwargs = dict(optimizer=adam, root_dir=tmp_path, limit_train_batches=2, callbacks=[seen], **FAST)
    tasks = [make_task(digits, "left"), make_task(digits, "right")]
    left_head = tasks[0].head.net[0].weight.detach().clone()
    right_head = tasks[1].head.net[0].weight.detach().clone()
    first = mtl.Trainer(LeNet(), tasks, **kwargs).launch(mtl.Sequential(epochs_per_task=2), max_epochs=2)
    assert seen.by_epoch == {0: {"left"}, 1: {"left"}}
    assert not torch.equal(tasks[0].head.net[0].weight, left_head)
    assert torch.equal(tasks[1].head.net[0].weight, right_head)  # not trained yet
    seen.by_epoch.clear()
    mtl.Trainer(LeNet(), tasks, **kwargs).launch(mtl.Sequential(epochs_per_task=2), run_id=first.run_id)
    assert seen.by_epoch == {2: {"right"}, 3: {"right"}}  # resumed at task 2, epoch 2


@pytest.mark.slow
def test_alternating_passes_each_task_in_turn(tmp_path, tasks, adam):
    order: list[str] = []

    class Order(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            order.extend(merge_task_batches(batch))

    mtl.Trainer(LeNet(), tasks, optimizer=adam, root_dir=tmp_path, max_epochs=1, callbacks=[Order()], **FAST).launch(
        mtl.Alternating()
    )
    # left: 96 samples / 32 = 3 batches, right: 96 / 16 = 6 batches, one after the other
    assert order == ["left"] * 3 + ["right"] * 6


@pytest.mark.slow
def test_joint_cycles_the_shorter_task_and_uses_each_batch_size(tmp_path, tasks, adam):
    sizes: list[dict[str, int]] = []

    class Sizes(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            sizes.append({k: len(v[1]) for k, v in merge_task_batches(batch).items()})

    mtl.Trainer(LeNet(), tasks, optimizer=adam, root_dir=tmp_path, max_epochs=1, callbacks=[Sizes()], **FAST).launch(
        mtl.Joint()
    )
    assert len(sizes) == 6 and all(s == {"left": 32, "right": 16} for s in sizes)


def test_freeze_backbone_and_separate_head_optimizers(tmp_path, tasks, adam):
    backbone = LeNet()
    before = backbone.fc.weight.detach().clone()
    results = mtl.Trainer(
        backbone,
        tasks,
        optimizer=adam,
        freeze_backbone=True,
        root_dir=tmp_path,
        max_epochs=1,
        limit_train_batches=2,
        **FAST,
    ).launch()
    assert torch.equal(backbone.fc.weight, before)
    roles = results.module._roles
    assert roles == ["task:left", "task:right"]


class MeanAggregator(mtl.GradientAggregator):
    """The simplest aggregator: the mean of the task gradients (a user's own extension)."""

    def aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
        return jacobian.mean(dim=0)


@pytest.mark.slow
def test_gradient_aggregator_plugs_in(tmp_path, tasks, adam):
    results = mtl.Trainer(
        LeNet(), tasks, optimizer=adam, root_dir=tmp_path, max_epochs=1, limit_train_batches=2, **FAST
    ).launch(mtl.Joint(MeanAggregator()))
    assert torch.isfinite(results.module.trainer.callback_metrics["train/loss"])
