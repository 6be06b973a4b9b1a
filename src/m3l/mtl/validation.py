"""Contract decorators and the preflight check, with messages that say what to do.

Decorators declare what a part promises; they return the part unchanged (plus a
``__m3l_contract__`` attribute, and for module classes a record of the constructor's
keyword arguments so artifacts can rebuild them)::

    @mtl.backbone(out_channels=50)
    class LeNet(nn.Module): ...

    @mtl.head(in_channels="in_features")      # read the expected width from an attribute
    class Classifier(nn.Module): ...

    @mtl.criterion(target_dtype="integer", prediction_ndim=2)
    def cross_entropy(pred, target): ...

    @mtl.task_dataset(structure="pair", input_shape=(1, 36, 36))
    class MyDataset(Dataset): ...

:func:`preflight` runs one batch per task through backbone -> head -> criterion -> metrics
and raises an :class:`MTLValidationError` naming the task, the part, what was expected,
what was received and a likely fix.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from m3l.errors import M3LError

if TYPE_CHECKING:
    from m3l.mtl.tasks import Objective, Task

CONTRACT_ATTR = "__m3l_contract__"
INIT_ARGS_ATTR = "_m3l_init_args"


# ----------------------------------------------------------------------------- errors
class MTLValidationError(M3LError):
    """A multi-task part does not fit the others; the message names part and fix."""


class EmptyTaskListError(MTLValidationError):
    def __init__(self) -> None:
        super().__init__(
            "no tasks given: a multi-task model needs at least one task.\n"
            "  fix: pass tasks=[Task(name=..., head=..., criterion=..., train=...)]"
        )


class DuplicateTaskNameError(MTLValidationError):
    def __init__(self, kind: str, name: str, where: Sequence[str]) -> None:
        super().__init__(
            f"duplicate {kind} name {name!r} (used by {' and '.join(where)}): task and head names "
            f"key the logged metrics, the heads and the saved artifacts, so they must be unique.\n"
            f"  fix: rename one of them, e.g. name={name + '_2'!r}"
        )


class MissingCriterionError(MTLValidationError):
    def __init__(self, task: str, heads: Sequence[str], criteria: Sequence[str]) -> None:
        super().__init__(
            f"task {task!r}: heads {list(heads)} have no criterion (criteria given for "
            f"{list(criteria)}).\n  fix: add criteria={{{heads[0]!r}: ...}}"
        )


class DatasetStructureError(MTLValidationError):
    """A dataset yields samples of the wrong structure, shape or dtype."""


class BackboneOutputError(MTLValidationError):
    """The backbone fails on a task's input or produces an unexpected output."""


class HeadInputMismatchError(MTLValidationError):
    """A head expects a different input than the backbone produces."""


class CriterionRejectedError(MTLValidationError):
    """A criterion rejects a head's output or the target."""


class MetricError(MTLValidationError):
    """A metric fails on a head's output."""


class NonFiniteLossError(MTLValidationError):
    """A task's loss became NaN or infinite during training."""

    def __init__(self, task: str, step: int, value: float | None = None) -> None:
        got = "" if value is None else f" (value {value})"
        super().__init__(
            f"task {task!r}: loss is not finite{got} at training step {step}.\n"
            "  fix: lower the learning rate, check the task's targets for NaN/inf, use a "
            "numerically stable criterion (e.g. logits + CrossEntropyLoss rather than "
            "log(softmax)), or enable gradient clipping (trainer.gradient_clip_val)"
        )


class SchedulerMonitorError(MTLValidationError):
    """The metric a scheduler should follow was not logged."""

    def __init__(self, key: str, role: str, available: Sequence[str]) -> None:
        super().__init__(
            f"scheduler_monitor={key!r}: the {role.replace('task:', 'task ')} scheduler needs that metric "
            f"(its step() takes one, e.g. ReduceLROnPlateau) but it was not logged this epoch; logged: "
            f"{', '.join(available) or 'nothing'}.\n  fix: set scheduler_monitor to one of those keys, or "
            "give the tasks a val dataset (then val/loss is used by default)"
        )


class TrainerArgumentError(MTLValidationError):
    """``mtl.Trainer`` got an argument it does not take."""


class ContractDeclarationError(MTLValidationError):
    """A decorator was applied to something that cannot keep its promise."""


# ---------------------------------------------------------------------------- contracts
@dataclass
class Contract:
    """What a decorated part promises."""

    role: str
    options: dict[str, Any] = field(default_factory=dict)


def contract_of(obj: Any) -> Contract | None:
    """The contract declared on ``obj`` or on its class, if any."""
    found = getattr(obj, CONTRACT_ATTR, None)
    if found is None:
        found = getattr(type(obj), CONTRACT_ATTR, None)
    return found


def _record_init_args(cls: type) -> None:
    """Wrap ``cls.__init__`` so instances remember their JSON-able keyword arguments."""
    original = cls.__init__
    if getattr(original, "_m3l_records", False):
        return

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        import inspect

        try:
            bound = inspect.signature(original).bind(self, *args, **kwargs)
        except TypeError:
            return
        bound.apply_defaults()
        recorded = {
            k: v
            for k, v in list(bound.arguments.items())[1:]
            if isinstance(v, (int, float, str, bool, type(None), list, tuple))
        }
        object.__setattr__(self, INIT_ARGS_ATTR, recorded)

    __init__._m3l_records = True  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[method-assign]


def _declare(role: str, needs_module: bool) -> Callable[..., Any]:
    def decorator(target: Any = None, /, **options: Any) -> Any:
        def apply(obj: Any) -> Any:
            if needs_module and not (isinstance(obj, type) and issubclass(obj, nn.Module)):
                raise ContractDeclarationError(
                    f"@mtl.{role} expects an nn.Module subclass; got {obj!r}.\n"
                    f"  fix: decorate a class deriving from torch.nn.Module"
                )
            setattr(obj, CONTRACT_ATTR, Contract(role, dict(options)))
            if isinstance(obj, type) and issubclass(obj, nn.Module):
                _record_init_args(obj)
            return obj

        return apply(target) if target is not None else apply

    decorator.__name__ = role
    decorator.__doc__ = f"Declare a {role.replace('_', ' ')} and what it promises."
    return decorator


backbone = _declare("backbone", needs_module=True)
head = _declare("head", needs_module=True)
criterion = _declare("criterion", needs_module=False)
task_dataset = _declare("task_dataset", needs_module=False)


# ----------------------------------------------------------------------------- describe
def describe(value: Any) -> str:
    """A short description of a value's structure: shapes and dtypes of its tensors."""
    if isinstance(value, Tensor):
        return f"tensor {tuple(value.shape)} {str(value.dtype).replace('torch.', '')}"
    if isinstance(value, Mapping):
        return "dict{" + ", ".join(f"{k!r}: {describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__}[" + ", ".join(describe(v) for v in value) + "]"
    return type(value).__name__


def _name(obj: Any) -> str:
    return getattr(obj, "__name__", None) or type(obj).__name__


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
    ds = _name(dataset)
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


def check_backbone_output(backbone_module: nn.Module, task: Task, inputs: Any) -> Any:
    """Run the backbone on a task's batch, turning failures into named errors."""
    try:
        features = backbone_module(inputs)
    except Exception as err:  # noqa: BLE001 - re-raised with context
        raise BackboneOutputError(
            f"task {task.name!r}: backbone {_name(backbone_module)!r} failed on the task's "
            f"input {describe(inputs)}: {type(err).__name__}: {err}\n  fix: make the task's "
            f"dataset yield inputs the backbone accepts (channels, size, dtype float32), or "
            f"adapt the backbone's first layer"
        ) from err
    declared = contract_of(backbone_module)
    out = declared.options.get("out_channels") if declared else None
    if isinstance(out, int) and isinstance(features, Tensor) and features.dim() > 1:
        if features.shape[1] != out:
            raise BackboneOutputError(
                f"backbone {_name(backbone_module)!r} declares out_channels={out} but produces "
                f"{describe(features)} on task {task.name!r}.\n  fix: update "
                f"@mtl.backbone(out_channels={features.shape[1]}) or the backbone's last layer"
            )
    return features


def check_head(objective: Objective, backbone_module: nn.Module, features: Any) -> Any:
    """Run a head on the backbone's output, with an input-width check first."""
    head_name = objective.name
    expected = _expected_in(objective.head)
    if expected is not None and isinstance(features, Tensor) and features.dim() > 1:
        attr, want = expected
        got = int(features.shape[1])
        if want != got:
            raise HeadInputMismatchError(
                f"task {objective.task!r}: head {head_name!r} ({_name(objective.head)}) expects "
                f"{want} input channels; backbone {_name(backbone_module)!r} produces {got} "
                f"({describe(features)}): set head.{attr}={got}"
            )
    try:
        return objective.head(features)
    except Exception as err:  # noqa: BLE001
        raise HeadInputMismatchError(
            f"task {objective.task!r}: head {head_name!r} ({_name(objective.head)}) failed on "
            f"backbone {_name(backbone_module)!r} output {describe(features)}: "
            f"{type(err).__name__}: {err}\n  fix: make the head's first layer accept the "
            f"backbone's output (shape {describe(features)})"
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
                f"make the head output shape {tuple(target.shape)} (the target's), or use a "
                f"criterion for these shapes"
            )
        if prediction.dtype != target.dtype:
            return f"cast the target to {prediction.dtype} in the dataset"
    return "make the head's output and the target fit the criterion's signature"


def check_criterion(objective: Objective, prediction: Any, target: Any) -> Tensor:
    """Run a criterion; it must return a finite scalar tensor."""
    crit = objective.criterion
    where = f"task {objective.task!r}: criterion {_name(crit)!r} of head {objective.name!r}"
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
                f"{where} expects float targets; received {received}.\n"
                f"  fix: return targets as float32 in the dataset"
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
    import copy

    for metric_name, metric in objective.metrics.items():
        probe = copy.deepcopy(metric) if isinstance(metric, nn.Module) else metric
        try:
            probe(prediction, target)
        except Exception as err:  # noqa: BLE001
            raise MetricError(
                f"task {objective.task!r}: metric {metric_name!r} ({_name(metric)}) of head "
                f"{objective.name!r} failed on prediction {describe(prediction)}, target "
                f"{describe(target)}: {type(err).__name__}: {err}\n  fix: configure the metric "
                f"for this head's output (e.g. num_classes), or choose another metric"
            ) from err


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
        for objective in task.objectives:
            prediction = check_head(objective, backbone_module, features)
            loss = check_criterion(objective, prediction, targets[objective.name])
            check_metrics(objective, prediction, targets[objective.name])
            losses[objective.name] = float(loss)
    return losses
