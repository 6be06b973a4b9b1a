"""The interface of multi-task methods, and of schedules.

A :class:`Method` is one strategy the module calls once per joint step:
``backward(losses, context)`` leaves the gradients of the shared parameters and of the heads
in their ``.grad`` and returns the scalar to log. It may weight the losses (a
:class:`Weighting`: implement ``weights`` or ``combine``), aggregate the Jacobian of the
losses (a :class:`GradientAggregator`: implement ``aggregate``), or do anything else with the
gradient services of the :class:`~m3l.mtl.algorithms.context.StepContext` (per-objective
gradients, the Jacobian on the parameters or on the shared representation, DDP means, AMP
loss scaling), which is the only place that knows how gradients are made. A :class:`Schedule`
decides which tasks' data a training step sees and builds the combined train loader.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from m3l.mtl.algorithms.context import StepContext
from m3l.optim import OptimizerFactory


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
    """Which tasks a training step sees; combines losses with a weighting when joint."""

    #: whether the train loader depends on the epoch (the trainer must reload it)
    reloads_each_epoch: bool = False

    def __init__(self, weighting: Method | None = None) -> None:
        self.weighting = weighting if weighting is not None else EqualWeighting()

    def train_loader(self, loaders: Mapping[str, DataLoader], epoch: int) -> Any:
        """The train loader for ``epoch`` from the per-task loaders (each yields {task: batch})."""
        raise NotImplementedError

    def epochs_per_round(self, num_tasks: int) -> int:
        """Epochs for one pass of the whole schedule."""
        return 1

    def uses_weighting(self, present: Sequence[str], all_names: Sequence[str]) -> bool:
        """Whether a step holding objectives ``present`` goes through the weighting."""
        return list(present) == list(all_names)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weighting={type(self.weighting).__name__})"


class EqualWeighting(Weighting):
    """Equal weighting (EW), the default of every schedule: every objective has weight 1 (task metadata ``weight`` already scales its loss)."""

    def weights(self, losses: Tensor, context: StepContext) -> Tensor:
        return torch.ones_like(losses)

    def combine(self, losses: Tensor, context: StepContext) -> Tensor:
        return losses.sum()
