"""One Lightning fit with nothing around the steps (no logger, checkpoint, progress bar,
summary, sanity check or validation), in a temporary folder: what the multi-task benchmarks
time."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence

import lightning as L


def fit_bare(
    module: L.LightningModule,
    datamodule: L.LightningDataModule,
    *,
    steps: int | None = None,
    epochs: int = 1,
    callbacks: Sequence[L.Callback] = (),
    accelerator: str = "cpu",
) -> None:
    """Fit ``module`` for ``epochs`` epochs of at most ``steps`` batches (all when ``None``)."""
    with tempfile.TemporaryDirectory() as root:
        trainer = L.Trainer(
            max_epochs=epochs,
            limit_train_batches=steps,
            limit_val_batches=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=list(callbacks) or None,
            default_root_dir=root,
            devices=1,
            num_sanity_val_steps=0,
            accelerator=accelerator,
        )
        trainer.fit(module, datamodule=datamodule)
