"""Multi-task learning on Lightning: tasks, validation, algorithms, artifacts, diagnostics.

>>> from m3l import mtl
>>> sorted(n for n in ("Task", "MultiHeadTask", "Trainer", "MultiTaskModule") if hasattr(mtl, n))
['MultiHeadTask', 'MultiTaskModule', 'Task', 'Trainer']

Typical use::

    results = mtl.Trainer(backbone=LeNet(), tasks=[left, right]).launch(mtl.Joint(mtl.GradNorm()))
"""

from m3l.mtl.algorithms import (
    FAMO,
    Alternating,
    DynamicWeightAverage,
    EqualWeighting,
    FixedWeighting,
    GradientAggregator,
    GradNorm,
    Joint,
    Method,
    RandomWeighting,
    Schedule,
    Sequential,
    StepContext,
    UncertaintyWeighting,
    Weighting,
)
from m3l.mtl import diagnostics
from m3l.mtl.data import MultiTaskDataModule
from m3l.mtl.delta_m import delta_m
from m3l.mtl.module import MultiTaskModule
from m3l.mtl.tasks import MultiHeadTask, Objective, Task
from m3l.mtl.trainer import MultiTaskResults, Trainer
from m3l.mtl.contracts import backbone, criterion, head, task_dataset
from m3l.mtl.errors import MTLValidationError

__all__ = [
    "FAMO",
    "Alternating",
    "DynamicWeightAverage",
    "EqualWeighting",
    "FixedWeighting",
    "GradNorm",
    "GradientAggregator",
    "Joint",
    "MTLValidationError",
    "Method",
    "MultiHeadTask",
    "MultiTaskDataModule",
    "MultiTaskModule",
    "MultiTaskResults",
    "Objective",
    "RandomWeighting",
    "Schedule",
    "Sequential",
    "StepContext",
    "Task",
    "Trainer",
    "UncertaintyWeighting",
    "Weighting",
    "backbone",
    "criterion",
    "delta_m",
    "diagnostics",
    "head",
    "task_dataset",
]
