"""JPEG files as what they are: quantized DCT coefficients, chroma subsampling and
quantization tables (read with `jpeglib <https://pypi.org/project/jpeglib/>`_, the ``jpeg``
extra), and their exact decoding to pixels on tensors.

:func:`read_jpeg_coefficients` reads a file (or bytes); :meth:`JPEGCoefficients.to_pixels`
decodes the coefficients with m3l's own block IDCT (:mod:`m3l.data.dct`), bit-identical to libjpeg's
decoder with its default integer IDCT (``JDCT_ISLOW``) and plain chroma upsampling
(``do_fancy_upsampling = FALSE``); :func:`encode_jpeg` writes real JPEG files with libjpeg
through Pillow at a quality or with custom quantization tables.
"""

from __future__ import annotations

import io
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from m3l.data.io import MAX_IMAGE_PIXELS_ENV, ImageTooLargeError, check_image_pixels, max_image_pixels, tensor_to_array
from m3l.data.dct import blocks_to_plane, block_idct_islow, quantization_plane, upsample_chroma, ycbcr_to_rgb_libjpeg
from m3l.errors import ConfigError, MediaReadError, MissingDependencyError

JPEG_MAGIC = b"\xff\xd8\xff"
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}
_INSTALL = "install the jpeg extra: pip install 'm3l[jpeg]'"
#: the largest file :func:`read_jpeg_coefficients` reads is this many bytes per pixel of the pixel
#: limit (:func:`m3l.data.io.max_image_pixels`) plus :data:`JPEG_METADATA_BYTES`: more than libjpeg
#: writes for three full-resolution components of noise at quality 100 (about 3 bytes a pixel);
#: raising the pixel limit raises it
JPEG_BYTES_PER_PIXEL = 8
JPEG_METADATA_BYTES = 16 * 2**20  # EXIF, ICC profiles, thumbnails


def import_jpeglib() -> Any:
    """The ``jpeglib`` module, or an ImportError that says how to install it."""
    try:
        import jpeglib
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(f"reading JPEG coefficients needs jpeglib: {_INSTALL}") from err
    return jpeglib


@dataclass(frozen=True)
class JPEGCoefficients:
    """A JPEG file's content: per component (Y, then Cb, Cr for colour) the plane of quantized
    coefficients (int16, :mod:`m3l.data.dct` layout), its quantization table and sampling factors.

    ``coefficients[i]`` covers ``ceil`` of the component's size to whole blocks; ``height`` and
    ``width`` are the image's own size.
    """

    coefficients: tuple[torch.Tensor, ...]
    tables: tuple[torch.Tensor, ...]
    sampling: tuple[tuple[int, int], ...]
    height: int
    width: int
    progressive: bool = False

    @property
    def is_color(self) -> bool:
        return len(self.coefficients) == 3

    @property
    def chroma_factor(self) -> tuple[int, int]:
        """How many luma samples one chroma sample covers, ``(vertical, horizontal)``: (2, 2)
        for 4:2:0, (1, 2) for 4:2:2, (1, 1) for 4:4:4 and gray files."""
        if not self.is_color:
            return (1, 1)
        (ly, lx), (cy, cx) = self.sampling[0], self.sampling[1]
        return (ly // cy, lx // cx)

    @property
    def subsampling(self) -> str:
        return {(1, 1): "4:4:4", (1, 2): "4:2:2", (2, 2): "4:2:0"}.get(
            self.chroma_factor, "x".join(map(str, self.chroma_factor))
        )

    def dequantized(self, component: int) -> torch.Tensor:
        """Coefficients times their table (int64): the DCT of the level-shifted samples."""
        plane = self.coefficients[component].to(torch.int64)
        return plane * quantization_plane(self.tables[component].to(torch.int64), *plane.shape)

    def to_pixels(self) -> torch.Tensor:
        """Decode to ``(C, H, W)`` uint8 exactly as libjpeg does with ``JDCT_ISLOW`` and plain
        upsampling (C = 1 for gray files, 3 = RGB for colour)."""
        planes = [
            upsample_chroma(block_idct_islow(self.dequantized(i)), self.factor_of(i))
            for i in range(len(self.coefficients))
        ]
        h, w = self.height, self.width
        if not self.is_color:
            return planes[0][None, :h, :w]
        return ycbcr_to_rgb_libjpeg(torch.stack([p[:h, :w] for p in planes]))

    def factor_of(self, component: int) -> tuple[int, int]:
        (ly, lx), (cy, cx) = self.sampling[0], self.sampling[component]
        return (ly // cy, lx // cx)


def max_jpeg_file_bytes() -> int:
    """The size bound of the files :func:`read_jpeg_coefficients` reads (see :data:`JPEG_BYTES_PER_PIXEL`)."""
    return JPEG_BYTES_PER_PIXEL * max_image_pixels() + JPEG_METADATA_BYTES


_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)


def _open(source: str | os.PathLike[str] | bytes) -> tuple[bytes, str]:
    """The bytes of ``source``: a regular file (symlinks followed) of at most
    :func:`max_jpeg_file_bytes`, as the pixel readers take regular files only. The file is opened
    without blocking and checked through its descriptor, so a FIFO or a device put in its place
    after listing is refused too, never read (a FIFO would block, /dev/zero never end)."""
    if isinstance(source, (bytes, bytearray)):
        return bytes(source), "<bytes>"
    path = Path(source)
    try:
        with open(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as fh:
            found = os.fstat(fh.fileno())
            size = found.st_size
            if not stat.S_ISREG(found.st_mode):
                kind = next((name for test, name in _FILE_KINDS if test(found.st_mode)), "a special file")
                raise MediaReadError(path, f"not a regular file ({kind}): only regular files are read")
            limit = max_jpeg_file_bytes()
            data = fh.read(limit + 1) if size <= limit else b""
    except OSError as err:
        raise MediaReadError(path, f"cannot be read ({err.strerror or err})") from err
    if size > limit or len(data) > limit:
        raise MediaReadError(
            path,
            f"{max(size, len(data)):,} bytes is over the bound of {limit:,} bytes for a JPEG within the pixel "
            f"limit ({JPEG_BYTES_PER_PIXEL} bytes a pixel for {max_image_pixels():,} pixels, plus "
            f"{JPEG_METADATA_BYTES // 2**20} MiB of metadata), so it was not read. If the image is genuine, raise "
            f"the limit with the environment variable {MAX_IMAGE_PIXELS_ENV}=N.",
        )
    return data, str(path)


_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xDA)})  # TEM, RST0-7, SOI, EOI: no length
_NOT_FRAME_HEADERS = frozenset({0xC4, 0xC8, 0xCC})  # DHT, JPG, DAC share SOF's code range


def jpeg_frame_size(data: bytes) -> tuple[int, int] | None:
    """``(height, width)`` from a JPEG's frame header (SOF0-SOF15), walking the markers as
    libjpeg does (bytes between segments and 0xFF fill bytes skipped); None when the file
    has no frame header before its image data."""
    i, n = 2, len(data)
    while i < n:
        i = data.find(b"\xff", i)  # libjpeg skips stray bytes before a marker, with a warning
        if i < 0:
            break
        while i < n and data[i] == 0xFF:
            i += 1
        if i >= n:
            break
        marker, i = data[i], i + 1
        if marker == 0x00 or marker in _STANDALONE_MARKERS:
            if marker == 0xD9:  # EOI
                break
            continue
        if i + 2 > n:
            break
        length = int.from_bytes(data[i : i + 2], "big")
        if 0xC0 <= marker <= 0xCF and marker not in _NOT_FRAME_HEADERS:
            if length < 8 or i + 7 > n:
                return None
            return int.from_bytes(data[i + 3 : i + 5], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
        if marker == 0xDA or length < 2:  # image data (SOS) before any frame header, or a broken segment
            break
        i += length
    return None


#: frame header markers libjpeg does not decode: lossless, hierarchical and arithmetic-coded ones
_UNSUPPORTED_FRAMES = {
    0xC3: "a lossless JPEG",
    0xC5: "a hierarchical JPEG",
    0xC6: "a hierarchical JPEG",
    0xC7: "a hierarchical JPEG",
    0xC9: "an arithmetic-coded JPEG",
    0xCA: "an arithmetic-coded progressive JPEG",
    0xCB: "an arithmetic-coded lossless JPEG",
    0xCD: "an arithmetic-coded hierarchical JPEG",
    0xCE: "an arithmetic-coded hierarchical JPEG",
    0xCF: "an arithmetic-coded hierarchical JPEG",
}


def _next_marker(data: bytes, i: int) -> tuple[int, int] | None:
    """The next marker at or after ``i`` (its code and the index after it), skipping fill
    bytes; None at the end of the data."""
    n = len(data)
    i = data.find(b"\xff", i)
    if i < 0:
        return None
    while i < n and data[i] == 0xFF:
        i += 1
    return (data[i], i + 1) if i < n else None


def jpeg_refusal(data: bytes) -> str | None:
    """Why m3l's JPEG reader refuses ``data`` from its markers alone, before libjpeg reads it
    (libjpeg only prints its reason, and it decodes a truncated file with its missing part
    gray), or None. Refused: no frame header before the image data, a zero height (a DNL
    marker) or width, a precision other than 8 bits, lossless, hierarchical and arithmetic-coded
    files, no image data, and a file that ends before its end-of-image marker (truncated)."""
    frame: tuple[int, int, int, int] | None = None  # marker, precision, height, width
    scans, i, n = 0, 2, len(data)
    while True:
        found = _next_marker(data, i)
        if found is None:
            break
        marker, i = found
        if marker == 0xD9:  # EOI
            return None if scans else "no image data (the file ends at its end-of-image marker before any scan)"
        if marker == 0x00 or marker in _STANDALONE_MARKERS:
            continue
        if i + 2 > n:
            break
        length = int.from_bytes(data[i : i + 2], "big")
        if length < 2:
            return f"corrupt JPEG (a marker segment 0xFF{marker:02X} of length {length})"
        if 0xC0 <= marker <= 0xCF and marker not in _NOT_FRAME_HEADERS and frame is None:
            if length < 8 or i + 7 > n:
                break
            frame = (
                marker,
                data[i + 2],
                int.from_bytes(data[i + 3 : i + 5], "big"),
                int.from_bytes(data[i + 5 : i + 7], "big"),
            )
            kind = _UNSUPPORTED_FRAMES.get(marker)
            if kind is not None:
                return (
                    f"{kind} (frame marker 0xFF{marker:02X}): only baseline and progressive Huffman-coded JPEGs are read "
                    "(libjpeg 6b); re-encode it as a standard JPEG"
                )
            if frame[1] != 8:
                return f"a {frame[1]}-bit JPEG: only 8-bit JPEGs are read; convert it to 8 bits"
            if frame[2] == 0 or frame[3] == 0:
                side = "height" if frame[2] == 0 else "width"
                return (
                    f"a zero {side} in the frame header ({frame[3]}x{frame[2]}; a height given later by a DNL marker "
                    "is not supported): nothing to decode"
                )
        if marker == 0xDA:  # a scan: its header, then entropy-coded data up to the next marker
            if frame is None:
                return "corrupt or truncated JPEG (no frame header before the image data)"
            scans += 1
            i += length
            while True:
                found = _next_marker(data, i)
                if found is None:
                    i = n
                    break
                code, after = found
                if code == 0x00 or 0xD0 <= code <= 0xD7:  # a stuffed 0xFF byte, a restart marker
                    i = after
                    continue
                i = after - 2
                break
            continue
        i += length
    if frame is None:
        return "corrupt or truncated JPEG (no frame header before the image data)"
    if not scans:
        return "truncated JPEG: the file ends before its image data"
    return (
        f"truncated JPEG: the file ends before its end-of-image marker ({n:,} bytes), so part of the image is "
        "missing (libjpeg would decode it gray); use the complete file"
    )


def _kind(data: bytes) -> str:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return f"a {im.format} image"
    except Exception:  # noqa: BLE001 - only naming what the file is
        return "not an image"


def read_jpeg_coefficients(source: str | os.PathLike[str] | bytes) -> JPEGCoefficients:
    """Read a JPEG file (a path or its bytes) without decoding it to pixels.

    Raises :class:`m3l.errors.MediaReadError` naming the file and the reason for anything that
    is not a readable 8-bit gray or YCbCr JPEG (PNGs, CMYK JPEGs, truncated files, 12-bit,
    arithmetic-coded and zero-height files: :func:`jpeg_refusal`; zero quantization entries), for
    anything but a regular file of at most :func:`max_jpeg_file_bytes`, and, from the header
    before any decoding, for a size over the pixel limit
    (:func:`m3l.data.io.check_image_pixels`, ``$M3L_MAX_IMAGE_PIXELS``).
    """
    data, name = _open(source)
    if not data.startswith(JPEG_MAGIC):
        raise MediaReadError(
            name, f"not a JPEG file ({_kind(data)}): this model reads the DCT coefficients of JPEG files only"
        )
    size = jpeg_frame_size(data)
    if size is None:
        raise MediaReadError(name, "corrupt or truncated JPEG (no frame header before the image data)")
    try:  # libjpeg allocates every coefficient of the declared size: check it first
        check_image_pixels(size[1], size[0])
    except ImageTooLargeError as err:
        raise MediaReadError(name, str(err)) from err
    refusal = jpeg_refusal(data)
    if refusal is not None:
        raise MediaReadError(name, refusal)
    jpeglib = import_jpeglib()
    with tempfile.TemporaryDirectory(prefix="m3l-jpeg-") as tmp:
        path = Path(tmp) / "input.jpg"
        path.write_bytes(data)
        try:
            jpeg = jpeglib.read_dct(str(path))
            jpeg.load()
            components = [jpeg.Y] + ([jpeg.Cb, jpeg.Cr] if jpeg.has_chrominance else [])
            qt, table_of = np.asarray(jpeg.qt), list(jpeg.quant_tbl_no)
            sampling = [tuple(int(v) for v in f) for f in np.asarray(jpeg.samp_factor)]
            space, n = str(jpeg.jpeg_color_space), int(jpeg.num_components)
            height, width, progressive = int(jpeg.height), int(jpeg.width), bool(jpeg.progressive_mode)
        except OSError as err:  # libjpeg printed its reason on stderr; name the user's file, not the copy
            detail = str(err).replace(str(path), name)
            raise MediaReadError(
                name, f"corrupt JPEG: libjpeg could not read it ({detail}; its reason is printed above)"
            ) from err
    if n not in (1, 3) or "CMYK" in space or "YCCK" in space:
        raise MediaReadError(
            name, f"a {space.replace('JCS_', '')} JPEG with {n} components: only gray and YCbCr JPEGs are supported"
        )
    if n == 3 and (sampling[1] != sampling[2] or any(l % c for l, c in zip(sampling[0], sampling[1]))):
        raise MediaReadError(name, f"unsupported chroma sampling factors {sampling}: expected 4:4:4, 4:2:2 or 4:2:0")
    for i in sorted(set(table_of[:n])):
        zeros = int((qt[i] == 0).sum())
        if zeros:
            raise MediaReadError(
                name,
                f"quantization table {i} has {zeros} zero entries (of 64): a JPEG encoder never writes 0 and a "
                "decoder multiplies by it, so the file is damaged",
            )
    planes = tuple(blocks_to_plane(torch.from_numpy(np.ascontiguousarray(c, dtype=np.int16))) for c in components)
    tables = tuple(torch.from_numpy(qt[table_of[i]].astype(np.int32)) for i in range(n))
    return JPEGCoefficients(planes, tables, tuple(sampling), height, width, progressive)


def encode_jpeg(
    image: torch.Tensor,
    quality: int | None = None,
    tables: Sequence[Sequence[int]] | None = None,
    subsampling: str = "4:2:0",
) -> bytes:
    """Encode ``(C, H, W)`` (C = 1 or 3, floats in [0, 1] or uint8) as a JPEG file with libjpeg
    (through Pillow): at ``quality`` (1..100) or with custom ``tables`` (a luma and, for colour,
    a chroma table of 64 ints in row-major order)."""
    if (quality is None) == (tables is None):
        raise ConfigError(
            "encode_jpeg: give quality or tables (exactly one of them): quality in 1..100, or the quantization tables"
        )
    if subsampling not in SUBSAMPLING:
        raise ConfigError(f"encode_jpeg: subsampling must be one of {sorted(SUBSAMPLING)}, got {subsampling!r}")
    array = image.permute(1, 2, 0).numpy() if image.dtype == torch.uint8 else tensor_to_array(image)
    array = array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array
    options: dict[str, Any] = {"subsampling": SUBSAMPLING[subsampling]}
    if quality is not None:
        if not 1 <= int(quality) <= 100:
            raise ConfigError(f"encode_jpeg: quality must be in 1..100, got {quality}")
        options["quality"] = int(quality)
    else:
        options["qtables"] = [[int(v) for v in t] for t in tables]  # type: ignore[union-attr]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", **options)
    return buffer.getvalue()
