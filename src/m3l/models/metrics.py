"""Image quality metrics with the restoration literature's options.

Every function takes ``pred`` and ``target`` of shape ``(B, C, H, W)`` (or ``(C, H, W)``)
and the same options:

- ``data_range``: the value of white (1.0 for [0, 1] images, 255 for 8-bit values);
- ``crop_border``: pixels removed from each border before measuring (as in SR papers);
- ``y_channel``: measure on the BT.601 luma of RGB inputs (:func:`rgb_to_y`), as JPEG and
  SR papers do; a no-op for gray inputs;
- ``reduction``: ``"mean"`` over the batch, or ``"none"`` for one value per image.

PSNR and SSIM are torchmetrics' (SSIM: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, as
in Wang et al., IEEE TIP 2004). PSNR-B is implemented here after Yim & Bovik (2011).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from m3l.errors import ConfigError, ShapeError

Reduction = Literal["mean", "none"]

__all__ = ["rgb_to_y", "psnr", "ssim", "psnrb", "blocking_effect_factor"]

# ITU-R BT.601 for [0, 1] RGB -> Y in [16, 235] / 255 (MATLAB's rgb2ycbcr). kornia's
# rgb_to_ycbcr is the full-range (JPEG) variant, Y in [0, 1]: not what papers report.
_BT601_Y = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)
_BT601_OFFSET = 16.0 / 255.0


def rgb_to_y(x: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Luma ``Y`` of RGB ``(..., 3, H, W)`` as ``(..., 1, H, W)``; white maps to 235/255 * range."""
    if x.dim() < 3 or x.shape[-3] != 3:
        raise ShapeError(
            f"rgb_to_y expects RGB images (..., 3, H, W), got {tuple(x.shape)}; gray images are already Y."
        )
    r, g, b = x.unbind(dim=-3)
    y = _BT601_Y[0] * r + _BT601_Y[1] * g + _BT601_Y[2] * b + _BT601_OFFSET * data_range
    return y.unsqueeze(-3)


def _prepare(
    name: str,
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float,
    crop_border: int,
    y_channel: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != target.shape:
        raise ShapeError(
            f"{name}: pred and target must have the same shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}; crop or pad the prediction to the target's size."
        )
    if pred.dim() == 3:
        pred, target = pred.unsqueeze(0), target.unsqueeze(0)
    if pred.dim() != 4:
        raise ShapeError(f"{name} expects images (B, C, H, W) or (C, H, W), got {tuple(pred.shape)}.")
    if crop_border < 0:
        raise ConfigError(f"{name}: crop_border must be >= 0, got {crop_border}.")
    if crop_border:
        h, w = pred.shape[-2:]
        if 2 * crop_border >= min(h, w):
            raise ShapeError(
                f"{name}: crop_border={crop_border} leaves nothing of a {h}x{w} image; lower crop_border "
                f"below {min(h, w) // 2}."
            )
        pred = pred[..., crop_border:-crop_border, crop_border:-crop_border]
        target = target[..., crop_border:-crop_border, crop_border:-crop_border]
    pred, target = pred.double(), target.double()
    if y_channel and pred.shape[1] == 3:
        pred, target = rgb_to_y(pred, data_range), rgb_to_y(target, data_range)
    elif y_channel and pred.shape[1] != 1:
        raise ShapeError(
            f"{name}: y_channel needs RGB or gray inputs, got {pred.shape[1]} channels; set y_channel=false."
        )
    return pred, target


def _reduce(values: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "none":
        return values
    raise ConfigError(f"reduction must be 'mean' or 'none', got {reduction!r}.")


def _psnr_from_mse(mse: torch.Tensor, data_range: float) -> torch.Tensor:
    return 10.0 * torch.log10(data_range**2 / mse)


def psnr(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    crop_border: int = 0,
    y_channel: bool = False,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, per image then reduced (inf for identical images)."""
    p, t = _prepare("psnr", pred, target, data_range, crop_border, y_channel)
    values = peak_signal_noise_ratio(p, t, data_range=data_range, reduction="none", dim=(1, 2, 3))
    return _reduce(values.to(pred.dtype), reduction)


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    crop_border: int = 0,
    y_channel: bool = False,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004), mean over channels, per image then reduced."""
    p, t = _prepare("ssim", pred, target, data_range, crop_border, y_channel)
    if min(p.shape[-2:]) < 11:
        raise ShapeError(
            f"ssim needs images of at least 11x11 (its window), got {tuple(p.shape[-2:])}; use larger crops."
        )
    values = structural_similarity_index_measure(p, t, data_range=data_range, reduction="none")
    return _reduce(values.to(pred.dtype), reduction)


def _pair_sq_diffs(x: torch.Tensor, dim: int, block: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Sums of squared differences of neighbours along ``dim`` across / not across block edges."""
    n = x.shape[dim]
    d = torch.diff(x, dim=dim).square()  # pair (i, i+1) at index i
    edge = torch.zeros(n - 1, dtype=torch.bool, device=x.device)
    edge[block - 1 :: block] = True
    shape = [1] * x.dim()
    shape[dim] = n - 1
    edge = edge.view(shape)
    others = n - 1 - int(edge.sum())
    per_line = x.numel() // (x.shape[0] * n)  # pairs per position along dim, per image
    on = (d * edge).flatten(1).sum(dim=1)
    off = (d * ~edge).flatten(1).sum(dim=1)
    return on, off, int(edge.sum()) * per_line, others * per_line


def blocking_effect_factor(x: torch.Tensor, block: int = 8) -> torch.Tensor:
    """Blocking effect factor BEF of each image of ``(B, C, H, W)`` (Yim & Bovik 2011, eq. 6-7).

    ``BEF = eta * max(D_B - D_Bc, 0)``, where ``D_B`` is the mean squared difference of
    neighbouring pixels across block edges, ``D_Bc`` that of the other neighbours, and
    ``eta = log2(block) / log2(min(H, W))``.
    """
    h, w = x.shape[-2:]
    on_h, off_h, n_on_h, n_off_h = _pair_sq_diffs(x, -1, block)
    on_v, off_v, n_on_v, n_off_v = _pair_sq_diffs(x, -2, block)
    n_on, n_off = n_on_h + n_on_v, n_off_h + n_off_v
    if n_on == 0 or n_off == 0:
        return x.new_zeros(x.shape[0])
    d_b = (on_h + on_v) / n_on
    d_bc = (off_h + off_v) / n_off
    eta = math.log2(block) / math.log2(min(h, w))
    return eta * (d_b - d_bc).clamp(min=0)


def psnrb(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    crop_border: int = 0,
    y_channel: bool = False,
    reduction: Reduction = "mean",
    block: int = 8,
) -> torch.Tensor:
    """PSNR-B (Yim & Bovik, "Quality Assessment of Deblocked Images", IEEE TIP 20(1), 2011).

    PSNR with the MSE increased by the blocking effect factor of ``pred``:
    ``10 log10(range^2 / (MSE + BEF(pred)))``. Block edges are on the ``block``-pixel JPEG
    grid counted from the top-left corner (crop_border shifts that grid; use multiples of 8).
    """
    p, t = _prepare("psnrb", pred, target, data_range, crop_border, y_channel)
    mse = (p - t).square().flatten(1).mean(dim=1)
    values = _psnr_from_mse(mse + blocking_effect_factor(p, block), data_range)
    return _reduce(values.to(pred.dtype), reduction)
