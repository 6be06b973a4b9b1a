"""Multi-task learning on Lightning: tasks, validation, algorithms, artifacts, diagnostics.

The words: a *method* (:class:`Method`: a loss weighting such as :class:`GradNorm`, or a
gradient aggregator such as :class:`UPGrad`) makes a joint step's gradients from the task
losses; a *schedule* (:class:`Joint`, :class:`Sequential`, :class:`Alternating`) picks which
tasks' batches a step sees; the *algorithm* is a schedule holding its method,
``mtl.Joint(mtl.UPGrad())``, what ``mtl.Trainer.launch`` and ``MultiTaskModule(algorithm=...)``
take. Every schedule and method is importable from here and from :mod:`m3l.mtl.algorithms`.
:class:`Trainer` here is ``mtl.Trainer``, m3l's front that builds and runs Lightning's
``lightning.Trainer`` (whose arguments it passes on, as the ``trainer`` config does).

>>> from m3l import mtl
>>> sorted(n for n in ("Task", "MultiHeadTask", "Trainer", "MultiTaskModule") if hasattr(mtl, n))
['MultiHeadTask', 'MultiTaskModule', 'Task', 'Trainer']

Typical use::

    results = mtl.Trainer(backbone=LeNet(), tasks=[left, right]).launch(mtl.Joint(mtl.GradNorm()))
"""

from m3l.mtl.algorithms import (
    CAGrad,
    ConFIG,
    DualProj,
    FAMO,
    IMTLG,
    MGDA,
    MGDAUB,
    AlignedMTL,
    Alternating,
    DynamicWeightAverage,
    EqualWeighting,
    FixedWeighting,
    GradDrop,
    GradientAggregator,
    GradNorm,
    GradVac,
    JacobianAggregator,
    Joint,
    Method,
    NashMTL,
    PCGrad,
    RandomWeighting,
    RepresentationNotSupportedError,
    Schedule,
    Sequential,
    StepContext,
    UncertaintyWeighting,
    UPGrad,
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
    "IMTLG",
    "MGDA",
    "MGDAUB",
    "AlignedMTL",
    "Alternating",
    "CAGrad",
    "ConFIG",
    "DualProj",
    "DynamicWeightAverage",
    "EqualWeighting",
    "FixedWeighting",
    "GradDrop",
    "GradNorm",
    "GradVac",
    "GradientAggregator",
    "JacobianAggregator",
    "Joint",
    "MTLValidationError",
    "Method",
    "NashMTL",
    "PCGrad",
    "MultiHeadTask",
    "MultiTaskDataModule",
    "MultiTaskModule",
    "MultiTaskResults",
    "Objective",
    "RandomWeighting",
    "RepresentationNotSupportedError",
    "Schedule",
    "Sequential",
    "StepContext",
    "Task",
    "Trainer",
    "UPGrad",
    "UncertaintyWeighting",
    "Weighting",
    "backbone",
    "criterion",
    "delta_m",
    "diagnostics",
    "head",
    "task_dataset",
]
