"""DCT-domain data: real JPEG encoding for training, and JPEG folders for correction."""

from __future__ import annotations

import os

import pytest
import torch
from PIL import Image

from m3l.data.samples import sample_paths

pytest.importorskip("jpeglib", reason="the jpeg extra (jpeglib) is not installed")

from m3l.data.dct_domain import (  # noqa: E402
    JPEGCorrectionDataset,
    RealJPEG,
    collate_jpeg_correction,
    effective_quality,
    jpeg_net_inputs,
    quality_tables,
)
from m3l.data.io import read_image  # noqa: E402
from m3l.data.jpeg import encode_jpeg, read_jpeg_coefficients  # noqa: E402


def _clean(size: int = 64) -> torch.Tensor:
    x, _ = read_image(sample_paths("train")[0], 3)
    return x[:, :size, :size]


def test_quality_tables_are_libjpegs():
    x = _clean()
    for q in (5, 10, 37, 50, 90):
        jpeg = read_jpeg_coefficients(encode_jpeg(x, quality=q))
        luma, chroma = quality_tables(q)
        assert jpeg.tables[0].flatten().tolist() == luma
        assert jpeg.tables[1].flatten().tolist() == chroma
        assert effective_quality(jpeg.tables[0]) == q


def test_real_jpeg_gives_the_decoded_image_and_the_net_inputs():
    x = _clean()
    g = torch.Generator().manual_seed(1)
    degraded, meta = RealJPEG(quality_range=[10, 40])(x, g)
    assert degraded.shape == x.shape and 10 <= meta["quality"] <= 40
    assert meta["dct_y"].shape == (1, 64, 64) and meta["dct_c"].shape == (2, 32, 32)
    assert meta["qt"].shape == (2, 8, 8) and meta["chroma_factor"].tolist() == [2.0, 2.0]
    # the input is the file decoded from the same coefficients the net reads
    again = read_jpeg_coefficients(encode_jpeg(x, quality=int(meta["quality"])))
    assert torch.equal(degraded, again.to_pixels().float() / 255)
    assert torch.equal(meta["dct_y"][0], again.dequantized(0).float() / 255)
    assert 20 < -10 * torch.log10(((degraded - x) ** 2).mean()) < 40


def test_custom_tables_differ_from_the_quality_tables_and_reach_the_net():
    x = _clean()
    degradation = RealJPEG(quality=20, table_jitter=0.5, custom_tables_p=1.0)
    _, meta = degradation(x, torch.Generator().manual_seed(0))
    standard = torch.tensor(quality_tables(20), dtype=torch.float32).reshape(2, 8, 8)
    assert not torch.equal(meta["qt"], standard)
    ratio = meta["qt"] / standard
    assert ratio.min() >= 0.5 and ratio.max() <= 1.75  # exp(+-0.5), rounded


def test_gray_and_mixed_channel_inputs():
    x = _clean()
    gray_file = read_jpeg_coefficients(encode_jpeg(x[:1], quality=30))
    pixels, meta = jpeg_net_inputs(gray_file, 3)  # a gray file for a colour net: neutral chroma
    assert pixels.shape == (3, 64, 64) and torch.equal(pixels[0], pixels[2])
    assert meta["dct_c"].abs().sum() == 0 and torch.equal(meta["qt"][0], meta["qt"][1])
    color_file = read_jpeg_coefficients(encode_jpeg(x, quality=30))
    pixels, meta = jpeg_net_inputs(color_file, 1)  # a colour file for a gray net: its Y
    assert pixels.shape == (1, 64, 64) and set(meta) == {"dct_y", "qt"}
    _, meta = RealJPEG(quality=30)(x[:1])
    assert "dct_c" not in meta


def test_correction_reads_jpegs_and_lists_everything_else(tmp_path):
    root = tmp_path / "photos"
    (root / "nested").mkdir(parents=True)
    with Image.open(sample_paths("val")[0]) as im:
        photo = im.convert("RGB").crop((0, 0, 70, 45))
    photo.save(root / "a.jpg", quality=15)
    photo.convert("L").save(root / "nested" / "b.jpeg", quality=40)
    photo.save(root / "c.png")
    (root / "notes.txt").write_text("not an image")
    (root / "broken.jpg").write_bytes((root / "a.jpg").read_bytes()[:150])
    dataset = JPEGCorrectionDataset(root, channels=3)
    assert sorted(relpath for _, relpath in dataset.items) == ["a.jpg", "nested/b.jpeg"]
    reasons = {f.path.rsplit("/", 1)[-1]: f.reason for f in dataset.failures}
    assert reasons["c.png"].startswith("not a JPEG file (a PNG image)") and "ffdnet_jpeg_color" in reasons["c.png"]
    assert "corrupt or truncated JPEG" in reasons["broken.jpg"]
    assert "notes.txt" in reasons
    batch = collate_jpeg_correction([dataset[0]])
    assert batch["input"].shape == (1, 3, 45, 70) and batch["meta"]["dct_y"].shape == (1, 1, 48, 72)
    assert batch["relpath"] == ["a.jpg"] and batch["height"] == [45]


def test_degradation_arguments_are_checked():
    with pytest.raises(ValueError, match="chroma_subsampling must be one of"):
        RealJPEG(quality=20, chroma_subsampling="4:1:1")
    with pytest.raises(ValueError, match="table_jitter must be >= 0"):
        RealJPEG(quality=20, table_jitter=-1)
    with pytest.raises(ValueError, match=r"expected one image \(C, H, W\)"):
        RealJPEG(quality=20)(torch.rand(2, 3, 16, 16))


def _finishes_within(seconds: float, make):
    """``make()``, run in a thread that must finish within ``seconds`` (a read that never ends
    fails the test instead of hanging it)."""
    import threading

    done: dict = {}

    def run() -> None:
        try:
            done["value"] = make()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            done["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still reading after {seconds} s: a FIFO or /dev/zero read without bound"
    if "error" in done:
        raise done["error"]
    return done["value"]


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"), reason="needs FIFOs and /dev/zero")
def test_correction_lists_special_files_and_bombs_without_reading_them(tmp_path):
    """Only regular files are read: a symlink to /dev/zero (endless) and a FIFO (blocks
    until a writer comes) named .jpg are listed as failures, promptly; so is a small file
    whose header declares 60000 x 60000 pixels."""
    from tests.data.test_jpeg import _declaring_size

    root = tmp_path / "photos"
    root.mkdir()
    (root / "a.jpg").write_bytes(encode_jpeg(_clean(32), quality=30))
    (root / "x.jpg").symlink_to("/dev/zero")
    os.mkfifo(root / "y.jpg")
    (root / "z.jpg").write_bytes(_declaring_size((root / "a.jpg").read_bytes(), 60000, 60000))
    dataset = _finishes_within(20, lambda: JPEGCorrectionDataset(root, channels=3))
    assert [relpath for _, relpath in dataset.items] == ["a.jpg"]
    reasons = {f.path.rsplit("/", 1)[-1]: f.reason for f in dataset.failures}
    assert reasons["x.jpg"].startswith("not a regular file (a character device)"), reasons
    assert reasons["y.jpg"].startswith("not a regular file (a FIFO)"), reasons
    assert "60000x60000 = 3,600,000,000 pixels is over the limit" in reasons["z.jpg"]
