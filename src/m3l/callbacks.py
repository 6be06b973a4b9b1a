"""Callbacks m3l adds to Lightning's: a progress display that suits where it runs, and
restoration examples logged as images to every logger that can show them."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ProgressBar, TQDMProgressBar

log = logging.getLogger(__name__)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython  # type: ignore[import-not-found]
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


def progress_bar(refresh_rate: int = 1, log_interval_s: float = 30.0) -> ProgressBar:
    """The progress display for this process.

    A terminal or Jupyter gets Lightning's tqdm bars; anything else (a Slurm log file, a
    pipe) gets :class:`LogProgressBar`, which writes one plain line every ``log_interval_s``
    seconds instead of carriage-return updates.
    """
    if _in_notebook() or sys.stderr.isatty():
        return TQDMProgressBar(refresh_rate=refresh_rate)
    return LogProgressBar(log_interval_s=log_interval_s)


class LogProgressBar(ProgressBar):
    """Progress as log lines: readable in files, no carriage returns."""

    def __init__(self, log_interval_s: float = 30.0) -> None:
        super().__init__()
        self.log_interval_s = log_interval_s
        self._enabled = True
        self._last = 0.0
        self._start = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled and self.trainer.is_global_zero

    def _begin(self) -> None:
        self._start = self._last = time.monotonic()

    def _report(self, stage: str, done: int, total: int | float, extra: str = "", force: bool = False) -> None:
        if not self.is_enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.log_interval_s:
            return
        self._last = now
        rate = done / max(now - self._start, 1e-9)
        total_text = "?" if total in (None, float("inf")) else str(int(total))
        pct = f" ({100 * done / total:.0f}%)" if total not in (None, 0, float("inf")) else ""
        log.info("%s %d/%s%s %.2f it/s%s", stage, done, total_text, pct, rate, extra)

    def _metrics_text(self, trainer: pl.Trainer, module: pl.LightningModule) -> str:
        metrics = self.get_metrics(trainer, module)
        metrics.pop("v_num", None)
        parts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()]
        return (" " + " ".join(parts)) if parts else ""

    # train
    def on_train_epoch_start(self, trainer: pl.Trainer, *_: Any) -> None:
        self._begin()

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        done = batch_idx + 1
        max_epochs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else "?"
        stage = f"train epoch {trainer.current_epoch + 1}/{max_epochs}"
        self._report(stage, done, self.total_train_batches, self._metrics_text(trainer, module))

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        stage = f"train epoch {trainer.current_epoch + 1} done"
        self._report(stage, done, self.total_train_batches, self._metrics_text(trainer, module), force=True)

    # evaluation
    def on_validation_start(self, *_: Any) -> None:
        self._begin()

    def on_test_start(self, *_: Any) -> None:
        self._begin()

    def on_predict_start(self, *_: Any) -> None:
        self._begin()

    def on_test_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._report("test", batch_idx + 1, trainer.num_test_batches[dataloader_idx])

    def on_predict_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._report("correct", batch_idx + 1, trainer.num_predict_batches[dataloader_idx])

    def on_test_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._report("test done", trainer.test_loop.batch_progress.current.completed, float("inf"), force=True)

    def on_predict_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        done = trainer.predict_loop.batch_progress.current.completed
        self._report("correct done", done, float("inf"), force=True)


# ------------------------------------------------------------------------------ images


def log_image(trainer: pl.Trainer, tag: str, image: torch.Tensor) -> int:
    """Send one ``(C, H, W)`` float image in [0, 1] to every logger that can show images.

    Returns how many loggers took it. TensorBoard, W&B and MLflow are supported; other
    loggers are skipped.
    """
    image = image.detach().float().clamp(0, 1).cpu()
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    step = trainer.global_step
    taken = 0
    for logger in trainer.loggers:
        kind = type(logger).__name__
        if kind == "TensorBoardLogger":
            logger.experiment.add_image(tag, image, global_step=step)
        elif kind == "WandbLogger":
            logger.log_image(key=tag, images=[image.permute(1, 2, 0).numpy()], step=step)
        elif kind == "MLFlowLogger":
            array = (image.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
            logger.experiment.log_image(logger.run_id, array, f"{tag}/step_{step:07d}.png")
        else:
            continue
        taken += 1
    return taken


def side_by_side(images: list[torch.Tensor], gap: int = 2) -> torch.Tensor:
    """Concatenate ``(C, H, W)`` images left to right (gray ones made RGB), padding heights."""
    images = [im.expand(3, -1, -1) if im.shape[0] == 1 else im[:3] for im in images]
    height = max(im.shape[1] for im in images)
    parts = []
    for i, im in enumerate(images):
        if im.shape[1] < height:
            im = torch.nn.functional.pad(im, (0, 0, 0, height - im.shape[1]), value=1.0)
        parts.append(im)
        if i < len(images) - 1:
            parts.append(torch.ones(3, height, gap, dtype=im.dtype))
    return torch.cat(parts, dim=2)


class ImageExamples(Callback):
    """Logs input | output | target of the first validation batch as images each epoch.

    Reads ``outputs["examples"]`` returned by ``validation_step`` (a dict of ``(N, C, H, W)``
    tensors named ``input``, ``output``, ``target``); modules that return nothing are ignored.
    """

    def __init__(self, max_images: int = 4) -> None:
        self.max_images = max_images

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx != 0 or dataloader_idx != 0 or trainer.sanity_checking or not trainer.is_global_zero:
            return
        if not isinstance(outputs, dict) or "examples" not in outputs:
            return
        examples = outputs["examples"]
        count = min(self.max_images, examples["output"].shape[0])
        for i in range(count):
            row = [examples[k][i] for k in ("input", "output", "target") if k in examples]
            log_image(trainer, f"examples/{i}", side_by_side(row))
