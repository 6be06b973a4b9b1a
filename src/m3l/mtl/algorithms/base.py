"""The interface of multi-task methods, and of schedules.

A :class:`Method` is one strategy the module calls once per joint step:
``backward(losses, context)`` leaves the gradients of the shared parameters and of the heads
in their ``.grad`` and returns the scalar to log. It may weight the losses (a
:class:`Weighting`: implement ``weights`` or ``combine``), aggregate the Jacobian of the
losses (a :class:`GradientAggregator`: implement ``aggregate``), or do anything else with the
gradient services of the :class:`~m3l.mtl.algorithms.context.StepContext` (per-objective
gradients, the Jacobian on the parameters or on the shared representation, DDP means, AMP
loss scaling), which is the only place that knows how gradients are made. A :class:`Schedule`
decides which tasks' data a training step sees and builds the combined train loader; it holds
the method its joint steps use (``Joint(UPGrad())``). A schedule with its method is what the
rest of m3l calls the algorithm (``MultiTaskModule(algorithm=...)``, ``mtl.Trainer.launch(algorithm)``).

The words: a *method* (weightings and gradient aggregators alike) makes the gradients, a
*schedule* picks the batches; ``weighting`` was the method's old name in keywords and
attributes (``Joint(weighting=...)``, ``schedule.weighting``) and still works, with a
``FutureWarning`` (:func:`renamed_argument`).
"""

from __future__ import annotations

import functools
import inspect
import warnings
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from m3l.errors import ConfigError
from m3l.mtl.algorithms.context import StepContext
from m3l.training.optim import OptimizerFactory


#: where the deprecation warnings of :func:`renamed_argument` point past (m3l's multi-task code)
_MTL_DIR = Path(__file__).resolve().parent.parent


def _caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside ``m3l/mtl`` (the user's call), seen from
    :func:`deprecated_name`'s ``warnings.warn``."""
    frame, level = inspect.currentframe(), 0
    while frame is not None and Path(frame.f_code.co_filename).resolve().is_relative_to(_MTL_DIR):
        frame, level = frame.f_back, level + 1
    return max(level, 1)


def deprecated_name(old: str, new: str) -> None:
    """Warn (``FutureWarning``, pointing at the user's line) that ``old`` is now ``new``."""
    warnings.warn(
        f"{old} is deprecated and will be removed in a later release: write {new}",
        FutureWarning,
        stacklevel=_caller_stacklevel(),
    )


def renamed_argument(owner: str, new: str, new_value: Any, old: str, old_value: Any) -> Any:
    """The value of keyword ``new`` of ``owner`` given under ``new`` or its old name ``old``
    (``None``: not given). The old name warns (``FutureWarning``); both at once is a
    :class:`~m3l.errors.ConfigError` naming both."""
    if old_value is None:
        return new_value
    if new_value is not None:
        raise ConfigError(
            f"{owner} got both {new}= and {old}=: {old} is the old name of {new}.\n"
            f"  fix: pass only {new}=... (in a config: replace the key `{old}` with `{new}`)"
        )
    deprecated_name(f"{owner}({old}=...)", f"{owner}({new}=...)")
    return old_value


#: where a method or schedule keeps the arguments it was constructed with (see :func:`describe`)
SETTINGS_ATTR = "_m3l_settings"


def _remember_arguments(cls: type) -> None:
    """Wrap ``cls``'s own ``__init__`` so instances remember their constructor's arguments
    (defaults included); the outermost constructor of a ``super().__init__`` chain wins."""
    original = cls.__dict__.get("__init__")
    if original is None or getattr(original, "_m3l_remembers", False):
        return
    signature = inspect.signature(original)

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError:
            return
        bound.apply_defaults()
        settings: dict[str, Any] = {}
        for name, value in list(bound.arguments.items())[1:]:
            if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                settings.update(value)
            else:
                settings[name] = value
        object.__setattr__(self, SETTINGS_ATTR, settings)

    __init__._m3l_remembers = True  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[method-assign]


def describe(algorithm: Any) -> str:
    """A schedule or method with every constructor argument, defaults included, e.g.
    ``Sequential(method=EqualWeighting(), epochs_per_task=3, order=None)``: what the run's
    parameters record, so that two runs with different settings never look alike (the short
    ``repr``, ``Sequential(method=EqualWeighting)``, names the kind only)."""
    settings = getattr(algorithm, SETTINGS_ATTR, None)
    if settings is None:
        return repr(algorithm) if isinstance(algorithm, Schedule) else f"{type(algorithm).__name__}()"
    if isinstance(algorithm, Schedule):  # its method first, under one name (``weighting=`` was its old one)
        settings = {k: v for k, v in settings.items() if k not in ("method", "weighting")}
    parts = [f"{name}={_describe_value(value)}" for name, value in settings.items()]
    if isinstance(algorithm, Schedule):
        parts.insert(0, f"method={describe(algorithm.method)}")
    return f"{type(algorithm).__name__}({', '.join(parts)})"


def _describe_value(value: Any) -> str:
    if isinstance(value, (Method, Schedule)):
        return describe(value)
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_describe_value(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k!r}: {_describe_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, functools.partial):
        args = [*map(_describe_value, value.args), *(f"{k}={_describe_value(v)}" for k, v in value.keywords.items())]
        return f"{_describe_value(value.func)}({', '.join(args)})"
    if callable(value) and hasattr(value, "__qualname__"):  # a function: its name, not its address
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}".lstrip(".")
    return repr(value)


class Method(nn.Module):
    """A multi-task method: turns a joint step's per-objective losses into gradients.

    Subclasses implement :meth:`backward`; stateful ones also override the hooks. Learnable
    state is ``nn.Parameter`` of the method (saved in checkpoints, stepped by the optimizer of
    :meth:`make_optimizer`). :attr:`last_weights` (``[T]``, when the method has task weights)
    is logged as ``weights/<head>``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []
        self.register_buffer("last_weights", torch.zeros(0), persistent=False)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _remember_arguments(cls)

    def setup(self, names: Sequence[str]) -> None:
        """Called once with the objective names, in the order of the loss vector."""
        self.names = list(names)
        self.last_weights = torch.ones(len(self.names))

    def backward(self, losses: Tensor, context: StepContext) -> Tensor:
        """Write this step's gradients (shared parameters and heads); return the logged loss."""
        raise NotImplementedError

    def after_step(self, losses: Tensor, context: StepContext) -> None:
        """Called after the optimizers stepped, with this step's (detached) losses."""

    def on_train_epoch_end(self, mean_losses: Tensor, epoch: int) -> None:
        """Called at each training epoch's end with the epoch's mean loss per objective."""

    def make_optimizer(self, default: OptimizerFactory) -> torch.optim.Optimizer | None:
        """The optimizer of the method's own parameters (``None`` when it has none)."""
        params = [p for p in self.parameters() if p.requires_grad]
        return default(params) if params else None

    def extra_repr(self) -> str:
        return f"names={self.names}"


class Weighting(Method):
    """A method that combines the losses into one scalar and back-propagates it.

    Implement :meth:`weights` (the default :meth:`combine` is the weighted sum) or
    :meth:`combine`; the context's :meth:`~StepContext.gradients` gives per-objective
    gradients when the weights need them (GradNorm).
    """

    def weights(self, losses: Tensor, context: StepContext) -> Tensor:
        """The weight of each objective for this step, shape ``[T]``."""
        raise NotImplementedError

    def combine(self, losses: Tensor, context: StepContext) -> Tensor:
        """The scalar to back-propagate (default: weighted sum)."""
        weights = self.weights(losses, context)
        self.last_weights = weights.detach()
        return (weights * losses).sum()

    def backward(self, losses: Tensor, context: StepContext) -> Tensor:
        total = self.combine(losses, context)
        context.backward(total)
        return total


class GradientAggregator(Method):
    """A method that maps the Jacobian ``[T, P]`` of the losses on the shared parameters to
    their update ``[P]``; the heads get the gradient of the summed losses.

    Implement :meth:`aggregate`. The Jacobian it receives is averaged over DDP ranks and
    unscaled under AMP; set :attr:`stochastic` for random methods (the ranks then apply rank
    0's update, so they stay identical).
    """

    stochastic: bool = False

    def aggregate(self, jacobian: Tensor) -> Tensor:
        """The update direction ``[P]`` from the per-objective gradients ``[T, P]``."""
        raise NotImplementedError

    def backward(self, losses: Tensor, context: StepContext) -> Tensor:
        with torch.autocast(losses.device.type, enabled=False):  # aggregation math in fp32
            jacobian, heads = context.mean_over_ranks(*context.jacobian())
            if not context.all_finite(jacobian):  # fp16 overflow: let the scaler skip the step
                context.write_gradients(jacobian.sum(0), heads)
                return losses.sum()
            direction = self.aggregate(jacobian)
            if self.stochastic:
                direction = context.from_rank_zero(direction)
            context.write_gradients(direction, heads)
        return losses.sum()


class Schedule:
    """Which tasks a training step sees; a joint step's losses go through its :attr:`method`.

    Args:
        method: the :class:`Method` of the joint steps (default: :class:`EqualWeighting`).
        weighting: the old name of ``method`` (deprecated: warns).
    """

    #: whether the train loader depends on the epoch (Lightning's Trainer must reload it)
    reloads_each_epoch: bool = False

    #: keywords still accepted under their old name (warning), ``{old: new}``; the command line's
    #: error for an old override names the new key (:mod:`m3l.config.messages`)
    renamed_arguments: dict[str, str] = {"weighting": "method"}

    def __init__(self, method: Method | None = None, *, weighting: Method | None = None) -> None:
        method = renamed_argument(type(self).__name__, "method", method, "weighting", weighting)
        self.method: Method = method if method is not None else EqualWeighting()

    @property
    def weighting(self) -> Method:
        """Deprecated: the old name of :attr:`method`."""
        deprecated_name(f"{type(self).__name__}.weighting", f"{type(self).__name__}.method")
        return self.method

    @weighting.setter
    def weighting(self, method: Method) -> None:
        deprecated_name(f"{type(self).__name__}.weighting", f"{type(self).__name__}.method")
        self.method = method

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _remember_arguments(cls)

    def train_loader(self, loaders: Mapping[str, DataLoader], epoch: int) -> Any:
        """The train loader for ``epoch`` from the per-task loaders (each yields {task: batch})."""
        raise NotImplementedError

    def epochs_per_round(self, num_tasks: int) -> int:
        """Epochs for one pass of the whole schedule."""
        return 1

    def uses_method(self, present: Sequence[str], all_names: Sequence[str]) -> bool:
        """Whether a step holding objectives ``present`` goes through the method (else the
        step back-propagates the plain sum of its losses): by default, a step of every objective."""
        if type(self).uses_weighting is not Schedule.uses_weighting:  # a schedule written for the old name
            deprecated_name(f"{type(self).__name__}.uses_weighting", f"{type(self).__name__}.uses_method")
            return type(self).uses_weighting(self, present, all_names)
        return list(present) == list(all_names)

    def uses_weighting(self, present: Sequence[str], all_names: Sequence[str]) -> bool:
        """Deprecated: the old name of :meth:`uses_method` (a subclass's override is still called)."""
        deprecated_name(f"{type(self).__name__}.uses_weighting", f"{type(self).__name__}.uses_method")
        return self.uses_method(present, all_names)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(method={type(self.method).__name__})"


class EqualWeighting(Weighting):
    """Equal weighting (EW), the default of every schedule: every objective has weight 1 (task metadata ``weight`` already scales its loss).

    The usual baseline of the multi-task literature, e.g. the "Equal" rows in Vandenhende et al.,
    "Multi-Task Learning for Dense Prediction Tasks: A Survey", TPAMI 2021,
    https://arxiv.org/abs/2004.13379."""

    def weights(self, losses: Tensor, context: StepContext) -> Tensor:
        return torch.ones_like(losses)

    def combine(self, losses: Tensor, context: StepContext) -> Tensor:
        return losses.sum()
