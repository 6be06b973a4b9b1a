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

from m3l.mtl.errors import (  # noqa: F401 - re-exported: the errors were first defined here
    BackboneOutputError,
    ContractDeclarationError,
    CriterionRejectedError,
    DatasetStructureError,
    DuplicateTaskNameError,
    EmptyTaskListError,
    HeadInputMismatchError,
    MTLValidationError,
    MetricError,
    MissingCriterionError,
    NonFiniteLossError,
    SchedulerMonitorError,
    TrainerArgumentError,
)

if TYPE_CHECKING:
    from m3l.mtl.tasks import Objective, Task

CONTRACT_ATTR = "__m3l_contract__"
INIT_ARGS_ATTR = "_m3l_init_args"


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


class TracedFailure(Exception):
    """A module raised; which of its submodules was running, on what input, where."""

    def __init__(self, error: BaseException, submodule: str | None, layer: nn.Module | None,
                 received: Any, at_first_layer: bool) -> None:
        super().__init__(str(error))
        self.error, self.submodule, self.layer = error, submodule, layer
        self.received, self.at_first_layer = received, at_first_layer

    def where(self) -> str:
        """`` in submodule 'x' (Linear(...)) on input ..., raised at file:line`` (or less)."""
        text = ""
        if self.submodule is not None:
            text += f", in its submodule {self.submodule!r} ({self.layer!r}) on input {describe(self.received)}"
        frame = _user_frame(self.error)
        if frame is not None:
            text += f", at {frame.filename}:{frame.lineno} ({frame.line})"
        return text


def _user_frame(error: BaseException) -> Any:
    """The innermost traceback frame outside torch: the line of user code that failed."""
    import os
    import traceback

    torch_dir = os.path.dirname(torch.__file__)
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith(torch_dir)]
    return frames[-1] if frames else None


def run_traced(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """``module(*args, **kwargs)``; on an exception, a :class:`TracedFailure` naming the
    innermost submodule that was running and the input it received."""
    stack: list[tuple[str, nn.Module, Any]] = []
    names = {id(m): n for n, m in module.named_modules() if n}
    first = next((n for n, m in module.named_modules() if n and any(True for _ in m.parameters(recurse=False))), None)

    def enter(layer: nn.Module, inputs: Any) -> None:
        if id(layer) in names:
            stack.append((names[id(layer)], layer, inputs[0] if len(inputs) == 1 else inputs))

    def leave(layer: nn.Module, inputs: Any, output: Any) -> None:
        if id(layer) in names and stack:
            stack.pop()

    handles = [h for m in module.modules() if m is not module
               for h in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))]
    try:
        return module(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - re-raised with where it happened
        name, layer, received = stack[-1] if stack else (None, None, None)
        raise TracedFailure(err, name, layer, received, name is not None and name == first) from err
    finally:
        for handle in handles:
            handle.remove()


def missing_arguments(module: nn.Module, given_positional: int, given: Mapping[str, Any]) -> list[str]:
    """Required parameters of ``module.forward`` left unset by ``given_positional`` positional
    and the ``given`` keyword arguments."""
    import inspect

    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return []
    missing = []
    positional = given_positional
    for param in params:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD) and positional > 0:
            positional -= 1
            continue
        if param.default is param.empty and param.name not in given:
            missing.append(param.name)
    return missing


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
            fix = ("make the task's dataset yield inputs the backbone accepts (channels, size, dtype "
                   "float32), or adapt the backbone's first layer")
        else:
            fix = (f"the input passed the backbone's first layers; fix submodule {failure.submodule!r} "
                   "(or the layer before it) for what it received")
        raise BackboneOutputError(
            f"task {task.name!r}: backbone {_name(backbone_module)!r} failed on the task's "
            f"input {describe(inputs)}{failure.where()}: {type(err).__name__}: {err}\n  fix: {fix}"
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


def check_head(objective: Objective, backbone_module: nn.Module, features: Any,
               extra: Mapping[str, Any] | None = None) -> Any:
    """Run a head on the backbone's output (and the task's ``head_inputs``), with an
    input-width and a required-arguments check first."""
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
    extra = dict(extra or {})
    missing = missing_arguments(objective.head, 1, extra)
    if missing:
        raise HeadInputMismatchError(
            f"task {objective.task!r}: head {head_name!r} ({_name(objective.head)}).forward requires "
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
            fix = (f"the features passed the head's first layers; fix submodule {failure.submodule!r} "
                   "(or the layer before it) for what it received")
        raise HeadInputMismatchError(
            f"task {objective.task!r}: head {head_name!r} ({_name(objective.head)}) failed on "
            f"backbone {_name(backbone_module)!r} output {describe(features)}{failure.where()}: "
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
        extra = check_head_inputs(task, batches[task.name], inputs)
        for objective in task.objectives:
            prediction = check_head(objective, backbone_module, features, extra)
            loss = check_criterion(objective, prediction, targets[objective.name])
            check_metrics(objective, prediction, targets[objective.name])
            losses[objective.name] = float(loss)
    return losses
