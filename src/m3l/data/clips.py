"""Video clip datasets: windows of T consecutive frames, degraded per clip or per frame.

Sources are video files (PyAV) or folders of frames (every folder whose files are images is one
sequence), or photos panned by a moving crop (:class:`PhotoPanClipDataset`: real image content
with real, known global motion, so the packaged video demo needs no video files).

Samples: ``input`` ``(T, C, H, W)``, ``target`` the centre frame ``(C, H, W)`` (or the whole
clip with ``target="clip"``), ``meta`` (per-frame metadata stacked to ``(T, ...)`` when the
parameters vary per frame), ``relpath`` (``<sequence>#<first frame>``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from m3l.data.datasets import (
    PathsLike,
    training_generator,
    as_path_list,
    list_files,
    list_images,
    pad_to_min_size,
    random_crop_box,
    random_flip_rot,
    relative_path,
    stable_seed,
)
from m3l.data.degradations import Degradation, Identity, Meta
from m3l.data.failures import Failure, record_failure
from m3l.data.io import is_image_file, is_video_file, probe_video, read_image, read_video
from m3l.errors import ConfigError, DataNotFoundError, MediaReadError

log = logging.getLogger(__name__)


def degrade_clip(
    clip: torch.Tensor, degradation: Degradation, per_frame_params: bool, generator: torch.Generator
) -> tuple[torch.Tensor, Meta]:
    """Degrade ``(T, C, H, W)`` with one parameter set for the clip, or one per frame."""
    if degradation.temporal or not per_frame_params:
        return degradation(clip, generator)
    frames, metas = zip(*(degradation(frame, generator) for frame in clip))
    return torch.stack(frames), {k: torch.stack([m[k] for m in metas]) for k in metas[0]}


def _target(clip: torch.Tensor, target: str) -> torch.Tensor:
    return clip[clip.shape[0] // 2] if target == "center" else clip


@dataclass(frozen=True)
class Sequence_:
    """One frame sequence: a video file or a folder of frames."""

    path: Path
    relpath: str
    num_frames: int
    frames: tuple[Path, ...] = ()  # folder of frames; empty for a video file


def find_sequences(roots: PathsLike, failures: list[Failure], key: str) -> list[Sequence_]:
    """Video files and folders of frames under the roots; unreadable videos go to ``failures``."""
    sequences: list[Sequence_] = []
    for root in as_path_list(roots):
        if not root.exists():
            raise DataNotFoundError(
                f"{key}: {root} does not exist; expected videos or folders of frames (set {key}=PATH)"
            )
        files = [root] if root.is_file() else list_files(root)
        by_folder: dict[Path, list[Path]] = {}
        for f in files:
            if is_video_file(f):
                try:
                    info = probe_video(f)
                except MediaReadError as err:
                    record_failure(failures, f, err.reason)
                    continue
                sequences.append(Sequence_(f, relative_path(f, root), info.num_frames))
            elif is_image_file(f):
                by_folder.setdefault(f.parent, []).append(f)
        for folder, frames in sorted(by_folder.items()):
            rel = relative_path(folder, root) if folder != root else root.name
            sequences.append(Sequence_(folder, rel, len(frames), tuple(sorted(frames))))
    if not sequences:
        raise DataNotFoundError(
            f"{key}: no videos or folders of frames under {[str(r) for r in as_path_list(roots)]}; point {key} at "
            "videos (mp4, mkv, avi, ...) or folders of numbered frames"
        )
    return sequences


class VideoClipDataset(Dataset):
    """Windows of ``clip_length`` consecutive frames from videos or folders of frames.

    Training: ``clips_per_sequence`` random windows per sequence and epoch, one random
    ``patch_size`` crop and flip/rot90 shared by the frames. Evaluation: non-overlapping
    windows (at most ``max_eval_clips`` per sequence), seeded from the relative path.
    Sequences shorter than ``clip_length`` repeat their last frame.
    """

    def __init__(
        self,
        roots: PathsLike,
        clip_length: int = 5,
        degradation: Degradation | None = None,
        train: bool = True,
        patch_size: int | None = 96,
        clips_per_sequence: int = 8,
        max_eval_clips: int = 4,
        per_frame_params: bool = False,
        target: str = "center",
        channels: int = 3,
        seed: int = 0,
        cache: bool = True,
        key: str = "data.train_dir",
    ) -> None:
        if target not in ("center", "clip"):
            raise ConfigError(f"{key}: target must be 'center' or 'clip', got {target!r}")
        self.failures: list[Failure] = []
        self.sequences = find_sequences(roots, self.failures, key)
        self.clip_length, self.degradation, self.train = int(clip_length), degradation or Identity(), train
        self.patch_size, self.per_frame_params, self.target = patch_size, per_frame_params, target
        self.channels, self.seed, self.cache = channels, seed, cache
        self._cache: dict[int, torch.Tensor] = {}
        if train:
            self.windows = [(s, -1) for s in range(len(self.sequences)) for _ in range(max(int(clips_per_sequence), 1))]
        else:
            self.windows = []
            for s, seq in enumerate(self.sequences):
                starts = list(range(0, max(seq.num_frames - self.clip_length, 0) + 1, self.clip_length))[
                    : max(int(max_eval_clips), 1)
                ]
                self.windows.extend((s, start) for start in starts)

    def __len__(self) -> int:
        return len(self.windows)

    def _read(self, s: int, start: int) -> torch.Tensor:
        seq = self.sequences[s]
        if s in self._cache:
            frames = self._cache[s]
        elif seq.frames:
            indices = (
                range(start, min(start + self.clip_length, seq.num_frames)) if not self.cache else range(seq.num_frames)
            )
            frames = torch.stack([read_image(seq.frames[i], self.channels)[0] for i in indices])
            if not self.cache:
                return self._pad_clip(frames)
        else:
            frames = read_video(
                seq.path, 0 if self.cache else start, None if self.cache else self.clip_length, self.channels
            )
            if not self.cache:
                return self._pad_clip(frames)
        if self.cache:
            self._cache[s] = frames
        return self._pad_clip(frames[start : start + self.clip_length])

    def _pad_clip(self, frames: torch.Tensor) -> torch.Tensor:
        missing = self.clip_length - frames.shape[0]
        return torch.cat([frames, frames[-1:].expand(missing, *frames.shape[1:])]) if missing > 0 else frames

    def __getitem__(self, index: int) -> dict:
        s, start = self.windows[index]
        seq = self.sequences[s]
        if self.train:
            generator = training_generator()
            start = int(torch.randint(0, max(seq.num_frames - self.clip_length, 0) + 1, (), generator=generator))
        else:
            generator = torch.Generator().manual_seed(stable_seed(self.seed, seq.relpath, start))
        clip = self._read(s, start)
        if self.patch_size is not None:
            clip = pad_to_min_size(clip, self.patch_size)
            if self.train:
                top, left = random_crop_box(clip.shape[-2], clip.shape[-1], self.patch_size, generator)
            else:
                top, left = (clip.shape[-2] - self.patch_size) // 2, (clip.shape[-1] - self.patch_size) // 2
            clip = clip[..., top : top + self.patch_size, left : left + self.patch_size]
            if self.train:
                clip = random_flip_rot([clip], generator)[0]
        degraded, meta = degrade_clip(clip.contiguous(), self.degradation, self.per_frame_params, generator)
        return {
            "input": degraded,
            "target": _target(clip, self.target),
            "meta": meta,
            "relpath": f"{seq.relpath}#{start}",
        }


class PhotoPanClipDataset(Dataset):
    """Clips made by panning a ``patch_size`` window across a photo at a random constant
    velocity (up to ``max_speed`` pixels per frame): real content with real motion.

    ``clips_per_image`` clips per photo and epoch; evaluation clips are seeded from the
    photo's relative path and the clip index.
    """

    def __init__(
        self,
        roots: PathsLike,
        clip_length: int = 5,
        degradation: Degradation | None = None,
        train: bool = True,
        patch_size: int = 96,
        clips_per_image: int = 4,
        max_speed: float = 4.0,
        per_frame_params: bool = False,
        target: str = "center",
        channels: int = 3,
        seed: int = 0,
        key: str = "data.train_dir",
    ) -> None:
        if target not in ("center", "clip"):
            raise ConfigError(f"{key}: target must be 'center' or 'clip', got {target!r}")
        self.failures: list[Failure] = []
        self.photos: list[tuple[str, torch.Tensor]] = []
        for root in as_path_list(roots):
            for path in list_images(root, key):
                try:
                    self.photos.append((relative_path(path, root), read_image(path, channels)[0]))
                except MediaReadError as err:
                    record_failure(self.failures, path, err.reason)
        if not self.photos:
            raise DataNotFoundError(f"{key}: no readable photos under {roots}; point {key} at a folder of images")
        self.clip_length, self.degradation, self.train = int(clip_length), degradation or Identity(), train
        self.patch_size, self.clips_per_image, self.max_speed = (
            int(patch_size),
            max(int(clips_per_image), 1),
            float(max_speed),
        )
        self.per_frame_params, self.target, self.seed = per_frame_params, target, seed

    def __len__(self) -> int:
        return len(self.photos) * self.clips_per_image

    def __getitem__(self, index: int) -> dict:
        relpath, photo = self.photos[index // self.clips_per_image]
        k = index % self.clips_per_image
        generator = (
            training_generator() if self.train else torch.Generator().manual_seed(stable_seed(self.seed, relpath, k))
        )
        t, size = self.clip_length, self.patch_size
        speed = (torch.rand(2, generator=generator) * 2 - 1) * self.max_speed
        travel = (speed * (t - 1)).abs().ceil().int().tolist()
        photo = pad_to_min_size(photo, size + max(travel))
        h, w = photo.shape[-2:]
        top0, left0 = random_crop_box(h - travel[0], w - travel[1], size, generator)
        top0 += travel[0] if speed[0] < 0 else 0
        left0 += travel[1] if speed[1] < 0 else 0
        frames = []
        for i in range(t):
            top, left = int(round(top0 + float(speed[0]) * i)), int(round(left0 + float(speed[1]) * i))
            frames.append(photo[..., top : top + size, left : left + size])
        clip = torch.stack(frames).contiguous()
        degraded, meta = degrade_clip(clip, self.degradation, self.per_frame_params, generator)
        return {"input": degraded, "target": _target(clip, self.target), "meta": meta, "relpath": f"{relpath}#{k}"}
