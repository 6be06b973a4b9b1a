"""What a multi-task method sees, and may ask for, during one training step.

:class:`StepContext` is the one place that knows how gradients are made in a step: Lightning's
backward for a scalar (AMP loss scaling, DDP's reducer), per-objective gradients, the
Jacobian of the objectives on the shared parameters or on the shared representation, the mean
over DDP ranks, and writing an update into ``.grad``. Under an fp16 ``GradScaler`` every value
it hands out is unscaled and every gradient it writes is scaled again (the optimizer step
unscales it): a method never sees the loss scale. Methods (:mod:`m3l.mtl.algorithms.base`)
call these services from their ``backward(losses, context)``; the module builds one context
per step (:meth:`~m3l.mtl.module.MultiTaskModule.step_context`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from m3l.mtl.errors import RepresentationNotSupportedError


@dataclass(eq=False)
class StepContext:
    """One training step's parameters, losses and gradient services.

    Attributes:
        step, epoch: the module's training step and epoch.
        names: the objectives of this step, in the order of the loss vector.
        shared_parameters: the trainable backbone parameters (empty when it is frozen).
        last_shared_parameters: those of the backbone's last layer with parameters (GradNorm).
        head_parameters: each objective's trainable head parameters, every objective of the
            module (a head's gradient is written even when its objective sits out a step).
        features: this step's backbone output per task (the shared representation).
        losses: the stacked losses ``[T]``; objective_losses: the scalars they came from.
        backward_fn: back-propagates a scalar as Lightning's Trainer does (``manual_backward``).
        scaler: the fp16 ``GradScaler`` of Lightning's Trainer, if any.
        world_size: DDP processes (1 without DDP).
    """

    step: int
    epoch: int
    names: list[str]
    shared_parameters: list[nn.Parameter] = field(default_factory=list)
    last_shared_parameters: list[nn.Parameter] = field(default_factory=list)
    head_parameters: Mapping[str, list[nn.Parameter]] = field(default_factory=dict)
    features: Mapping[str, Any] = field(default_factory=dict)
    losses: Tensor | None = None
    objective_losses: Sequence[Tensor] = ()
    backward_fn: Callable[[Tensor], Any] | None = None
    scaler: Any = None
    world_size: int = 1

    # ------------------------------------------------------------------ plain backward
    def backward(self, total: Tensor) -> None:
        """Back-propagate the scalar ``total`` into every parameter (scaled, DDP-reduced)."""
        if self.backward_fn is not None:
            self.backward_fn(total)
        else:
            total.backward()

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
            rows.append(_flatten(grads, params))
        return torch.stack(rows)

    # ------------------------------------------------------------------ loss scale (AMP)
    def _scale(self) -> Tensor | None:
        """The GradScaler's current scale as a tensor (no host sync), or ``None``."""
        if self.scaler is None:
            return None
        device = self.losses.device if self.losses is not None else None
        return self.scaler.scale(torch.ones((), device=device))

    def _scaled_parts(self) -> list[Tensor]:
        assert self.losses is not None
        parts = list(self.objective_losses) if len(self.objective_losses) == len(self.losses) else list(self.losses)
        return [self.scaler.scale(p) for p in parts] if self.scaler is not None else parts

    def all_finite(self, tensor: Tensor) -> bool:
        """Whether ``tensor`` is finite; always ``True`` without a GradScaler (no host sync):
        under fp16 an overflow must reach the scaler, which then skips the step."""
        return self.scaler is None or bool(torch.isfinite(tensor).all())

    # ------------------------------------------------------------------ Jacobians
    @property
    def all_head_parameters(self) -> list[nn.Parameter]:
        seen: dict[int, nn.Parameter] = {}
        for params in self.head_parameters.values():
            for p in params:
                seen.setdefault(id(p), p)
        return list(seen.values())

    def jacobian(self, inputs: Sequence[Tensor] | None = None, retain_graph: bool = False) -> tuple[Tensor, Tensor]:
        """The Jacobian ``[T, N]`` of the objectives on ``inputs`` (default: the shared
        parameters) and the heads' gradient of the summed losses ``[H]``, unscaled, on this
        process (see :meth:`mean_over_ranks`).

        One backward pass per objective, on ``inputs`` and that objective's own head only (an
        objective's loss reaches no other head), written straight into preallocated buffers.
        """
        inputs = list(inputs) if inputs is not None else self.shared_parameters
        scaled = self._scaled_parts()
        heads = self.all_head_parameters
        device = scaled[0].device
        dtype = inputs[0].dtype if inputs else scaled[0].dtype
        jacobian = torch.zeros(
            len(self.names),
            _numel(inputs),
            device=device,
            dtype=torch.float32 if dtype != torch.float64 else dtype,
        )
        head_grad = torch.zeros(_numel(heads), device=device, dtype=heads[0].dtype if heads else dtype)
        offsets, offset = {}, 0
        for p in heads:
            offsets[id(p)] = offset
            offset += p.numel()
        for t, name in enumerate(self.names):
            own = [p for p in self.head_parameters.get(name, []) if id(p) in offsets]
            if not inputs and not own:
                continue
            grads = torch.autograd.grad(
                scaled[t], inputs + own, retain_graph=retain_graph or t < len(self.names) - 1, allow_unused=True
            )
            start = 0
            for x, g in zip(inputs, grads[: len(inputs)]):
                if g is not None:
                    jacobian[t, start : start + x.numel()] = g.reshape(-1)
                start += x.numel()
            for p, g in zip(own, grads[len(inputs) :]):
                if g is not None:
                    head_grad[offsets[id(p)] : offsets[id(p)] + p.numel()] += g.reshape(-1)
        scale = self._scale()
        if scale is not None:
            inverse = scale.double().reciprocal().float()
            jacobian, head_grad = jacobian * inverse, head_grad * inverse
        return jacobian, head_grad

    def weighted_gradients(self, weights: Tensor) -> tuple[Tensor, Tensor]:
        """The gradient of ``sum_t w_t L_t`` on the shared parameters and of ``sum_t L_t`` on the
        heads (unscaled, this process): one backward pass each, as equal weighting costs."""
        scaled = torch.stack(self._scaled_parts())
        heads = self.all_head_parameters
        shared = _flat_grad((weights.to(scaled) * scaled).sum(), self.shared_parameters, retain_graph=bool(heads))
        head_grad = _flat_grad(scaled.sum(), heads)
        scale = self._scale()
        if scale is not None:
            inverse = scale.double().reciprocal().float()
            shared, head_grad = shared * inverse, head_grad * inverse
        return shared, head_grad

    def representation(self, method: str) -> Tensor:
        """The one backbone output every objective of this step reads (the shared representation)."""
        if len(self.features) != 1 or not isinstance(next(iter(self.features.values())), Tensor):
            found = {k: type(v).__name__ for k, v in self.features.items()}
            raise RepresentationNotSupportedError(
                f"{method}(wrt='representation') needs one backbone pass shared by every "
                f"objective, returning one tensor; this step ran the backbone per task with outputs {found}.\n"
                "  fix: put the objectives in one MultiHeadTask (one dataset, several heads), or use "
                f"{method}(wrt='parameters') for tasks with their own datasets"
            )
        return next(iter(self.features.values()))

    def representation_backward(self, representation: Tensor, gradient: Tensor) -> Tensor:
        """The shared parameters' gradient (unscaled) from the (unscaled) ``gradient`` on the
        representation; under a GradScaler the backward pass runs scaled (fp16 activations)."""
        shared = self.shared_parameters
        scale = self._scale()
        if scale is not None:
            gradient = gradient * scale.to(gradient.dtype)
        grads = torch.autograd.grad(representation, shared, grad_outputs=gradient, allow_unused=True)
        flat = _flatten(grads, shared)
        return flat * scale.double().reciprocal().float() if scale is not None else flat

    # ------------------------------------------------------------------ DDP
    def mean_over_ranks(self, *tensors: Tensor | None) -> tuple[Any, ...]:
        """The mean over DDP ranks of each tensor, in one all-reduce (identity on one process)."""
        if self.world_size == 1:
            return tensors
        present = [t for t in tensors if t is not None]
        flat = torch.cat([t.reshape(-1).float() for t in present])
        torch.distributed.all_reduce(flat)
        flat = flat / self.world_size
        out, offset = [], 0
        for t in tensors:
            if t is None:
                out.append(None)
                continue
            out.append(flat[offset : offset + t.numel()].view_as(t).to(t.dtype))
            offset += t.numel()
        return tuple(out)

    def sum_over_ranks(self, tensor: Tensor) -> Tensor:
        if self.world_size > 1:
            torch.distributed.all_reduce(tensor)
        return tensor

    def from_rank_zero(self, tensor: Tensor) -> Tensor:
        """Rank 0's ``tensor`` on every rank (random methods: the ranks must stay identical)."""
        if self.world_size > 1:
            torch.distributed.broadcast(tensor, src=0)
        return tensor

    # ------------------------------------------------------------------ the update
    def write_gradients(self, shared: Tensor | None, heads: Tensor | None) -> None:
        """Write the (unscaled) update of the shared parameters and the heads into ``.grad``
        (scaled again under a GradScaler: the optimizer step unscales it)."""
        scale = self._scale()
        if scale is not None:
            shared = shared * scale if shared is not None else None
            heads = heads * scale if heads is not None else None
        if shared is not None:
            _write_grads(self.shared_parameters, shared)
        if heads is not None:
            _write_grads(self.all_head_parameters, heads)


def last_parameterized_module(module: nn.Module) -> nn.Module | None:
    """The last submodule (registration order) holding parameters of its own."""
    last = None
    for sub in module.modules():
        if any(p.requires_grad for p in sub.parameters(recurse=False)):
            last = sub
    return last


def world_size() -> int:
    """The number of DDP processes (1 without DDP)."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _numel(params: Sequence[Tensor]) -> int:
    return sum(p.numel() for p in params)


def _flatten(grads: Sequence[Tensor | None], params: Sequence[Tensor]) -> Tensor:
    parts = [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)]
    return torch.cat(parts) if parts else torch.zeros(0)


def _flat_grad(output: Tensor, params: Sequence[Tensor], retain_graph: bool = False) -> Tensor:
    """The gradient of ``output`` on ``params`` as one flat vector (zeros where unused)."""
    if not params:
        return torch.zeros(0, device=output.device)
    grads = torch.autograd.grad(output, list(params), retain_graph=retain_graph, allow_unused=True)
    return _flatten(grads, params)


def _write_grads(params: Sequence[nn.Parameter], flat: Tensor) -> None:
    """Each parameter's ``.grad`` becomes its slice of ``flat`` (a view: ``flat`` is a fresh
    buffer no one else holds, so no copy; the slices are disjoint)."""
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).to(p.dtype).detach()
        offset += n


__all__ = ["StepContext", "last_parameterized_module", "world_size"]
