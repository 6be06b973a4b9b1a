"""MyDataset: noisy/clean pairs from a folder of images, as a plain LightningDataModule."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def _images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS)


def _load(path: Path) -> torch.Tensor:
    array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)


class _NoisyCrops(Dataset):
    def __init__(self, files: list[Path], size: int, sigma: float, copies: int, seed: int | None) -> None:
        self.files, self.size, self.sigma, self.copies, self.seed = files, size, sigma, copies, seed

    def __len__(self) -> int:
        return len(self.files) * self.copies

    def __getitem__(self, index: int):
        generator = torch.Generator().manual_seed(index if self.seed is None else self.seed + index)
        clean = _load(self.files[index % len(self.files)])
        _, h, w = clean.shape
        top = int(torch.randint(0, h - self.size + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - self.size + 1, (1,), generator=generator))
        clean = clean[:, top : top + self.size, left : left + self.size]
        noisy = clean + self.sigma * torch.randn(clean.shape, generator=generator)
        return noisy, clean


class _Inputs(Dataset):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = [root] if root.is_file() else _images(root)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        path = self.files[index]
        relpath = path.name if self.root.is_file() else path.relative_to(self.root).as_posix()
        return {"input": _load(path), "relpath": relpath, "mode": "RGB", "bit_depth": 8}


class MyDataset(pl.LightningDataModule):
    def __init__(
        self,
        root_dir: str,
        train_batch_size: int = 8,
        num_workers: int = 0,
        patch_size: int = 48,
        sigma: float = 0.1,
        correct_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.root_dir, self.batch_size, self.num_workers = Path(root_dir), train_batch_size, num_workers
        self.patch_size, self.sigma, self.correct_dir = patch_size, sigma, correct_dir

    def _loader(self, split: str, copies: int, shuffle: bool, seed: int | None) -> DataLoader:
        data = _NoisyCrops(_images(self.root_dir / split), self.patch_size, self.sigma, copies, seed)
        return DataLoader(data, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", 8, True, None)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", 2, False, 0)

    def test_dataloader(self) -> DataLoader:
        return self._loader("val", 2, False, 1000)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(_Inputs(Path(self.correct_dir)), batch_size=1)
