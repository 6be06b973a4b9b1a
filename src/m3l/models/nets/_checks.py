"""Input checks shared by the nets: messages name the expected and the received shape."""

from __future__ import annotations

import torch

from m3l.errors import ShapeError


def check_image(net: str, x: torch.Tensor, channels: int, multiple: int = 1) -> None:
    """Raise :class:`~m3l.errors.ShapeError` unless ``x`` is ``(B, channels, H, W)`` with H, W multiples of ``multiple``."""
    if x.dim() != 4 or x.shape[1] != channels:
        raise ShapeError(
            f"{net} expects a batch of shape (B, {channels}, H, W), got {tuple(x.shape)}: give it "
            f"{channels}-channel images (data.channels) or build it with in_channels={x.shape[1] if x.dim() == 4 else '?'}."
        )
    check_multiple(net, x, multiple)


def check_multiple(net: str, x: torch.Tensor, multiple: int) -> None:
    """Raise :class:`~m3l.errors.ShapeError` unless the last two dims of ``x`` are multiples of ``multiple``."""
    h, w = x.shape[-2:]
    if multiple > 1 and (h % multiple or w % multiple):
        raise ShapeError(
            f"{net} needs H and W to be multiples of {multiple} (its pad_multiple), got H={h}, "
            f"W={w}. Pad the input first (e.g. m3l.models.tiling.pad_to_multiple) and crop "
            "the output back."
        )


def sigma_map(net: str, sigma: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """Noise-level map ``(B, 1, H, W)`` from ``sigma`` of shape ``(B,)``, ``(B, 1)`` or a scalar."""
    b, h, w = like.shape[0], like.shape[-2], like.shape[-1]
    s = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    if s.dim() == 0:
        s = s.expand(b)
    s = s.reshape(s.shape[0], -1)
    if s.shape != (b, 1):
        raise ShapeError(
            f"{net} expects sigma of shape (B,) = ({b},) on the [0, 1] scale (one noise level per "
            f"image), got {tuple(torch.as_tensor(sigma).shape)}."
        )
    return s.view(b, 1, 1, 1).expand(b, 1, h, w)
