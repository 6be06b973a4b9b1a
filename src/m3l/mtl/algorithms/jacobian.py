"""Gradient aggregators backed by torchjd: the shared machinery of every gradient method.

Each method module (``pcgrad.py``, ``mgda.py``, ...) only names its paper and builds its
:mod:`torchjd.aggregation` aggregator; this module adds what a training loop needs around it:

* ``wrt="parameters"`` (default): the Jacobian ``[T, P]`` of the losses on the shared
  parameters is aggregated into the shared parameters' update.
* ``wrt="representation"``: the weights are computed from the Gramian ``[T, T]`` of the
  gradients on the backbone's output (the shared representation, as MGDA-UB in Sener and
  Koltun, NeurIPS 2018) and the shared parameters receive the gradient of ``sum_t w_t L_t``.
  Only methods whose update is a weighted sum of the task gradients allow it, and methods
  with their own rule on the per-sample gradients of the representation (GradDrop, as Chen
  et al. (2020) and LibMTL apply it: :meth:`representation_gradient`), whose result is
  back-propagated through the backbone. The others raise
  :class:`RepresentationNotSupportedError`.
* ``update_every=k``: the weights are recomputed every ``k`` steps and reused in between,
  where a step costs one backward pass like equal weighting (Navon et al., "Multi-Task
  Learning as a Bargaining Game", ICML 2022, Sec. 5.3). Weighted methods only.

:meth:`JacobianAggregator.backward` picks among these paths; the gradients come from the step's
:class:`~m3l.mtl.algorithms.context.StepContext` (averaged over DDP ranks, unscaled under a
GradScaler), so the module only calls ``backward(losses, context)``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from m3l.errors import ConfigError, M3LError, MissingDependencyError
from m3l.mtl.algorithms.base import GradientAggregator
from m3l.mtl.algorithms.context import StepContext
from m3l.mtl.errors import RepresentationNotSupportedError

log = logging.getLogger(__name__)

Wrt = Literal["parameters", "representation"]


def _require_torchjd() -> None:
    try:
        import torchjd.aggregation  # noqa: F401
    except ImportError as err:  # pragma: no cover - torchjd is a dependency of the mtl extra
        raise MissingDependencyError(
            "gradient aggregators need torchjd.\n  fix: pip install 'm3l[mtl]'  (or pip install torchjd)"
        ) from err


def gramian_square_root(gramian: Tensor) -> Tensor:
    """A ``[T, T]`` matrix ``M`` with ``M @ M.T == gramian`` (symmetric PSD square root).

    Lets a weighting defined on the Jacobian, but depending on it only through its Gramian
    (Nash-MTL), run from a Gramian, e.g. one summed over DDP ranks.
    """
    values, vectors = torch.linalg.eigh(gramian.double())
    root = vectors * values.clamp_min(0).sqrt()
    return (root @ vectors.T).to(gramian.dtype)


class JacobianAggregator(GradientAggregator):
    """A :class:`GradientAggregator` computing its update with a torchjd aggregator.

    Args:
        wrt: ``"parameters"`` or ``"representation"`` (see the module docstring).
        update_every: recompute the weights every this many steps, reuse them in between.

    Subclasses implement :meth:`build` (the torchjd aggregator for ``T`` objectives) and set
    :attr:`weighted` (the update is ``w @ J``), :attr:`gramian_only` (the weights depend on
    ``J`` only through ``J @ J.T``), :attr:`representation_rule` (it implements
    :meth:`representation_gradient`, its own rule on the representation's per-sample
    gradients) and :attr:`stochastic` (random: DDP ranks broadcast rank 0's update so they stay identical).
    """

    weighted: bool = True
    gramian_only: bool = True
    representation_rule: bool = False
    #: the extra a method needs beyond torch (named in the error when it is missing)
    extra: str | None = None

    def __init__(self, wrt: Wrt = "parameters", update_every: int = 1) -> None:
        super().__init__()
        _require_torchjd()
        if wrt not in ("parameters", "representation"):
            raise ConfigError(f"{type(self).__name__}: wrt must be 'parameters' or 'representation'; got {wrt!r}")
        if int(update_every) < 1:
            raise ConfigError(f"{type(self).__name__}: update_every must be >= 1; got {update_every!r}")
        if wrt == "representation" and not ((self.weighted and self.gramian_only) or self.representation_rule):
            raise RepresentationNotSupportedError(
                f"{type(self).__name__} cannot use gradients on the shared representation: its update "
                "is not a weighted sum of the task gradients and it has no rule of its own for the "
                "representation, so it defines no update of the shared parameters from there.\n"
                f"  fix: {type(self).__name__}(wrt='parameters'), or pick a weighted method "
                "(MGDA, IMTLG, CAGrad, NashMTL, PCGrad, UPGrad, DualProj, AlignedMTL, GradVac) or GradDrop"
            )
        if int(update_every) > 1 and not self.weighted:
            raise ConfigError(
                f"{type(self).__name__}: update_every={update_every} reuses task weights between "
                "recomputations, but this method's update is not a weighted sum of the task "
                f"gradients.\n  fix: {type(self).__name__}(update_every=1)"
            )
        self.wrt: Wrt = wrt
        self.update_every = int(update_every)
        self.aggregator: torch.nn.Module | None = None
        self.register_buffer("cached_weights", torch.zeros(0), persistent=False)
        self._calls = 0

    # ------------------------------------------------------------------ construction
    def build(self, num_objectives: int) -> torch.nn.Module:
        """The torchjd aggregator for ``num_objectives`` rows."""
        raise NotImplementedError

    def setup(self, names: Sequence[str]) -> None:
        super().setup(names)
        try:
            self.aggregator = self.build(len(self.names))
        except ImportError as err:
            extra = f"torchjd[{self.extra}]" if self.extra else "torchjd"
            raise MissingDependencyError(
                f"{type(self).__name__} needs optional solvers that are not installed ({err}).\n"
                f"  fix: pip install '{extra}'   (or pip install 'm3l[mtl]')"
            ) from err
        self.cached_weights = torch.zeros(0)
        self._calls = 0

    def _aggregator(self) -> torch.nn.Module:
        if self.aggregator is None:
            raise M3LError(f"{type(self).__name__}: call setup(names) before aggregating")
        return self.aggregator

    # ------------------------------------------------------------------ weights
    def needs_recompute(self) -> bool:
        """Whether this step recomputes the weights (else :attr:`cached_weights` are reused)."""
        return self.update_every == 1 or self.cached_weights.numel() == 0 or self._calls % self.update_every == 0

    def reuse(self) -> Tensor:
        """The cached weights, counting one step."""
        self._calls += 1
        self.last_weights = self.cached_weights
        return self.cached_weights

    def _remember(self, weights: Tensor) -> Tensor:
        self._calls += 1
        weights = weights.detach()
        self.cached_weights = weights
        self.last_weights = weights
        return weights

    def weights_from_gramian(self, gramian: Tensor) -> Tensor:
        """The task weights ``[T]`` from the Gramian ``J @ J.T`` (weighted methods only)."""
        agg = self._aggregator()
        gramian = gramian.float()
        if hasattr(agg, "gramian_weighting"):
            weights = agg.gramian_weighting(gramian)
        else:  # a Jacobian weighting that only reads the Gramian (Nash-MTL)
            weights = agg.weighting(gramian_square_root(gramian))
        return self._remember(weights.to(gramian.dtype))

    def aggregate(self, jacobian: Tensor) -> Tensor:
        """The update ``[P]`` from the (rank-averaged, unscaled) Jacobian ``[T, P]``."""
        agg = self._aggregator()
        dtype, jacobian = jacobian.dtype, jacobian.float()  # solvers need fp32/fp64 (bf16 Jacobians)
        if self.weighted:
            weights = agg.weighting(jacobian)
            return (self._remember(weights.to(jacobian.dtype)) @ jacobian).to(dtype)
        self._calls += 1
        self.last_weights = torch.zeros(0, device=jacobian.device)
        return agg(jacobian).to(dtype)

    # ------------------------------------------------------------------ the step
    def backward(self, losses: Tensor, context: StepContext) -> Tensor:
        """Reuse the cached weights (one backward pass), or aggregate on the representation,
        or on the parameters' Jacobian (:meth:`GradientAggregator.backward`)."""
        with torch.autocast(losses.device.type, enabled=False):  # aggregation math in fp32
            if not self.needs_recompute():
                context.write_gradients(*context.mean_over_ranks(*context.weighted_gradients(self.reuse())))
                return losses.sum()
            if self.wrt == "representation":
                self._representation_backward(context)
                return losses.sum()
        return super().backward(losses, context)

    def _representation_backward(self, context: StepContext) -> None:
        """MGDA-UB style: weights from the Gramian of the gradients on the backbone's output;
        methods with a rule of their own (GradDrop) act on those per-sample gradients."""
        rep = context.representation(type(self).__name__)
        jacobian, heads = context.jacobian([rep], retain_graph=True)
        if self.representation_rule:  # GradDrop: each rank drops on its own samples
            rep_grad = self.representation_gradient(jacobian.view(len(context.names), *rep.shape), rep)
        else:
            # the batch is split over ranks: the full Gramian is the sum, each loss a mean
            gramian = context.sum_over_ranks(jacobian @ jacobian.T) / context.world_size**2
            if context.all_finite(gramian):
                weights = self.weights_from_gramian(gramian)
            else:  # fp16 overflow: the scaler sees it and skips the step
                weights = torch.ones_like(gramian[0])
            rep_grad = weights.to(jacobian) @ jacobian
        shared = context.representation_backward(rep, rep_grad.view_as(rep).to(rep.dtype))
        context.write_gradients(*context.mean_over_ranks(shared, heads))

    def representation_gradient(self, per_sample: Tensor, representation: Tensor) -> Tensor:
        """The gradient ``[B, ...]`` of the representation from the objectives' per-sample
        gradients ``[T, B, ...]`` (methods with :attr:`representation_rule` only)."""
        raise NotImplementedError(f"{type(self).__name__} has no rule on the representation")

    def extra_repr(self) -> str:
        return f"wrt={self.wrt!r}, update_every={self.update_every}"


__all__ = ["JacobianAggregator", "RepresentationNotSupportedError", "gramian_square_root"]
