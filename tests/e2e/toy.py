"""A tiny, deterministic restoration task for the tracking/sweep/cluster tests.

Samples are seeded noise-on-gradient images, so every process (and every rank of a
distributed run) sees the same data without files; a test set of an odd size gives the
ranks of a 2-process run unequal shards.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset


class ToySet(Dataset):
    """``count`` noisy/clean pairs of ``size`` x ``size`` gray images; item ``i`` is fixed."""

    def __init__(self, count: int, size: int, sigma: float, offset: int, delay_s: float = 0.0) -> None:
        self.count, self.size, self.sigma, self.offset, self.delay_s = count, size, sigma, offset, delay_s

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.delay_s:
            time.sleep(self.delay_s)  # a slow loader, to signal a run mid-epoch without burning CPU
            if trace := os.environ.get("TOY_TRACE_FILE"):  # one line per item: a test waits on it
                with open(trace, "a") as lines:
                    lines.write(f"{index}\n")
        g = torch.Generator().manual_seed(self.offset + index)
        ramp = torch.linspace(0, 1, self.size)
        clean = (0.5 * ramp[None, :] + 0.5 * ramp[:, None]) * torch.rand(1, generator=g) + 0.1
        clean = clean[None].clamp(0, 1)
        noisy = clean + self.sigma * (1 + index % 3) * torch.randn(clean.shape, generator=g)
        return {"input": noisy, "target": clean, "relpath": f"item_{index:03d}.pt"}


class ToyData(pl.LightningDataModule):
    """Train / val / test / predict loaders over :class:`ToySet`."""

    def __init__(
        self,
        n_train: int = 32,
        n_val: int = 4,
        n_test: int = 7,
        n_predict: int = 5,
        size: int = 16,
        sigma: float = 0.1,
        batch_size: int = 4,
        test_batch_size: int = 2,
        channels: int = 1,
        correct_dir: str | None = None,
        train_delay_s: float = 0.0,
    ) -> None:
        super().__init__()
        self.n_train, self.n_val, self.n_test, self.n_predict = n_train, n_val, n_test, n_predict
        self.size, self.sigma, self.batch_size, self.test_batch_size = size, sigma, batch_size, test_batch_size
        self.channels, self.correct_dir, self.train_delay_s = channels, correct_dir, train_delay_s

    def _set(self, count: int, offset: int) -> ToySet:
        return ToySet(count, self.size, self.sigma, offset)

    def train_dataloader(self) -> DataLoader:
        data = ToySet(self.n_train, self.size, self.sigma, 0, self.train_delay_s)
        return DataLoader(data, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._set(self.n_val, 10_000), batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self._set(self.n_test, 20_000), batch_size=self.test_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self._set(self.n_predict, 30_000), batch_size=self.test_batch_size)


class TensorWriter(BasePredictionWriter):
    """Writes each prediction as ``root_dir/<relpath>`` (a tensor file) and refuses to overwrite."""

    def __init__(self, root_dir: str) -> None:
        super().__init__(write_interval="batch")
        self.root_dir = Path(root_dir)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        self.root_dir.mkdir(parents=True, exist_ok=True)
        for out, relpath in zip(prediction, batch["relpath"]):
            path = self.root_dir / relpath
            if path.exists():
                raise FileExistsError(f"{path} written twice")
            torch.save(out.clone(), path)


class CrashingNet(torch.nn.Module):
    """A small conv net that can be made to fail: ``nan_in="train"`` makes the training loss
    NaN (the run raises), ``nan_in="eval"`` makes only evaluation outputs NaN (the metrics
    are NaN), for the failed-trial tests."""

    def __init__(self, channels: int = 1, width: int = 8, nan_in: str | None = None) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(channels, width, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(width, channels, 3, padding=1),
        )
        self.nan_in = nan_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.nan_in == ("train" if self.training else "eval"):
            out = out * float("nan")
        return out
