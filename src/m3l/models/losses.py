"""Losses for restoration: all ``(pred, target) -> scalar`` modules.

``L1Loss`` and ``MSELoss`` are torch's own. :class:`CharbonnierLoss` is the smooth L1 of
Charbonnier et al. (1994) as used by LapSRN (Lai et al., CVPR 2017); :class:`PSNRLoss` is the
negative PSNR used by HINet (Chen et al., CVPRW 2021) and NAFNet (Chen et al., ECCV 2022,
https://arxiv.org/abs/2204.04676). :class:`WeightedSum` combines any of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import L1Loss, MSELoss

from m3l.errors import ConfigError, ShapeError

__all__ = ["L1Loss", "MSELoss", "CharbonnierLoss", "PSNRLoss", "WeightedSum"]


def _check_pair(name: str, pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ShapeError(
            f"{name}: pred and target must have the same shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}; make the net return the target's shape (crop a padded output back)."
        )


class CharbonnierLoss(nn.Module):
    """``mean(sqrt((pred - target)^2 + eps^2))``: L1 that is differentiable at zero."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair("CharbonnierLoss", pred, target)
        return torch.sqrt((pred - target).square() + self.eps**2).mean()


class PSNRLoss(nn.Module):
    """Negative PSNR averaged over the batch: ``10 * mean(log10(mse_i + eps))`` for range 1.

    Each image's MSE is taken separately, so images that are already good still push the
    loss (unlike a plain MSE over the batch), as in HINet and NAFNet.
    """

    def __init__(self, data_range: float = 1.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.data_range = data_range
        self.eps = eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair("PSNRLoss", pred, target)
        mse = (pred - target).square().flatten(1).mean(dim=1)
        return 10.0 * torch.log10(mse + self.eps).mean() - 20.0 * math.log10(self.data_range)


class WeightedSum(nn.Module):
    """``sum_i w_i * loss_i(pred, target)``.

    Args:
        losses: a dict ``name -> loss`` or a list of losses.
        weights: a dict ``name -> weight`` (missing names weigh 1), a list the length of
            ``losses``, or None (all 1).

    The last value of each term is kept in ``self.last_terms`` (detached) for logging.
    """

    def __init__(
        self,
        losses: Mapping[str, nn.Module] | Sequence[nn.Module],
        weights: Mapping[str, float] | Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(losses, Mapping):
            named = dict(losses)
        else:
            named = {str(i): loss for i, loss in enumerate(losses)}
        if not named:
            raise ConfigError("WeightedSum needs at least one loss, got none.")
        if weights is None:
            w = {k: 1.0 for k in named}
        elif isinstance(weights, Mapping):
            unknown = set(weights) - set(named)
            if unknown:
                raise ConfigError(f"WeightedSum: weights name {sorted(unknown)} but the losses are {sorted(named)}.")
            w = {k: float(weights.get(k, 1.0)) for k in named}
        else:
            weights = list(weights)
            if len(weights) != len(named):
                raise ConfigError(f"WeightedSum: expected {len(named)} weights (one per loss), got {len(weights)}.")
            w = {k: float(v) for k, v in zip(named, weights)}
        self.losses = nn.ModuleDict(named)
        self.weights = w
        self.last_terms: dict[str, torch.Tensor] = {}

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = pred.new_zeros(())
        terms = {}
        for name, loss in self.losses.items():
            value = loss(pred, target)
            terms[name] = value.detach()
            total = total + self.weights[name] * value
        self.last_terms = terms
        return total
