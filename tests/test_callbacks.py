"""Progress that stays readable in log files, and images that reach the loggers."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from m3l.callbacks import LogProgressBar, log_image, progress_bar, side_by_side


class _Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).pow(2).mean()
        self.log("train/loss", loss)
        return loss

    def predict_step(self, batch, batch_idx):
        return self.layer(batch[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader() -> DataLoader:
    return DataLoader(TensorDataset(torch.randn(32, 4)), batch_size=4)


def test_non_tty_gets_log_lines_without_carriage_returns(tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys):
    bar = progress_bar(log_interval_s=0)  # pytest captures stderr: not a terminal
    assert isinstance(bar, LogProgressBar)
    trainer = pl.Trainer(max_epochs=2, callbacks=[bar], logger=False, enable_checkpointing=False,
                         default_root_dir=tmp_path, enable_model_summary=False)
    with caplog.at_level(logging.INFO, logger="m3l.callbacks"):
        trainer.fit(_Tiny(), _loader())
        trainer.predict(_Tiny(), _loader())
    lines = [r.getMessage() for r in caplog.records if r.name == "m3l.callbacks"]
    assert any(line.startswith("train epoch 2/2") and "8/8 (100%)" in line for line in lines)
    assert any(line.startswith("correct 8/8") for line in lines)
    captured = capsys.readouterr()
    assert "\r" not in captured.out + captured.err


def test_log_image_reaches_tensorboard(tmp_path: Path):
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = TensorBoardLogger(tmp_path, name="tb", version="")
    trainer = pl.Trainer(logger=[tb, CSVLogger(tmp_path)], default_root_dir=tmp_path)
    image = side_by_side([torch.rand(1, 8, 8), torch.rand(3, 6, 8)])
    assert image.shape == (3, 8, 18)
    assert log_image(trainer, "examples/0", image) == 1  # CSV cannot show images
    tb.experiment.flush()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert "examples/0" in events.Tags()["images"]
