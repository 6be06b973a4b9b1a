"""Restoration data: image/video I/O, degradations, datasets, datamodules and serializers.

Example (the built-in sample photos, Gaussian noise at sigma 25/255)::

    >>> from m3l.data import GaussianNoise, RestorationDataModule, sample_dir
    >>> dm = RestorationDataModule(train_dir=sample_dir("train"), val_dir=sample_dir("val"),
    ...                            degradation=GaussianNoise(sigma=25, scale=255), patch_size=64,
    ...                            patches_per_image=4)
    >>> dm.setup("fit")
    >>> batch = next(iter(dm.train_dataloader()))
    >>> tuple(batch["input"].shape), round(float(batch["meta"]["sigma"][0]) * 255)
    ((16, 3, 64, 64), 25)
"""

from m3l.data.clips import PhotoPanClipDataset, VideoClipDataset, degrade_clip
from m3l.data.correction import ImageCorrectionDataset, VideoCorrectionDataset, collate_correction
from m3l.data.datamodules import PairedDataModule, RestorationDataModule, VideoDataModule, collate_samples
from m3l.data.datasets import CleanImageDataset, PairedImageDataset, stable_seed
from m3l.data.degradations import (
    JPEG,
    Chain,
    Degradation,
    GaussianBlur,
    GaussianNoise,
    Identity,
    MotionBlur,
    PoissonGaussianNoise,
    RandomChoice,
    VideoH264,
    add_gaussian_noise,
    add_poisson_gaussian_noise,
    apply_blur,
    gaussian_kernel,
    h264_compress,
    jpeg_compress,
    motion_kernel,
)
from m3l.data.failures import FAILURES_FILENAME, Failure
from m3l.data.io import VideoWriter, read_image, read_video, write_image, write_video
from m3l.data.samples import sample_dir
from m3l.data.serializers import ImageSerializer, VideoSerializer
from m3l.errors import MediaReadError

__all__ = [
    "FAILURES_FILENAME",
    "JPEG",
    "Chain",
    "CleanImageDataset",
    "Degradation",
    "Failure",
    "GaussianBlur",
    "GaussianNoise",
    "Identity",
    "ImageCorrectionDataset",
    "ImageSerializer",
    "MediaReadError",
    "MotionBlur",
    "PairedDataModule",
    "PairedImageDataset",
    "PhotoPanClipDataset",
    "PoissonGaussianNoise",
    "RandomChoice",
    "RestorationDataModule",
    "VideoClipDataset",
    "VideoCorrectionDataset",
    "VideoDataModule",
    "VideoH264",
    "VideoSerializer",
    "VideoWriter",
    "add_gaussian_noise",
    "add_poisson_gaussian_noise",
    "apply_blur",
    "collate_correction",
    "collate_samples",
    "degrade_clip",
    "gaussian_kernel",
    "h264_compress",
    "jpeg_compress",
    "motion_kernel",
    "read_image",
    "read_video",
    "sample_dir",
    "stable_seed",
    "write_image",
    "write_video",
]
