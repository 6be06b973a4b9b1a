"""Logging overhead: training steps/s with TensorBoard, W&B (offline) and MLflow (sqlite)
against no logger, measured in one run, interleaved rounds, medians and ratios.

    python benchmarks/logging_overhead.py [--steps 1500] [--rounds 3] [--every 50]

Target: ratio >= 0.97 with a log every 50 steps. Each step is a small conv net on 32x32
images (a few ms on a CPU core), so the logger's share is visible, not hidden by compute.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset


class TinyNet(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 1, 3, padding=1)
        )

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.body(x), y)
        self.log("train/loss", loss)
        self.log("train/lr", 1e-3)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


class StepTimer(pl.Callback):
    """Wall time of the steps after ``warmup``."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.steps = warmup, 0.0, 0.0, 0

    def on_train_batch_start(self, trainer, *_):
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, *_):
        if trainer.global_step > self.warmup:
            self.end, self.steps = time.perf_counter(), trainer.global_step - self.warmup


def make_logger(kind: str, root: Path):
    if kind == "none":
        return False
    if kind == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        return TensorBoardLogger(str(root), name="tb", version="")
    if kind == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        return WandbLogger(project="m3l-bench", save_dir=str(root), offline=True)
    if kind == "mlflow":
        from m3l.records.tracking import MLFlowLogger

        return MLFlowLogger(experiment_name="bench", tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    raise ValueError(kind)


def steps_per_second(kind: str, steps: int, every: int, root: Path) -> float:
    torch.manual_seed(0)
    data = TensorDataset(torch.rand(steps * 8, 1, 32, 32), torch.rand(steps * 8, 1, 32, 32))
    timer = StepTimer(warmup=min(100, steps // 5))
    logger = make_logger(kind, root)
    trainer = pl.Trainer(
        max_steps=steps,
        logger=logger,
        log_every_n_steps=every,
        callbacks=[timer],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(TinyNet(), DataLoader(data, batch_size=8))
    if logger:
        logger.finalize("success")
        if kind == "wandb":
            import wandb

            wandb.finish()
    return timer.steps / (timer.end - timer.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--every", type=int, default=50)
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    torch.set_num_threads(1)
    kinds = ["none", "tensorboard", "wandb", "mlflow"]
    results: dict[str, list[float]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for kind in kinds:  # interleaved, so drift of a noisy machine hits every logger alike
                results[kind].append(steps_per_second(kind, args.steps, args.every, Path(tmp) / f"{kind}{round_}"))
    base = statistics.median(results["none"])
    print(f"\nLogging overhead, {args.steps} steps x {args.rounds} rounds, a log every {args.every} steps")
    print(
        f"machine: {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, lightning {pl.__version__}, {datetime.now():%Y-%m-%d %H:%M}"
    )
    print(f"{'logger':<12} {'median steps/s':>15} {'min':>8} {'max':>8} {'ratio':>7}")
    for kind in kinds:
        values = results[kind]
        median = statistics.median(values)
        print(f"{kind:<12} {median:>15.1f} {min(values):>8.1f} {max(values):>8.1f} {median / base:>7.3f}")


if __name__ == "__main__":
    main()
