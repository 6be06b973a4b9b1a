"""The checkpoint callback of a training run (``callbacks.model_checkpoint``).

:class:`MonitoredCheckpoint` is Lightning's ``ModelCheckpoint`` that copes with a module that
does not log the configured ``monitor`` (it picks a validation metric the module does log, by
:func:`pick_monitor`), and that says at the end of a run when the best checkpoint is far worse
than the net training started from. ``m3l.callbacks`` re-exports both (the configs name
``m3l.callbacks.MonitoredCheckpoint``).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import lightning.pytorch as pl
import torch

from m3l._compat.lightning import SaveStepsCheckpoint, validation_has_run

log = logging.getLogger(__name__)

# words in a metric's name and whether higher is better, most telling first
_METRIC_DIRECTIONS = (
    ("psnr", "max"),
    ("ssim", "max"),
    ("acc", "max"),
    ("f1", "max"),
    ("iou", "max"),
    ("dice", "max"),
    ("auc", "max"),
    ("map", "max"),
    ("loss", "min"),
    ("mse", "min"),
    ("mae", "min"),
    ("rmse", "min"),
    ("lpips", "min"),
    ("error", "min"),
    ("err", "min"),
    ("nll", "min"),
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


class MonitoredCheckpoint(SaveStepsCheckpoint):
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
            metrics = trainer.callback_metrics
            # the metric the checkpoints will be ranked by: the configured one, or the one picked
            # at the first epoch's validation when the module does not log it
            name = self.monitor if self.monitor in metrics else (pick_monitor(sorted(metrics)) or (None,))[0]
            value = metrics.get(name) if name is not None else None
            if value is not None and torch.isfinite(torch.as_tensor(value)).all():
                self.first_score = (str(name), float(value), bool(trainer.sanity_checking))
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
        when = "before training (Lightning's sanity check)" if before_training else "at the first validation"
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
            monitor=self._configured_monitor,
            mode=self._configured_mode,
            every_n_train_steps=self._every_n_train_steps,
            every_n_epochs=self._every_n_epochs,
            train_time_interval=self._train_time_interval,
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
            state["first_score"] = {
                "monitor": self.first_score[0],
                "value": self.first_score[1],
                "before_training": self.first_score[2],
            }
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
        if validation_has_run(trainer):
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

    def save_topk_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict[str, torch.Tensor]) -> None:
        if self.monitor is not None and self.monitor not in monitor_candidates and self._metrics_are_final(trainer):
            self._replace_monitor(trainer, monitor_candidates)
        if self._last_only:
            self.save_last_checkpoint(trainer, monitor_candidates)
            return
        super().save_topk_checkpoint(trainer, monitor_candidates)

    def save_last_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict[str, torch.Tensor]) -> None:
        if self._last_only and self._last_saved_step == trainer.global_step and self.last_model_path:
            return  # already saved at this step (by the top-k save above)
        super().save_last_checkpoint(trainer, monitor_candidates)
        self._last_saved_step = trainer.global_step
