"""The user-facing errors of multi-task learning: each names the task, head or part that
does not fit and says what to do. All are :class:`m3l.errors.M3LError` (one ``m3l: error:``
line and exit status 2 on the command line); :mod:`m3l.mtl.validation` (the preflight
check) raises most of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from m3l.errors import M3LError


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
            "log(softmax)), or clip the gradients (trainer.gradient_clip_val=1.0 on the command line, "
            "mtl.Trainer(gradient_clip_val=1.0) or MultiTaskModule(gradient_clip_val=1.0))"
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


class RepresentationNotSupportedError(M3LError):
    """A method was asked for gradients on the shared representation and cannot use them."""


class NoSingleHeadError(MTLValidationError, AttributeError):
    """``task.head`` of a :class:`~m3l.mtl.tasks.MultiHeadTask`, which has several (an
    ``AttributeError`` too, so ``getattr(task, "head", None)`` keeps working)."""

    def __init__(self, task: str, heads: Sequence[str]) -> None:
        super().__init__(
            f"MultiHeadTask {task!r} has several heads ({', '.join(heads)}), so no single .head.\n"
            "  fix: use task.objectives (one per head, each with .name, .head, .criterion)"
        )


class ArtifactError(M3LError):
    """A saved backbone or head is missing, does not match the module, or cannot be rebuilt."""
