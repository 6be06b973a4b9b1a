"""The parts of multi-task algorithms: schedules and methods (one per module).

An algorithm is a schedule holding a method, ``Joint(UPGrad())``. Every method is a
:class:`Method` with one ``backward(losses, context)`` the module calls each joint step;
:class:`Weighting` and :class:`GradientAggregator` are its two common shapes.

Schedules: :class:`Joint`, :class:`Alternating`, :class:`Sequential`.
Methods for :class:`Joint`, the loss weightings: :class:`EqualWeighting` (EW),
:class:`UncertaintyWeighting`, :class:`DynamicWeightAverage` (DWA), :class:`GradNorm`,
:class:`RandomWeighting` (RLW), :class:`FAMO`, :class:`FixedWeighting` (scalarization); the
gradient aggregators (:class:`GradientAggregator`), those built on torchjd
(:class:`JacobianAggregator`): PCGrad, MGDA, MGDAUB, CAGrad, NashMTL, IMTLG, AlignedMTL, GradVac,
GradDrop, ConFIG, DualProj, UPGrad. All of them are importable from :mod:`m3l.mtl` too
(``from m3l.mtl import UPGrad``).

>>> from m3l.mtl.algorithms import Joint, GradNorm
>>> Joint(GradNorm(alpha=1.5))
Joint(method=GradNorm)
"""

from m3l.mtl.algorithms.aligned_mtl import AlignedMTL
from m3l.mtl.algorithms.alternating import Alternating
from m3l.mtl.algorithms.cagrad import CAGrad
from m3l.mtl.algorithms.conflict_free import ConFIG
from m3l.mtl.algorithms.dualproj import DualProj
from m3l.mtl.algorithms.graddrop import GradDrop
from m3l.mtl.algorithms.gradvac import GradVac
from m3l.mtl.algorithms.imtl_g import IMTLG
from m3l.mtl.algorithms.jacobian import JacobianAggregator, RepresentationNotSupportedError
from m3l.mtl.algorithms.mgda import MGDA, MGDAUB
from m3l.mtl.algorithms.nash_mtl import NashMTL
from m3l.mtl.algorithms.pcgrad import PCGrad
from m3l.mtl.algorithms.upgrad import UPGrad
from m3l.mtl.algorithms.base import EqualWeighting, GradientAggregator, Method, Schedule, Weighting
from m3l.mtl.algorithms.context import StepContext
from m3l.mtl.algorithms.dwa import DynamicWeightAverage
from m3l.mtl.algorithms.famo import FAMO
from m3l.mtl.algorithms.fixed import FixedWeighting
from m3l.mtl.algorithms.gradnorm import GradNorm
from m3l.mtl.algorithms.joint import Joint
from m3l.mtl.algorithms.random_weights import RandomWeighting
from m3l.mtl.algorithms.sequential import Sequential
from m3l.mtl.algorithms.uncertainty import UncertaintyWeighting

__all__ = [
    "AlignedMTL",
    "CAGrad",
    "ConFIG",
    "DualProj",
    "GradDrop",
    "GradVac",
    "IMTLG",
    "JacobianAggregator",
    "Method",
    "MGDA",
    "MGDAUB",
    "NashMTL",
    "PCGrad",
    "RepresentationNotSupportedError",
    "UPGrad",
    "Alternating",
    "DynamicWeightAverage",
    "EqualWeighting",
    "FAMO",
    "FixedWeighting",
    "GradNorm",
    "GradientAggregator",
    "Joint",
    "RandomWeighting",
    "Schedule",
    "Sequential",
    "StepContext",
    "UncertaintyWeighting",
    "Weighting",
]
