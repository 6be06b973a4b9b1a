"""The preflight check: one batch per task through backbone -> head -> criterion -> metrics,
before training, with messages that say what to do.

:func:`preflight` raises an :class:`~m3l.mtl.errors.MTLValidationError` naming the task, the
part, what was expected, what was received and a likely fix; each ``check_*`` function is one
step of it. The contracts it reads are declared with :mod:`m3l.mtl.contracts`; the failures
it reports are traced by :mod:`m3l.mtl.tracing`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from m3l.mtl.contracts import contract_of
from m3l.mtl.data import merge_task_batches
from m3l.mtl.errors import (
    BackboneOutputError,
    CriterionRejectedError,
    DatasetStructureError,
    DuplicateTaskNameError,
    EmptyTaskListError,
    HeadInputMismatchError,
    MetricError,
    NonFiniteLossError,
)
from m3l.mtl.tracing import TracedFailure, describe, missing_arguments, part_name, run_traced

if TYPE_CHECKING:
    from m3l.mtl.tasks import Objective, Task


# --------------------------------------------------------------------------- structure
def check_task_names(tasks: Sequence[Task]) -> None:
    """Non-empty task list, unique task names and unique head names."""
    if not tasks:
        raise EmptyTaskListError()
    seen: dict[str, str] = {}
    for task in tasks:
        if task.name in seen:
            raise DuplicateTaskNameError("task", task.name, [seen[task.name], repr(task)])
        seen[task.name] = repr(task)
    heads: dict[str, str] = {}
    for task in tasks:
        for obj in task.objectives:
            if obj.name in heads and heads[obj.name] != task.name:
                raise DuplicateTaskNameError("head", obj.name, [f"task {heads[obj.name]!r}", f"task {task.name!r}"])
            heads[obj.name] = task.name


def check_sample(task: Task, split: str, dataset: Any, sample: Any) -> None:
    """One raw sample of ``task``'s ``split`` dataset has the structure the task reads."""
    ds = part_name(dataset)
    heads = [o.name for o in task.objectives]
    multi = len(task.objectives) > 1 or task.target_key == ""
    if isinstance(sample, Mapping):
        wanted = [task.input_key] + (heads if multi else [task.target_key])
        missing = [k for k in wanted if k not in sample]
        if missing:
            raise DatasetStructureError(
                f"task {task.name!r}: {split} dataset {ds!r} yields a dict without keys "
                f"{missing}.\n  expected: dict with keys {wanted}\n  received: {describe(sample)}\n"
                f"  fix: return those keys from __getitem__, or set the task's input_key/"
                f"target_key to the dataset's key names ({list(sample)})"
            )
    elif isinstance(sample, (tuple, list)):
        if len(sample) < 2:
            raise DatasetStructureError(
                f"task {task.name!r}: {split} dataset {ds!r} yields a {type(sample).__name__} "
                f"of length {len(sample)}.\n  expected: (input, target)\n"
                f"  received: {describe(sample)}\n  fix: return (input, target) from __getitem__"
            )
        read = {src for src in task.head_inputs.values() if isinstance(src, int) and not isinstance(src, bool)}
        unread = [i for i in range(2, len(sample)) if i not in read and i - len(sample) not in read]
        if unread:
            target = f"{{{', '.join(repr(h) + ': target' for h in heads)}}}" if multi else "target"
            raise DatasetStructureError(
                f"task {task.name!r}: {split} dataset {ds!r} yields a {type(sample).__name__} of length "
                f"{len(sample)}.\n  expected: (input, {target}), the task reads no element past the second\n"
                f"  received: {describe(sample)}\n  fix: return (input, {target}) from __getitem__, or, "
                f"when element {unread[0]} is for the head's forward, name it: "
                f"head_inputs={{'argument': {unread[0]}}}"
            )
        if multi and not (isinstance(sample[1], Mapping) and all(h in sample[1] for h in heads)):
            raise DatasetStructureError(
                f"task {task.name!r} (MultiHeadTask): {split} dataset {ds!r} must yield "
                f"(input, {{head: target}}).\n  expected: target dict with keys {heads}\n"
                f"  received: {describe(sample)}\n  fix: return (x, {{{', '.join(repr(h) + ': ...' for h in heads)}}})"
            )
    else:
        raise DatasetStructureError(
            f"task {task.name!r}: {split} dataset {ds!r} yields {describe(sample)}.\n"
            f"  expected: (input, target) or dict with {task.input_key!r} and "
            f"{task.target_key or heads!r}\n  fix: return one of those from __getitem__"
        )
    declared = contract_of(dataset)
    if declared is None:
        return
    inputs = sample[task.input_key] if isinstance(sample, Mapping) else sample[0]
    shape = declared.options.get("input_shape")
    if shape is not None and isinstance(inputs, Tensor) and tuple(inputs.shape) != tuple(shape):
        raise DatasetStructureError(
            f"task {task.name!r}: {split} dataset {ds!r} declares input_shape {tuple(shape)} "
            f"but yields input {describe(inputs)}.\n  fix: make __getitem__ return inputs of "
            f"shape {tuple(shape)} or update @mtl.task_dataset(input_shape=...)"
        )


# ---------------------------------------------------------------------------- pipeline
def _expected_in(head_module: nn.Module) -> tuple[str, int] | None:
    declared = contract_of(head_module)
    attr = None
    if declared is not None:
        spec = declared.options.get("in_channels")
        if isinstance(spec, int):
            return ("in_channels", spec)
        if isinstance(spec, str):
            attr = spec
    for name in ([attr] if attr else []) + ["in_channels", "in_features"]:
        value = getattr(head_module, name, None)
        if isinstance(value, int):
            return (name, value)
    return None


def check_head_inputs(task: Task, batch: Any, inputs: Any) -> dict[str, Any]:
    """The task's ``head_inputs`` for one batch, with a named error when one cannot be read."""
    extra: dict[str, Any] = {}
    for name, source in task.head_inputs.items():
        try:
            extra[name] = source(inputs) if callable(source) else batch[source]
        except Exception as err:  # noqa: BLE001
            kind = "dict with keys " + str(list(batch)) if isinstance(batch, Mapping) else describe(batch)
            raise DatasetStructureError(
                f"task {task.name!r}: head_inputs[{name!r}] = {source!r} cannot be read from the "
                f"batch ({kind}): {type(err).__name__}: {err}\n  fix: use a key of the dataset's dict "
                "samples, a position in its tuple samples (0 is the input), or a function of the input batch"
            ) from err
    return extra


def check_backbone_output(backbone_module: nn.Module, task: Task, inputs: Any) -> Any:
    """Run the backbone on a task's batch, turning failures into named errors."""
    try:
        features = run_traced(backbone_module, inputs)
    except TracedFailure as failure:
        err = failure.error
        if failure.at_first_layer or failure.submodule is None:
            fix = (
                "make the task's dataset yield inputs the backbone accepts (channels, size, dtype "
                "float32), or adapt the backbone's first layer"
            )
        else:
            fix = (
                f"the input passed the backbone's first layers; fix submodule {failure.submodule!r} "
                "(or the layer before it) for what it received"
            )
        raise BackboneOutputError(
            f"task {task.name!r}: backbone {part_name(backbone_module)!r} failed on the task's "
            f"input {describe(inputs)}{failure.where()}: {type(err).__name__}: {err}\n  fix: {fix}"
        ) from err
    declared = contract_of(backbone_module)
    out = declared.options.get("out_channels") if declared else None
    if isinstance(out, int) and isinstance(features, Tensor) and features.dim() > 1:
        if features.shape[1] != out:
            raise BackboneOutputError(
                f"backbone {part_name(backbone_module)!r} declares out_channels={out} but produces "
                f"{describe(features)} on task {task.name!r}.\n  fix: update "
                f"@mtl.backbone(out_channels={features.shape[1]}) or the backbone's last layer"
            )
    return features


def check_head(
    objective: Objective, backbone_module: nn.Module, features: Any, extra: Mapping[str, Any] | None = None
) -> Any:
    """Run a head on the backbone's output (and the task's ``head_inputs``), with an
    input-width and a required-arguments check first."""
    head_name = objective.name
    expected = _expected_in(objective.head)
    if expected is not None and isinstance(features, Tensor) and features.dim() > 1:
        attr, want = expected
        got = int(features.shape[1])
        if want != got:
            raise HeadInputMismatchError(
                f"task {objective.task!r}: head {head_name!r} ({part_name(objective.head)}) expects "
                f"{want} input channels; backbone {part_name(backbone_module)!r} produces {got} "
                f"({describe(features)}): set head.{attr}={got}"
            )
    extra = dict(extra or {})
    missing = missing_arguments(objective.head, 1, extra)
    if missing:
        raise HeadInputMismatchError(
            f"task {objective.task!r}: head {head_name!r} ({part_name(objective.head)}).forward requires "
            f"{', '.join(missing)} besides the features, and the task passes "
            f"{sorted(extra) or 'nothing else'}.\n  fix: say where {missing[0]} comes from: "
            f"Task(..., head_inputs={{{missing[0]!r}: 'key'}}) for a key of dict samples (or a "
            f"position in tuple samples), or a function of the input batch, e.g. "
            f"head_inputs={{'original_shape': lambda x: x.shape[-2:]}}"
        )
    try:
        return run_traced(objective.head, features, **extra)
    except TracedFailure as failure:
        err = failure.error
        if failure.at_first_layer:
            fix = f"make the head's first layer ({failure.submodule!r}) accept the backbone's output ({describe(features)})"
        elif failure.submodule is None:
            fix = "the error is in the head's own forward(), not in one of its layers: fix the line above"
        else:
            fix = (
                f"the features passed the head's first layers; fix submodule {failure.submodule!r} "
                "(or the layer before it) for what it received"
            )
        raise HeadInputMismatchError(
            f"task {objective.task!r}: head {head_name!r} ({part_name(objective.head)}) failed on "
            f"backbone {part_name(backbone_module)!r} output {describe(features)}{failure.where()}: "
            f"{type(err).__name__}: {err}\n  fix: {fix}"
        ) from err


def _criterion_hint(prediction: Any, target: Any) -> str:
    if isinstance(prediction, Tensor) and isinstance(target, Tensor):
        if not target.is_floating_point() and prediction.dim() == target.dim() + 1:
            return (
                f"for class indices the head must output (B, num_classes) logits; check that "
                f"num_classes > target.max() = {int(target.max())}"
            )
        if not target.is_floating_point() and prediction.dim() == target.dim():
            return "use class-index targets with (B, num_classes) logits, or a float target"
        if prediction.shape != target.shape:
            return (
                f"make the head output shape {tuple(target.shape)} (the target's), or use a criterion for these shapes"
            )
        if prediction.dtype != target.dtype:
            return f"cast the target to {prediction.dtype} in the dataset"
    return "make the head's output and the target fit the criterion's signature"


def check_criterion(objective: Objective, prediction: Any, target: Any) -> Tensor:
    """Run a criterion; it must return a finite scalar tensor."""
    crit = objective.criterion
    where = f"task {objective.task!r}: criterion {part_name(crit)!r} of head {objective.name!r}"
    received = f"prediction {describe(prediction)}, target {describe(target)}"
    declared = contract_of(crit)
    if declared is not None and isinstance(prediction, Tensor) and isinstance(target, Tensor):
        ndim = declared.options.get("prediction_ndim")
        if ndim is not None and prediction.dim() != ndim:
            raise CriterionRejectedError(
                f"{where} expects a {ndim}-D prediction; received {received}.\n"
                f"  fix: {_criterion_hint(prediction, target)}"
            )
        kind = declared.options.get("target_dtype")
        if kind == "integer" and target.is_floating_point():
            raise CriterionRejectedError(
                f"{where} expects integer class targets; received {received}.\n"
                f"  fix: return targets as torch.long in the dataset"
            )
        if kind == "float" and not target.is_floating_point():
            raise CriterionRejectedError(
                f"{where} expects float targets; received {received}.\n  fix: return targets as float32 in the dataset"
            )
    try:
        loss = crit(prediction, target)
    except Exception as err:  # noqa: BLE001
        raise CriterionRejectedError(
            f"{where} rejected the head's output: {type(err).__name__}: {err}\n"
            f"  received: {received}\n  fix: {_criterion_hint(prediction, target)}"
        ) from err
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise CriterionRejectedError(
            f"{where} must return a scalar tensor; returned {describe(loss)}.\n"
            f"  fix: reduce the loss (e.g. reduction='mean')"
        )
    if not torch.isfinite(loss).all():
        raise NonFiniteLossError(objective.name, step=0, value=float(loss))
    return loss


def check_metrics(objective: Objective, prediction: Any, target: Any) -> None:
    """Run each metric once on a copy (stateful metrics are not updated)."""
    for metric_name, metric in objective.metrics.items():
        probe = copy.deepcopy(metric) if isinstance(metric, nn.Module) else metric
        try:
            probe(prediction, target)
        except Exception as err:  # noqa: BLE001
            raise MetricError(
                f"task {objective.task!r}: metric {metric_name!r} ({part_name(metric)}) of head "
                f"{objective.name!r} failed on prediction {describe(prediction)}, target "
                f"{describe(target)}: {type(err).__name__}: {err}\n  fix: configure the metric "
                f"for this head's output (e.g. num_classes), or choose another metric"
            ) from err


def first_batches(
    datamodule: Any, tasks: Sequence[Task]
) -> tuple[dict[str, Any], dict[str, list[tuple[str, Any, Any]]]]:
    """What :func:`preflight` runs: one train batch per task (``{task: batch}``) and the first
    sample of each task's train and val datasets, from a multi-task datamodule (or the first
    batch of any datamodule's train loader)."""
    if hasattr(datamodule, "setup") and not getattr(datamodule, "datasets", None):
        datamodule.setup("fit")
    batches: dict[str, Any] = {}
    samples: dict[str, list[tuple[str, Any, Any]]] = {}
    if hasattr(datamodule, "task_loader"):
        for task in tasks:
            for split in ("train", "val"):
                dataset = datamodule.dataset(task.name, split)
                if dataset is not None:
                    samples.setdefault(task.name, []).append((split, dataset, dataset[0]))
            if datamodule.dataset(task.name, "train") is not None:
                batches.update(next(iter(datamodule.task_loader(task.name, "train"))))
    else:
        batches = merge_task_batches(next(iter(datamodule.train_dataloader())))
    return batches, samples


def preflight(
    backbone_module: nn.Module,
    tasks: Sequence[Task],
    batches: Mapping[str, Any],
    samples: Mapping[str, Iterable[tuple[str, Any, Any]]] | None = None,
) -> dict[str, float]:
    """Check every task end to end on one batch; return the first losses by objective.

    Args:
        backbone_module: the shared backbone.
        tasks: the tasks.
        batches: one collated batch per task name (already on the module's device).
        samples: optional raw ``(split, dataset, sample)`` per task, checked for structure.
    """
    check_task_names(tasks)
    losses: dict[str, float] = {}
    for task in tasks:
        for split, dataset, sample in (samples or {}).get(task.name, []):
            check_sample(task, split, dataset, sample)
        if task.name not in batches:
            continue
        inputs, targets = task.split_batch(batches[task.name])
        features = check_backbone_output(backbone_module, task, inputs)
        extra = check_head_inputs(task, batches[task.name], inputs)
        for objective in task.objectives:
            prediction = check_head(objective, backbone_module, features, extra)
            loss = check_criterion(objective, prediction, targets[objective.name])
            check_metrics(objective, prediction, targets[objective.name])
            losses[objective.name] = float(loss)
    return losses
