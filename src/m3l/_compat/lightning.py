"""Lightning's private parts that m3l uses, one function each (see :mod:`m3l._compat`).

Checked on Lightning 2.6.0 (the oldest release ``pyproject.toml`` allows, run by CI's second
pass) and 2.6.6. Lightning is imported inside the functions: :func:`trainer_init_arguments`
runs before anything imports Lightning (importing it takes seconds).
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: the file of ``lightning.pytorch.Trainer``, relative to the ``lightning`` package
TRAINER_SOURCE = Path("pytorch") / "trainer" / "trainer.py"


# ---------------------------------------------------------------------------- the Trainer's arguments


def trainer_init_arguments() -> ast.arguments | None:
    """The arguments of ``lightning.pytorch.Trainer.__init__`` as written in the installed
    Lightning's source (``lightning/pytorch/trainer/trainer.py``, parsed with :mod:`ast`);
    None when the source cannot be found, read or parsed.

    Reaches: the path of Lightning's source file inside its package, and the class and method
    names in it. Why: ``inspect.signature(Trainer.__init__)`` needs ``import lightning``
    (seconds), and the command line checks ``trainer.*`` keys before that; parsing the file
    takes milliseconds. Checked on Lightning 2.6.0 and 2.6.6.
    """
    try:
        spec = importlib.util.find_spec("lightning")
        if spec is None or spec.origin is None:
            return None
        source = Path(spec.origin).parent / TRAINER_SOURCE
        tree = ast.parse(source.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError, ImportError):
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Trainer":
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    return item.args
    return None


# ---------------------------------------------------------------------------- a module and its trainer


def trainer_of(module: Any) -> Any:
    """The Trainer a LightningModule is attached to, or None.

    Reaches: ``LightningModule._trainer``. Why: the public ``module.trainer`` raises a
    RuntimeError when no Trainer is attached (a module used on its own, in a test or a
    notebook), and nothing public asks whether one is. Checked on Lightning 2.6.0 and 2.6.6.
    """
    return getattr(module, "_trainer", None)


def mark_step_values_reset(trainer: Any, names: Iterable[str]) -> None:
    """Mark the values logged under ``names`` in the running loop's results as reset, as
    Lightning does at an epoch's end, so that their last step value is not sent again at the
    later steps of the epoch. Does nothing without a trainer or a running loop.

    Reaches: ``Trainer._results`` (the running loop's ``_ResultCollection``), its entries'
    ``meta.name`` and ``has_reset``. Why: Lightning re-sends every key's last step value at
    each later step, and has no public way to forget one (m3l's multi-task schedules leave an
    objective idle for some steps). Checked on Lightning 2.6.0 and 2.6.6.
    """
    results = getattr(trainer, "_results", None) if trainer is not None else None
    names = set(names)
    if results is None or not names:
        return
    for entry in results.values():
        if getattr(getattr(entry, "meta", None), "name", None) in names:
            entry.has_reset = True


def logs_this_step(trainer: Any) -> bool:
    """Whether the Trainer writes to its loggers at the current training step (every
    ``log_every_n_steps``). Raises when the running loop is not one Lightning knows.

    Reaches: ``Trainer._logger_connector.should_update_logs``. Why: the rule (which step of
    which loop logs) is Lightning's and has no public form; m3l's multi-task module skips its
    per-step ``self.log`` calls on the other steps. Checked on Lightning 2.6.0 and 2.6.6.
    """
    return bool(trainer._logger_connector.should_update_logs)


def validation_has_run(trainer: Any) -> bool:
    """Whether the fit loop's validation has run at least once in this fit.

    Reaches: ``trainer.fit_loop.epoch_loop.val_loop._has_run``. Why: Lightning's public state
    (``trainer.validating``, ``sanity_checking``) says what runs now, not whether the metrics a
    checkpoint callback sees come from a finished validation. Checked on Lightning 2.6.0 and
    2.6.6.
    """
    return bool(trainer.fit_loop.epoch_loop.val_loop._has_run)


# ---------------------------------------------------------------------------- distributed data


def uses_distributed_sampler(trainer: Any) -> bool:
    """The Trainer's ``use_distributed_sampler`` argument (True: Lightning shards the loaders).

    Reaches: ``Trainer._accelerator_connector.use_distributed_sampler``. Why: the Trainer
    keeps its argument there only. Checked on Lightning 2.6.0 and 2.6.6.
    """
    return bool(getattr(trainer._accelerator_connector, "use_distributed_sampler", True))


def with_sampler(loader: Any, sampler: Any, stage: str = "test") -> Any:
    """A copy of the DataLoader ``loader`` that draws from ``sampler`` (its other arguments,
    and those of a DataLoader subclass, kept), as Lightning re-creates loaders for a stage
    (``"train"``, ``"validate"``, ``"test"``, ``"predict"``).

    Reaches: ``lightning.pytorch.utilities.data._update_dataloader``. Why: re-creating any
    DataLoader (subclasses with their own arguments included) with another sampler is what
    Lightning's own sharding does, and it has no public form. Checked on Lightning 2.6.0 and
    2.6.6.
    """
    from lightning.pytorch.trainer.states import RunningStage
    from lightning.pytorch.utilities.data import _update_dataloader

    mode = {
        "train": RunningStage.TRAINING,
        "validate": RunningStage.VALIDATING,
        "test": RunningStage.TESTING,
        "predict": RunningStage.PREDICTING,
    }[stage]
    return _update_dataloader(loader, sampler, mode=mode)


# ---------------------------------------------------------------------------- optimizers


def _no_count() -> None:
    """Stands in for Lightning's step counting around an optimizer step."""


def counts_steps(optimizer: Any) -> bool:
    """Whether ``optimizer`` is a ``LightningOptimizer`` that counts the trainer's steps.

    Reaches: ``LightningOptimizer._on_before_step`` / ``_on_after_step``. Why: see
    :func:`uncounted_step`. Checked on Lightning 2.6.0 and 2.6.6.
    """
    return hasattr(optimizer, "_on_before_step") and hasattr(optimizer, "_on_after_step")


@contextmanager
def uncounted_step(optimizer: Any) -> Iterator[None]:
    """Within the block, ``optimizer.step()`` does not advance ``trainer.global_step``
    (nothing changes for an optimizer that counts nothing, see :func:`counts_steps`).

    Reaches: ``LightningOptimizer._on_before_step`` / ``_on_after_step``, the hooks with which
    Lightning counts an optimizer's step. Why: under manual optimization Lightning counts every
    optimizer's step in ``global_step`` (Lightning issue #17958) and offers no way to count
    one per batch. Checked on Lightning 2.6.0 and 2.6.6.
    """
    if not counts_steps(optimizer):
        yield
        return
    saved = (optimizer._on_before_step, optimizer._on_after_step)
    optimizer._on_before_step = optimizer._on_after_step = _no_count
    try:
        yield
    finally:
        optimizer._on_before_step, optimizer._on_after_step = saved


def grad_scaler_of(optimizer: Any) -> Any:
    """The fp16 ``GradScaler`` of the trainer a ``LightningOptimizer`` steps through (None:
    none, or not a Lightning optimizer).

    Reaches: ``LightningOptimizer._strategy``. Why: the optimizer a LightningModule gets
    names its trainer's strategy there only (``trainer.precision_plugin.scaler`` is public,
    but a step hook has the optimizer, not always the trainer). Checked on Lightning 2.6.0 and
    2.6.6.
    """
    strategy = getattr(optimizer, "_strategy", None)
    return getattr(getattr(strategy, "precision_plugin", None), "scaler", None)


# ---------------------------------------------------------------------------- checkpoints


def _save_steps_checkpoint_class() -> type:
    from lightning.pytorch.callbacks import ModelCheckpoint

    class SaveStepsCheckpoint(ModelCheckpoint):
        """Lightning's ``ModelCheckpoint`` whose two save steps have public names:
        :meth:`save_topk_checkpoint` (the monitored top-k files) and :meth:`save_last_checkpoint`
        (``last.ckpt``).
        A subclass overrides those and calls ``super()`` for Lightning's own step.

        Reaches: ``ModelCheckpoint._save_topk_checkpoint`` and ``_save_last_checkpoint``,
        overridden. Why: the public hooks (``on_validation_end``, ``on_train_epoch_end``) decide
        whether to save, and a callback that must change what is saved (a monitor replaced
        when the module does not log it) has no other place. Checked on Lightning 2.6.0 and
        2.6.6.
        """

        def _save_topk_checkpoint(self, trainer: Any, monitor_candidates: dict[str, Any]) -> None:
            self.save_topk_checkpoint(trainer, monitor_candidates)

        def _save_last_checkpoint(self, trainer: Any, monitor_candidates: dict[str, Any]) -> None:
            self.save_last_checkpoint(trainer, monitor_candidates)

        def save_topk_checkpoint(self, trainer: Any, monitor_candidates: dict[str, Any]) -> None:
            super()._save_topk_checkpoint(trainer, monitor_candidates)

        def save_last_checkpoint(self, trainer: Any, monitor_candidates: dict[str, Any]) -> None:
            super()._save_last_checkpoint(trainer, monitor_candidates)

    SaveStepsCheckpoint.__module__ = __name__
    SaveStepsCheckpoint.__qualname__ = "SaveStepsCheckpoint"
    return SaveStepsCheckpoint


_LAZY: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    # SaveStepsCheckpoint subclasses Lightning's ModelCheckpoint: made on first use so that
    # importing this module does not import Lightning
    if name == "SaveStepsCheckpoint":
        if name not in _LAZY:
            _LAZY[name] = _save_steps_checkpoint_class()
        return _LAZY[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------- loggers


def flat_params(params: Any) -> dict[str, Any]:
    """``params`` (a mapping or an ``argparse.Namespace``) flattened as Lightning's loggers log
    hyperparameters: nested keys joined with ``/``, Namespaces and dataclasses as dicts.

    Reaches: ``lightning.fabric.utilities.logger._convert_params`` and ``_flatten_dict``.
    Why: an MLflow run's parameters must be compared with what Lightning's MLFlowLogger logged,
    key for key; the flattening is Lightning's and is not public. Checked on Lightning 2.6.0
    and 2.6.6.
    """
    from lightning.fabric.utilities.logger import _convert_params, _flatten_dict

    return _flatten_dict(_convert_params(params))


def mlflow_logger_run_id(logger: Any) -> str | None:
    """The MLflow run id an ``MLFlowLogger`` was given or has created, without creating one
    (None: it will create a run when first used).

    Reaches: ``MLFlowLogger._run_id``. Why: the public ``run_id`` property creates the run.
    Checked on Lightning 2.6.0 and 2.6.6.
    """
    return getattr(logger, "_run_id", None)


def set_mlflow_logger_run(logger: Any, run_id: str | None) -> None:
    """Point an ``MLFlowLogger`` at the MLflow run ``run_id`` (None: a new run, created when
    it is first used), as its ``run_id=`` argument would have.

    Reaches: ``MLFlowLogger._run_id`` and ``_initialized``. Why: the run is fixed when the
    logger is made, and m3l learns which run a resumed launch continues only later. Checked on
    Lightning 2.6.0 and 2.6.6.
    """
    logger._run_id = run_id
    if run_id is None:
        logger._initialized = False


def mlflow_logger_started(logger: Any) -> bool:
    """Whether an ``MLFlowLogger`` has already made its MLflow client and run.

    Reaches: ``MLFlowLogger._initialized``. Why: the public ``experiment`` property starts it,
    which changes the process's tracking URI. Checked on Lightning 2.6.0 and 2.6.6.
    """
    return bool(getattr(logger, "_initialized", False))


def mlflow_logger_client(logger: Any) -> Any:
    """An ``MLFlowLogger``'s ``MlflowClient`` (of its tracking URI), without starting its run.

    Reaches: ``MLFlowLogger._mlflow_client``. Why: the public ``experiment`` property returns
    the same client but creates the run first. Checked on Lightning 2.6.0 and 2.6.6.
    """
    return logger._mlflow_client


def mlflow_logger_experiment_name(logger: Any) -> str:
    """The experiment name an ``MLFlowLogger`` was given.

    Reaches: ``MLFlowLogger._experiment_name``. Why: the public ``name`` is the experiment's
    id, known only once the run is started. Checked on Lightning 2.6.0 and 2.6.6.
    """
    return logger._experiment_name


# ---------------------------------------------------------------------------- tracing for export


@contextmanager
def lightning_modules_traceable(root: Any) -> Iterator[None]:
    """Within the block, every LightningModule in ``root``'s module tree can be traced by
    ``torch.jit.trace`` without a Trainer attached (the tracer reads every attribute, and
    ``module.trainer`` raises when none is attached).

    Reaches: ``LightningModule._jit_is_scripting``, the flag Lightning's own ``to_torchscript``
    sets. Why: ``to_torchscript`` traces the module itself, not a wrapper around it. Checked on
    Lightning 2.6.0 and 2.6.6.
    """
    modules = [m for m in root.modules() if hasattr(type(m), "_jit_is_scripting")]
    try:
        for module in modules:
            object.__setattr__(module, "_jit_is_scripting", True)
        yield
    finally:
        for module in modules:
            module.__dict__.pop("_jit_is_scripting", None)
