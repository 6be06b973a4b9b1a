"""Tasks: what one objective of a multi-task model needs besides the shared backbone.

A :class:`Task` owns its datasets, one head, one criterion and its metrics. A
:class:`MultiHeadTask` owns one dataset whose samples carry several targets and one head,
criterion and metric set per target; the backbone runs once per batch for all its heads.

Internally every task is a list of :class:`Objective` (one per head): loss weightings and
diagnostics work on objectives, data loading on tasks.

Samples may be ``(input, target)`` pairs or dicts (``input_key``/``target_key``); for a
:class:`MultiHeadTask` the target is a dict with one entry per head (or the sample dict holds
one key per head).

A head is called as ``head(features)``; a head whose ``forward`` takes more (EMTL's
segmentation head takes ``original_shape``) gets it from ``head_inputs``: ``{argument:
source}`` where the source is a key of dict samples, a position in tuple samples
(``(input, target, extra)``), or a function of the backbone's input batch, e.g.
``{"original_shape": lambda x: x.shape[-2:]}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn
from torch.utils.data import Dataset

from m3l.mtl.errors import MissingCriterionError, NoSingleHeadError

HeadInput = str | int | Callable[[Any], Any]


def resolve_head_inputs(head_inputs: Mapping[str, HeadInput], batch: Any, inputs: Any) -> dict[str, Any]:
    """The extra keyword arguments of a task's heads for one (collated) batch."""
    out: dict[str, Any] = {}
    for name, source in head_inputs.items():
        out[name] = source(inputs) if callable(source) else batch[source]
    return out


@dataclass
class Objective:
    """One head of a task: its head, criterion, metrics and metadata."""

    name: str
    task: str
    head: nn.Module
    criterion: Callable[[Any, Any], Tensor]
    metrics: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0
    higher_is_better: dict[str, bool] = field(default_factory=dict)

    def is_higher_better(self, metric: str) -> bool:
        """Direction of ``metric``: the task's metadata, else the torchmetrics attribute."""
        if metric in self.higher_is_better:
            return bool(self.higher_is_better[metric])
        if metric == "loss":
            return False
        flag = getattr(self.metrics.get(metric), "higher_is_better", None)
        return True if flag is None else bool(flag)


class Task:
    """A task with its own datasets, one head, a criterion and metrics.

    Args:
        name: unique task name (used in logged keys: ``val/<name>/<metric>``).
        head: module mapping the backbone output to this task's prediction.
        criterion: ``criterion(prediction, target) -> scalar tensor``.
        train, val, test: datasets; optional when a datamodule provides them (command line).
        metrics: ``{name: torchmetrics.Metric or fn(prediction, target) -> tensor}``.
        batch_size: this task's batch size (tasks may differ).
        weight: constant factor on this task's loss before any weighting.
        higher_is_better: ``{metric: bool}``; defaults to the metric's own attribute.
        optimizer, scheduler: factories (``functools.partial`` / Hydra ``_partial_``) for this
            task's head; default to the module's head optimizer/scheduler.
        input_key, target_key: keys of dict samples.
        head_inputs: ``{argument: source}``, extra keyword arguments of the head's forward:
            a key of dict samples, a position in tuple samples, or a function of the
            backbone's input batch (``lambda x: x.shape[-2:]``).
    """

    def __init__(
        self,
        name: str,
        head: nn.Module,
        criterion: Callable[[Any, Any], Tensor],
        train: Dataset | None = None,
        val: Dataset | None = None,
        test: Dataset | None = None,
        metrics: Mapping[str, Any] | None = None,
        batch_size: int = 32,
        weight: float = 1.0,
        higher_is_better: Mapping[str, bool] | None = None,
        optimizer: Callable[..., Any] | None = None,
        scheduler: Callable[..., Any] | None = None,
        input_key: str = "input",
        target_key: str = "target",
        head_inputs: Mapping[str, HeadInput] | None = None,
    ) -> None:
        self.name = name
        self.head_inputs = dict(head_inputs or {})
        self.train, self.val, self.test = train, val, test
        self.batch_size = int(batch_size)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.input_key, self.target_key = input_key, target_key
        self.objectives = [
            Objective(
                name=name,
                task=name,
                head=head,
                criterion=criterion,
                metrics=dict(metrics or {}),
                weight=float(weight),
                higher_is_better=dict(higher_is_better or {}),
            )
        ]

    @property
    def head(self) -> nn.Module:
        """The task's head."""
        return self.objectives[0].head

    def datasets(self) -> dict[str, Dataset | None]:
        """The ``train``/``val``/``test`` datasets (``None`` where absent)."""
        return {"train": self.train, "val": self.val, "test": self.test}

    def split_batch(self, batch: Any) -> tuple[Any, dict[str, Any]]:
        """Split a collated batch into the backbone input and ``{objective: target}``."""
        if isinstance(batch, Mapping):
            return batch[self.input_key], {self.name: batch[self.target_key]}
        inputs, target = batch[0], batch[1]
        return inputs, {self.name: target}

    def head_kwargs(self, batch: Any, inputs: Any) -> dict[str, Any]:
        """The extra arguments of this task's heads for ``batch`` (see ``head_inputs``)."""
        return resolve_head_inputs(self.head_inputs, batch, inputs) if self.head_inputs else {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, heads={[o.name for o in self.objectives]})"


class MultiHeadTask(Task):
    """One dataset with several targets per sample, one head per target.

    Args:
        name: unique task name (the dataset's name).
        heads: ``{head_name: module}``; head names must be unique across all tasks.
        criteria: ``{head_name: criterion}``.
        metrics: ``{head_name: {metric: metric}}``.
        weights: ``{head_name: float}`` constant loss factors (default 1).
        higher_is_better: ``{head_name: {metric: bool}}``.
        other arguments: as :class:`Task`. A sample is ``(input, {head: target})`` or a dict
        with ``input_key`` and one key per head; ``head_inputs`` go to every head.
    """

    def __init__(
        self,
        name: str,
        heads: Mapping[str, nn.Module],
        criteria: Mapping[str, Callable[[Any, Any], Tensor]],
        train: Dataset | None = None,
        val: Dataset | None = None,
        test: Dataset | None = None,
        metrics: Mapping[str, Mapping[str, Any]] | None = None,
        batch_size: int = 32,
        weights: Mapping[str, float] | None = None,
        higher_is_better: Mapping[str, Mapping[str, bool]] | None = None,
        optimizer: Callable[..., Any] | None = None,
        scheduler: Callable[..., Any] | None = None,
        input_key: str = "input",
        head_inputs: Mapping[str, HeadInput] | None = None,
    ) -> None:
        self.name = name
        self.head_inputs = dict(head_inputs or {})
        self.train, self.val, self.test = train, val, test
        self.batch_size = int(batch_size)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.input_key, self.target_key = input_key, ""
        metrics, weights, hib = metrics or {}, weights or {}, higher_is_better or {}
        missing = [h for h in heads if h not in criteria]
        if missing:
            raise MissingCriterionError(name, missing, list(criteria))
        self.objectives = [
            Objective(
                name=head_name,
                task=name,
                head=head,
                criterion=criteria[head_name],
                metrics=dict(metrics.get(head_name, {})),
                weight=float(weights.get(head_name, 1.0)),
                higher_is_better=dict(hib.get(head_name, {})),
            )
            for head_name, head in heads.items()
        ]

    @property
    def head(self) -> nn.Module:
        raise NoSingleHeadError(self.name, [o.name for o in self.objectives])

    def split_batch(self, batch: Any) -> tuple[Any, dict[str, Any]]:
        names = [o.name for o in self.objectives]
        if isinstance(batch, Mapping):
            return batch[self.input_key], {n: batch[n] for n in names}
        inputs, targets = batch[0], batch[1]
        return inputs, {n: targets[n] for n in names}
