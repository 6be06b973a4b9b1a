"""16-bit PNGs with Pillow and numpy only (issue 28 item 6): colour, gray+alpha and RGBA files
keep all 16 bits without PyAV (the ``video`` extra), whatever filters and interlacing their
encoder chose."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from m3l.data.io import read_image, write_image
from m3l.errors import MediaReadError

_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _filtered(image: np.ndarray, kinds: list[int]) -> bytes:
    """The scanlines of ``image`` (uint16 (H, W, C)), row ``i`` filtered with ``kinds[i]``: a
    plain, byte-by-byte encoder written from the PNG specification, independent of m3l's."""
    h, w, c = image.shape
    data = image.astype(">u2").view(np.uint8).reshape(h, w * c * 2).astype(int).tolist()
    bpp, out = 2 * c, bytearray()
    for y, row in enumerate(data):
        up = data[y - 1] if y else [0] * len(row)
        kind = kinds[y % len(kinds)]
        out.append(kind)
        for i, x in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            b, cc = up[i], up[i - bpp] if i >= bpp and y else 0
            predicted = (0, a, b, (a + b) // 2, _paeth(a, b, cc))[kind]
            out.append((x - predicted) & 0xFF)
    return bytes(out)


def _png(image: np.ndarray, kinds: list[int], interlace: bool = False) -> bytes:
    h, w, c = image.shape
    if interlace:
        raw = b"".join(_filtered(image[y0::dy, x0::dx], kinds) for x0, y0, dx, dy in _ADAM7 if x0 < w and y0 < h)
    else:
        raw = _filtered(image, kinds)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, int(interlace))
    idat = zlib.compress(raw)
    # the image data split over two IDAT chunks, with an ancillary chunk before them
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"gAMA", struct.pack(">I", 45455))
        + chunk(b"IDAT", idat[:7])
        + chunk(b"IDAT", idat[7:])
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("channels", [2, 3, 4])
@pytest.mark.parametrize("interlace", [False, True])
def test_every_filter_and_interlacing_decode_exactly(tmp_path: Path, channels: int, interlace: bool) -> None:
    rng = np.random.default_rng(channels + 10 * interlace)
    image = rng.integers(0, 65536, (13, 11, channels), dtype=np.uint16)
    image[:4] = np.arange(11 * channels, dtype=np.uint16).reshape(11, channels) * 5000  # smooth rows too
    (tmp_path / "x.png").write_bytes(_png(image, [0, 1, 2, 3, 4, 4, 3, 1], interlace))
    x, info = read_image(tmp_path / "x.png")
    assert info.bit_depth == 16
    colour = image[:, :, :3] if channels >= 3 else image[:, :, :1]
    expected = torch.from_numpy(colour.astype(np.float32) / 65535).permute(2, 0, 1)
    assert torch.equal(x, expected)
    if channels in (2, 4):
        assert info.alpha is not None and torch.equal(
            info.alpha[0], torch.from_numpy(image[:, :, -1] / np.float32(65535))
        )


def test_ffmpegs_png_encoder_reads_back_exactly(tmp_path: Path) -> None:
    """Files FFmpeg wrote (its Paeth prediction), read without FFmpeg."""
    av = pytest.importorskip("av")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 65536, (24, 30, 3), dtype=np.uint16)
    with av.open(str(tmp_path / "f.png"), "w", format="image2") as container:
        stream = container.add_stream("png", rate=1, options={"pred": "paeth"})
        stream.width, stream.height, stream.pix_fmt = 30, 24, "rgb48be"
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb48le")):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    raw = (tmp_path / "f.png").read_bytes()
    pos, idat = 8, b""
    while pos < len(raw):
        (length,) = struct.unpack(">I", raw[pos : pos + 4])
        idat += raw[pos + 8 : pos + 8 + length] if raw[pos + 4 : pos + 8] == b"IDAT" else b""
        pos += 12 + length
    kinds = zlib.decompress(idat)[:: 1 + 30 * 6]
    assert set(kinds[1:]) == {4}, kinds  # FFmpeg did use Paeth (Sub on the first row)
    x, _ = read_image(tmp_path / "f.png")
    assert torch.equal(x, torch.from_numpy(image.astype(np.float32) / 65535).permute(2, 0, 1))


@pytest.mark.slow
def test_sixteen_bit_colour_without_pyav(tmp_path: Path) -> None:
    """Without PyAV importable (a fresh process where ``import av`` fails), 16-bit RGB and RGBA
    PNGs round-trip exactly and nothing is logged about precision."""
    code = f"""
import sys, logging
sys.modules["av"] = None
logging.basicConfig(level=logging.WARNING)
import torch
from m3l.data.io import read_image, write_image
torch.manual_seed(0)
x, a = torch.rand(3, 21, 17), torch.rand(1, 21, 17)
for name, alpha in (("rgb", None), ("rgba", a)):
    path = {str(tmp_path)!r} + f"/{{name}}.png"
    write_image(path, x, bit_depth=16, alpha=alpha)
    y, info = read_image(path)
    assert info.bit_depth == 16 and float((y - x).abs().max()) <= 0.5 / 65535 + 1e-7, name
    assert (alpha is None) == (info.alpha is None)
    if alpha is not None:
        assert float((info.alpha - a).abs().max()) <= 0.5 / 65535 + 1e-7
    write_image(path + ".again.png", y, bit_depth=16, alpha=info.alpha)
    assert open(path + ".again.png", "rb").read() == open(path, "rb").read()
assert "av" not in sys.modules or sys.modules["av"] is None
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
    assert "precision" not in out.stderr and "m3l[video]" not in out.stderr


def test_a_damaged_sixteen_bit_png_is_a_read_error_naming_the_file(tmp_path: Path) -> None:
    write_image(tmp_path / "c16.png", torch.rand(3, 32, 32), bit_depth=16)
    data = (tmp_path / "c16.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:60])  # header intact, pixel data cut off
    with pytest.raises(MediaReadError, match="cut.png"):
        read_image(tmp_path / "cut.png")
    (tmp_path / "bad.png").write_bytes(data[:45] + bytes(8) + data[53:])  # zlib data damaged
    with pytest.raises(MediaReadError, match="bad.png"):
        read_image(tmp_path / "bad.png")


def test_data_inflating_past_the_header_size_is_not_decoded() -> None:
    """A small file whose image data inflates far past what its header's size needs: only the
    header's size is inflated (the pixel limit checks the header)."""
    import tracemalloc

    from m3l.data.png16 import decode_png16

    image = np.zeros((4, 4, 3), np.uint16)
    png = _png(image, [0])
    at = png.index(b"IDAT") - 4
    body = zlib.compress(bytes(4 * (1 + 4 * 6)) + bytes(200_000_000), 9)  # 200 MB of extra zeros
    chunk = struct.pack(">I", len(body)) + b"IDAT" + body + struct.pack(">I", zlib.crc32(b"IDAT" + body))
    bomb = png[:at] + chunk + b"\x00\x00\x00\x00IEND\xaeB`\x82"
    tracemalloc.start()
    out = decode_png16(bomb)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert out.shape == (4, 4, 3) and not out.any() and peak < 20_000_000
