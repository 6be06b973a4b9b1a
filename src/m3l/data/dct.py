"""The 8x8 block DCT of JPEG on tensors: planes <-> blocks, forward/inverse DCT, chroma
resampling and JPEG's YCbCr conversions, batched (any leading dimensions).

A *coefficient plane* is JPEG's layout kept as an image: the 64 coefficients of the block at
block row ``i``, column ``j`` sit in the 8x8 square at ``[8i:8i+8, 8j:8j+8]``, frequency
``(v, u)`` at offset ``(v, u)`` (``v`` vertical, as libjpeg stores them in natural order).
Transforms are orthonormal (JPEG's DCT: ``F(0, 0)`` of a flat block of value ``a`` is ``8a``).

Used by :mod:`m3l.data.jpeg` (decoding a file's coefficients) and by the DCT-domain nets
(:mod:`m3l.models.nets.qgac`); it depends on torch only.
"""

from __future__ import annotations

import functools
import math

import torch

from m3l.errors import ShapeError

BLOCK = 8


@functools.lru_cache(maxsize=8)
def _dct_matrix(dtype: torch.dtype, device_type: str) -> torch.Tensor:
    """``C[u, x] = a(u) cos((2x + 1) u pi / 16)``: the orthonormal 8-point DCT-II."""
    x = torch.arange(BLOCK, dtype=torch.float64)
    u = x[:, None]
    c = torch.cos((2 * x[None, :] + 1) * u * math.pi / (2 * BLOCK)) * math.sqrt(2 / BLOCK)
    c[0] = math.sqrt(1 / BLOCK)
    return c.to(dtype=dtype, device=device_type)


def dct_matrix(like: torch.Tensor) -> torch.Tensor:
    """The 8x8 DCT-II matrix in ``like``'s dtype and device (float64 for integer tensors)."""
    dtype = like.dtype if like.is_floating_point() else torch.float64
    return _dct_matrix(dtype, like.device.type).to(like.device)


def _check_plane(x: torch.Tensor, name: str) -> None:
    if x.ndim < 2 or x.shape[-1] % BLOCK or x.shape[-2] % BLOCK:
        raise ShapeError(
            f"{name}: expected (..., H, W) with H and W multiples of 8, got shape {tuple(x.shape)}; pad to a multiple of 8 first"
        )


def plane_to_blocks(x: torch.Tensor) -> torch.Tensor:
    """``(..., H, W) -> (..., H/8, W/8, 8, 8)``."""
    _check_plane(x, "plane_to_blocks")
    *lead, h, w = x.shape
    return x.reshape(*lead, h // BLOCK, BLOCK, w // BLOCK, BLOCK).transpose(-3, -2)


def blocks_to_plane(b: torch.Tensor) -> torch.Tensor:
    """``(..., Hb, Wb, 8, 8) -> (..., 8 Hb, 8 Wb)`` (the inverse of :func:`plane_to_blocks`)."""
    if b.ndim < 4 or b.shape[-2:] != (BLOCK, BLOCK):
        raise ShapeError(f"blocks_to_plane: expected blocks (..., Hb, Wb, 8, 8), got shape {tuple(b.shape)}")
    *lead, hb, wb, _, _ = b.shape
    return b.transpose(-3, -2).reshape(*lead, hb * BLOCK, wb * BLOCK)


def block_dct(x: torch.Tensor) -> torch.Tensor:
    """The 2-D DCT of every 8x8 block of ``(..., H, W)`` pixels, as a coefficient plane."""
    c = dct_matrix(x)
    blocks = plane_to_blocks(x.to(c.dtype))
    return blocks_to_plane(c @ blocks @ c.T)


def block_idct(coefficients: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`block_dct` (pixels from a coefficient plane)."""
    c = dct_matrix(coefficients)
    blocks = plane_to_blocks(coefficients.to(c.dtype))
    return blocks_to_plane(c.T @ blocks @ c)


# libjpeg's accurate integer IDCT (jidctint.c, "JDCT_ISLOW"): the Loeffler-Ligtenberg-
# Moschytz factorization with 13-bit constants and 2 extra bits between the passes. Written
# from the algorithm's equations so that decoding matches libjpeg's default to the last unit.
_CONST_BITS, _PASS1_BITS = 13, 2


def _c(x: float) -> int:
    return int(x * (1 << _CONST_BITS) + 0.5)


def _descale(x: torch.Tensor, n: int) -> torch.Tensor:
    return (x + (1 << (n - 1))) >> n


def _islow_1d(v: list[torch.Tensor], shift: int) -> list[torch.Tensor]:
    """One 8-point pass on ``v[k]`` (frequency k); outputs scaled by ``2**shift`` less."""
    # even part
    z1 = (v[2] + v[6]) * _c(0.541196100)
    t2 = z1 - v[6] * _c(1.847759065)
    t3 = z1 + v[2] * _c(0.765366865)
    t0 = (v[0] + v[4]) << _CONST_BITS
    t1 = (v[0] - v[4]) << _CONST_BITS
    e10, e13, e11, e12 = t0 + t3, t0 - t3, t1 + t2, t1 - t2
    # odd part
    o0, o1, o2, o3 = v[7], v[5], v[3], v[1]
    z1, z2, z3, z4 = o0 + o3, o1 + o2, o0 + o2, o1 + o3
    z5 = (z3 + z4) * _c(1.175875602)
    o0, o1, o2, o3 = o0 * _c(0.298631336), o1 * _c(2.053119869), o2 * _c(3.072711026), o3 * _c(1.501321110)
    z1, z2 = z1 * -_c(0.899976223), z2 * -_c(2.562915447)
    z3, z4 = z3 * -_c(1.961570560) + z5, z4 * -_c(0.390180644) + z5
    o0, o1, o2, o3 = o0 + z1 + z3, o1 + z2 + z4, o2 + z2 + z3, o3 + z1 + z4
    out = [e10 + o3, e11 + o2, e12 + o1, e13 + o0, e13 - o0, e12 - o1, e11 - o2, e10 - o3]
    return [_descale(x, shift) for x in out]


def block_idct_islow(coefficients: torch.Tensor) -> torch.Tensor:
    """8-bit samples ``(..., H, W)`` (uint8) from a plane of *dequantized* integer coefficients,
    bit-identical to libjpeg's ``JDCT_ISLOW`` (its default): level shift +128, clamp to 0..255."""
    blocks = plane_to_blocks(coefficients.to(torch.int64))
    cols = _islow_1d([blocks[..., k, :] for k in range(BLOCK)], _CONST_BITS - _PASS1_BITS)
    work = torch.stack(cols, dim=-2)  # (..., 8 rows, 8 cols) after the column pass
    rows = _islow_1d([work[..., :, k] for k in range(BLOCK)], _CONST_BITS + _PASS1_BITS + 3)
    pixels = torch.stack(rows, dim=-1) + 128
    return blocks_to_plane(pixels.clamp(0, 255)).to(torch.uint8)


def quantization_plane(table: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Tile ``(..., 8, 8)`` quantization tables over an ``(height, width)`` coefficient plane."""
    return table.repeat(*([1] * (table.ndim - 2)), height // BLOCK, width // BLOCK)


def upsample_chroma(x: torch.Tensor, factor: tuple[int, int]) -> torch.Tensor:
    """Replicate each chroma sample ``factor = (fy, fx)`` times: libjpeg's plain upsampling
    (``do_fancy_upsampling = FALSE``)."""
    fy, fx = factor
    if (fy, fx) == (1, 1):
        return x
    return x.repeat_interleave(fy, dim=-2).repeat_interleave(fx, dim=-1)


def double_chroma_coefficients(coefficients: torch.Tensor, factor: tuple[int, int]) -> torch.Tensor:
    """Chroma coefficients at luma resolution: pixels, replicated by ``factor``, re-transformed
    (QGAC's "doubling" of subsampled chroma in the DCT domain)."""
    if tuple(factor) == (1, 1):
        return coefficients
    return block_dct(upsample_chroma(block_idct(coefficients), factor))


# ------------------------------------------------------------------ colour (JFIF, full range)

_SCALEBITS = 16
_ONE_HALF = 1 << (_SCALEBITS - 1)


def _fix(x: float) -> int:
    return int(x * (1 << _SCALEBITS) + 0.5)


def ycbcr_to_rgb_libjpeg(ycbcr: torch.Tensor) -> torch.Tensor:
    """JFIF YCbCr -> RGB on 8-bit samples ``(..., 3, H, W)`` exactly as libjpeg's decoder does
    it (16-bit fixed point, ``jdcolor.c``), so decoded pixels match libjpeg to the last unit."""
    s = ycbcr.to(torch.int64)
    y, cb, cr = s[..., 0, :, :], s[..., 1, :, :] - 128, s[..., 2, :, :] - 128
    r = y + ((_fix(1.40200) * cr + _ONE_HALF) >> _SCALEBITS)
    g = y + ((-_fix(0.34414) * cb - _fix(0.71414) * cr + _ONE_HALF) >> _SCALEBITS)
    b = y + ((_fix(1.77200) * cb + _ONE_HALF) >> _SCALEBITS)
    return torch.stack([r, g, b], dim=-3).clamp(0, 255).to(torch.uint8)


def ycbcr_to_rgb(ycbcr: torch.Tensor, center: float = 128 / 255) -> torch.Tensor:
    """JFIF YCbCr -> RGB in float on [0, 1] data (chroma centred on ``center``, JPEG's 128/255);
    differentiable, for nets."""
    y, cb, cr = ycbcr[..., 0, :, :], ycbcr[..., 1, :, :] - center, ycbcr[..., 2, :, :] - center
    r = y + 1.402 * cr
    g = y - 0.344136 * cb - 0.714136 * cr
    b = y + 1.772 * cb
    return torch.stack([r, g, b], dim=-3)


def rgb_to_ycbcr(rgb: torch.Tensor, center: float = 128 / 255) -> torch.Tensor:
    """RGB -> JFIF YCbCr on [0, 1] data (chroma centred on ``center``)."""
    r, g, b = rgb[..., 0, :, :], rgb[..., 1, :, :], rgb[..., 2, :, :]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + center
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + center
    return torch.stack([y, cb, cr], dim=-3)
