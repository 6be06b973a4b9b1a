"""The optimizers and learning-rate schedulers of a :class:`~m3l.mtl.module.MultiTaskModule`.

Each optimizer has a role: ``backbone`` (none when it is frozen), ``task:<name>`` (a task's
heads: its own optimizer and scheduler, else the module's head defaults, else the backbone's)
and ``method`` (the method's own parameters, e.g. GradNorm's weights). A task whose heads
use the backbone's optimizer factory and no scheduler (nor has the backbone one) shares the
backbone's optimizer instead, as LibMTL's single optimizer does: the same update (Adam, SGD
and the like are per parameter; a head idle this step has no gradient and is skipped), one
optimizer step of framework work instead of one per task. A step updates the backbone, the
method and the tasks it saw, and counts as one trainer step (``trainer.global_step``,
``max_steps``, checkpoints every n steps), however many optimizers it steps; schedulers step
once per epoch, those of tasks not trained that epoch (Sequential, Alternating) wait.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from m3l._compat.lightning import grad_scaler_of, uncounted_step
from m3l.errors import CheckpointError, ConfigError
from m3l.mtl.errors import SchedulerMonitorError

MultiTaskModule = Any  # the module (not imported: it imports this module)


def default_optimizer(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """Adam with lr 1e-3: the default for backbone, heads and the method's parameters.

    It is torch's fused Adam where the parameters allow it (floating point, on a CPU, CUDA or
    another device torch fuses for): one pass over each parameter instead of the five or six
    of the loop implementation, the same update to float rounding (about 1e-7 relative). On
    this project's 2-core CPU the optimizer step of a 1.3M-parameter model drops from 2.7 to
    0.8 ms (``benchmarks/mtl_vs_libmtl.py``). Elsewhere (sparse or complex parameters, a
    device without a fused kernel) it is the loop implementation, as before. A checkpoint of
    either kind loads into the other.
    """
    params = list(params)
    fused = bool(params) and all(
        torch.is_floating_point(p) and not p.is_sparse and p.device.type in _FUSED_DEVICES for p in params
    )
    return torch.optim.Adam(params, lr=1e-3, fused=fused or None)


# devices torch's fused Adam runs on (it checks only when it first steps)
_FUSED_DEVICES = ("cpu", "cuda", "xpu", "mps", "hpu")


def build_optimizers(module: MultiTaskModule) -> tuple[list[Any], list[Any], list[str], list[str]]:
    """The optimizers and schedulers of ``module`` with their roles."""
    optimizers, schedulers, roles, scheduler_roles = [], [], [], []
    shared = not module.freeze_backbone and module.scheduler_factory is None
    if not module.freeze_backbone:
        params = [p for p in module.backbone.parameters() if p.requires_grad]
        joined = [t for t in module.tasks if shared and _joins_backbone(module, t)]
        params += [p for t in joined for o in t.objectives for p in o.head.parameters() if p.requires_grad]
        opt = module.optimizer_factory(params)
        optimizers.append(opt)
        roles.append("backbone")
        if module.scheduler_factory is not None:
            schedulers.append(module.scheduler_factory(opt))
            scheduler_roles.append("backbone")
    for task in module.tasks:
        params = [p for o in task.objectives for p in o.head.parameters() if p.requires_grad]
        if not params or shared and _joins_backbone(module, task):
            continue
        opt = (task.optimizer or module.head_optimizer_factory)(params)
        optimizers.append(opt)
        roles.append(f"task:{task.name}")
        factory = task.scheduler or module.head_scheduler_factory
        if factory is not None:
            schedulers.append(factory(opt))
            scheduler_roles.append(f"task:{task.name}")
    method_opt = module.method.make_optimizer(module.optimizer_factory)
    if method_opt is not None:
        optimizers.append(method_opt)
        roles.append("method")
    return optimizers, schedulers, roles, scheduler_roles


def _joins_backbone(module: MultiTaskModule, task: Any) -> bool:
    """Whether ``task``'s heads use the backbone's optimizer factory and no scheduler."""
    return (task.optimizer or module.head_optimizer_factory) is module.optimizer_factory and (
        task.scheduler or module.head_scheduler_factory
    ) is None


def check_optimizer_states(module: MultiTaskModule, checkpoint: dict[str, Any], path: Any = None) -> None:
    """Refuse, naming the fix, a checkpoint whose optimizer states do not fit ``module``'s
    optimizers (Lightning would fail inside ``load_state_dict`` without saying why)."""
    states = checkpoint.get("optimizer_states")
    if not states:
        return
    optimizers, _, roles, _ = build_optimizers(module)
    expected = [[len(g["params"]) for g in o.param_groups] for o in optimizers]
    found = [[len(g.get("params", ())) for g in s.get("param_groups", ())] for s in states]
    if expected == found:
        return
    where = f"checkpoint {str(path)!r}" if path else "the checkpoint"
    raise CheckpointError(
        f"{where} cannot resume this multi-task model's training: it holds {len(found)} optimizer "
        f"state(s) with {found} parameters per group, this model steps {len(expected)} optimizer(s) "
        f"({', '.join(roles)}) with {expected}. m3l before 2026-12-01 gave every task's heads an "
        "optimizer of their own; heads that use the backbone's optimizer factory and no scheduler "
        "now share the backbone's.\n"
        "  fix: start a new fit from the checkpoint's weights, or resume with the layout that wrote it "
        "(give the heads their own factory object, e.g. head_optimizer=functools.partial(torch.optim.Adam, "
        "lr=...)), or check that the tasks and the method are those of the run that wrote it"
    )


def step_optimizers(optimizers: list[Any]) -> None:
    """Step ``optimizers`` (Lightning's), counting one trainer step and one loss-scale update.

    Under manual optimization Lightning counts every optimizer's step in
    ``trainer.global_step`` (Lightning issue #17958), so a module stepping a backbone and T
    task optimizers reached ``max_steps`` T+1 times too early and saved "every n steps"
    checkpoints T+1 times too often. Only the first optimizer's step is counted.

    Under fp16 mixed precision Lightning also updates the GradScaler after each optimizer's
    step. All of a batch's gradients were scaled by the same factor, so the scale must change
    only once, after the last: an earlier update (a growth step, or a back-off after an inf)
    would unscale the other optimizers' gradients by the wrong factor. The updates of all but
    the last step are held back (torch's own recipe for several optimizers: ``scaler.step`` each,
    then one ``scaler.update``), and that one update sees every optimizer's inf checks.
    """
    scaler = grad_scaler_of(optimizers[0]) if len(optimizers) > 1 else None
    for i, opt in enumerate(optimizers):
        held = scaler is not None and i < len(optimizers) - 1
        if held:
            scaler.update = _no_update  # an instance attribute over the class's method, for this step only
        try:
            with nullcontext() if i == 0 else uncounted_step(opt):  # a plain torch optimizer counts nothing
                opt.step()
        finally:
            if held:
                del scaler.update


def check_clip(value: Any) -> float | None:
    """``gradient_clip_val`` as a positive float (None: no clipping), or a ConfigError."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not number > 0 or number == float("inf"):
        raise ConfigError(f"gradient_clip_val must be a positive number (a gradient norm) or null, got {value!r}")
    return number


def clip_gradients(optimizers: list[Any], max_norm: float, scaler: Any = None) -> None:
    """Clip the gradients of each optimizer's parameters to the global norm ``max_norm``.

    Under fp16 the gradients are still scaled (the optimizers' steps unscale them, fused ones
    inside their kernels), so the bound is scaled too: clipping ``s * g`` to ``s * max_norm``
    is clipping ``g`` to ``max_norm``. A non-finite gradient stays non-finite, so the scaler
    still skips that step."""
    scale = float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else 1.0
    for opt in optimizers:
        params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
        if params:
            torch.nn.utils.clip_grad_norm_(params, max_norm * scale)


def _no_update(new_scale: Any = None) -> None:
    return None


def step_schedulers(
    module: MultiTaskModule, schedulers: list[Any], roles: list[str], means: Tensor, trained: Tensor
) -> None:
    """Step each scheduler once per epoch; those of tasks not trained this epoch wait. A
    scheduler whose ``step`` needs a metric (``ReduceLROnPlateau``) gets ``scheduler_monitor``
    when set, else the validation loss (``val/loss`` for the backbone, ``val/<head>/loss``
    summed over a task's heads), else this epoch's mean training loss of the objectives
    concerned."""
    names = module.objective_names
    trained_names = {n for n, t in zip(names, trained.tolist()) if t}
    for scheduler, role in zip(schedulers, roles):
        heads = (
            names
            if role == "backbone"
            else [o.name for o in module.task_by_name[role.removeprefix("task:")].objectives]
        )
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
    return (
        bool(params)
        and params[0].default is inspect.Parameter.empty
        and params[0].kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    )


__all__ = ["build_optimizers", "check_optimizer_states", "default_optimizer", "step_optimizers", "step_schedulers"]
