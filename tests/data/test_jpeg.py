"""The JPEG coefficient reader against libjpeg itself (jpeglib's decoder).

"Exact" here means bit-identical: m3l's decode of a file's coefficients
(:meth:`JPEGCoefficients.to_pixels`: its own integer IDCT, plain chroma upsampling and
fixed-point YCbCr -> RGB) equals every 8-bit sample libjpeg produces with ``JDCT_ISLOW``
(libjpeg's default IDCT) and ``do_fancy_upsampling = FALSE``; and coefficients -> pixels (float
IDCT, not rounded) -> coefficients gives back the file's integers exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from m3l.errors import MediaReadError
from m3l.data.samples import sample_paths
from m3l.data.dct import block_dct, block_idct, quantization_plane

jpeglib = pytest.importorskip("jpeglib", reason="the jpeg extra (jpeglib) is not installed")

from m3l.data.jpeg import encode_jpeg, read_jpeg_coefficients  # noqa: E402


def _photo(name: str, size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    path = next(p for p in sample_paths("train") + sample_paths("val") if p.stem == name)
    with Image.open(path) as im:
        return im.convert("RGB").crop((0, 0, *size)).convert(mode)


def _libjpeg_decode(path: Path) -> np.ndarray:
    out = jpeglib.read_spatial(str(path), dct_method=jpeglib.JDCT_ISLOW, flags=["-DO_FANCY_UPSAMPLING"]).spatial
    return np.asarray(out).reshape(out.shape[0], out.shape[1], -1)


CASES = [
    # (photo, (width, height), mode, quality, Pillow subsampling, progressive)
    ("astronaut", (203, 117), "RGB", 10, 2, False),  # 4:2:0, partial blocks and MCUs
    ("coffee", (96, 64), "RGB", 35, 1, False),  # 4:2:2
    ("chelsea", (77, 51), "RGB", 90, 0, False),  # 4:4:4
    ("camera", (129, 65), "L", 20, 0, False),  # gray
    ("rocket", (100, 70), "RGB", 5, 2, True),  # progressive
    ("astronaut", (64, 64), "RGB", 100, 2, False),  # tables of ones
]


@pytest.mark.parametrize("name,size,mode,quality,subsampling,progressive", CASES)
def test_decode_is_bit_identical_to_libjpeg(tmp_path, name, size, mode, quality, subsampling, progressive):
    path = tmp_path / "photo.jpg"
    _photo(name, size, mode).save(path, quality=quality, subsampling=subsampling, progressive=progressive)
    jpeg = read_jpeg_coefficients(path)
    assert (jpeg.width, jpeg.height) == size and jpeg.progressive == progressive
    assert jpeg.is_color == (mode == "RGB")
    ours = jpeg.to_pixels().permute(1, 2, 0).numpy()
    assert np.array_equal(ours, _libjpeg_decode(path))


def test_tables_and_subsampling_are_the_files(tmp_path):
    path = tmp_path / "photo.jpg"
    _photo("coffee", (96, 64)).save(path, quality=30, subsampling=2)
    jpeg = read_jpeg_coefficients(path)
    with Image.open(path) as im:  # Pillow's view of the same file's tables (row-major)
        tables = im.quantization
    assert torch.equal(jpeg.tables[0].flatten(), torch.tensor(tables[0], dtype=torch.int32))
    assert torch.equal(jpeg.tables[1].flatten(), torch.tensor(tables[1], dtype=torch.int32))
    assert torch.equal(jpeg.tables[2], jpeg.tables[1])
    assert jpeg.subsampling == "4:2:0" and jpeg.chroma_factor == (2, 2)
    assert [tuple(c.shape) for c in jpeg.coefficients] == [(64, 96), (32, 48), (32, 48)]


def test_coefficients_to_pixels_and_back_is_exact(tmp_path):
    path = tmp_path / "photo.jpg"
    _photo("astronaut", (120, 88)).save(path, quality=25, subsampling=2)
    jpeg = read_jpeg_coefficients(path)
    for i, plane in enumerate(jpeg.coefficients):
        pixels = block_idct(jpeg.dequantized(i).double())  # level-shifted samples, not rounded
        table = quantization_plane(jpeg.tables[i].double(), *plane.shape)
        back = block_dct(pixels) / table
        assert (back - plane.double()).abs().max() < 1e-9
        assert torch.equal(back.round().to(torch.int16), plane)


def test_custom_tables_are_written_as_given():
    image = _photo("chelsea", (64, 48))
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    luma, chroma = list(range(1, 65)), [7] * 64
    jpeg = read_jpeg_coefficients(encode_jpeg(x, tables=[luma, chroma], subsampling="4:4:4"))
    assert jpeg.tables[0].flatten().tolist() == luma and jpeg.tables[1].flatten().tolist() == chroma
    assert jpeg.chroma_factor == (1, 1)
    gray = read_jpeg_coefficients(encode_jpeg(x[:1].float() / 255, quality=50))
    assert not gray.is_color and gray.to_pixels().shape == (1, 48, 64)


def test_what_is_not_a_readable_jpeg_is_named(tmp_path):
    png = tmp_path / "photo.png"
    _photo("coffee", (32, 32)).save(png)
    with pytest.raises(MediaReadError, match=r"photo\.png: not a JPEG file \(a PNG image\)"):
        read_jpeg_coefficients(png)
    good = tmp_path / "good.jpg"
    _photo("coffee", (64, 64)).save(good, quality=50)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(MediaReadError, match=r"truncated\.jpg: truncated JPEG: the file ends before its image data"):
        read_jpeg_coefficients(truncated)
    cmyk = tmp_path / "cmyk.jpg"
    _photo("coffee", (32, 32)).convert("CMYK").save(cmyk)
    with pytest.raises(MediaReadError, match=r"cmyk\.jpg: a CMYK JPEG with 4 components"):
        read_jpeg_coefficients(cmyk)
    with pytest.raises(MediaReadError, match="missing.jpg: cannot be read"):
        read_jpeg_coefficients(tmp_path / "missing.jpg")


def test_encode_checks_its_arguments():
    x = torch.rand(3, 16, 16)
    with pytest.raises(ValueError, match="give quality or tables"):
        encode_jpeg(x)
    with pytest.raises(ValueError, match="quality must be in 1..100"):
        encode_jpeg(x, quality=0)
    with pytest.raises(ValueError, match="subsampling must be one of"):
        encode_jpeg(x, quality=50, subsampling="4:1:1")


def _declaring_size(data: bytes, height: int, width: int) -> bytes:
    """The JPEG file ``data`` with its frame header (SOF) rewritten to declare ``height`` x
    ``width``: a small file that libjpeg would decode to that many pixels."""
    out, i = bytearray(data), 2
    while True:
        assert out[i] == 0xFF, "Pillow writes no fill bytes between segments"
        marker, length = out[i + 1], int.from_bytes(out[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            out[i + 5 : i + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
            return bytes(out)
        i += 2 + length


def test_a_huge_declared_size_is_refused_before_decoding(tmp_path, monkeypatch):
    """A 1 KB file whose header says 60000 x 60000 (libjpeg would allocate gigabytes of
    coefficients) is refused from its header, quickly, naming the file and the limit."""
    import time

    monkeypatch.delenv("M3L_MAX_IMAGE_PIXELS", raising=False)
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(_declaring_size(encode_jpeg(torch.rand(3, 16, 16), quality=90), 60000, 60000))
    assert bomb.stat().st_size < 2000
    start = time.perf_counter()
    for source in (bomb, bomb.read_bytes()):
        with pytest.raises(
            MediaReadError, match=r"60000x60000 = 3,600,000,000 pixels is over the limit of 89,478,485 pixels"
        ) as err:
            read_jpeg_coefficients(source)
        assert "M3L_MAX_IMAGE_PIXELS" in str(err.value)
        assert err.value.path == (str(bomb) if isinstance(source, Path) else "<bytes>")
    assert time.perf_counter() - start < 5
    # the same limit as every other reader: $M3L_MAX_IMAGE_PIXELS
    normal = tmp_path / "normal.jpg"
    normal.write_bytes(encode_jpeg(torch.rand(3, 40, 50), quality=80))
    assert read_jpeg_coefficients(normal).width == 50
    monkeypatch.setenv("M3L_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(MediaReadError, match=r"normal\.jpg: 50x40 = 2,000 pixels is over the limit of 1,000 pixels"):
        read_jpeg_coefficients(normal)
    small = tmp_path / "small.jpg"
    small.write_bytes(encode_jpeg(torch.rand(1, 20, 30), quality=80))
    assert read_jpeg_coefficients(small).height == 20  # under the limit: read as before


def test_a_file_over_the_size_bound_is_not_read(tmp_path, monkeypatch):
    """A file larger than any JPEG within the pixel limit can be (8 bytes a pixel plus 16 MiB
    of metadata) is refused from its size, before it is read into memory."""
    from m3l.data.jpeg import max_jpeg_file_bytes

    monkeypatch.setenv("M3L_MAX_IMAGE_PIXELS", "1000")
    assert max_jpeg_file_bytes() == 8 * 1000 + 16 * 2**20
    big = tmp_path / "big.jpg"
    with open(big, "wb") as fh:  # sparse: no disk space used
        fh.write(encode_jpeg(torch.rand(3, 16, 16), quality=90))
        fh.truncate(max_jpeg_file_bytes() + 1)
    with pytest.raises(
        MediaReadError, match=r"big\.jpg: 16,785,217 bytes is over the bound of 16,785,216 bytes.*M3L_MAX_IMAGE_PIXELS"
    ):
        read_jpeg_coefficients(big)


def test_the_frame_size_is_found_as_libjpeg_finds_it(tmp_path):
    """The size check walks the markers as libjpeg does: stray bytes and 0xFF fill bytes
    before a marker do not hide the frame header from it (libjpeg skips them and decodes)."""
    from m3l.data.jpeg import jpeg_frame_size

    data = encode_jpeg(torch.rand(3, 24, 40), quality=75)
    sof = next(i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xC0)
    padded = data[:sof] + b"junk\xff\xff\xff" + data[sof:]
    (tmp_path / "padded.jpg").write_bytes(padded)
    assert jpeg_frame_size(data) == jpeg_frame_size(padded) == (24, 40)
    assert jpeglib.read_dct(str(tmp_path / "padded.jpg")).width == 40  # libjpeg reads it too
    assert read_jpeg_coefficients(padded).height == 24
    assert jpeg_frame_size(data[:sof]) is None  # cut before the frame header
    with pytest.raises(MediaReadError, match="corrupt or truncated JPEG"):
        read_jpeg_coefficients(data[:sof])


def _patched(data: bytes, marker: int, offset: int, value: bytes) -> bytes:
    """``data`` with ``value`` written ``offset`` bytes after the first 0xFF ``marker``."""
    i = data.index(bytes([0xFF, marker]))
    return data[: i + offset] + value + data[i + offset + len(value) :]


def _damaged_jpegs() -> dict[str, tuple[bytes, str]]:
    """Real files (Pillow/libjpeg output) whose headers or length make them what libjpeg
    refuses, or decodes wrongly, with the reason m3l must give."""
    good = encode_jpeg(torch.from_numpy(np.array(_photo("coffee", (96, 80)))).permute(2, 0, 1), quality=50)
    sof = good.index(b"\xff\xc0")
    return {
        "truncated.jpg": (good[: len(good) * 3 // 4], r"truncated JPEG: the file ends before its end-of-image marker"),
        "no_end_marker.jpg": (good[:-2], r"truncated JPEG: the file ends before its end-of-image marker"),
        "twelve_bit.jpg": (
            _patched(good[:sof] + b"\xff\xc1" + good[sof + 2 :], 0xC1, 4, b"\x0c"),
            r"a 12-bit JPEG: only 8-bit JPEGs are read",
        ),
        "arithmetic.jpg": (
            good[:sof] + b"\xff\xc9" + good[sof + 2 :],
            r"an arithmetic-coded JPEG \(frame marker 0xFFC9\)",
        ),
        "zero_height.jpg": (_patched(good, 0xC0, 5, b"\x00\x00"), r"a zero height in the frame header \(96x0"),
        "zero_table.jpg": (_patched(good, 0xDB, 5, bytes(64)), r"quantization table 0 has 64 zero entries"),
    }


@pytest.mark.parametrize("name", sorted(_damaged_jpegs()))
def test_damaged_jpegs_are_refused_with_their_reason(tmp_path, name, capfd):
    """Each reason names the user's file and what is wrong with it (not m3l's temporary copy,
    not only libjpeg's line on stderr); a truncated file is refused, not decoded half gray."""
    data, reason = _damaged_jpegs()[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(MediaReadError, match=rf"{name.replace('.', '[.]')}: {reason}") as err:
        read_jpeg_coefficients(path)
    assert "input.jpg" not in str(err.value) and "m3l-jpeg-" not in str(err.value)
    assert str(path) == err.value.path


def test_complete_jpegs_with_extra_bytes_still_read(tmp_path):
    """What the marker walk must let through: bytes after the end-of-image marker, an EXIF
    thumbnail (a whole JPEG, with its own end marker, inside a segment), progressive scans."""
    photo = _photo("chelsea", (80, 64))
    thumb = tmp_path / "thumb.jpg"
    photo.resize((16, 12)).save(thumb, quality=80)
    exif = Image.Exif()
    exif[0x010E] = "a photo"
    with_exif = tmp_path / "exif.jpg"
    photo.save(with_exif, quality=80, exif=exif.tobytes())
    trailing = tmp_path / "trailing.jpg"
    trailing.write_bytes(with_exif.read_bytes() + b"\x00junk after the end")
    progressive = tmp_path / "progressive.jpg"
    photo.save(progressive, quality=60, progressive=True)
    app = tmp_path / "app_thumbnail.jpg"  # a whole JPEG inside an APP segment, as cameras store thumbnails
    inner = thumb.read_bytes()
    good = with_exif.read_bytes()
    app.write_bytes(good[:2] + b"\xff\xe5" + (len(inner) + 2).to_bytes(2, "big") + inner + good[2:])
    for path in (thumb, with_exif, trailing, progressive, app):
        jpeg = read_jpeg_coefficients(path)
        assert (jpeg.height, jpeg.width) == ((12, 16) if path == thumb else (64, 80)), path.name
