"""MultiTaskModule: a shared backbone, one head per objective, and an algorithm (a schedule
holding a method).

A LightningModule with manual optimization: one optimizer for the backbone (none when it is
frozen) and the heads that use the same factory and no scheduler, one per other task, and one
for the method's own parameters when it has any (:mod:`m3l.mtl.optimization`). Each training
step receives ``{task: batch}`` for the tasks the schedule chose, runs the backbone once per
task batch and every head of that task, and hands the losses to the schedule's method in one
call, ``method.backward(losses, context)`` (:mod:`m3l.mtl.algorithms.base`); the module knows
nothing of any method's internals. Logged keys: ``train/loss``, ``train/<head>/loss``, ``weights/<head>``,
``val/<head>/<metric>``, ``val/<head>/loss``, ``val/loss`` (and ``test/...``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import lightning as L
from lightning.fabric.utilities.apply_func import move_data_to_device
import torch
from torch import Tensor, nn

from m3l._compat.lightning import logs_this_step, mark_step_values_reset, trainer_of
from m3l._compat.torch import is_normalization_layer
from m3l.training.distributed import log_mean, logged_mean
from m3l.mtl.algorithms.base import Method, Schedule, deprecated_name
from m3l.mtl.algorithms.context import StepContext, last_parameterized_module, world_size
from m3l.mtl.algorithms.joint import Joint
from m3l.mtl.artifacts import SaveArtifacts
from m3l.mtl.data import merge_task_batches
from m3l.mtl.optimization import (
    build_optimizers,
    check_clip,
    check_optimizer_states,
    clip_gradients,
    default_optimizer,
    step_optimizers,
    step_schedulers,
)
from m3l.mtl.tasks import Objective, Task
from m3l.mtl.errors import NonFiniteLossError
from m3l.mtl.validation import check_task_names, first_batches, preflight
from m3l.training.optim import OptimizerFactory, SchedulerFactory
from m3l.records.tracking import set_run_tags

log = logging.getLogger(__name__)


class MultiTaskModule(L.LightningModule):
    """Backbone + per-task heads + algorithm, trained by Lightning's Trainer.

    Args:
        backbone: the shared ``nn.Module``.
        tasks: :class:`Task` / :class:`MultiHeadTask` objects (their datasets are optional).
        algorithm: a schedule (:class:`Joint`, :class:`Sequential`, :class:`Alternating`)
            holding the method of its joint steps; default ``Joint(EqualWeighting())``. The
            method is :attr:`method` (a submodule: its parameters are in checkpoints).
        optimizer: factory for the backbone's optimizer (``partial``/Hydra ``_partial_``).
        scheduler: factory ``scheduler(optimizer)`` for the backbone (stepped per epoch).
        head_optimizer, head_scheduler: defaults for the heads (a task's own win).
        freeze_backbone: keep the backbone fixed, weights and normalization statistics
            (a new task on a trained backbone).
        finite_check_every_n_steps: how often the NaN/inf check syncs with the device.
        save_artifacts: save the backbone and heads (safetensors + cards) under
            ``<run dir>/artifacts`` when a fit ends (:class:`~m3l.mtl.artifacts.SaveArtifacts`).
        scheduler_monitor: the logged key (e.g. ``val/left/acc``) given to schedulers whose
            ``step`` needs a metric (``ReduceLROnPlateau``); default: the validation loss, else
            the epoch's mean training loss (as EMTL stepped them).
        gradient_clip_val: clip each optimizer's gradients to this global norm (unscaled under
            fp16) after the method wrote them; None: no clipping. ``trainer.gradient_clip_val``
            and ``mtl.Trainer(gradient_clip_val=...)`` land here (Lightning's Trainer refuses them
            under manual optimization).
    """

    def __init__(
        self,
        backbone: nn.Module,
        tasks: Sequence[Task],
        algorithm: Schedule | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        head_optimizer: OptimizerFactory | None = None,
        head_scheduler: SchedulerFactory | None = None,
        freeze_backbone: bool = False,
        finite_check_every_n_steps: int = 25,
        save_artifacts: bool = True,
        scheduler_monitor: str | None = None,
        gradient_clip_val: float | None = None,
    ) -> None:
        super().__init__()
        tasks = list(tasks)
        check_task_names(tasks)
        self.automatic_optimization = False
        self.backbone = backbone
        self.tasks = tasks
        self.task_by_name = {t.name: t for t in tasks}
        self.objectives: list[Objective] = [o for t in tasks for o in t.objectives]
        self.objective_names = [o.name for o in self.objectives]
        self.heads = nn.ModuleDict({o.name: o.head for o in self.objectives})
        self.algorithm = algorithm if algorithm is not None else Joint()
        self.method: Method = self.algorithm.method
        self.method.setup(self.objective_names)
        # checkpoints written before the rename hold the method's state under ``weighting.``
        self.register_load_state_dict_pre_hook(_load_old_method_keys)
        self.optimizer_factory = optimizer or default_optimizer
        self.scheduler_factory = scheduler
        self.head_optimizer_factory = head_optimizer or self.optimizer_factory
        self.head_scheduler_factory = head_scheduler or scheduler
        self.freeze_backbone = bool(freeze_backbone)
        self.finite_check_every_n_steps = max(1, int(finite_check_every_n_steps))
        self.save_artifacts = bool(save_artifacts)
        self.scheduler_monitor = scheduler_monitor
        self.gradient_clip_val = check_clip(gradient_clip_val)
        if self.freeze_backbone:
            self.backbone.requires_grad_(False)
        self.metrics = nn.ModuleDict(
            {
                split: nn.ModuleDict(
                    {
                        o.name: nn.ModuleDict({k: m.clone() for k, m in o.metrics.items() if _is_metric(m)})
                        for o in self.objectives
                    }
                )
                for split in ("val", "test", "eval_train", "eval_test")
            }
        )
        self.register_buffer(
            "first_bad_step", torch.full((len(self.objectives),), -1, dtype=torch.long), persistent=False
        )
        self.register_buffer("epoch_loss_sum", torch.zeros(len(self.objectives)), persistent=False)
        self.register_buffer("epoch_loss_count", torch.zeros(len(self.objectives)), persistent=False)
        self.train_steps = 0
        self.preflight_done = False
        self._roles: list[str] = []
        self._scheduler_roles: list[str] = []
        self._eval_heads: dict[str, dict[str, None]] = {}  # the heads evaluated per split this epoch, in order
        self._index_cache: dict[tuple[str, ...], Tensor] = {}
        #: this step's ``train/loss``, ``train/<head>/loss`` and ``weights/<head>`` (logged every
        #: ``log_every_n_steps``, see :meth:`_logs_this_step`)
        self.step_metrics: dict[str, Tensor] = {}

    @property
    def weighting(self) -> Method:
        """Deprecated: the old name of :attr:`method`."""
        deprecated_name("MultiTaskModule.weighting", "MultiTaskModule.method")
        return self.method

    def train(self, mode: bool = True) -> MultiTaskModule:
        """As ``nn.Module.train``; a frozen backbone keeps its normalization layers in eval
        mode, so their running statistics (BatchNorm) stay those it was trained with."""
        super().train(mode)
        if mode and self.freeze_backbone:
            for layer in self.backbone.modules():
                if is_normalization_layer(layer):  # BatchNorm/InstanceNorm
                    layer.eval()
        return self

    # ------------------------------------------------------------------ forward
    def forward(self, x: Any, task: str | None = None, **head_inputs: Any) -> dict[str, Any]:
        """Predictions ``{head: output}`` of every head (or of ``task``'s heads). Heads that
        take extra arguments get those their task computes from ``x`` (``head_inputs``
        functions) and the keyword arguments given here."""
        features = self.backbone(x)
        tasks = [self.task_by_name[task]] if task else self.tasks
        out = {}
        for t in tasks:
            extra = {k: v(x) for k, v in t.head_inputs.items() if callable(v)} | head_inputs
            out.update({o.name: o.head(features, **extra) for o in t.objectives})
        return out

    def _task_losses(
        self, task: Task, batch: Any, features_out: dict[str, Any] | None = None
    ) -> tuple[dict[str, Tensor], dict[str, Any], dict[str, Any]]:
        inputs, targets = task.split_batch(batch)
        features = self.backbone(inputs)
        if features_out is not None:
            features_out[task.name] = features
        extra = task.head_kwargs(batch, inputs)
        predictions = {o.name: o.head(features, **extra) for o in task.objectives}
        losses = {o.name: o.weight * o.criterion(predictions[o.name], targets[o.name]) for o in task.objectives}
        return losses, predictions, targets

    # ------------------------------------------------------------------ optimizers
    def configure_optimizers(self) -> Any:
        optimizers, schedulers, self._roles, self._scheduler_roles = build_optimizers(self)
        return optimizers, schedulers

    def _optimizers_for(self, task_names: Iterable[str]) -> list[Any]:
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        if not self._roles:  # restored without configure_optimizers on this instance
            self.configure_optimizers()
        wanted = {"backbone", "method"} | {f"task:{n}" for n in task_names}
        return [o for o, role in zip(opts, self._roles) if role in wanted]

    # ------------------------------------------------------------------ training
    def step_context(
        self, names: list[str], losses: Sequence[Tensor] = (), features: Mapping[str, Any] | None = None
    ) -> StepContext:
        """What the method sees this step: the parameters, the losses (the per-objective
        scalars), the backbone outputs, and how to back-propagate (Lightning's
        ``manual_backward``, the fp16 GradScaler of Lightning's Trainer, the DDP world)."""
        shared = [p for p in self.backbone.parameters() if p.requires_grad]
        last = last_parameterized_module(self.backbone)
        last_params = [p for p in last.parameters(recurse=False) if p.requires_grad] if last else []
        trainer = trainer_of(self)
        plugin = getattr(trainer, "precision_plugin", None) if trainer is not None else None
        return StepContext(
            step=self.train_steps,
            epoch=self.current_epoch,
            names=list(names),
            shared_parameters=shared,
            last_shared_parameters=last_params,
            head_parameters={
                n: [p for p in self.heads[n].parameters() if p.requires_grad] for n in self.objective_names
            },
            features=dict(features or {}),
            losses=torch.stack(list(losses)) if len(losses) else None,
            objective_losses=list(losses),
            backward_fn=self.manual_backward if trainer is not None else None,
            scaler=getattr(plugin, "scaler", None),
            world_size=world_size(),
        )

    def _indices(self, names: Sequence[str]) -> Tensor:
        key = tuple(names)
        if key not in self._index_cache or self._index_cache[key].device != self.device:
            self._index_cache[key] = torch.tensor([self.objective_names.index(n) for n in names], device=self.device)
        return self._index_cache[key]

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        batches = merge_task_batches(batch)
        losses: dict[str, Tensor] = {}
        features: dict[str, Any] = {}
        for name, task_batch in batches.items():
            losses.update(self._task_losses(self.task_by_name[name], task_batch, features)[0])
        names = [n for n in self.objective_names if n in losses]
        context = self.step_context(names, [losses[n] for n in names], features)
        stacked = context.losses
        self._track_finite(names, stacked)
        optimizers = self._optimizers_for(batches)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        joint = self.algorithm.uses_method(names, self.objective_names)
        if joint:  # the method writes the gradients: weighted losses, an aggregated Jacobian, ...
            total = self.method.backward(stacked, context)
        else:  # a step of some tasks only (Sequential, Alternating): their plain sum
            total = stacked.sum()
            context.backward(total)
        if self.gradient_clip_val is not None:
            clip_gradients(optimizers, self.gradient_clip_val, context.scaler)
        step_optimizers(optimizers)
        if joint:
            self.method.after_step(stacked.detach(), context)
        idx = self._indices(names)
        self.epoch_loss_sum.index_add_(0, idx, stacked.detach().to(self.epoch_loss_sum.dtype))
        self.epoch_loss_count.index_add_(0, idx, torch.ones_like(self.epoch_loss_count[idx]))
        self.train_steps += 1
        logs = self._logs_this_step(batch_idx)
        if logs or getattr(trainer_of(self), "progress_bar_callback", None) is not None:
            self.log("train/loss", total.detach(), prog_bar=True, batch_size=1)
        step_metrics = {f"train/{n}/loss": loss for n, loss in zip(names, stacked.detach())}
        if len(names) < len(self.objective_names):
            self.forget_step_values({f"train/{n}/loss" for n in self.objective_names if n not in losses})
        if joint:
            weights = self.method.last_weights
            if weights.numel() == len(names):
                step_metrics.update({f"weights/{n}": w for n, w in zip(names, weights)})
        self.step_metrics = {"train/loss": total.detach(), **step_metrics}
        if logs:
            self.log_dict(step_metrics, batch_size=1)
        if self.train_steps % self.finite_check_every_n_steps == 0:
            self._raise_if_not_finite()
        return total.detach()

    def forget_step_values(self, keys: Iterable[str]) -> None:
        """Lightning re-sends a key's last step value at every later step of the epoch; a value
        about an objective idle in this step (Alternating, Sequential) must not be re-logged as
        if it were new. Its entries are marked reset, as Lightning does at an epoch's end."""
        mark_step_values_reset(trainer_of(self), keys)

    def _logs_this_step(self, batch_idx: int) -> bool:
        """Whether this step logs its training values: on the steps Lightning writes to the
        loggers (every ``log_every_n_steps``) and on an epoch's last batch; ``train/loss`` is
        also logged on every step while a progress bar shows it.

        Every ``self.log`` call costs Lightning some dictionary work (about 0.3 ms on this
        project's CPU; 2T+1 calls a step), and on the other steps no logger would see the
        values; ``trainer.callback_metrics`` holds them at the end of each epoch. Callbacks
        that want every step read :attr:`step_metrics`.
        """
        trainer = trainer_of(self)
        if trainer is None:
            return True
        try:
            return logs_this_step(trainer) or batch_idx + 1 >= trainer.num_training_batches
        except Exception:  # noqa: BLE001 - a loop Lightning does not know: log every step, as before
            return True

    def _track_finite(self, names: list[str], losses: Tensor) -> None:
        idx = self._indices(names)
        current = self.first_bad_step[idx]
        bad = ~torch.isfinite(losses.detach())
        self.first_bad_step[idx] = torch.where((current < 0) & bad, self.train_steps, current)

    def _raise_if_not_finite(self) -> None:
        bad = self.first_bad_step.tolist()
        hits = [(step, n) for n, step in zip(self.objective_names, bad) if step >= 0]
        if hits:
            step, name = min(hits)
            task = next(o.task for o in self.objectives if o.name == name)
            label = name if task == name else f"{task}' head '{name}"
            raise NonFiniteLossError(label, step)

    def on_train_epoch_end(self) -> None:
        self._raise_if_not_finite()
        means = self.epoch_loss_sum / self.epoch_loss_count.clamp_min(1)
        self.method.on_train_epoch_end(means, self.current_epoch)
        self._step_schedulers(means, self.epoch_loss_count > 0)
        self.epoch_loss_sum.zero_()
        self.epoch_loss_count.zero_()

    def _step_schedulers(self, means: Tensor, trained: Tensor) -> None:
        schedulers = self.lr_schedulers()
        schedulers = schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []
        if schedulers and not self._scheduler_roles:
            self.configure_optimizers()  # restored without configure_optimizers on this instance
        step_schedulers(self, schedulers, self._scheduler_roles, means, trained)

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, split: str, batch: Any) -> None:
        """Log each head's loss and metrics for a batch: epoch means over samples, exact across DDP
        ranks (:func:`~m3l.training.distributed.log_mean`; torchmetrics objects sync themselves)."""
        for name, task_batch in merge_task_batches(batch).items():
            task = self.task_by_name[name]
            losses, predictions, targets = self._task_losses(task, task_batch)
            inputs, _ = task.split_batch(task_batch)
            size = len(inputs) if hasattr(inputs, "__len__") else 1
            for o in task.objectives:
                pred, target = predictions[o.name], targets[o.name]
                log_mean(self, f"{split}/{o.name}/loss", losses[o.name], size, add_dataloader_idx=False)
                self._eval_heads.setdefault(split, {})[o.name] = None
                for metric_name, metric in o.metrics.items():
                    key = f"{split}/{o.name}/{metric_name}"
                    if _is_metric(metric):
                        stateful = self.metrics[split][o.name][metric_name]
                        stateful.update(pred, target)
                        self.log(key, stateful, add_dataloader_idx=False)
                    else:
                        log_mean(
                            self,
                            key,
                            torch.as_tensor(metric(pred, target), device=self.device),
                            size,
                            add_dataloader_idx=False,
                        )

    def _log_totals(self) -> None:
        """``<split>/loss``: the sum over heads of each head's mean loss (reduced over DDP ranks)."""
        for split, heads in self._eval_heads.items():
            total = sum(logged_mean(self, f"{split}/{head}/loss") for head in heads)
            self.log(f"{split}/loss", total, add_dataloader_idx=False)
        self._eval_heads = {}

    def eval_prefix(self, dataloader_idx: int) -> str:
        """The logged prefix of a validation loader: ``val``, or ``eval_train`` / ``eval_test``
        for the train and test splits a datamodule evaluates every epoch (``eval_splits``)."""
        datamodule = getattr(trainer_of(self), "datamodule", None)
        splits = getattr(datamodule, "val_loader_splits", None)
        split = splits[dataloader_idx] if splits and dataloader_idx < len(splits) else "val"
        return "val" if split == "val" else f"eval_{split}"

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(self.eval_prefix(dataloader_idx), batch)

    def on_validation_epoch_end(self) -> None:
        self._log_totals()

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate("test", batch)

    def on_test_epoch_end(self) -> None:
        self._log_totals()

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, task_batch in merge_task_batches(batch).items():
            task = self.task_by_name[name]
            inputs, _ = task.split_batch(task_batch)
            out.update(self(inputs, task=name, **task.head_kwargs(task_batch, inputs)))
        return out

    # ------------------------------------------------------------------ lifecycle
    def setup(self, stage: str) -> None:
        trainer = trainer_of(self)
        if hasattr(getattr(trainer, "datamodule", None), "use_schedule"):  # the schedule owns the train loader
            trainer.datamodule.use_schedule(self.algorithm)
        if trainer is not None and self.algorithm.reloads_each_epoch and trainer.reload_dataloaders_every_n_epochs != 1:
            log.info("%s: reloading the train loader every epoch", self.algorithm)
            trainer.reload_dataloaders_every_n_epochs = 1

    def tracking_tags(self) -> dict[str, str]:
        """Run tags for experiment trackers: m3l's version, the tasks, the algorithm."""
        from m3l import __version__

        return {
            "m3l.version": __version__,
            "m3l.tasks": ",".join(t.name for t in self.tasks),
            "m3l.algorithm": repr(self.algorithm),
        }

    def on_fit_start(self) -> None:
        for logger in self.loggers:
            set_run_tags(logger, self.tracking_tags())
        if not self.preflight_done and getattr(self.trainer, "datamodule", None) is not None:  # plain Lightning
            self.preflight(self.trainer.datamodule)

    def preflight(self, datamodule: Any) -> dict[str, float]:
        """One batch per task through backbone -> head -> criterion -> metrics.

        Raises an :class:`~m3l.mtl.validation.MTLValidationError` naming the task, part,
        expected and received structure and a fix; returns the first loss per objective.
        """
        batches, samples = first_batches(datamodule, self.tasks)
        device = self.device
        batches = {k: move_data_to_device(v, device) for k, v in batches.items()}
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                losses = preflight(self.backbone, self.tasks, batches, samples)
        finally:
            self.train(was_training)
        self.preflight_done = True
        log.info(
            "preflight ok: %d task(s), first losses %s",
            len(self.tasks),
            ", ".join(f"{k}={v:.4g}" for k, v in losses.items()),
        )
        return losses

    def configure_callbacks(self) -> list[L.Callback]:
        """The artifacts writer, unless Lightning's Trainer already has one (or it is turned off)."""
        trainer = trainer_of(self)
        present = trainer is not None and any(isinstance(c, SaveArtifacts) for c in trainer.callbacks)
        return [SaveArtifacts()] if self.save_artifacts and not present else []

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["m3l_mtl"] = {"train_steps": self.train_steps, "objectives": self.objective_names}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("m3l_mtl", {})
        self.train_steps = int(state.get("train_steps", 0))
        trainer = trainer_of(self)
        if trainer is not None and trainer.state.fn == "fit":  # resuming: the optimizer states must fit
            check_optimizer_states(self, checkpoint, trainer.ckpt_path)


def _load_old_method_keys(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Read a checkpoint written while :attr:`MultiTaskModule.method` was named ``weighting``:
    its ``weighting.<name>`` entries are the method's ``method.<name>``."""
    old = f"{prefix}weighting."
    for key in [k for k in state_dict if k.startswith(old)]:
        state_dict[f"{prefix}method.{key[len(old) :]}"] = state_dict.pop(key)


def _is_metric(metric: Any) -> bool:
    return isinstance(metric, nn.Module) and hasattr(metric, "compute") and hasattr(metric, "update")


__all__ = ["MultiTaskModule", "default_optimizer"]
