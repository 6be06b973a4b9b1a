"""The callback that installs the inference backend ``correct`` and ``test`` run a net on
(:mod:`m3l.deploy.backends`) while they run, and removes it after."""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

# one logger for all of m3l's callbacks, as before they had a module each (log filters name it)
log = logging.getLogger("m3l.callbacks")


class FastInference(Callback):
    """Runs the forward of ``correct`` and ``test`` on the fastest backend that reproduces
    it (:class:`m3l.deploy.backends.InferenceBackend`): installed on m3l's restoration
    modules when prediction or testing starts, removed when it ends. Other modules run as
    they are (one log line says so)."""

    def __init__(
        self, backend: str = "auto", precision: str = "auto", name: str = "model", config_text: str = ""
    ) -> None:
        from m3l.deploy.backends import check_choice

        check_choice(backend, precision)
        self.backend, self.precision, self.name, self.config_text = backend, precision, name, config_text
        self.installed: Any = None

    def _install(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        from m3l.deploy.backends import InferenceBackend

        targets = self._targets(module)
        if not targets:
            if trainer.is_global_zero:
                log.info(
                    "backend=%s: eager PyTorch (%s runs its own predict/test steps)",
                    self.backend,
                    type(module).__name__,
                )
            return
        batches = trainer.num_predict_batches if trainer.predicting else trainer.num_test_batches
        calls = sum(int(b) for b in batches if b != float("inf")) if isinstance(batches, list) else None
        # a module that runs other modules (plug-and-play: its denoisers) names them
        calls = (
            calls * int(getattr(module, "iterations", 1)) if calls is not None and targets[0] is not module else calls
        )
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
