"""Tiled inference for images and video windows larger than memory.

:class:`TiledPredictor` cuts an image ``(B, C, H, W)`` (or a video window ``(B, T, C, H, W)``)
into overlapping tiles, runs a function on batches of tiles and blends the outputs into one
buffer with a weight buffer, so memory is about the image plus one batch of tiles. Tiles
are spread evenly over the image (no ragged last tile) and every tile has the same size,
so they batch. Each tile is padded to the net's ``pad_multiple`` and cropped back.

Exactness: a pixel near an inner tile edge sees the tile's zero padding; blending weights
are zero there. With ``blend="none"`` each tile keeps the half of every overlap nearest to
it (a hard seam), so the result equals the whole-image output when the net's receptive
field radius is at most ``overlap // 2``. With ``"linear"`` or ``"gaussian"`` a margin of
``overlap // 4`` at inner edges gets weight 0 and the rest of the overlap is cross-faded,
so the result is exact for a radius of at most ``overlap // 4`` and seams stay invisible
for nets whose receptive field is larger (U-Nets, attention).

:func:`self_ensemble` averages the x8 flip/rotation ensemble (Timofte et al., "Seven ways to
improve example-based single image super resolution", CVPR 2016). :func:`sliding_windows`
turns a stream of frames into the centred windows a video net takes, holding only one
window in memory.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Literal

import torch
import torch.nn.functional as F

from m3l.errors import ConfigError, ShapeError

log = logging.getLogger(__name__)

Blend = Literal["gaussian", "linear", "none"]
TileFn = Callable[..., torch.Tensor]

__all__ = ["TiledPredictor", "self_ensemble", "sliding_windows", "pad_to_multiple", "pad_to_size"]


def pad_to_size(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pad the last two dims of ``x`` at the bottom/right to ``height`` x ``width``.

    Reflection where the image is large enough, edge replication otherwise (tiny images).
    """
    h, w = x.shape[-2:]
    ph, pw = height - h, width - w
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    flat = F.pad(x.reshape(-1, *x.shape[-3:]), (0, pw, 0, ph), mode=mode)
    return flat.reshape(*x.shape[:-2], height, width)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the last two dims of ``x`` at the bottom/right up to multiples of ``multiple``."""
    h, w = x.shape[-2:]
    return pad_to_size(x, h + (-h) % multiple, w + (-w) % multiple)


def _layout(length: int, tile: int, overlap: int, multiple: int) -> tuple[list[int], int]:
    """Evenly spread tiles over ``length`` rounded up to ``multiple``; (starts, tile length).

    Starts and the tile length are multiples of ``multiple``, so every tile sees the same
    pixel grid as the padded whole image (pixel-unshuffle and U-Net nets stay aligned); the
    last tile may reach past ``length`` into the padding.
    """
    units = -(-length // multiple)
    tile_u, overlap_u = tile // multiple, -(-overlap // multiple)
    if units <= tile_u:
        return [0], units * multiple
    n = math.ceil((units - overlap_u) / (tile_u - overlap_u))
    size_u = min(tile_u, math.ceil((units + (n - 1) * overlap_u) / n))
    starts = [(i * (units - size_u)) // (n - 1) * multiple for i in range(n)]
    return starts, size_u * multiple


def _ramp(n: int, blend: Blend) -> torch.Tensor:
    """Weights rising from 0 to 1 over ``n`` pixels (excluded ends)."""
    t = (torch.arange(n, dtype=torch.float64) + 1) / (n + 1)
    if blend == "gaussian":
        # Gaussian CDF with sigma = 1/6 of the ramp: smooth start and end, w(t) + w(1-t) = 1
        return 0.5 * (1 + torch.erf((t - 0.5) / (math.sqrt(2) / 6)))
    return t


def _profiles(starts: list[int], size: int, overlap: int, blend: Blend) -> list[torch.Tensor]:
    """One 1-D weight profile per tile: 1 inside, 0 / cross-fade where tiles overlap."""
    margin = overlap // 4
    out = []
    for i, s in enumerate(starts):
        w = torch.ones(size, dtype=torch.float64)
        for side, neighbour in (("left", i - 1), ("right", i + 1)):
            if neighbour < 0 or neighbour >= len(starts):
                continue
            shared = size - abs(starts[neighbour] - s)  # actual overlap with that neighbour
            if blend == "none":
                keep_from = shared // 2 if side == "left" else shared - shared // 2
                edge = torch.zeros(keep_from, dtype=torch.float64)
                body = edge
            else:
                width = shared - 2 * margin
                body = torch.cat([torch.zeros(margin, dtype=torch.float64), _ramp(width, blend)])
            if side == "left":
                w[: body.numel()] = torch.minimum(w[: body.numel()], body)
            else:
                w[size - body.numel() :] = torch.minimum(w[size - body.numel() :], body.flip(0))
        out.append(w)
    return out


class TiledPredictor:
    """Run ``fn`` on overlapping tiles of a large image and blend the results.

    Args:
        tile_size: largest tile side in pixels (rounded down to the pad multiple).
        overlap: minimum number of pixels neighbouring tiles share.
        batch_size: tiles per call of ``fn``.
        blend: ``"gaussian"`` (smooth cross-fade), ``"linear"`` or ``"none"`` (hard seam in
            the middle of each overlap); see the module docstring for exactness.
        pad_multiple: pad tiles to this multiple; None reads ``fn.pad_multiple`` (default 1).
    """

    def __init__(
        self,
        tile_size: int = 512,
        overlap: int = 32,
        batch_size: int = 4,
        blend: Blend = "gaussian",
        pad_multiple: int | None = None,
    ) -> None:
        if blend not in ("gaussian", "linear", "none"):
            raise ConfigError(f"blend must be 'gaussian', 'linear' or 'none', got {blend!r}.")
        if overlap < 0 or 2 * overlap >= tile_size:
            raise ConfigError(
                f"TiledPredictor needs 0 <= overlap < tile_size / 2, got overlap={overlap}, tile_size={tile_size}."
            )
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}.")
        self.tile_size = tile_size
        self.overlap = overlap
        self.batch_size = batch_size
        self.blend: Blend = blend
        self.pad_multiple = pad_multiple

    def __repr__(self) -> str:
        return (
            f"TiledPredictor(tile_size={self.tile_size}, overlap={self.overlap}, "
            f"batch_size={self.batch_size}, blend={self.blend!r})"
        )

    def _multiple(self, fn: TileFn, pad_multiple: int | None) -> int:
        value = pad_multiple or self.pad_multiple or getattr(fn, "pad_multiple", 1) or 1
        return int(value)

    def __call__(
        self, fn: TileFn, x: torch.Tensor, pad_multiple: int | None = None, **conditions: torch.Tensor
    ) -> torch.Tensor:
        """Apply ``fn`` tile by tile to ``x`` of shape ``(B, C, H, W)`` or ``(B, T, C, H, W)``.

        ``fn`` maps a batch of tiles to outputs of the same H and W (any leading shape, e.g.
        the centre frame of a video window). Keyword ``conditions`` are per-image tensors
        ``(B, ...)`` (e.g. ``sigma``); each tile gets its image's value.
        """
        if x.dim() not in (4, 5):
            raise ShapeError(
                f"TiledPredictor expects images (B, C, H, W) or video windows (B, T, C, H, W), got {tuple(x.shape)}."
            )
        for name, value in conditions.items():
            if value.shape[:1] != x.shape[:1]:
                raise ShapeError(
                    f"TiledPredictor: condition {name!r} must have shape (B, ...) with "
                    f"B={x.shape[0]}, got {tuple(value.shape)}."
                )
        multiple = self._multiple(fn, pad_multiple)
        tile = max(multiple, (self.tile_size // multiple) * multiple)
        overlap = -(-self.overlap // multiple) * multiple
        if 2 * overlap >= tile:
            raise ConfigError(
                f"TiledPredictor: with the pad multiple {multiple}, tile_size {self.tile_size} "
                f"becomes {tile} and overlap {self.overlap} becomes {overlap}; the tile must be "
                "more than twice the overlap. Raise tile_size or lower overlap."
            )
        h, w = x.shape[-2:]
        ys, th = _layout(h, tile, self.overlap, multiple)
        xs, tw = _layout(w, tile, self.overlap, multiple)
        wy = _profiles(ys, th, self.overlap, self.blend)
        wx = _profiles(xs, tw, self.overlap, self.blend)
        jobs = [(b, i, j) for b in range(x.shape[0]) for i in range(len(ys)) for j in range(len(xs))]
        log.debug("tiling %sx%s into %dx%d tiles of %dx%d", h, w, len(ys), len(xs), th, tw)

        out: torch.Tensor | None = None
        weight = torch.zeros(h, w, dtype=torch.float32, device=x.device)
        for first in range(0, len(jobs), self.batch_size):
            batch = jobs[first : first + self.batch_size]
            tiles = torch.stack(
                [pad_to_size(x[b, ..., ys[i] : ys[i] + th, xs[j] : xs[j] + tw], th, tw) for b, i, j in batch]
            )
            index = torch.tensor([b for b, _, _ in batch], device=x.device)
            cond = {k: v.index_select(0, index.to(v.device)) for k, v in conditions.items()}
            result = fn(tiles, **cond)
            if result.shape[0] != len(batch) or result.shape[-2:] != (th, tw):
                raise ShapeError(
                    f"TiledPredictor: fn must return ({len(batch)}, ..., {th}, {tw}) for "
                    f"tiles of shape {tuple(tiles.shape)}, got {tuple(result.shape)}."
                )
            if out is None:
                out = torch.zeros((x.shape[0], *result.shape[1:-2], h, w), dtype=result.dtype, device=x.device)
            for k, (b, i, j) in enumerate(batch):
                y0, x0 = ys[i], xs[j]
                rows, cols = min(th, h - y0), min(tw, w - x0)
                win = (wy[i][:rows, None] * wx[j][None, :cols]).to(result.dtype)
                out[b, ..., y0 : y0 + rows, x0 : x0 + cols] += result[k, ..., :rows, :cols] * win
                if b == 0:
                    weight[y0 : y0 + rows, x0 : x0 + cols] += win.to(weight.dtype)
        assert out is not None
        out /= weight.to(out.dtype)
        return out


_TRANSFORMS = [(k, flip) for flip in (False, True) for k in range(4)]


def self_ensemble(fn: TileFn, x: torch.Tensor, **conditions: torch.Tensor) -> torch.Tensor:
    """Average ``fn`` over the 8 flips/rotations of ``x`` (last two dims), each undone.

    Works for H != W as long as ``fn`` accepts the rotated size; runs the 8 passes one after
    another so memory stays at one pass.
    """
    total: torch.Tensor | None = None
    for k, flip in _TRANSFORMS:
        t = torch.rot90(x.flip(-1) if flip else x, k, dims=(-2, -1))
        y = fn(t, **conditions)
        del t  # at most one transformed copy alive at a time (large images)
        y = torch.rot90(y, -k, dims=(-2, -1))
        y = y.flip(-1) if flip else y
        if total is None:
            total = y  # a fresh tensor: rot90 copies even at k = 0
        else:
            total.add_(y)
        del y
    assert total is not None
    return total.div_(len(_TRANSFORMS))


def sliding_windows(frames: Iterable[torch.Tensor], size: int) -> Iterator[torch.Tensor]:
    """Yield one window ``(size, C, H, W)`` centred on each frame of a stream of ``(C, H, W)``.

    Windows at the ends repeat the first/last frame (edge padding in time). Only ``size``
    frames are held at once, so a video never has to fit in memory.
    """
    if size < 1 or size % 2 == 0:
        raise ConfigError(f"sliding_windows needs an odd window size, got {size}.")
    half = size // 2
    it = iter(frames)
    try:
        first = next(it)
    except StopIteration:
        return
    window: deque[torch.Tensor] = deque([first] * (half + 1), maxlen=size)
    count = 1  # frames read so far
    for _ in range(half):
        frame = next(it, None)
        if frame is not None:
            count += 1
        window.append(window[-1] if frame is None else frame)
    yielded = 0
    for frame in it:
        yield torch.stack(tuple(window))
        yielded += 1
        window.append(frame)
        count += 1
    while yielded < count:
        yield torch.stack(tuple(window))
        yielded += 1
        window.append(window[-1])
