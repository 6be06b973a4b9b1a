"""Canaries of :mod:`m3l._compat.lightning`: each function run against the installed Lightning
(tiny fits on the CPU, a second or two each)."""

from __future__ import annotations

import inspect
import logging
from argparse import Namespace
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import Logger
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler, TensorDataset

from m3l._compat import lightning as compat
from tests._compat import canary


@pytest.fixture(autouse=True)
def _quiet_lightning():
    logger = logging.getLogger("lightning")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def _loader(n: int = 8) -> DataLoader:
    return DataLoader(TensorDataset(torch.randn(n, 2)), batch_size=2)


class _Module(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_loss", self.layer(batch[0]).pow(2).mean())

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.01)


class _Recorder(Logger):
    """A logger that keeps every ``log_metrics`` call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "recorder"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.calls.append((int(step or 0), dict(metrics)))


def _trainer(tmp_path: Path, **kwargs: Any) -> pl.Trainer:
    options: dict[str, Any] = dict(
        default_root_dir=tmp_path,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    options.update(kwargs)
    return pl.Trainer(**options)


def test_trainer_init_arguments():
    with canary(
        "Lightning",
        "where Trainer.__init__ is written (lightning/pytorch/trainer/trainer.py)",
        "lightning.trainer_init_arguments",
    ):
        args = compat.trainer_init_arguments()
        assert args is not None, f"no Trainer.__init__ in lightning/{compat.TRAINER_SOURCE.as_posix()}"
        read = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]} - {"self"}
        assert read == set(inspect.signature(pl.Trainer.__init__).parameters) - {"self"}, "other arguments"


def test_trainer_of(tmp_path):
    seen: list[Any] = []

    class Module(_Module):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            seen.append(compat.trainer_of(self))
            return super().training_step(batch, batch_idx)

    module = Module()
    trainer = _trainer(tmp_path, limit_train_batches=1, limit_val_batches=0)
    with canary("Lightning", "LightningModule._trainer", "lightning.trainer_of"):
        assert compat.trainer_of(module) is None, "a module on its own has a trainer"
        trainer.fit(module, _loader())
        assert seen == [trainer], "the module's trainer is not the fitting one"


def test_mark_step_values_reset(tmp_path):
    def sent(forget: bool) -> list[int]:
        class Module(_Module):
            def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
                if batch_idx == 0:
                    self.log("only_first", 1.0, on_step=True, on_epoch=False)
                elif forget:
                    compat.mark_step_values_reset(compat.trainer_of(self), ["only_first"])
                return super().training_step(batch, batch_idx)

        recorder = _Recorder()
        _trainer(tmp_path, logger=recorder, log_every_n_steps=1, limit_val_batches=0).fit(Module(), _loader())
        return [step for step, metrics in recorder.calls if "only_first" in metrics]

    with canary(
        "Lightning",
        "its results store (Trainer._results, entries' meta.name and has_reset)",
        "lightning.mark_step_values_reset",
    ):
        compat.mark_step_values_reset(None, ["x"])  # no trainer: nothing to do
        assert sent(forget=False) == [0, 1, 2, 3], "Lightning no longer re-sends a step value at later steps"
        assert sent(forget=True) == [0], "a value marked reset is still sent at the later steps"


def test_logs_this_step(tmp_path):
    asked: list[tuple[int, bool]] = []

    class Module(_Module):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            asked.append((self.global_step, compat.logs_this_step(self.trainer)))
            loss = super().training_step(batch, batch_idx)
            self.log("train_loss", loss, on_step=True, on_epoch=False)
            return loss

    recorder = _Recorder()
    with canary(
        "Lightning",
        "when it writes to its loggers (Trainer._logger_connector.should_update_logs)",
        "lightning.logs_this_step",
    ):
        _trainer(tmp_path, logger=recorder, log_every_n_steps=2, limit_val_batches=0).fit(Module(), _loader())
        written = [step for step, metrics in recorder.calls if "train_loss" in metrics]
        assert [step for step, logs in asked if logs] == written, f"asked {asked}, the logger got steps {written}"
        assert len(written) == 2, f"log_every_n_steps=2 over 4 steps wrote {written}"


def test_validation_has_run(tmp_path):
    seen: list[tuple[str, bool]] = []

    class Watch(pl.Callback):
        def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            seen.append(("sanity" if trainer.sanity_checking else "validation", compat.validation_has_run(trainer)))

        def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            seen.append((f"epoch {trainer.current_epoch}", compat.validation_has_run(trainer)))

    with canary(
        "Lightning",
        "the fit loop's validation state (fit_loop.epoch_loop.val_loop._has_run)",
        "lightning.validation_has_run",
    ):
        _trainer(tmp_path, max_epochs=2, num_sanity_val_steps=1, callbacks=[Watch()]).fit(
            _Module(), _loader(), _loader()
        )
        assert seen == [
            ("sanity", False),
            ("epoch 0", False),
            ("validation", True),
            ("epoch 1", True),
            ("validation", True),
        ], seen


def test_uses_distributed_sampler(tmp_path):
    with canary(
        "Lightning",
        "where the Trainer keeps use_distributed_sampler (_accelerator_connector)",
        "lightning.uses_distributed_sampler",
    ):
        assert compat.uses_distributed_sampler(_trainer(tmp_path)) is True
        assert compat.uses_distributed_sampler(_trainer(tmp_path, use_distributed_sampler=False)) is False


class _NamedLoader(DataLoader):
    """A DataLoader subclass with an argument of its own, as users write them."""

    def __init__(self, dataset: Any, name: str, **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self.name = name


def test_with_sampler():
    dataset = TensorDataset(torch.arange(10.0))
    loader = _NamedLoader(dataset, "mine", batch_size=3, sampler=RandomSampler(dataset))
    sampler = SequentialSampler(range(4))
    with canary("Lightning", "lightning.pytorch.utilities.data._update_dataloader", "lightning.with_sampler"):
        copy = compat.with_sampler(loader, sampler, stage="test")
        assert type(copy) is _NamedLoader and copy.name == "mine" and copy.batch_size == 3
        assert copy.sampler is sampler and copy.dataset is dataset
        assert [b[0].tolist() for b in copy] == [[0.0, 1.0, 2.0], [3.0]]


class _TwoOptimizers(_Module):
    """Manual optimization with two optimizers; the second's step through ``uncounted_step``."""

    def __init__(self, uncounted: bool) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.other = nn.Linear(2, 1)
        self.uncounted = uncounted
        self.scalers: list[Any] = []

    def training_step(self, batch: Any, batch_idx: int) -> None:
        first, second = self.optimizers()
        self.scalers.append(compat.grad_scaler_of(first))
        loss = self.layer(batch[0]).pow(2).mean() + self.other(batch[0]).pow(2).mean()
        self.manual_backward(loss)
        first.step()
        with compat.uncounted_step(second) if self.uncounted else nullcontext():
            second.step()
        first.zero_grad()
        second.zero_grad()

    def configure_optimizers(self) -> Any:
        return [torch.optim.SGD(self.layer.parameters(), lr=0.01), torch.optim.SGD(self.other.parameters(), lr=0.01)]


def test_uncounted_step_and_counts_steps(tmp_path):
    with canary(
        "Lightning",
        "how it counts an optimizer step (LightningOptimizer._on_before_step/_on_after_step)",
        "lightning.uncounted_step",
    ):
        counted = _trainer(tmp_path, limit_val_batches=0)
        counted.fit(_TwoOptimizers(uncounted=False), _loader())
        assert counted.global_step == 8, f"4 batches of 2 optimizer steps counted {counted.global_step}"
        once = _trainer(tmp_path, limit_val_batches=0)
        module = _TwoOptimizers(uncounted=True)
        once.fit(module, _loader())
        assert once.global_step == 4, f"4 batches with one counted step each counted {once.global_step}"
        assert compat.counts_steps(module.optimizers()[0])
        plain = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)
        assert not compat.counts_steps(plain)
        with compat.uncounted_step(plain):  # a plain optimizer: nothing to hold back
            plain.step()


def test_grad_scaler_of(tmp_path):
    from lightning.pytorch.plugins import MixedPrecision

    scaler = torch.amp.GradScaler("cpu")
    module = _TwoOptimizers(uncounted=True)
    with canary(
        "Lightning",
        "where a LightningOptimizer names its strategy (LightningOptimizer._strategy)",
        "lightning.grad_scaler_of",
    ):
        plugin = MixedPrecision("16-mixed", "cpu", scaler=scaler)
        _trainer(tmp_path, limit_train_batches=1, limit_val_batches=0, plugins=[plugin]).fit(module, _loader())
        assert module.scalers == [scaler], "the optimizer does not lead to the trainer's GradScaler"
        fp32 = _TwoOptimizers(uncounted=True)
        _trainer(tmp_path, limit_train_batches=1, limit_val_batches=0).fit(fp32, _loader())
        assert fp32.scalers == [None]
        assert compat.grad_scaler_of(torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)) is None


def test_save_steps_checkpoint(tmp_path):
    calls: list[str] = []

    class Counting(compat.SaveStepsCheckpoint):
        def save_topk_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict[str, Any]) -> None:
            calls.append("topk")
            super().save_topk_checkpoint(trainer, monitor_candidates)

        def save_last_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict[str, Any]) -> None:
            calls.append("last")
            super().save_last_checkpoint(trainer, monitor_candidates)

    callback = Counting(dirpath=tmp_path / "ckpt", monitor="val_loss", save_last=True, save_top_k=1)
    with canary(
        "Lightning",
        "ModelCheckpoint's save steps (_save_topk_checkpoint, _save_last_checkpoint)",
        "lightning.SaveStepsCheckpoint",
    ):
        _trainer(tmp_path, max_epochs=2, enable_checkpointing=True, callbacks=[callback]).fit(
            _Module(), _loader(), _loader()
        )
        assert calls.count("topk") == 2 and calls.count("last") == 2, calls
        assert Path(callback.best_model_path).is_file() and (tmp_path / "ckpt" / "last.ckpt").is_file()


def test_flat_params():
    with canary(
        "Lightning",
        "how its loggers flatten hyperparameters (fabric.utilities.logger._flatten_dict)",
        "lightning.flat_params",
    ):
        flat = compat.flat_params({"net": {"width": 8, "optimizer": {"lr": 0.1}}, "seed": 1, "ns": Namespace(a=2)})
        assert flat == {"net/width": 8, "net/optimizer/lr": 0.1, "seed": 1, "ns/a": 2}, flat
        assert compat.flat_params(Namespace(b=3)) == {"b": 3}


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory) -> str:
    """A tracking store (the test extra installs MLflow: a missing one fails)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def test_mlflow_logger_internals(mlflow_store, tmp_path):
    import mlflow
    from lightning.pytorch.loggers import MLFlowLogger
    from mlflow.tracking import MlflowClient

    with canary(
        "Lightning",
        "MLFlowLogger's state (_run_id, _initialized, _mlflow_client, _experiment_name)",
        "lightning.mlflow_logger_* and set_mlflow_logger_run",
    ):
        before = mlflow.get_tracking_uri()
        logger = MLFlowLogger(experiment_name="canary", tracking_uri=mlflow_store)
        assert compat.mlflow_logger_run_id(logger) is None and not compat.mlflow_logger_started(logger)
        assert compat.mlflow_logger_experiment_name(logger) == "canary"
        client = compat.mlflow_logger_client(logger)
        assert isinstance(client, MlflowClient) and client.tracking_uri == mlflow_store
        first = logger.run_id  # starts the logger: a new run
        assert compat.mlflow_logger_started(logger) and compat.mlflow_logger_run_id(logger) == first
        experiment = client.get_experiment_by_name("canary")
        other = client.create_run(experiment.experiment_id).info.run_id
        compat.set_mlflow_logger_run(logger, other)
        assert logger.run_id == other, "the logger does not log to the run it was pointed at"
        compat.set_mlflow_logger_run(logger, None)
        assert not compat.mlflow_logger_started(logger)
        third = logger.run_id
        assert third not in (first, other), "a logger pointed at no run does not start a new one"
        given = MLFlowLogger(experiment_name="canary", tracking_uri=mlflow_store, run_id=first)
        assert compat.mlflow_logger_run_id(given) == first
    mlflow.set_tracking_uri(before)


class _Wrapper(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.layer(x)


def test_lightning_modules_traceable():
    module = _Module()
    wrapper = _Wrapper(module)
    example = torch.randn(1, 2)
    with canary(
        "Lightning",
        "how a LightningModule is traced without a Trainer (LightningModule._jit_is_scripting)",
        "lightning.lightning_modules_traceable",
    ):
        with pytest.raises(RuntimeError, match="not attached to a `Trainer`"):
            module.trainer  # noqa: B018 - what the tracer reads
        with compat.lightning_modules_traceable(wrapper):
            assert module.trainer is None
            traced = torch.jit.trace(wrapper, example, check_trace=False, strict=False)
        assert torch.equal(traced(example), wrapper(example))
        assert "_jit_is_scripting" not in module.__dict__, "the flag stays on the module"
        with pytest.raises(RuntimeError):
            module.trainer  # noqa: B018
