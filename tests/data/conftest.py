"""Fixtures for the data tests: real image files and a real video on disk, made from the
built-in sample photos (odd sizes, gray, 16-bit, RGBA, several formats, nested folders, a
corrupt file and a non-image file)."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from m3l.data.io import write_video
from m3l.data.samples import sample_paths


def _photo(name: str, size: tuple[int, int]) -> Image.Image:
    """A crop of a sample photo, ``size`` = (width, height)."""
    path = next(p for p in sample_paths("train") + sample_paths("val") if p.stem == name)
    with Image.open(path) as im:
        return im.convert("RGB").crop((0, 0, *size))


@pytest.fixture(scope="session")
def image_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of good images in many layouts plus bad files; see ``GOOD_IMAGES``."""
    root = tmp_path_factory.mktemp("images")
    (root / "nested" / "deeper").mkdir(parents=True)
    _photo("astronaut", (67, 45)).save(root / "rgb_odd.png")
    _photo("coffee", (80, 64)).convert("L").save(root / "gray.png")
    gray16 = np.asarray(_photo("camera", (53, 41)).convert("L"), dtype=np.uint16) * 257 + 7
    Image.fromarray(gray16).save(root / "nested" / "gray16.png")
    rgba = _photo("rocket", (40, 30)).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((40, 30)))
    rgba.save(root / "nested" / "rgba.png")
    _photo("ihc", (72, 48)).save(root / "nested" / "deeper" / "photo.jpg", quality=95)
    _photo("brick", (33, 35)).save(root / "nested" / "photo.bmp")
    _photo("grass", (48, 40)).save(root / "photo.tif")
    _photo("gravel", (40, 48)).save(root / "photo.webp", lossless=True)
    _photo("chelsea", (5, 3)).save(root / "tiny.png")
    # bad inputs
    full = root / "truncated.png"
    _photo("coins", (64, 64)).save(full)
    data = full.read_bytes()
    full.write_bytes(data[: len(data) // 2])
    (root / "notes.txt").write_text("not an image\n")
    (root / "fake.jpg").write_bytes(b"this is not a jpeg")
    return root


GOOD_IMAGES = {
    # relpath: (mode, bit_depth, height, width)
    "rgb_odd.png": ("RGB", 8, 45, 67),
    "gray.png": ("L", 8, 64, 80),
    "nested/gray16.png": ("I;16", 16, 41, 53),
    "nested/rgba.png": ("RGBA", 8, 30, 40),
    "nested/deeper/photo.jpg": ("RGB", 8, 48, 72),
    "nested/photo.bmp": ("RGB", 8, 35, 33),
    "photo.tif": ("RGB", 8, 40, 48),
    "photo.webp": ("RGB", 8, 48, 40),
    "tiny.png": ("RGB", 8, 3, 5),
}
BAD_FILES = {"truncated.png", "notes.txt", "fake.jpg"}


@pytest.fixture(scope="session")
def clean_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Only good images, nested, for training/eval datasets."""
    root = tmp_path_factory.mktemp("clean")
    (root / "a" / "b").mkdir(parents=True)
    _photo("astronaut", (97, 81)).save(root / "one.png")
    _photo("coffee", (120, 90)).convert("L").save(root / "a" / "two.png")
    _photo("rocket", (100, 77)).save(root / "a" / "b" / "three.jpg", quality=95)
    return root


@pytest.fixture(scope="session")
def video_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 12-frame H.264 video (a pan across a sample photo), 10 fps, 47x35 (odd size)."""
    root = tmp_path_factory.mktemp("video")
    photo = torch.from_numpy(np.asarray(_photo("astronaut", (120, 80)), dtype=np.float32) / 255).permute(2, 0, 1)
    frames = torch.stack([photo[:, 5 : 5 + 35, 3 * t : 3 * t + 47] for t in range(12)])
    return write_video(root / "clip.mp4", frames, fps=10, crf=0)


def _h264(frames: list[np.ndarray]) -> bytes:
    """An H.264 elementary stream of ``frames`` (libx264, no B-frames)."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="h264") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt, stream.options = "yuv420p", {"bframes": "0"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def size_changing_mp4(path: Path, first: tuple[int, int], count: int, then: tuple[int, int]) -> Path:
    """A real mp4 whose first ``count`` frames are ``first`` (width, height) and whose last
    frame is ``then``: two H.264 streams joined (the second's parameter sets travel in band, so
    decoders switch size), muxed by PyAV. The container's header gives the first size only."""
    import av

    rng = np.random.default_rng(0)
    raw = path.with_suffix(".h264")
    raw.write_bytes(
        _h264([rng.integers(0, 256, (first[1], first[0], 3), dtype=np.uint8) for _ in range(count)])
        + _h264([rng.integers(0, 256, (then[1], then[0], 3), dtype=np.uint8)])
    )
    with av.open(str(raw), format="h264") as source, av.open(str(path), mode="w") as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        stream.time_base = Fraction(1, 25)
        for i, packet in enumerate(p for p in source.demux(source.streams.video[0]) if p.size):
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, 25)
            target.mux(packet)
    raw.unlink()
    with av.open(str(path)) as check:  # what the test relies on
        video = check.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == first
        assert [(f.width, f.height) for f in check.decode(video)] == [first] * count + [then]
    return path
