"""Correction inputs (``data.correct_dir``): a folder (recursive), one image or a video.

Items follow docs/contracts.md: ``input`` (original size, unpadded), ``relpath``, ``mode``,
``bit_depth``, ``height``, ``width``, ``alpha``; video frames add ``frame_index``,
``num_frames``, ``fps``. Bad inputs (missing path, empty folder, non-media file, corrupt image,
unreadable video) never stop the run: they are left out and listed in ``failures``. A video
with a frame over the pixel limit or of another size than its first is listed when that frame
is decoded, and the serializer drops what it wrote of it.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from m3l.data.datasets import list_files, relative_path
from m3l.data.failures import Failure, record_failure
from m3l.data.io import ImageInfo, is_image_file, is_video_file, iter_video_frames, probe_video, read_image
from m3l.errors import ConfigError, MediaReadError

log = logging.getLogger(__name__)


def scan_correction_inputs(
    path: str | os.PathLike[str], failures: list[Failure]
) -> tuple[Path, list[Path], list[Path]]:
    """Split ``path`` into (root, images, videos); missing paths, empty folders and other
    files are recorded in ``failures``."""
    root = Path(path).expanduser()
    if not root.exists():
        record_failure(failures, root, "does not exist; set data.correct_dir to a folder, an image or a video")
        return root, [], []
    files = [root] if root.is_file() else list_files(root)
    images = [f for f in files if is_image_file(f)]
    videos = [f for f in files if is_video_file(f)]
    for f in files:
        if not (is_image_file(f) or is_video_file(f)):
            record_failure(failures, f, f"not an image or a video (suffix {f.suffix or 'none'!r})")
    if root.is_dir() and not files:
        record_failure(failures, root, "folder is empty; expected images or videos")
    return root, images, videos


def _item(x: torch.Tensor, info: ImageInfo, relpath: str) -> dict[str, Any]:
    return {
        "input": x,
        "relpath": relpath,
        "mode": info.mode,
        "bit_depth": info.bit_depth,
        "height": info.height,
        "width": info.width,
        "alpha": info.alpha,
    }


class ImageCorrectionDataset(Dataset):
    """The images under ``path`` (or ``path`` itself), each read in full once at construction
    to leave out corrupt files (threads; Pillow decodes without the GIL).

    ``channels``: 1 or 3 converts for the net, None keeps each image as stored.
    """

    def __init__(
        self, path: str | os.PathLike[str], channels: int | None = 3, probe_workers: int | None = None
    ) -> None:
        self.failures: list[Failure] = []
        self.root, images, self.videos = scan_correction_inputs(path, self.failures)
        self.channels = channels
        with ThreadPoolExecutor(max_workers=probe_workers or min(8, os.cpu_count() or 1)) as pool:
            results = list(pool.map(self._probe, images))
        self.items: list[tuple[Path, str, tuple[int, int]]] = []
        for image, result in zip(images, results):
            if isinstance(result, MediaReadError):
                record_failure(self.failures, image, result.reason)
            else:
                self.items.append((image, relative_path(image, self.root), result))

    def _probe(self, path: Path) -> tuple[int, int] | MediaReadError:
        try:
            x, _ = read_image(path, self.channels)
        except MediaReadError as err:
            return err
        return (x.shape[-2], x.shape[-1])

    @property
    def sizes(self) -> list[tuple[int, int]]:
        return [size for _, _, size in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path, relpath, _ = self.items[index]
        x, info = read_image(path, self.channels)
        return _item(x, info, relpath)


def _shard() -> tuple[int, int]:
    """(index, count) of this reader among all ranks and DataLoader workers."""
    rank, world = 0, 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    worker = get_worker_info()
    w_id, w_count = (worker.id, worker.num_workers) if worker is not None else (0, 1)
    return rank * w_count + w_id, world * w_count


class VideoCorrectionDataset(IterableDataset):
    """Frames of the videos under ``path`` (or the video ``path``), in order, streaming.

    With ``window=T > 1`` each item's ``input`` is the ``(T, C, H, W)`` window centred on the
    frame (edges repeat the first/last frame), for video nets. Videos are split whole across
    DDP ranks and DataLoader workers, so every video is read and written by one process.
    """

    def __init__(self, path: str | os.PathLike[str], channels: int = 3, window: int = 1) -> None:
        if window < 1 or window % 2 == 0:
            raise ConfigError(f"VideoCorrectionDataset: window must be odd and >= 1, got {window}")
        self.failures: list[Failure] = []
        self.root, _, videos = scan_correction_inputs(path, self.failures)
        self.channels, self.window = channels, window
        self.videos = []
        for video in videos:
            try:
                self.videos.append((video, relative_path(video, self.root), probe_video(video)))
            except MediaReadError as err:
                record_failure(self.failures, video, err.reason)

    def __len__(self) -> int:
        index, count = _shard()
        return sum(info.num_frames for i, (_, _, info) in enumerate(self.videos) if i % count == index)

    def _frames(self, path: Path) -> Iterator[torch.Tensor]:
        try:
            yield from iter_video_frames(path, self.channels)
        except MediaReadError as err:
            record_failure(self.failures, path, err.reason)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        index, count = _shard()
        half = self.window // 2
        for i, (path, relpath, info) in enumerate(self.videos):
            if i % count != index:
                continue
            buffer: deque[torch.Tensor] = deque(maxlen=self.window)
            emitted = read = 0
            base = {
                "relpath": relpath,
                "mode": "L" if self.channels == 1 else "RGB",
                "bit_depth": 8,
                "height": info.height,
                "width": info.width,
                "alpha": None,
                "num_frames": info.num_frames,
                "fps": info.fps,
            }
            for frame in self._frames(path):
                read += 1
                buffer.extend([frame] * (half + 1) if not buffer else [frame])
                if len(buffer) == self.window:
                    yield self._emit(buffer, base, emitted)
                    emitted += 1
            while emitted < read:  # the last frames: repeat the last frame on the right
                buffer.append(buffer[-1])
                if len(buffer) == self.window:
                    yield self._emit(buffer, base, emitted)
                    emitted += 1

    def _emit(self, buffer: deque, base: dict[str, Any], frame_index: int) -> dict[str, Any]:
        x = buffer[self.window // 2] if self.window == 1 else torch.stack(list(buffer))
        # the size is the frame's own, not the header's (every frame has the first's size:
        # iter_video_frames refuses a video whose frames change size)
        return {**base, "input": x, "frame_index": frame_index, "height": x.shape[-2], "width": x.shape[-1]}


def collate_correction(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack ``input`` (all items must share a size) and keep everything else as lists."""
    if not items:
        raise ValueError("collate_correction: empty batch")
    shapes = {tuple(item["input"].shape) for item in items}
    if len(shapes) > 1:
        raise ConfigError(
            f"collate_correction: items of different sizes {sorted(shapes)} cannot share a batch; use batch size 1"
        )
    batch: dict[str, Any] = {"input": torch.stack([item["input"] for item in items])}
    for key in items[0]:
        if key != "input":
            batch[key] = [item.get(key) for item in items]
    return batch
