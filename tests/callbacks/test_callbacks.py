"""Progress that stays readable in log files, and images that reach the loggers."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import re
import time

from m3l.callbacks import (
    CompactModelSummary,
    LogProgressBar,
    TerminalProgressBar,
    log_image,
    progress_bar,
    side_by_side,
)


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
    trainer = pl.Trainer(
        max_epochs=2,
        callbacks=[bar],
        logger=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        enable_model_summary=False,
    )
    with caplog.at_level(logging.INFO, logger="m3l.callbacks"):
        trainer.fit(_Tiny(), _loader())
        trainer.predict(_Tiny(), _loader())
    lines = [r.getMessage() for r in caplog.records if r.name == "m3l.callbacks"]
    assert any(line.startswith("train epoch 2/2") and "8/8 (100%)" in line for line in lines)
    assert any(line.startswith("correct 8/8") for line in lines)
    captured = capsys.readouterr()
    assert "\r" not in captured.out + captured.err


class _Clock:
    """A stand-in for ``time.monotonic`` that moves only when a step says so: the rates in the
    log lines are then exact, whatever else the machine is doing."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class _SlowValidation(_Tiny):
    """Each training step takes 0.05 s of the clock, each validation step 0.2 s."""

    def __init__(self, clock: _Clock | None = None) -> None:
        super().__init__()
        self.clock = clock or _Clock()

    def training_step(self, batch, batch_idx):
        self.clock.advance(0.05)
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        self.clock.advance(0.2)  # validation inside the epoch: not part of the training rate

    def test_step(self, batch, batch_idx):
        self.clock.advance(0.05)
        self.log("test/x", self.layer(batch[0]).mean())

    def predict_step(self, batch, batch_idx):
        self.clock.advance(0.05)
        return super().predict_step(batch, batch_idx)


def _rates(lines: list[str], start: str) -> list[float]:
    return [float(re.search(r"([\d.]+) (?:it|batch|file)/s", line)[1]) for line in lines if line.startswith(start)]


def test_log_lines_rate_is_training_time_and_eval_counts_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    clock = _Clock()
    monkeypatch.setattr(time, "monotonic", clock)
    bar = LogProgressBar(log_interval_s=0)
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=[bar],
        logger=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    one_by_one = DataLoader(TensorDataset(torch.randn(6, 4)), batch_size=1)
    with caplog.at_level(logging.INFO, logger="m3l.callbacks"):
        trainer.fit(_SlowValidation(clock), _loader(), DataLoader(TensorDataset(torch.randn(4, 4)), batch_size=1))
        trainer.test(_SlowValidation(clock), one_by_one)
        trainer.predict(_SlowValidation(clock), one_by_one)
    lines = [r.getMessage() for r in caplog.records if r.name == "m3l.callbacks"]
    last_batch = _rates(lines, "train epoch 1/1 8/8")[0]
    done = _rates(lines, "train epoch 1 done")[0]
    # the epoch's rate leaves out the 0.8 s of validation, and is not inflated by it either
    assert done <= 3 * last_batch, lines
    assert any(line.startswith("test 3/6 (50%)") and "file/s, ETA" in line for line in lines), lines
    assert any(line.startswith("correct 3/6 (50%)") and "file/s, ETA" in line for line in lines), lines
    assert any(line.startswith("correct done 6/6 (100%)") for line in lines), lines


def test_terminal_bar_counts_files_for_test_and_correct(tmp_path: Path, capsys):
    bar = TerminalProgressBar()
    trainer = pl.Trainer(callbacks=[bar], logger=False, default_root_dir=tmp_path, enable_model_summary=False)
    trainer.predict(_Tiny(), DataLoader(TensorDataset(torch.randn(5, 4)), batch_size=1))
    trainer.test(_SlowValidation(), DataLoader(TensorDataset(torch.randn(2, 4)), batch_size=2))
    out = capsys.readouterr().out
    assert "Correcting" in out and "5/5" in out and "file/s" in out
    assert "Testing" in out and "batch/s" in out  # two inputs a batch: counted in batches


def test_model_summary_is_one_line_without_zero_flops(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    trainer = pl.Trainer(
        max_steps=1,
        callbacks=[CompactModelSummary()],
        logger=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
    )
    with caplog.at_level(logging.INFO):
        trainer.fit(_Tiny(), _loader())
    lines = [r.getMessage() for r in caplog.records if "parameters" in r.getMessage()]
    assert lines == ["Model: 5 parameters, 0.0 MB [Linear]"]


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


# ------------------------------------------------------------------------------ checkpoints


@pytest.mark.parametrize(
    ("logged", "expected"),
    [
        (["train_loss", "val_loss"], ("val_loss", "min")),
        (["val/loss", "val/psnr", "val/ssim"], ("val/psnr", "max")),
        (["val_accuracy", "val_loss"], ("val_accuracy", "max")),
        (["val/left/acc", "val/right/acc"], ("val/left/acc", "max")),
        (["val/heatmap_loss"], ("val/heatmap_loss", "min")),
        (["validation_error"], ("validation_error", "min")),
        (["train_loss", "lr-Adam"], None),
        (["val/score"], None),
        ([], None),
    ],
)
def test_pick_monitor(logged, expected):
    from m3l.callbacks import pick_monitor

    assert pick_monitor(logged) == expected


def _fit(module: pl.LightningModule, tmp_path: Path, monitor: str | None = "val/psnr", epochs: int = 2) -> pl.Trainer:
    from lightning.pytorch.demos.boring_classes import BoringDataModule

    from m3l.callbacks import MonitoredCheckpoint

    checkpoint = MonitoredCheckpoint(
        dirpath=tmp_path / "checkpoints",
        filename="best-epoch{epoch:03d}",
        auto_insert_metric_name=False,
        monitor=monitor,
        mode="max",
        save_top_k=1,
        save_last=True,
    )
    trainer = pl.Trainer(
        max_epochs=epochs,
        limit_train_batches=4,
        limit_val_batches=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[checkpoint],
        accelerator="cpu",
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=BoringDataModule())
    return trainer


def test_a_module_that_logs_nothing_keeps_last_only(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """Lightning's own BoringModel (logs no metric) trains past epoch 1 under m3l's default."""
    from lightning.pytorch.demos.boring_classes import BoringModel

    with caplog.at_level(logging.WARNING, logger="m3l.callbacks.best_checkpoint"):
        trainer = _fit(BoringModel(), tmp_path, epochs=3)
    assert trainer.current_epoch == 3
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt"]
    warnings = [r.getMessage() for r in caplog.records if "monitor='val/psnr'" in r.getMessage()]
    assert len(warnings) == 1 and "BoringModel" in warnings[0] and "keeping only last.ckpt" in warnings[0]
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 2


def test_the_metric_the_module_logs_is_picked(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    from lightning.pytorch.demos.boring_classes import BoringModel

    class LogsValLoss(BoringModel):
        def validation_step(self, batch, batch_idx):
            loss = self.step(batch)
            self.log("val_loss", loss)
            return {"x": loss}

    with caplog.at_level(logging.WARNING, logger="m3l.callbacks.best_checkpoint"):
        trainer = _fit(LogsValLoss(), tmp_path, epochs=3)
    callback = trainer.checkpoint_callback
    assert callback.monitor == "val_loss" and callback.mode == "min"
    assert any("lowest val_loss" in r.getMessage() for r in caplog.records)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert len(names) == 2 and "last.ckpt" in names and names[0].startswith("best-epoch")
    assert float(callback.best_model_score) == pytest.approx(min(float(v) for v in callback.best_k_models.values()))


def test_a_best_far_worse_than_the_sanity_check_is_said_in_the_monitors_direction(tmp_path: Path):
    """Issue 26 item 18, for a module of its own: the metric picked for it (val_loss, minimized)
    is 1.0 at the sanity check and 5.0 at every epoch: far worse (by more than 10%)."""
    from lightning.pytorch.demos.boring_classes import BoringDataModule, BoringModel

    from m3l.callbacks import MonitoredCheckpoint

    class GetsWorse(BoringModel):
        def validation_step(self, batch, batch_idx):
            self.log("val_loss", 1.0 if self.trainer.sanity_checking else 5.0)

    checkpoint = MonitoredCheckpoint(dirpath=tmp_path / "checkpoints", monitor="val/psnr", mode="max", save_top_k=1)
    trainer = pl.Trainer(
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[checkpoint],
        accelerator="cpu",
        num_sanity_val_steps=1,
    )
    trainer.fit(GetsWorse(), datamodule=BoringDataModule())
    assert checkpoint.monitor == "val_loss" and checkpoint.mode == "min"
    note = checkpoint.far_worse_note()
    assert note is not None and "val_loss=5 at best, 1 before training" in note and "lower is better" in note

    # the bound: 10% of the first value, in the monitor's direction
    for mode, first, best, far in (
        ("max", 20.0, 17.9, True),
        ("max", 20.0, 18.1, False),
        ("max", 20.0, 25.0, False),
        ("min", 1.0, 1.2, True),
        ("min", 1.0, 1.05, False),
        ("min", 1.0, 0.5, False),
    ):
        checkpoint.mode, checkpoint.monitor = mode, "m"
        checkpoint.first_score, checkpoint.best_model_score = ("m", first, True), torch.tensor(best)
        assert (checkpoint.far_worse_note() is not None) == far, (mode, first, best)


def test_monitor_null_keeps_last_only(tmp_path: Path):
    from lightning.pytorch.demos.boring_classes import BoringModel

    _fit(BoringModel(), tmp_path, monitor=None)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt"]
