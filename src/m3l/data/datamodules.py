"""LightningDataModules for restoration: images (clean folders with a degradation, or pairs)
and video clips, each with ``predict_dataloader`` reading ``correct_dir``.

``channels`` (``data.channels``) is what the net sees: 1 converts everything to gray, 3 to RGB.
``failures`` lists every bad input met so far (path and reason).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset, default_collate

from m3l.data.clips import PhotoPanClipDataset, VideoClipDataset
from m3l.data.correction import ImageCorrectionDataset, VideoCorrectionDataset, collate_correction
from m3l.data.datasets import CleanImageDataset, PairedImageDataset, PathsLike
from m3l.data.degradations import Degradation
from m3l.data.failures import Failure
from m3l.data.read_ahead import ReadAheadLoader
from m3l.errors import ConfigError

log = logging.getLogger(__name__)

TestDirs = PathsLike | Mapping[str, PathsLike] | None


def collate_samples(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The default collate, with a hint when whole images of different sizes meet in a batch."""
    try:
        return default_collate(items)
    except RuntimeError as err:
        shapes = sorted({tuple(item["input"].shape) for item in items})
        raise ConfigError(
            f"cannot batch samples of shapes {shapes}: set data.val_batch_size=1 or data.val_patch_size=N "
            "to evaluate whole images of different sizes"
        ) from err


def check_int(key: str, value: Any, minimum: int = 1, optional: bool = False) -> int | None:
    """``value`` as an int >= ``minimum`` (None allowed when ``optional``), or a
    :class:`ConfigError` naming the config key ``key``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{key} must be an integer >= {minimum}{' or null' if optional else ''}, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number != float(value) or number < minimum:
        raise ConfigError(f"{key} must be an integer >= {minimum}{' or null' if optional else ''}, got {value!r}")
    return number


def _named_sets(dirs: TestDirs, default_name: str) -> dict[str, PathsLike]:
    """``{name: dirs}``: a mapping as given, a path or list as one set named ``default_name``."""
    if dirs is None:
        return {}
    if isinstance(dirs, Mapping):
        return {str(k): v for k, v in dirs.items()}
    return {default_name: dirs}


class _DataModuleBase(L.LightningDataModule):
    """Shared by the datamodules: setup by split, loaders, ``correct_dir`` prediction, ``failures``."""

    #: odd temporal window of video correction items (1: one frame per item, for image nets)
    predict_window: int = 1
    #: batches of ``test`` and ``correct`` read and decoded ahead on a thread while the net runs
    #: (without worker processes: ``num_workers=0``); 0 reads in the compute thread
    read_ahead: int = 2

    def __init__(
        self,
        correct_dir: str | os.PathLike[str] | None,
        channels: int,
        batch_size: int,
        val_batch_size: int,
        num_workers: int,
    ) -> None:
        super().__init__()
        if channels not in (1, 3):
            raise ConfigError(f"data.channels must be 1 (gray) or 3 (RGB), got {channels!r}")
        self.correct_dir = correct_dir
        self.channels = int(channels)
        self.batch_size = check_int("data.batch_size", batch_size)
        self.val_batch_size = check_int("data.val_batch_size", val_batch_size)
        self.num_workers = check_int("data.num_workers", num_workers, minimum=0)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_sets: dict[str, Dataset] = {}
        self.predict_sets: list[Dataset] = []

    @property
    def failures(self) -> list[Failure]:
        """Every bad input met by this datamodule's datasets (path and reason)."""
        sets = [self.train_set, self.val_set, *self.test_sets.values(), *self.predict_sets]
        out: list[Failure] = []
        for dataset in sets:
            for failure in getattr(dataset, "failures", []):
                if failure not in out:
                    out.append(failure)
        return out

    @property
    def test_names(self) -> list[str]:
        """Names of the test sets, in ``test_dataloader`` order (index = ``dataloader_idx``)."""
        return list(self.test_sets)

    def _loader(
        self,
        dataset: Dataset,
        batch_size: int,
        shuffle: bool,
        collate: Any = collate_samples,
        drop_last: bool = False,
        read_ahead: int = 0,
    ) -> DataLoader:
        return ReadAheadLoader(
            dataset,
            read_ahead=read_ahead,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=collate,
            persistent_workers=self.num_workers > 0,
            drop_last=drop_last,
        )

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            raise ConfigError("no training data: set data.train_dir")
        return self._loader(
            self.train_set, self.batch_size, shuffle=True, drop_last=len(self.train_set) > self.batch_size
        )

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set, self.val_batch_size, shuffle=False) if self.val_set is not None else []

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        if not self.test_sets:
            raise ConfigError("no test data: set data.test_dir (a folder, a list, or name: folder pairs)")
        loaders = [
            self._loader(d, self.val_batch_size, shuffle=False, read_ahead=self.read_ahead)
            for d in self.test_sets.values()
        ]
        return loaders[0] if len(loaders) == 1 else loaders

    def build(self, split: str) -> Dataset | None:
        """The dataset of ``split`` ("train", "val", "test"), or None when it has no folder."""
        raise NotImplementedError

    def build_tests(self) -> dict[str, Dataset]:
        test = self.build("test")
        return {"test": test} if test is not None else {}

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self.build("train")
        if stage in (None, "fit", "validate") and self.val_set is None:
            self.val_set = self.build("val")
        if stage in (None, "test") and not self.test_sets:
            self.test_sets = self.build_tests()
        if stage == "predict" and not self.predict_sets:
            self.setup_predict()

    def setup_predict(self) -> None:
        if self.correct_dir is None:
            raise ConfigError("nothing to correct: set data.correct_dir to a folder (recursive), an image or a video")
        images = ImageCorrectionDataset(self.correct_dir, self.channels)
        self.predict_sets = [images]
        if images.videos:
            videos = VideoCorrectionDataset(self.correct_dir, self.channels, window=self.predict_window)
            self.predict_sets.append(videos)

    def predict_dataloader(self) -> DataLoader | list[DataLoader]:
        if not self.predict_sets:
            self.setup_predict()
        loaders = []
        for dataset in self.predict_sets:
            if isinstance(dataset, ImageCorrectionDataset):
                same_size = len(set(dataset.sizes)) <= 1
                if not same_size and self.val_batch_size > 1:
                    log.info("correction inputs differ in size: batch size 1")
                batch_size = self.val_batch_size if same_size else 1
                loaders.append(
                    self._loader(
                        dataset, batch_size, shuffle=False, collate=collate_correction, read_ahead=self.read_ahead
                    )
                )
            else:
                loaders.append(
                    self._loader(
                        dataset,
                        self.val_batch_size,
                        shuffle=False,
                        collate=collate_correction,
                        read_ahead=self.read_ahead,
                    )
                )
        if len(loaders) == 2 and len(self.predict_sets[0]) == 0:
            return loaders[1]
        return loaders[0] if len(loaders) == 1 else loaders


def _patch_options(patch_size: Any, patches_per_image: Any, val_patch_size: Any) -> tuple[int, int, int | None]:
    return (
        check_int("data.patch_size", patch_size),
        check_int("data.patches_per_image", patches_per_image),
        check_int("data.val_patch_size", val_patch_size, optional=True),
    )


class RestorationDataModule(_DataModuleBase):
    """Clean images + a degradation -> ``(degraded, clean)``; see docs/data.md.

    ``test_dir`` may be a mapping ``name: folder`` for several test sets (one loader each,
    in :attr:`test_names` order). ``val_degradation``/``test_degradation`` default to
    ``degradation``. ``root_dir`` is accepted for benchmark-layout configs that derive the
    folders from it.
    """

    def __init__(
        self,
        train_dir: PathsLike | None = None,
        val_dir: PathsLike | None = None,
        test_dir: TestDirs = None,
        correct_dir: str | os.PathLike[str] | None = None,
        degradation: Degradation | None = None,
        val_degradation: Degradation | None = None,
        test_degradation: Degradation | None = None,
        patch_size: int = 128,
        batch_size: int = 16,
        val_batch_size: int = 1,
        num_workers: int = 0,
        channels: int = 3,
        patches_per_image: int = 1,
        val_patch_size: int | None = None,
        seed: int = 0,
        cache_images: bool = False,
        augment: bool = True,
        root_dir: str | None = None,
    ) -> None:
        super().__init__(correct_dir, channels, batch_size, val_batch_size, num_workers)
        self.train_dir, self.val_dir, self.test_dir, self.root_dir = train_dir, val_dir, test_dir, root_dir
        self.degradation = degradation
        self.val_degradation = val_degradation or degradation
        self.test_degradation = test_degradation or self.val_degradation
        self.patch_size, self.patches_per_image, self.val_patch_size = _patch_options(
            patch_size, patches_per_image, val_patch_size
        )
        self.seed, self.cache_images, self.augment = seed, cache_images, augment

    def _eval_set(self, dirs: PathsLike, degradation: Degradation | None, key: str) -> CleanImageDataset:
        return CleanImageDataset(
            dirs,
            degradation,
            train=False,
            eval_patch_size=self.val_patch_size,
            channels=self.channels,
            seed=self.seed,
            cache=self.cache_images,
            key=key,
        )

    def build(self, split: str) -> CleanImageDataset | None:
        if split == "train" and self.train_dir is not None:
            return CleanImageDataset(
                self.train_dir,
                self.degradation,
                train=True,
                patch_size=self.patch_size,
                patches_per_image=self.patches_per_image,
                channels=self.channels,
                seed=self.seed,
                cache=self.cache_images,
                augment=self.augment,
                key="data.train_dir",
            )
        if split == "val" and self.val_dir is not None:
            return self._eval_set(self.val_dir, self.val_degradation, "data.val_dir")
        return None

    def build_tests(self) -> dict[str, Dataset]:
        sets = _named_sets(self.test_dir, "test")
        return {
            name: self._eval_set(dirs, self.test_degradation, "data.test_dir" + ("" if name == "test" else f".{name}"))
            for name, dirs in sets.items()
        }


class PairedDataModule(_DataModuleBase):
    """Input/target pairs matched by relative path (GoPro, SIDD or two folders).

    ``*_dir`` are the input folders; ``*_target_dir`` default to the same tree, with pairs
    found through ``input_token`` -> ``target_token`` (see :class:`PairedImageDataset`).
    """

    def __init__(
        self,
        train_dir: str | None = None,
        val_dir: str | None = None,
        test_dir: str | None = None,
        correct_dir: str | os.PathLike[str] | None = None,
        train_target_dir: str | None = None,
        val_target_dir: str | None = None,
        test_target_dir: str | None = None,
        input_token: str | None = None,
        target_token: str | None = None,
        patch_size: int = 128,
        batch_size: int = 16,
        val_batch_size: int = 1,
        num_workers: int = 0,
        channels: int = 3,
        patches_per_image: int = 1,
        val_patch_size: int | None = None,
        augment: bool = True,
        root_dir: str | None = None,
    ) -> None:
        super().__init__(correct_dir, channels, batch_size, val_batch_size, num_workers)
        self.dirs = {
            "train": (train_dir, train_target_dir),
            "val": (val_dir, val_target_dir),
            "test": (test_dir, test_target_dir),
        }
        self.input_token, self.target_token, self.root_dir = input_token, target_token, root_dir
        self.patch_size, self.patches_per_image, self.val_patch_size = _patch_options(
            patch_size, patches_per_image, val_patch_size
        )
        self.augment = augment

    def build(self, split: str) -> PairedImageDataset | None:
        input_dir, target_dir = self.dirs[split]
        if input_dir is None:
            return None
        return PairedImageDataset(
            input_dir,
            target_dir,
            self.input_token,
            self.target_token,
            train=split == "train",
            patch_size=self.patch_size,
            patches_per_image=self.patches_per_image,
            eval_patch_size=self.val_patch_size,
            channels=self.channels,
            augment=self.augment,
            key=f"data.{split}_dir",
        )


class VideoDataModule(_DataModuleBase):
    """Clips of ``clip_length`` frames: from videos / frame folders (``clips_from="video"``) or
    by panning over photos (``clips_from="photos"``). Correction reads videos (and images) from
    ``correct_dir`` with a window of ``clip_length`` frames when the net is a video net
    (``predict_window``; 1 feeds single frames to an image net)."""

    def __init__(
        self,
        train_dir: PathsLike | None = None,
        val_dir: PathsLike | None = None,
        test_dir: PathsLike | None = None,
        correct_dir: str | os.PathLike[str] | None = None,
        degradation: Degradation | None = None,
        clips_from: str = "video",
        clip_length: int = 5,
        patch_size: int = 96,
        val_patch_size: int | None = 128,
        clips_per_sequence: int = 8,
        max_eval_clips: int = 4,
        per_frame_params: bool = False,
        target: str = "center",
        max_speed: float = 4.0,
        predict_window: int | None = None,
        batch_size: int = 8,
        val_batch_size: int = 1,
        num_workers: int = 0,
        channels: int = 3,
        seed: int = 0,
    ) -> None:
        super().__init__(correct_dir, channels, batch_size, val_batch_size, num_workers)
        if clips_from not in ("video", "photos"):
            raise ConfigError(f"data.clips_from must be 'video' or 'photos', got {clips_from!r}")
        self.dirs = {"train": train_dir, "val": val_dir, "test": test_dir}
        self.degradation, self.clips_from = degradation, clips_from
        self.clip_length = check_int("data.clip_length", clip_length)
        self.patch_size = check_int("data.patch_size", patch_size)
        self.val_patch_size = check_int("data.val_patch_size", val_patch_size, optional=True)
        self.clips_per_sequence = check_int("data.clips_per_sequence", clips_per_sequence)
        self.max_eval_clips, self.per_frame_params, self.target, self.max_speed = (
            max_eval_clips,
            per_frame_params,
            target,
            max_speed,
        )
        self.predict_window = int(
            predict_window if predict_window is not None else (self.clip_length if target == "center" else 1)
        )
        self.seed = seed

    def build(self, split: str) -> Dataset | None:
        dirs = self.dirs[split]
        if dirs is None:
            return None
        train = split == "train"
        common = dict(
            clip_length=self.clip_length,
            degradation=self.degradation,
            train=train,
            per_frame_params=self.per_frame_params,
            target=self.target,
            channels=self.channels,
            seed=self.seed,
            key=f"data.{split}_dir",
        )
        count = self.clips_per_sequence if train else self.max_eval_clips
        size = self.patch_size if train else self.val_patch_size
        if self.clips_from == "photos":
            return PhotoPanClipDataset(
                dirs, patch_size=size or self.patch_size, clips_per_image=count, max_speed=self.max_speed, **common
            )
        return VideoClipDataset(
            dirs,
            patch_size=size,
            clips_per_sequence=self.clips_per_sequence,
            max_eval_clips=self.max_eval_clips,
            **common,
        )
