"""Callbacks m3l adds to Lightning's: a progress display that suits where it runs, a
checkpoint callback that copes with modules that do not log the configured metric, and
restoration examples logged as images to every logger that can show them."""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ModelSummary, ProgressBar, TQDMProgressBar

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


# ------------------------------------------------------------------------------ checkpoints

# words in a metric's name and whether higher is better, most telling first
_METRIC_DIRECTIONS = (
    ("psnr", "max"), ("ssim", "max"), ("acc", "max"), ("f1", "max"), ("iou", "max"), ("dice", "max"),
    ("auc", "max"), ("map", "max"), ("loss", "min"), ("mse", "min"), ("mae", "min"), ("rmse", "min"),
    ("lpips", "min"), ("error", "min"), ("err", "min"), ("nll", "min"),
)


def pick_monitor(logged: list[str]) -> tuple[str, str] | None:
    """The validation metric to rank checkpoints by among ``logged`` names, and its mode.

    Only names that say they are validation metrics (``val/...``, ``val_...``,
    ``validation...``) and whose direction the name tells (PSNR, SSIM, accuracy: max; loss,
    MSE, error: min) qualify; None when none does.
    """
    val = [name for name in logged if name.lower().startswith("val")]
    for word, mode in _METRIC_DIRECTIONS:
        for name in val:
            if any(token.startswith(word) for token in re.split(r"[^a-z0-9]+", name.lower())[1:]):
                return name, mode
    return None


#: how much worse than the first validation a run's best score may be before the end of the
#: run says the best checkpoint is of a diverged model: this fraction of the first value
FAR_WORSE_FRACTION = 0.10


class MonitoredCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` that does not stop a run whose module does not log the
    configured ``monitor`` (``val/psnr`` by default, what m3l's modules log).

    At the first validation whose metrics lack it, the callback ranks checkpoints by the
    metric the module logs that :func:`pick_monitor` finds, or, with none, keeps only
    ``last.ckpt``; either way with one warning that says how to choose (``monitor=``,
    ``monitor_mode=``). ``monitor=null`` keeps only ``last.ckpt`` too.

    It also keeps the monitored value of the run's first validation (Lightning's sanity check
    of the net before training, ``trainer.num_sanity_val_steps`` batches, else the first
    epoch's), so that :meth:`far_worse_note` can say when the best checkpoint is of a model
    that training made far worse (a diverged run without a NaN).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._configured_monitor, self._configured_mode = self.monitor, self.mode
        self._last_only = self.monitor is None and bool(self.save_last)
        self._last_saved_step: int | None = None
        self.first_score: tuple[str, float, bool] | None = None  # (metric, value, before any training)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.first_score is None and self.monitor is not None:
            value = trainer.callback_metrics.get(self.monitor)
            if value is not None and torch.isfinite(torch.as_tensor(value)).all():
                self.first_score = (str(self.monitor), float(value), bool(trainer.sanity_checking))
        super().on_validation_end(trainer, pl_module)

    def far_worse_note(self) -> str | None:
        """A warning when the best checkpoint's score is far worse than the first validation's
        (worse by more than :data:`FAR_WORSE_FRACTION` of the first value, in the direction of
        ``mode``): the run diverged or learned nothing, and ``checkpoint=best`` names a model
        worse than the one training started from. None otherwise."""
        if self.first_score is None or self.best_model_score is None or not self.best_model_path:
            return None
        monitor, first, before_training = self.first_score
        if monitor != self.monitor:
            return None
        best = float(self.best_model_score)
        margin = FAR_WORSE_FRACTION * abs(first)
        worse = best < first - margin if self.mode == "max" else best > first + margin
        if not worse:
            return None
        when = ("before training (Lightning's sanity check)" if before_training
                else "at the first validation")
        return (
            f"The best checkpoint is far worse than the model training started from: {monitor}={best:.4g} at best, "
            f"{first:.4g} {when} ({'higher' if self.mode == 'max' else 'lower'} is better). The run diverged or learned "
            f"nothing: {self.best_model_path} (checkpoint=best) holds a model worse than the untrained one. Lower the "
            "learning rate (e.g. net.optimizer.lr) or check the data and the loss, and train again."
        )

    @property
    def state_key(self) -> str:
        # keyed by what was configured, so a resumed run finds its state whatever was picked
        return self._generate_state_key(
            monitor=self._configured_monitor, mode=self._configured_mode, every_n_train_steps=self._every_n_train_steps,
            every_n_epochs=self._every_n_epochs, train_time_interval=self._train_time_interval,
        )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        monitor = state_dict.get("monitor")
        if monitor != self.monitor:  # a metric picked in the interrupted run: pick the same
            self._use_monitor(monitor, state_dict.get("mode", self.mode))
        first = state_dict.get("first_score")
        if isinstance(first, dict):
            self.first_score = (str(first["monitor"]), float(first["value"]), bool(first["before_training"]))
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "first_score"})

    def state_dict(self) -> dict[str, Any]:
        state = {**super().state_dict(), "mode": self.mode}
        if self.first_score is not None:  # a resumed run compares with the first validation of the run
            state["first_score"] = {"monitor": self.first_score[0], "value": self.first_score[1],
                                    "before_training": self.first_score[2]}
        return state

    def _use_monitor(self, monitor: str | None, mode: str) -> None:
        self.monitor = monitor
        if monitor is None:
            self._last_only = bool(self.save_last)
            return
        self.mode = mode
        self.kth_value = torch.tensor(torch.inf if mode == "min" else -torch.inf)

    def _metrics_are_final(self, trainer: pl.Trainer) -> bool:
        """True once a validation has run, or when there is none to wait for."""
        if trainer.fit_loop.epoch_loop.val_loop._has_run:
            return True
        batches = trainer.num_val_batches
        return not trainer.enable_validation or not (sum(batches) if isinstance(batches, list) else batches)

    def _replace_monitor(self, trainer: pl.Trainer, candidates: dict[str, torch.Tensor]) -> None:
        logged = sorted(k for k in candidates if k not in ("epoch", "step"))
        picked = pick_monitor(logged)
        module = type(trainer.lightning_module).__name__
        missing = f"The checkpoint metric monitor={self.monitor!r} is not logged by {module} (it logs: {', '.join(logged) or 'nothing'})"
        how = "Set monitor=METRIC monitor_mode=min|max (in the model config or on the command line) to choose"
        if picked is not None:
            message = f"{missing}; the best checkpoint is now the one with the {'highest' if picked[1] == 'max' else 'lowest'} {picked[0]}. {how}."
            self._use_monitor(*picked)
        else:
            message = (
                f"{missing}, and none of those is a validation metric whose name says if higher is better: keeping "
                f"only last.ckpt (checkpoint=best will not find one; use checkpoint=last). {how}."
            )
            self._use_monitor(None, self.mode)
        if trainer.is_global_zero:
            log.warning(message)

    def _save_topk_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict[str, torch.Tensor]) -> None:
        if self.monitor is not None and self.monitor not in monitor_candidates and self._metrics_are_final(trainer):
            self._replace_monitor(trainer, monitor_candidates)
        if self._last_only:
            self._save_last_checkpoint(trainer, monitor_candidates)
            return
        super()._save_topk_checkpoint(trainer, monitor_candidates)

    def _save_last_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict[str, torch.Tensor]) -> None:
        if self._last_only and self._last_saved_step == trainer.global_step and self.last_model_path:
            return  # already saved at this step (by the top-k save above)
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_saved_step = trainer.global_step


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
