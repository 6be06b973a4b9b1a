"""Reading and writing images and videos (Pillow, PyAV) as float tensors in [0, 1].

Images come back as ``(C, H, W)`` float32 tensors together with an :class:`ImageInfo`
(Pillow mode, bit depth, size, alpha), so that a restored image can be written back in the
layout it came in. Writes are atomic: a temporary file in the target folder, then a rename.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

# the pixel limit is shared with the dependency-free runtime, which keeps the one copy
from m3l.deploy.runtime import (  # noqa: F401 - re-exported for m3l.data users
    GRAY_MODES,
    MAX_IMAGE_PIXELS_ENV,
    ImageTooLargeError,
    open_image_checked,
    check_image_pixels,
    max_image_pixels,
    png_header,
    temp_file_beside,
)
from m3l.data.png16 import PNGDecodeError, decode_png16, encode_png16
from m3l.errors import ConfigError, MediaReadError, MissingDependencyError, ShapeError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg"})

# Pillow modes and what they hold: (bit depth, has alpha).
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})


@dataclass(frozen=True)
class ImageInfo:
    """What a restored image needs to be written back like its source."""

    mode: str
    bit_depth: int
    height: int
    width: int
    alpha: torch.Tensor | None = None  # (1, H, W) in [0, 1] when the source had alpha


def is_image_file(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_video_file(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def import_av() -> Any:
    """Import PyAV lazily, with a message that says how to get it."""
    try:
        import av
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            "Video support needs PyAV, which is not installed. "
            "Install it with `pip install 'm3l[video]'` (or `pip install av`)."
        ) from err
    return av


_png_header = png_header  # (bit depth, colour type, width, height) or None


def _read_png16(path: Path) -> np.ndarray:
    """A 16-bit gray+alpha, RGB or RGBA PNG as uint16 ``(H, W, 2|3|4)`` (Pillow decodes these
    at 8-bit precision): :mod:`m3l.data.png16`, numpy and zlib only."""
    try:
        return decode_png16(path.read_bytes())
    except (PNGDecodeError, OSError, ValueError) as err:
        raise MediaReadError(path, f"not a readable 16-bit PNG ({err})") from err


def _to_tensor(array: np.ndarray, scale: float) -> torch.Tensor:
    if array.ndim == 2:
        array = array[:, :, None]
    tensor = torch.from_numpy(np.ascontiguousarray(array.astype(np.float32) / scale))
    return tensor.permute(2, 0, 1).contiguous()


def read_image(path: str | os.PathLike[str], channels: int | None = None) -> tuple[torch.Tensor, ImageInfo]:
    """Read an image as ``(C, H, W)`` float32 in [0, 1].

    ``channels``: 1 converts to gray, 3 to RGB, None keeps gray as gray and colour as RGB.
    Alpha is never part of the tensor; it is returned in ``info.alpha`` so writers can put it
    back. 16-bit images keep their precision and record ``bit_depth=16``, so outputs are
    written as 16-bit: gray (``I;16``) through Pillow, colour and gray+alpha PNGs (which
    Pillow decodes at 8-bit precision) through :mod:`m3l.data.png16` (numpy and zlib).
    Raises :class:`MediaReadError` for anything that is not a readable image.
    """
    path = Path(path)
    if channels not in (None, 1, 3):
        raise ConfigError(f"channels must be 1 (gray), 3 (RGB) or None (as stored); got {channels!r}")
    if not path.is_file():
        raise MediaReadError(path, "no such file")
    header = _png_header(path) if path.suffix.lower() == ".png" else None
    if header is not None:  # checked before anything is decoded
        _check_pixels(path, header[2], header[3])
    if header is not None and header[0] == 16 and header[1] in (2, 4, 6):  # 16-bit RGB, gray+alpha, RGBA
        deep = _read_png16(path)
        alpha = _to_tensor(deep[:, :, -1], 65535.0) if deep.shape[-1] in (2, 4) else None
        colour = deep[:, :, :3] if deep.shape[-1] >= 3 else deep[:, :, :1]
        tensor = convert_channels(_to_tensor(colour, 65535.0), channels)
        mode = {2: "LA", 3: "RGB", 4: "RGBA"}[deep.shape[-1]]
        return tensor, ImageInfo(mode=mode, bit_depth=16, height=tensor.shape[-2], width=tensor.shape[-1], alpha=alpha)
    try:
        with open_image_checked(path) as im:  # the header's size is checked before decoding
            im.load()
            mode = im.mode
            img = im.copy()
    except ImageTooLargeError as err:
        raise MediaReadError(path, str(err)) from err
    except Exception as err:  # Pillow raises many types for corrupt data
        raise MediaReadError(path, f"not a readable image ({type(err).__name__}: {err})") from err

    bit_depth = 16 if mode in _SIXTEEN_BIT_MODES else 8
    if header is not None and header[0] == 16:
        bit_depth = 16
    alpha = None
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA") if mode != "LA" else img
        alpha = _to_tensor(np.asarray(rgba)[:, :, -1], 255.0)
        img = rgba.convert("RGB") if mode != "LA" else img.convert("L")

    if img.mode in _SIXTEEN_BIT_MODES or img.mode == "F":
        array = np.asarray(img).astype(np.float32)
        scale = 65535.0 if img.mode != "F" else max(float(array.max()), 1.0)
        tensor = _to_tensor(np.clip(array, 0, scale), scale)
    elif img.mode in ("1", "L"):
        tensor = _to_tensor(np.asarray(img.convert("L")), 255.0)
    else:  # P, CMYK, YCbCr, LAB, HSV, RGB, ...
        tensor = _to_tensor(np.asarray(img.convert("RGB")), 255.0)

    tensor = convert_channels(tensor, channels)
    info = ImageInfo(mode=mode, bit_depth=bit_depth, height=tensor.shape[-2], width=tensor.shape[-1], alpha=alpha)
    return tensor, info


def _check_pixels(path: Path, width: int, height: int, what: str = "") -> None:
    try:
        check_image_pixels(width, height)
    except ImageTooLargeError as err:
        raise MediaReadError(path, f"{what}{err}") from err


_LUMA = torch.tensor([0.299, 0.587, 0.114])


def convert_channels(x: torch.Tensor, channels: int | None) -> torch.Tensor:
    """Convert ``(..., C, H, W)`` between gray (1) and RGB (3); None leaves it as it is."""
    c = x.shape[-3]
    if channels is None or c == channels:
        return x
    if channels == 1 and c == 3:
        return (x * _LUMA.to(x).view(3, 1, 1)).sum(dim=-3, keepdim=True)
    if channels == 3 and c == 1:
        return x.expand(*x.shape[:-3], 3, *x.shape[-2:]).contiguous()
    raise ShapeError(
        f"cannot convert a {c}-channel tensor to {channels} channels: only gray (1) <-> RGB (3) is supported"
    )


def _atomic_target(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return temp_file_beside(path, ".part")


def atomic_write(path: str | os.PathLike[str], writer: Any) -> Path:
    """Call ``writer(tmp_path)`` then rename onto ``path``; the temp file is removed on error."""
    path = Path(path)
    fd, tmp = _atomic_target(path)
    os.close(fd)
    try:
        writer(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def tensor_to_array(x: torch.Tensor, bit_depth: int = 8) -> np.ndarray:
    """``(C, H, W)`` in [0, 1] to a uint8/uint16 ``(H, W[, C])`` array, rounded and clipped."""
    if x.ndim != 3:
        raise ShapeError(
            f"write_image expects one image tensor (C, H, W), got shape {tuple(x.shape)}; write a batch image by image"
        )
    peak = 65535.0 if bit_depth == 16 else 255.0
    dtype = np.uint16 if bit_depth == 16 else np.uint8
    array = (x.detach().float().cpu().clamp(0, 1) * peak).round().permute(1, 2, 0).numpy().astype(dtype)
    return array[:, :, 0] if array.shape[2] == 1 else array


def write_image(
    path: str | os.PathLike[str],
    x: torch.Tensor,
    bit_depth: int = 8,
    alpha: torch.Tensor | None = None,
    **save_kwargs: Any,
) -> Path:
    """Write ``(C, H, W)`` in [0, 1] atomically; the format follows the suffix.

    ``bit_depth=16`` is honoured for PNG (gray and colour) and gray TIFF; other formats are
    written at 8 bits. ``alpha`` (``(1, H, W)``) is appended as an alpha channel where the
    format supports it. Extra keyword arguments go to Pillow's ``save``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if alpha is not None and alpha.shape[-2:] == x.shape[-2:] and suffix in (".png", ".tif", ".tiff", ".webp"):
        x = torch.cat([x, alpha.to(x)], dim=0)
    channels = x.shape[0]
    sixteen = bit_depth == 16 and (suffix == ".png" or (suffix in (".tif", ".tiff") and channels == 1))
    array = tensor_to_array(x, 16 if sixteen else 8)

    def save(tmp: str) -> None:
        if sixteen and (suffix == ".png" and channels > 1):
            Path(tmp).write_bytes(encode_png16(array))
            return
        img = Image.fromarray(array)
        if suffix in (".jpg", ".jpeg") and img.mode in ("RGBA", "LA"):
            img = img.convert(img.mode[:-1])
        fmt = Image.registered_extensions().get(suffix)
        img.save(tmp, format=fmt, **save_kwargs)

    return atomic_write(path, save)


@dataclass(frozen=True)
class VideoInfo:
    """Frame rate, frame count and size of a video."""

    fps: float
    num_frames: int
    height: int
    width: int


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Frame rate, frame count (counted by demuxing when the header lacks it) and size."""
    av = import_av()
    path = Path(path)
    if not path.is_file():
        raise MediaReadError(path, "no such file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaReadError(path, "no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 25)
            height, width = stream.codec_context.height, stream.codec_context.width
            _check_pixels(path, width, height)
            num_frames = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
    except MediaReadError:
        raise
    except Exception as err:
        raise MediaReadError(path, f"not a readable video ({type(err).__name__}: {err})") from err
    if num_frames == 0:
        raise MediaReadError(path, "video has no decodable frames")
    return VideoInfo(fps=fps, num_frames=num_frames, height=height, width=width)


def _frame_to_tensor(frame: Any, channels: int | None) -> torch.Tensor:
    if channels == 1:
        return _to_tensor(frame.to_ndarray(format="gray"), 255.0)
    return _to_tensor(frame.to_ndarray(format="rgb24"), 255.0)


def iter_video_frames(path: str | os.PathLike[str], channels: int | None = 3) -> Iterator[torch.Tensor]:
    """Decode a video frame by frame as ``(C, H, W)`` tensors (streaming, constant memory). Each
    frame's size is checked before it is converted (a header gives one size, a stream may change
    it): a frame over the pixel limit or of another size than the first is a MediaReadError."""
    av = import_av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaReadError(path, "no video stream")
            stream = container.streams.video[0]
            _check_pixels(Path(path), stream.codec_context.width, stream.codec_context.height)
            stream.thread_type = "AUTO"
            first: tuple[int, int] | None = None
            for index, frame in enumerate(container.decode(stream)):
                _check_pixels(Path(path), frame.width, frame.height, f"frame {index}: ")
                if first not in (None, (frame.width, frame.height)):
                    raise MediaReadError(
                        path,
                        f"frame {index} is {frame.width}x{frame.height} pixels but the video began at "
                        f"{first[0]}x{first[1]}: videos whose frame size changes are not corrected (split it "
                        "where the size changes, e.g. with ffmpeg)",
                    )
                first = (frame.width, frame.height)
                yield _frame_to_tensor(frame, channels)
    except MediaReadError:
        raise
    except Exception as err:
        raise MediaReadError(path, f"video decoding failed ({type(err).__name__}: {err})") from err


def read_video(
    path: str | os.PathLike[str], start: int = 0, count: int | None = None, channels: int | None = 3
) -> torch.Tensor:
    """Frames ``start .. start+count-1`` of a video as ``(T, C, H, W)``."""
    frames = []
    for i, frame in enumerate(iter_video_frames(path, channels)):
        if i >= start:
            frames.append(frame)
        if count is not None and len(frames) == count:
            break
    if not frames:
        raise MediaReadError(path, f"no frames from index {start}")
    return torch.stack(frames)


class VideoWriter:
    """Append frames to a video file; the file appears (atomically) on :meth:`close`.

    ``codec="h264"`` (libx264, ``crf`` sets quality, 0 is lossless) or ``"ffv1"`` (lossless,
    use a ``.mkv`` suffix). Frames are ``(C, H, W)`` in [0, 1], gray or RGB.
    """

    def __init__(
        self, path: str | os.PathLike[str], fps: float, codec: str = "h264", crf: int = 18, pix_fmt: str | None = None
    ) -> None:
        av = import_av()
        self.path = Path(path)
        fd, self._tmp = _atomic_target(self.path)
        os.close(fd)
        suffix = self.path.suffix or ".mkv"
        self._container = av.open(self._tmp, mode="w", format=_container_format(suffix))
        rate = Fraction(fps).limit_denominator(1001)
        self._stream = self._container.add_stream("libx264" if codec == "h264" else codec, rate=rate)
        if codec == "h264":
            self._stream.pix_fmt = pix_fmt or ("yuv444p" if crf == 0 else "yuv420p")
            self._stream.options = {"crf": str(crf), "preset": "medium" if crf else "ultrafast"}
        elif pix_fmt:
            self._stream.pix_fmt = pix_fmt
        self._frames = 0
        self._closed = False

    def write(self, frame: torch.Tensor) -> None:
        av = import_av()
        array = tensor_to_array(convert_channels(frame, 3))
        h, w = array.shape[:2]
        if self._frames == 0:
            if self._stream.pix_fmt in ("yuv420p",) and (h % 2 or w % 2):
                # 4:2:0 needs even sizes; keep every pixel with 4:4:4 instead of cropping.
                self._stream.pix_fmt = "yuv444p"
            self._stream.width, self._stream.height = w, h
        video_frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self._frames += 1

    def close(self) -> Path:
        """Flush, close and move the file into place."""
        if self._closed:
            return self.path
        self._closed = True
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            os.replace(self._tmp, self.path)
        finally:
            if os.path.exists(self._tmp):
                os.unlink(self._tmp)
        return self.path

    def abort(self) -> None:
        """Drop the partial file."""
        self._closed = True
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - best effort on an already broken stream
            pass
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _container_format(suffix: str) -> str:
    return {".mkv": "matroska", ".mp4": "mp4", ".mov": "mov", ".avi": "avi", ".webm": "webm", ".m4v": "mp4"}.get(
        suffix.lower(), "matroska"
    )


def write_video(path: str | os.PathLike[str], frames: torch.Tensor, fps: float = 25.0, **kwargs: Any) -> Path:
    """Write ``(T, C, H, W)`` frames as a video (see :class:`VideoWriter` for options)."""
    with VideoWriter(path, fps, **kwargs) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)
