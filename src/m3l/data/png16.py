"""16-bit PNGs with numpy and zlib only: Pillow reads 16-bit gray exactly but decodes 16-bit
colour (RGB, RGBA, gray+alpha) at 8-bit precision and cannot write it.

:func:`decode_png16` reads those files (any filter type, interlaced or not) as uint16 arrays;
:func:`encode_png16` writes gray, gray+alpha, RGB and RGBA. The PNG format is the W3C's
(https://www.w3.org/TR/png/): chunks, one zlib stream over the IDAT chunks, one filter type
byte before each scanline, Adam7 interlacing.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: colour type -> samples per pixel
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}

#: Adam7 passes: (first column, first row, column step, row step)
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


class PNGDecodeError(ValueError):
    """The file is not a 16-bit PNG this decoder can read, or its data is damaged."""


def decode_png16(data: bytes) -> np.ndarray:
    """The pixels of a 16-bit PNG as uint16 ``(H, W, C)`` (C: 1 gray, 2 gray+alpha, 3 RGB,
    4 RGBA). Raises :class:`PNGDecodeError` for anything else or damaged data."""
    if data[:8] != SIGNATURE:
        raise PNGDecodeError("not a PNG file")
    pos, header, idat = 8, None, []
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if len(body) < length:
            raise PNGDecodeError(f"the {kind.decode('latin-1')} chunk is cut short")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body[:13])
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None:
        raise PNGDecodeError("no IHDR chunk")
    width, height, depth, colour, _compression, _filtering, interlace = header
    if depth != 16 or colour not in CHANNELS:
        raise PNGDecodeError(f"bit depth {depth}, colour type {colour}: not a 16-bit gray or colour PNG")
    if not idat:
        raise PNGDecodeError("no image data (IDAT)")
    channels = CHANNELS[colour]
    bpp = 2 * channels
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    sizes = [(-(-(height - y0) // dy), -(-(width - x0) // dx)) for x0, y0, dx, dy in passes]
    expected = sum(h * (1 + w * bpp) for h, w in sizes if h > 0 and w > 0)
    try:  # never more than the header's size: data that inflates further is not decoded
        raw = zlib.decompressobj().decompress(b"".join(idat), expected)
    except zlib.error as err:
        raise PNGDecodeError(f"damaged image data ({err})") from err
    if not interlace:
        image = _unfilter(raw, height, width, bpp, 0)[0]
    else:
        image = np.zeros((height, width, bpp), np.uint8)
        offset = 0
        for x0, y0, dx, dy in _ADAM7:
            w, h = -(-(width - x0) // dx), -(-(height - y0) // dy)
            if w <= 0 or h <= 0:
                continue
            part, offset = _unfilter(raw, h, w, bpp, offset)
            image[y0::dy, x0::dx] = part
    return image.view(">u2").reshape(height, width, channels).astype(np.uint16)


def _unfilter(raw: bytes, height: int, width: int, bpp: int, offset: int) -> tuple[np.ndarray, int]:
    """The ``(height, width, bpp)`` bytes of one (sub-)image whose filtered scanlines start at
    ``offset`` in ``raw``, and where the next one starts.

    Every filter predicts a byte from the reconstructed bytes to its left (a), above (b) and
    above-left (c), so the pixels of one anti-diagonal of the image depend only on earlier
    anti-diagonals: each is reconstructed in one vectorized step (height + width steps)."""
    size = height * (1 + width * bpp)
    if len(raw) < offset + size:
        raise PNGDecodeError("the image data is cut short")
    rows = np.frombuffer(raw, np.uint8, size, offset).reshape(height, 1 + width * bpp)
    kinds = rows[:, 0].astype(np.int16)
    if int(kinds.max(initial=0)) > 4:
        raise PNGDecodeError(f"unknown scanline filter type {int(kinds.max())}")
    filtered = rows[:, 1:].reshape(height, width, bpp).astype(np.int16)
    out = np.zeros((height + 1, width + 1, bpp), np.int16)  # a zero row above and column left
    if not kinds.any():  # no filter at all (the usual choice for 16-bit data): nothing to undo
        out[1:, 1:] = filtered
    else:
        for k in range(height + width - 1):
            r = np.arange(max(0, k - width + 1), min(k, height - 1) + 1)
            c = k - r
            x = filtered[r, c]
            a, b, cc = out[r + 1, c], out[r, c + 1], out[r, c]
            kind = kinds[r][:, None]
            p = a + b - cc
            pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - cc)
            paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, cc))
            predicted = np.select([kind == 1, kind == 2, kind == 3, kind == 4], [a, b, (a + b) // 2, paeth], 0)
            out[r + 1, c + 1] = (x + predicted) & 0xFF
    return out[1:, 1:].astype(np.uint8), offset + size


def encode_png16(array: np.ndarray) -> bytes:
    """A 16-bit PNG (gray, gray+alpha, RGB or RGBA) of a uint16 ``(H, W[, C])`` array: no
    filter, not interlaced."""
    if array.ndim == 2:
        array = array[:, :, None]
    h, w, c = array.shape
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = array.astype(">u2").reshape(h, w * c)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows.view(np.uint8).reshape(h, -1)], axis=1)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0)
    return SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b"")
