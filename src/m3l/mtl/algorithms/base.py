"""Interfaces of multi-task learning algorithms: schedules and loss weightings.

A :class:`Schedule` decides which tasks' data a training step sees (it builds the combined
train loader from the per-task loaders) and how their losses are combined. A
:class:`Weighting` turns the per-objective losses of a step into the scalar that is
back-propagated; it may ask the :class:`StepContext` for per-objective gradients on the
shared parameters (GradNorm does). A :class:`GradientAggregator` instead receives the
Jacobian of the losses with respect to the shared parameters (one row per objective) and
returns the update direction; gradient methods such as PCGrad or MGDA plug in there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from m3l.optim import OptimizerFactory



@dataclass
class StepContext:
    """What a weighting may read or request during a training step."""

    step: int
    epoch: int
    names: list[str]
    shared_parameters: list[nn.Parameter] = field(default_factory=list)
    last_shared_parameters: list[nn.Parameter] = field(default_factory=list)
    features: Tensor | None = None
    #: the step's losses ``[T]`` and the per-objective scalars they were stacked from
    losses: Tensor | None = None
    objective_losses: Sequence[Tensor] = ()

    def gradients(self, losses: Tensor | Sequence[Tensor], parameters: Sequence[nn.Parameter] | None = None) -> Tensor:
        """Per-objective gradients ``[T, P]`` of ``losses`` on ``parameters`` (shared ones).

        The graph is retained so the caller can still back-propagate the combined loss. Give
        the per-objective scalars (a list), or the step's stacked losses: differentiating an
        element of a stacked tensor sends zero gradients through every other objective's
        graph (autograd does not skip zeros), T times the work when each task runs its own
        backbone pass, so the stacked losses are replaced by the scalars they came from.
        """
        params = list(parameters) if parameters is not None else self.shared_parameters
        if losses is self.losses and len(self.objective_losses) == len(losses):
            losses = self.objective_losses
        rows = []
        for loss in losses:
            grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            rows.append(
                torch.cat(
                    [
                        (g if g is not None else torch.zeros_like(p)).reshape(-1)
                        for g, p in zip(grads, params)
                    ]
                )
            )
        return torch.stack(rows)


class Weighting(nn.Module):
    """Combines the per-objective losses of a joint step into one scalar.

    Subclasses implement :meth:`weights`; stateful ones also override the hooks. Learnable
    weights are ``nn.Parameter`` of the weighting (saved in checkpoints).
    """

    #: whether :meth:`combine` asks the context for per-objective gradients
    needs_gradients: bool = False

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []
        self.register_buffer("last_weights", torch.zeros(0), persistent=False)

    def setup(self, names: Sequence[str]) -> None:
        """Called once with the objective names, in the order of the loss vector."""
        self.names = list(names)
        self.last_weights = torch.ones(len(self.names))

    def weights(self, losses: Tensor, context: StepContext) -> Tensor:
        """The weight of each objective for this step, shape ``[T]``."""
        raise NotImplementedError

    def combine(self, losses: Tensor, context: StepContext) -> Tensor:
        """The scalar to back-propagate (default: weighted sum)."""
        weights = self.weights(losses, context)
        self.last_weights = weights.detach()
        return (weights * losses).sum()

    def after_step(self, losses: Tensor, context: StepContext) -> None:
        """Called after the optimizers stepped, with this step's (detached) losses."""

    def on_train_epoch_end(self, mean_losses: Tensor, epoch: int) -> None:
        """Called at each training epoch's end with the epoch's mean loss per objective."""

    def make_optimizer(self, default: OptimizerFactory) -> torch.optim.Optimizer | None:
        """The optimizer of the weighting's own parameters (``None`` when it has none)."""
        params = [p for p in self.parameters() if p.requires_grad]
        return default(params) if params else None

    def extra_repr(self) -> str:
        return f"names={self.names}"


class GradientAggregator(nn.Module):
    """Maps the Jacobian ``[T, P]`` of the losses on the shared parameters to an update.

    The module back-propagates the plain sum of losses into the heads and writes
    ``aggregate(jacobian)`` into the shared parameters' gradients. Subclasses implement
    :meth:`aggregate`; DDP-correct variants come with a later release.
    """

    needs_gradients: bool = True

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []
        self.register_buffer("last_weights", torch.zeros(0), persistent=False)

    def setup(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.last_weights = torch.ones(len(self.names))

    def aggregate(self, jacobian: Tensor) -> Tensor:
        """The update direction ``[P]`` from the per-objective gradients ``[T, P]``."""
        raise NotImplementedError

    def after_step(self, losses: Tensor, context: StepContext) -> None:
        """Called after the optimizers stepped."""

    def on_train_epoch_end(self, mean_losses: Tensor, epoch: int) -> None:
        """Called at each training epoch's end."""

    def make_optimizer(self, default: OptimizerFactory) -> torch.optim.Optimizer | None:
        return None


class Schedule:
    """Which tasks a training step sees; combines losses with a weighting when joint."""

    #: whether the train loader depends on the epoch (the trainer must reload it)
    reloads_each_epoch: bool = False

    def __init__(self, weighting: Weighting | GradientAggregator | None = None) -> None:
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
