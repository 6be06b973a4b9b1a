"""The optimizers and learning-rate schedulers of a :class:`~m3l.mtl.module.MultiTaskModule`.

Each optimizer has a role: ``backbone`` (none when it is frozen), ``task:<name>`` (a task's
heads: its own optimizer and scheduler, else the module's head defaults, else the backbone's)
and ``weighting`` (the method's own parameters, e.g. GradNorm's weights). A step updates the
backbone, the method and the tasks it saw; schedulers step once per epoch, those of tasks not
trained that epoch (Sequential, Alternating) wait.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from m3l.mtl.errors import SchedulerMonitorError

MultiTaskModule = Any  # the module (not imported: it imports this module)


def default_optimizer(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """Adam with lr 1e-3: the default for backbone, heads and weighting parameters."""
    return torch.optim.Adam(params, lr=1e-3)


def build_optimizers(module: MultiTaskModule) -> tuple[list[Any], list[Any], list[str], list[str]]:
    """The optimizers and schedulers of ``module`` with their roles."""
    optimizers, schedulers, roles, scheduler_roles = [], [], [], []
    if not module.freeze_backbone:
        opt = module.optimizer_factory(p for p in module.backbone.parameters() if p.requires_grad)
        optimizers.append(opt)
        roles.append("backbone")
        if module.scheduler_factory is not None:
            schedulers.append(module.scheduler_factory(opt))
            scheduler_roles.append("backbone")
    for task in module.tasks:
        params = [p for o in task.objectives for p in o.head.parameters() if p.requires_grad]
        if not params:
            continue
        opt = (task.optimizer or module.head_optimizer_factory)(params)
        optimizers.append(opt)
        roles.append(f"task:{task.name}")
        factory = task.scheduler or module.head_scheduler_factory
        if factory is not None:
            schedulers.append(factory(opt))
            scheduler_roles.append(f"task:{task.name}")
    method_opt = module.weighting.make_optimizer(module.optimizer_factory)
    if method_opt is not None:
        optimizers.append(method_opt)
        roles.append("weighting")
    return optimizers, schedulers, roles, scheduler_roles


def step_schedulers(module: MultiTaskModule, schedulers: list[Any], roles: list[str], means: Tensor, trained: Tensor) -> None:
    """Step each scheduler once per epoch; those of tasks not trained this epoch wait. A
    scheduler whose ``step`` needs a metric (``ReduceLROnPlateau``) gets ``scheduler_monitor``
    when set, else the validation loss (``val/loss`` for the backbone, ``val/<head>/loss``
    summed over a task's heads), else this epoch's mean training loss of the objectives
    concerned."""
    names = module.objective_names
    trained_names = {n for n, t in zip(names, trained.tolist()) if t}
    for scheduler, role in zip(schedulers, roles):
        heads = names if role == "backbone" else [
            o.name for o in module.task_by_name[role.removeprefix("task:")].objectives
        ]
        if not trained_names.intersection(heads):
            continue
        if _step_needs_metric(scheduler):
            scheduler.step(_scheduler_metric(module, role, heads, means, trained_names))
        else:
            scheduler.step()


def _scheduler_metric(module: MultiTaskModule, role: str, heads: list[str], means: Tensor, trained: set[str]) -> float:
    metrics = module.trainer.callback_metrics
    monitor = module.scheduler_monitor
    if monitor is not None:
        if monitor not in metrics:
            raise SchedulerMonitorError(monitor, role, sorted(metrics))
        return float(metrics[monitor])
    keys = ["val/loss"] if role == "backbone" else [f"val/{h}/loss" for h in heads]
    if all(k in metrics for k in keys):
        return float(sum(float(metrics[k]) for k in keys))
    return float(sum(float(means[module.objective_names.index(h)]) for h in heads if h in trained))


def _step_needs_metric(scheduler: Any) -> bool:
    """Whether ``scheduler.step`` takes a required first argument (``ReduceLROnPlateau``)."""
    try:
        params = list(inspect.signature(scheduler.step).parameters.values())
    except (TypeError, ValueError):
        return False
    return bool(params) and params[0].default is inspect.Parameter.empty and params[0].kind in (
        inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD
    )


__all__ = ["build_optimizers", "default_optimizer", "step_schedulers"]
