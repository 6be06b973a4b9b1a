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
from m3l.dct import block_dct, block_idct, quantization_plane

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
    with pytest.raises(MediaReadError, match=r"truncated\.jpg: corrupt or truncated JPEG"):
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
