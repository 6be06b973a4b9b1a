"""Callbacks m3l adds to Lightning's: a progress display that suits where it runs, a
checkpoint callback that copes with modules that do not log the configured metric (in
:mod:`m3l.best_checkpoint`, named here), and restoration examples logged as images to every
logger that can show them."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelSummary, ProgressBar, TQDMProgressBar

# the checkpoint callback lives in m3l.best_checkpoint; the configs name it here
from m3l.best_checkpoint import FAR_WORSE_FRACTION, MonitoredCheckpoint, pick_monitor  # noqa: F401

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
        return TerminalProgressBar(refresh_rate=refresh_rate)
    return LogProgressBar(log_interval_s=log_interval_s)


def _unit(loaders: Any) -> str:
    """``file`` when every loader yields one input per batch (test and correct read one file
    at a time), else ``batch``."""
    if loaders is None:
        return "batch"
    items = loaders if isinstance(loaders, (list, tuple)) else [loaders]
    sizes = {getattr(loader, "batch_size", None) or getattr(getattr(loader, "batch_sampler", None), "batch_size", None)
             for loader in items}
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
        self, stage: str, label: str, done: int, total: int | float, extra: str = "", force: bool = False,
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


class CompactModelSummary(ModelSummary):
    """The model in one line (class, parameters, size) instead of Lightning's table; FLOPs
    only when Lightning could count them (it needs ``example_input_array``)."""

    def __init__(self) -> None:
        super().__init__(max_depth=1)

    @staticmethod
    def summarize(summary_data, total_parameters, trainable_parameters, model_size, total_training_modes,
                  total_flops, **_: Any) -> None:  # noqa: ANN001 - Lightning's signature
        from lightning.pytorch.utilities.model_summary.model_summary import get_human_readable_count as _count

        def get_human_readable_count(n: int) -> str:
            return _count(n).strip()

        names = dict(summary_data).get("Type", [])
        kinds = ", ".join(str(n) for n in names[:4]) + (", ..." if len(names) > 4 else "")
        frozen = total_parameters - trainable_parameters
        text = f"Model: {get_human_readable_count(int(total_parameters))} parameters"
        if frozen:
            text += f" ({get_human_readable_count(int(frozen))} frozen)"
        text += f", {model_size:.1f} MB"
        if total_flops:
            text += f", {get_human_readable_count(int(total_flops))} FLOPs"
        log.info("%s%s", text, f" [{kinds}]" if kinds else "")


# ------------------------------------------------------------------------------ inference


class FastInference(Callback):
    """Runs the forward of ``correct`` and ``test`` on the fastest backend that reproduces
    it (:class:`m3l.deploy.backends.InferenceBackend`): installed on m3l's restoration
    modules when prediction or testing starts, removed when it ends. Other modules run as
    they are (one log line says so)."""

    def __init__(self, backend: str = "auto", precision: str = "auto", name: str = "model", config_text: str = "") -> None:
        from m3l.deploy.backends import check_choice

        check_choice(backend, precision)
        self.backend, self.precision, self.name, self.config_text = backend, precision, name, config_text
        self.installed: Any = None

    def _install(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        from m3l.deploy.backends import InferenceBackend

        targets = self._targets(module)
        if not targets:
            if trainer.is_global_zero:
                log.info("backend=%s: eager PyTorch (%s runs its own predict/test steps)", self.backend, type(module).__name__)
            return
        batches = trainer.num_predict_batches if trainer.predicting else trainer.num_test_batches
        calls = sum(int(b) for b in batches if b != float("inf")) if isinstance(batches, list) else None
        # a module that runs other modules (plug-and-play: its denoisers) names them
        calls = calls * int(getattr(module, "iterations", 1)) if calls is not None and targets[0] is not module else calls
        for target in targets:
            self.installed = InferenceBackend(
                target, self.backend, self.precision, name=self.name, config_text=self.config_text, expected_calls=calls
            )
            target.inference_forward = self.installed

    @staticmethod
    def _targets(module: pl.LightningModule) -> list[Any]:
        named = getattr(module, "inference_targets", None)
        if callable(named):
            return list(named())
        return [module] if hasattr(module, "inference_forward") else []

    def _remove(self, module: pl.LightningModule) -> None:
        for target in self._targets(module):
            target.inference_forward = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._install(trainer, pl_module)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._remove(pl_module)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._install(trainer, pl_module)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._remove(pl_module)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._remove(pl_module)


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
