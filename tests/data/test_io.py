"""Image and video I/O on real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from m3l.data.io import probe_video, read_image, read_video, write_image, write_video
from m3l.errors import MediaReadError

from .conftest import GOOD_IMAGES


@pytest.mark.parametrize("relpath", sorted(GOOD_IMAGES))
def test_read_image_reports_layout(image_tree: Path, relpath: str) -> None:
    mode, bit_depth, h, w = GOOD_IMAGES[relpath]
    x, info = read_image(image_tree / relpath)
    assert (info.mode, info.bit_depth, info.height, info.width) == (mode, bit_depth, h, w)
    assert x.dtype == torch.float32 and x.shape[-2:] == (h, w)
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    assert x.shape[0] == (1 if mode in ("L", "I;16") else 3)
    assert (info.alpha is not None) == (mode == "RGBA")


def test_channels_convert(image_tree: Path) -> None:
    gray, _ = read_image(image_tree / "rgb_odd.png", channels=1)
    rgb, _ = read_image(image_tree / "gray.png", channels=3)
    assert gray.shape[0] == 1 and rgb.shape[0] == 3
    assert torch.equal(rgb[0], rgb[1])


def test_sixteen_bit_keeps_precision(tmp_path: Path) -> None:
    values = np.arange(0, 65536, 17, dtype=np.uint16)[: 40 * 50].reshape(40, 50)
    Image.fromarray(values).save(tmp_path / "in.png")
    x, info = read_image(tmp_path / "in.png")
    assert info.bit_depth == 16
    write_image(tmp_path / "out.png", x, bit_depth=16)
    back = np.asarray(Image.open(tmp_path / "out.png"))
    np.testing.assert_array_equal(back, values)


def test_sixteen_bit_colour_png_round_trips_exactly(tmp_path: Path) -> None:
    x = torch.rand(3, 21, 17)
    write_image(tmp_path / "c16.png", x, bit_depth=16)
    y, info = read_image(tmp_path / "c16.png")
    assert info.bit_depth == 16 and y.shape == x.shape
    assert float((y - x).abs().max()) <= 0.5 / 65535 + 1e-7  # 16-bit precision, not 8-bit
    write_image(tmp_path / "again.png", y, bit_depth=16)
    assert (tmp_path / "again.png").read_bytes() == (tmp_path / "c16.png").read_bytes()


def test_sixteen_bit_rgba_png_keeps_alpha_at_16_bits(tmp_path: Path) -> None:
    x, a = torch.rand(3, 9, 11), torch.rand(1, 9, 11)
    write_image(tmp_path / "rgba16.png", x, bit_depth=16, alpha=a)
    y, info = read_image(tmp_path / "rgba16.png")
    assert float((y - x).abs().max()) <= 0.5 / 65535 + 1e-7
    assert info.alpha is not None and float((info.alpha - a).abs().max()) <= 0.5 / 65535 + 1e-7


def test_corrupt_sixteen_bit_colour_png_is_a_read_error(tmp_path: Path) -> None:
    write_image(tmp_path / "c16.png", torch.rand(3, 32, 32), bit_depth=16)
    data = (tmp_path / "c16.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:60])  # header intact, pixel data cut off
    with pytest.raises(MediaReadError, match="cut.png"):
        read_image(tmp_path / "cut.png")


def test_alpha_round_trip(image_tree: Path, tmp_path: Path) -> None:
    x, info = read_image(image_tree / "nested" / "rgba.png")
    write_image(tmp_path / "out.png", x, alpha=info.alpha)
    out = Image.open(tmp_path / "out.png")
    assert out.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(out), np.asarray(Image.open(image_tree / "nested" / "rgba.png")))


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_image(tmp_path / "bad.png", torch.rand(2, 3, 4, 5))
    assert list(tmp_path.iterdir()) == []
    write_image(tmp_path / "sub" / "ok.jpg", torch.rand(3, 8, 8))
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["ok.jpg"]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("truncated.png", "not a readable image"),
        ("fake.jpg", "not a readable image"),
        ("notes.txt", "not a readable image"),
        ("missing.png", "no such file"),
    ],
)
def test_bad_images_raise_with_path_and_reason(image_tree: Path, name: str, reason: str) -> None:
    with pytest.raises(MediaReadError) as err:
        read_image(image_tree / name)
    assert name in str(err.value) and reason in err.value.reason


def test_video_round_trip(video_file: Path, tmp_path: Path) -> None:
    info = probe_video(video_file)
    assert (info.num_frames, info.height, info.width, info.fps) == (12, 35, 47, 10.0)
    frames = read_video(video_file)
    assert frames.shape == (12, 3, 35, 47)
    assert read_video(video_file, start=4, count=3).shape == (3, 3, 35, 47)
    torch.testing.assert_close(read_video(video_file, start=4, count=1)[0], frames[4])
    out = write_video(tmp_path / "copy.mkv", frames, fps=info.fps, codec="ffv1")
    assert torch.equal(read_video(out), frames)  # FFV1 is lossless


def test_unreadable_video(tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(MediaReadError, match="broken.mp4"):
        probe_video(bad)


# ---------------------------------------------------------------------------- pixel limit


def test_huge_16bit_colour_png_is_refused_from_its_header(huge_png: Path) -> None:
    import time

    assert huge_png.stat().st_size < 2_000_000
    start = time.perf_counter()
    with pytest.raises(MediaReadError) as err:
        read_image(huge_png)
    assert time.perf_counter() - start < 1.0  # nothing was decoded
    message = str(err.value)
    assert "bomb.png" in message and "14000x14000" in message and "M3L_MAX_IMAGE_PIXELS" in message


def test_huge_8bit_png_is_refused_before_pillow_decodes_it(tmp_path: Path) -> None:
    import time

    from tests.conftest import write_huge_png

    # 100 M pixels: over the limit, but under twice Pillow's, where Pillow only warns and decodes
    path = write_huge_png(tmp_path / "wide.png", width=10000, height=10000, bit_depth=8, color_type=0)
    start = time.perf_counter()
    with pytest.raises(MediaReadError, match="10000x10000 = 100,000,000 pixels is over the limit"):
        read_image(path)
    assert time.perf_counter() - start < 1.0


def test_pixel_limit_follows_the_env_var_and_the_module_setting(tmp_path: Path, monkeypatch) -> None:
    from m3l.deploy import runtime

    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "small.png")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "small.jpg")
    monkeypatch.setenv("M3L_MAX_IMAGE_PIXELS", "599")
    for name in ("small.png", "small.jpg"):
        with pytest.raises(MediaReadError, match="30x20 = 600 pixels is over the limit of 599"):
            read_image(tmp_path / name)
    monkeypatch.setenv("M3L_MAX_IMAGE_PIXELS", "600")
    assert read_image(tmp_path / "small.jpg")[0].shape == (3, 20, 30)
    monkeypatch.setattr(runtime, "MAX_IMAGE_PIXELS", 100)  # the module setting wins
    with pytest.raises(MediaReadError, match="limit of 100 pixels"):
        read_image(tmp_path / "small.jpg")
    monkeypatch.setattr(runtime, "MAX_IMAGE_PIXELS", None)
    monkeypatch.setenv("M3L_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ValueError, match="M3L_MAX_IMAGE_PIXELS='lots' is not a positive whole number"):
        read_image(tmp_path / "small.jpg")


def test_video_frames_over_the_limit_are_refused_before_decoding(video_file: Path, monkeypatch) -> None:
    from m3l.data.io import iter_video_frames

    monkeypatch.setenv("M3L_MAX_IMAGE_PIXELS", "100")
    with pytest.raises(MediaReadError, match="over the limit of 100 pixels"):
        probe_video(video_file)
    with pytest.raises(MediaReadError, match="over the limit of 100 pixels"):
        next(iter_video_frames(video_file))


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_follow_the_users_umask(tmp_path, umask: int) -> None:
    """Atomic writes go through mkstemp (0600); the renamed output must get the umask's mode."""
    import os

    import torch

    from m3l.data.io import write_image
    from m3l.deploy.runtime import temp_file_beside

    old = os.umask(umask)
    try:
        out = write_image(tmp_path / f"out{umask:o}.png", torch.rand(3, 8, 8))
        fd, name = temp_file_beside(tmp_path / "x.bin")
        os.close(fd)
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    assert os.stat(name).st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("limit", [None, 5000])
def test_every_video_frame_is_checked_before_conversion(tmp_path: Path, monkeypatch, limit) -> None:
    """The header says 64x48 for all frames; the seventh is 128x96. With a pixel limit under
    it, that frame is refused as over the limit; without, as a size change; the frames before
    it come through, and no frame of another size ever does (issue 26 items 4, 10)."""
    pytest.importorskip("av")
    from m3l.data.io import iter_video_frames

    from .conftest import size_changing_mp4

    video = size_changing_mp4(tmp_path / "clip.mp4", (64, 48), 6, (128, 96))
    if limit:
        monkeypatch.setenv("M3L_MAX_IMAGE_PIXELS", str(limit))
    assert probe_video(video).num_frames == 7  # the header alone sees nothing wrong
    seen = []
    reason = (
        r"frame 6: 128x96 = 12,288 pixels is over the limit of 5,000"
        if limit
        else r"frame 6 is 128x96 pixels but the video began at 64x48"
    )
    with pytest.raises(MediaReadError, match=reason):
        for frame in iter_video_frames(video):
            seen.append(tuple(frame.shape))
    assert seen == [(3, 48, 64)] * 6
