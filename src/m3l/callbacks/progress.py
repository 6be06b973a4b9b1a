"""The progress display m3l adds to Lightning's Trainer: tqdm bars in a terminal or Jupyter,
plain log lines (one every ``log_interval_s`` seconds) anywhere else (a Slurm log, a pipe)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar

# one logger for all of m3l's callbacks, as before they had a module each (log filters name it)
log = logging.getLogger("m3l.callbacks")


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
        return TerminalProgressBar(refresh_rate=refresh_rate)
    return LogProgressBar(log_interval_s=log_interval_s)


def _unit(loaders: Any) -> str:
    """``file`` when every loader yields one input per batch (test and correct read one file
    at a time), else ``batch``."""
    if loaders is None:
        return "batch"
    items = loaders if isinstance(loaders, (list, tuple)) else [loaders]
    sizes = {
        getattr(loader, "batch_size", None) or getattr(getattr(loader, "batch_sampler", None), "batch_size", None)
        for loader in items
    }
    return "file" if sizes == {1} else "batch"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class TerminalProgressBar(TQDMProgressBar):
    """Lightning's tqdm bars, with ``files/s`` and the time left for ``test`` and ``correct``."""

    @property
    def predict_description(self) -> str:
        return "Correcting"

    def init_predict_tqdm(self):  # noqa: ANN201 - Lightning's Tqdm
        bar = super().init_predict_tqdm()
        bar.unit = _unit(self.trainer.predict_dataloaders)
        return bar

    def init_test_tqdm(self):  # noqa: ANN201
        bar = super().init_test_tqdm()
        bar.unit = _unit(self.trainer.test_dataloaders)
        return bar


class LogProgressBar(ProgressBar):
    """Progress as log lines: readable in files, no carriage returns."""

    def __init__(self, log_interval_s: float = 30.0) -> None:
        super().__init__()
        self.log_interval_s = log_interval_s
        self._enabled = True
        self._last = 0.0
        self._starts: dict[str, float] = {}
        self._paused: dict[str, float] = {}  # seconds of validation inside a train epoch
        self._unit = "batch"

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled and self.trainer.is_global_zero

    def _begin(self, stage: str) -> None:
        self._starts[stage] = self._last = time.monotonic()

    def _report(
        self,
        stage: str,
        label: str,
        done: int,
        total: int | float,
        extra: str = "",
        force: bool = False,
        unit: str = "it",
    ) -> None:
        """One line: ``label done/total (pct) rate unit/s, ETA``; the rate counts from the
        start of ``stage`` (train time alone, not the validation inside an epoch)."""
        if not self.is_enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.log_interval_s:
            return
        self._last = now
        elapsed = max(now - self._starts.get(stage, now) - self._paused.get(stage, 0.0), 1e-9)
        rate = done / elapsed
        known = total not in (None, 0, float("inf"))
        total_text = str(int(total)) if known else "?"
        pct = f" ({100 * done / total:.0f}%)" if known else ""
        eta = f", ETA {_duration((total - done) / rate)}" if known and rate > 0 and done < total else ""
        log.info("%s %d/%s%s %.2f %s/s%s%s", label, done, total_text, pct, rate, unit, eta, extra)

    def _metrics_text(self, trainer: pl.Trainer, module: pl.LightningModule) -> str:
        metrics = self.get_metrics(trainer, module)
        metrics.pop("v_num", None)
        parts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()]
        return (" " + " ".join(parts)) if parts else ""

    # train
    def on_train_epoch_start(self, trainer: pl.Trainer, *_: Any) -> None:
        self._begin("train")
        self._paused["train"] = 0.0

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        done = batch_idx + 1
        max_epochs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else "?"
        label = f"train epoch {trainer.current_epoch + 1}/{max_epochs}"
        self._report("train", label, done, self.total_train_batches, self._metrics_text(trainer, module))

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        label = f"train epoch {trainer.current_epoch + 1} done"
        self._report("train", label, done, self.total_train_batches, self._metrics_text(trainer, module), force=True)

    # evaluation
    def on_validation_start(self, *_: Any) -> None:
        self._validation_start = time.monotonic()

    def on_validation_end(self, *_: Any) -> None:
        if "train" in self._starts:
            self._paused["train"] = self._paused.get("train", 0.0) + time.monotonic() - self._validation_start

    def on_test_start(self, trainer: pl.Trainer, *_: Any) -> None:
        self._begin("test")
        self._unit = _unit(trainer.test_dataloaders)

    def on_predict_start(self, trainer: pl.Trainer, *_: Any) -> None:
        self._begin("correct")
        self._unit = _unit(trainer.predict_dataloaders)

    def on_test_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._report("test", "test", batch_idx + 1, trainer.num_test_batches[dataloader_idx], unit=self._unit)

    def on_predict_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        total = trainer.num_predict_batches[dataloader_idx]
        self._report("correct", "correct", batch_idx + 1, total, unit=self._unit)

    def on_test_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        done = trainer.test_loop.batch_progress.current.completed
        self._report("test", "test done", done, sum(trainer.num_test_batches), force=True, unit=self._unit)

    def on_predict_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        done = trainer.predict_loop.batch_progress.current.completed
        self._report("correct", "correct done", done, sum(trainer.num_predict_batches), force=True, unit=self._unit)
