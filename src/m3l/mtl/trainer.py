"""``mtl.Trainer(backbone, tasks).launch(algorithm)``, the umbrella of the Python API.

Three things are called trainer, and this module says which each time: ``mtl.Trainer`` (this
class, m3l's front), Lightning's Trainer (``lightning.Trainer``, which ``mtl.Trainer`` builds
and runs; its arguments pass through ``mtl.Trainer(**trainer_kwargs)``), and the ``trainer``
config (the Lightning Trainer's arguments in a run's config, ``trainer.max_epochs=...`` on
the command line, where ``mtl.Trainer`` writes them too).

A thin front over :class:`m3l.engine.experiment.Experiment`, the orchestrator of the commands: it
builds the objects a multi-task config would (a :class:`MultiTaskModule` and a
:class:`MultiTaskDataModule` handed the algorithm, a schedule) and a config of the rest, and
the Experiment fits them with the commands' policies: a fresh run directory
``<root_dir>/mtl/train/<date_time>`` per launch (config.yaml, ``train.log``, checkpoints, the
CSV log, artifacts), one preflight, the same resume, loggers and report. Then it evaluates the
test sets and returns a :class:`MultiTaskResults`. Metrics go to the console (logging), to
``train.log``, to a CSV file, and to any Lightning logger given (``mlflow=True`` adds the
MLFlowLogger of ``logger=mlflow``: on the tracking URI and experiment set with
``mlflow.set_tracking_uri`` / ``mlflow.set_experiment`` when the user set them, else on
``sqlite:///<root_dir>/mlflow.db``). ``mtl.Trainer``'s settings are logged as parameters (and
``hparams.yaml``), m3l's version, the tasks and the algorithm as run tags.

A launch's ``run_id`` is the MLflow run's id when it logs to MLflow (``mlflow=True`` or the
user's own ``MLFlowLogger``, which is then the only one: one MLflow run per launch), else its
run directory's name; it is recorded in its config.yaml. Launching again with it (or with the
name of any of the run's launch directories) resumes that run from its last checkpoint, in a
new run directory that records the same ``run_id`` (as ``resume=true`` does on the command
line, nothing is written into an earlier run's directory), logging to the same MLflow run.
The resumed launch may change settings (``max_epochs`` to train longer, ...): MLflow keeps
the first values and gets each change as ``<name>.resume_<n>`` (:class:`m3l.records.tracking.MLFlowLogger`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf
from torch import nn

from m3l._compat.lightning import set_mlflow_logger_run
from m3l.errors import M3LError
from m3l.engine.experiment import Experiment
from m3l.mtl.algorithms.base import Schedule
from m3l.mtl.algorithms.base import describe as describe_algorithm
from m3l.mtl.algorithms.joint import Joint
from m3l.mtl.artifacts import SaveArtifacts, metrics_by_head
from m3l.mtl.data import MultiTaskDataModule
from m3l.mtl.delta_m import delta_m
from m3l.mtl.errors import TrainerArgumentError
from m3l.mtl.module import MultiTaskModule
from m3l.mtl.tasks import Task
from m3l.records.past_runs import run_checkpoint, run_id_of
from m3l.records.tracking import attach_mlflow_run, is_mlflow_logger, mlflow_logger, set_run_tags

log = logging.getLogger(__name__)


@dataclass
class MultiTaskResults:
    """What a launch produced."""

    metrics: dict[str, dict[str, float]]
    val: dict[str, dict[str, float]] = field(default_factory=dict)
    test: dict[str, dict[str, float]] = field(default_factory=dict)
    delta_m: float | None = None
    baselines: dict[str, dict[str, float]] | None = None
    artifacts: dict[str, Path] = field(default_factory=dict)
    #: the last epoch's evaluation of the train/test splits (``eval_splits``): {split: {head: {metric: v}}}
    epoch_eval: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    run_id: str | None = None
    checkpoint: Path | None = None
    log_dir: Path | None = None
    module: MultiTaskModule | None = field(default=None, repr=False)


split_metrics = metrics_by_head

#: the ``name`` of mtl.Trainer runs: their directories are ``<root_dir>/mtl/train/<date_time>``
RUN_NAME = "mtl"


def _is_config_value(value: Any) -> bool:
    """Whether a Lightning Trainer argument can live in the ``trainer`` config (else it is
    passed as an object)."""
    if isinstance(value, (list, tuple)):
        return all(_is_config_value(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_config_value(v) for k, v in value.items())
    return value is None or isinstance(value, (bool, int, float, str))


def copy_task(task: Task) -> Task:
    """A copy of ``task`` with fresh copies of its heads, sharing its datasets."""
    memo = {id(ds): ds for ds in (task.train, task.val, task.test) if ds is not None}
    return copy.deepcopy(task, memo)


class Trainer:
    """``mtl.Trainer``: train a backbone and tasks with an algorithm (a schedule holding its
    method, ``mtl.Joint(mtl.UPGrad())``); save and report. Each launch builds and runs a
    Lightning Trainer (``lightning.Trainer``) through :class:`~m3l.engine.experiment.Experiment`.

    Args:
        backbone: the shared ``nn.Module``.
        tasks: :class:`Task` / :class:`MultiHeadTask` with their datasets.
        optimizer, scheduler, head_optimizer, head_scheduler, freeze_backbone,
            scheduler_monitor: as :class:`MultiTaskModule`.
        max_epochs: epochs (default: one round of the schedule).
        root_dir: where logs, checkpoints and artifacts go.
        logger: any Lightning logger(s), in addition to the CSV file. An ``MLFlowLogger``
            among them (``m3l.records.tracking.MLFlowLogger(tags=...)``) is the launch's MLflow logger.
        mlflow: add an MLFlowLogger (needs ``mlflow``) unless ``logger`` has one: on the
            tracking URI set with ``mlflow.set_tracking_uri`` (or ``MLFLOW_TRACKING_URI``), else
            ``sqlite:///<root_dir>/mlflow.db``.
        experiment_name: the MLflow experiment; default: the one set with
            ``mlflow.set_experiment`` (or ``MLFLOW_EXPERIMENT_NAME``), else ``m3l-mtl``.
        baselines: single-task metrics ``{head: {metric: value}}`` for Delta_m, or
            ``"single_task"`` to train each task alone with the same settings first.
        callbacks: extra Lightning callbacks (e.g. :class:`~m3l.mtl.diagnostics.Diagnostics`).
        num_workers, pin_memory: the loaders' (EMTL's ``dataloader_params``; the batch size is
            each task's own).
        eval_splits: the splits evaluated every epoch (``("train", "test")`` as EMTL did); see
            :class:`MultiTaskDataModule`.
        trainer_kwargs: passed to Lightning's Trainer, ``lightning.Trainer`` (e.g.
            ``limit_train_batches``), through the run's ``trainer`` config; any other name
            fails here, naming m3l's equivalent (EMTL's ``algorithm``, ``use_mlflow``,
            ``device``, ... included).
    """

    def __init__(
        self,
        backbone: nn.Module,
        tasks: Sequence[Task],
        *,
        optimizer: Callable[..., Any] | None = None,
        scheduler: Callable[..., Any] | None = None,
        head_optimizer: Callable[..., Any] | None = None,
        head_scheduler: Callable[..., Any] | None = None,
        freeze_backbone: bool = False,
        scheduler_monitor: str | None = None,
        max_epochs: int | None = None,
        root_dir: str | Path = "m3l_runs",
        logger: Logger | Iterable[Logger] | None = None,
        mlflow: bool = False,
        experiment_name: str | None = None,
        baselines: Mapping[str, Mapping[str, float]] | str | None = None,
        callbacks: Iterable[Callback] = (),
        num_workers: int = 0,
        pin_memory: bool = False,
        eval_splits: Sequence[str] = ("val",),
        **trainer_kwargs: Any,
    ) -> None:
        check_trainer_kwargs(trainer_kwargs)
        self.backbone, self.tasks = backbone, list(tasks)
        self.module_kwargs = dict(
            optimizer=optimizer,
            scheduler=scheduler,
            head_optimizer=head_optimizer,
            head_scheduler=head_scheduler,
            freeze_backbone=freeze_backbone,
            scheduler_monitor=scheduler_monitor,
        )
        self.max_epochs, self.root_dir = max_epochs, Path(root_dir)
        self.loggers = [logger] if isinstance(logger, Logger) else list(logger or [])
        self.mlflow, self.experiment_name = mlflow, experiment_name
        self.baselines = baselines
        self.callbacks, self.num_workers = list(callbacks), num_workers
        self.eval_splits = list(eval_splits)
        self.pin_memory = pin_memory
        self.trainer_kwargs = trainer_kwargs
        self._used_trackers: set[int] = set()
        if baselines == "single_task":
            self._initial = (copy.deepcopy(backbone), [copy_task(t) for t in self.tasks])
        elif baselines is not None and not isinstance(baselines, Mapping):
            raise M3LError(f"baselines must be a dict or 'single_task'; got {baselines!r}")

    def settings(self, algorithm: Schedule | None = None, max_epochs: int | None = None) -> dict[str, Any]:
        """What this launch is made of, logged as the run's parameters: every setting that
        changes the run (the algorithm with all its arguments, the epochs it trains for)."""
        algorithm = algorithm or Joint()
        epochs = max_epochs or self.max_epochs or algorithm.epochs_per_round(len(self.tasks))
        return {
            "backbone": _describe(self.backbone),
            "tasks": {t.name: _describe_task(t) for t in self.tasks},
            "algorithm": describe_algorithm(algorithm),
            **{k: _describe(v) for k, v in self.module_kwargs.items()},
            "max_epochs": epochs,
            "eval_splits": list(self.eval_splits),
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "trainer": {k: _describe(v) for k, v in self.trainer_kwargs.items()},
        }

    def experiment(
        self,
        algorithm: Schedule | None = None,
        run_id: str | None = None,
        ckpt_path: str | Path | None = None,
        max_epochs: int | None = None,
        checkpoint_trusted: bool = False,
    ) -> Experiment:
        """The :class:`~m3l.engine.experiment.Experiment` a launch runs: the module and datamodule,
        and a config of the run directory, the ``trainer`` config (Lightning's Trainer), the
        checkpoint callback and the CSV logger."""
        algorithm = algorithm or Joint()
        runs = self.root_dir / RUN_NAME / "train"
        loggers, tracker = self._loggers()
        if ckpt_path is None and run_id is not None:  # the run's newest launch (m3l.records.past_runs)
            ckpt_path = run_checkpoint(runs, run_id)
            log.info("resuming run %s from %s", run_id, ckpt_path)
        if run_id is not None:
            run_id = run_id_of(runs, run_id)  # a launch directory's name -> the run's id
        epochs = max_epochs or self.max_epochs or algorithm.epochs_per_round(len(self.tasks))
        settings = self.settings(algorithm, epochs)
        if tracker is not None:
            run_id = attach_mlflow_run(tracker, run_id, settings)
        module = MultiTaskModule(self.backbone, self.tasks, algorithm=algorithm, **self.module_kwargs)
        data = MultiTaskDataModule.from_tasks(
            self.tasks,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            eval_splits=self.eval_splits,
            schedule=algorithm,
        )
        if "val" in self.eval_splits and all(t.val is None for t in self.tasks):
            log.info(
                "no task has a val set: nothing is evaluated during training; eval_splits=('train', "
                "'test') evaluates those every epoch, as EMTL did"
            )
        cfg = self._config(epochs, run_id, ckpt_path, checkpoint_trusted, settings)
        objects = {k: v for k, v in self.trainer_kwargs.items() if not _is_config_value(v)}
        # run_id null: the Run names it by the launch's directory (m3l.records.lifecycle)
        experiment = Experiment(
            cfg,
            net=module,
            data=data,
            callbacks=self.callbacks,
            loggers=loggers,
            trainer_objects=objects,
            hyperparams=settings,
            trust_option="checkpoint_trusted=True",
        )
        if tracker is not None:  # the newest launch's directory
            set_run_tags(tracker, {"m3l.run_dir": str(experiment.output_dir.resolve())})
        return experiment

    def _loggers(self) -> tuple[list[Logger], Any]:
        """This launch's loggers and the MLflow logger among them (``None`` without one): the
        user's own (``logger=MLFlowLogger(...)``, which ``mlflow=True`` then adds nothing to:
        one MLflow run per launch), else the ``logger=mlflow`` of the commands with
        ``mlflow=True``, its store under ``root_dir``."""
        loggers = list(self.loggers)
        tracker = next((lg for lg in loggers if is_mlflow_logger(lg)), None)
        if tracker is not None and id(tracker) in self._used_trackers:
            # the user's logger served an earlier launch of this mtl.Trainer: this launch gets a run of its own
            set_mlflow_logger_run(tracker, None)
        if tracker is not None:
            self._used_trackers.add(id(tracker))
        if tracker is None and self.mlflow:
            tracker = mlflow_logger(
                self.root_dir, self.experiment_name, default_experiment="m3l-mtl", option="mlflow=True"
            )
            loggers.append(tracker)
        return loggers, tracker

    def _config(
        self, epochs: int, run_id: str | None, checkpoint: str | Path | None, trusted: bool, settings: Mapping[str, Any]
    ) -> DictConfig:
        trainer_config = {  # the ``trainer`` config: Lightning's Trainer
            "_target_": "lightning.pytorch.Trainer",
            "max_epochs": epochs,
            "default_root_dir": "${paths.output_dir}",
            "enable_model_summary": False,
            "log_every_n_steps": 1,
            "accelerator": "auto",
            "devices": 1,
        }
        trainer_config.update({k: v for k, v in self.trainer_kwargs.items() if _is_config_value(v)})
        return OmegaConf.create(
            {
                "name": RUN_NAME,
                "verb": "train",
                "run_id": run_id,
                "seed": None,
                # resume: a launch with run_id / ckpt_path continues that run exactly (optimizer, loops)
                "checkpoint": None if checkpoint is None else str(checkpoint),
                "resume": checkpoint is not None,
                "checkpoint_trusted": trusted,
                "paths": {"runs_dir": str(self.root_dir), "output_dir": None},
                "trainer": trainer_config,
                # last.ckpt at the end of every epoch, as the commands write it: a run that fails in
                # epoch N resumes from the end of epoch N-1. Saved at the train epoch's end, after the
                # module's own end-of-epoch checks (a non-finite loss raises there), so a failed
                # epoch never replaces the last good checkpoint. (A debug run writes none.)
                "callbacks": {
                    "last_checkpoint": {
                        "_target_": "lightning.pytorch.callbacks.ModelCheckpoint",
                        "dirpath": "${paths.output_dir}/checkpoints",
                        "filename": "last",
                        "monitor": None,
                        "save_top_k": 1,
                        "save_on_train_epoch_end": True,
                        "enable_version_counter": False,
                    }
                },
                "logger": {
                    "csv": {
                        "_target_": "lightning.pytorch.loggers.CSVLogger",
                        "save_dir": "${paths.output_dir}",
                        "name": "csv",
                    }
                },
                "mtl": dict(settings),
            }
        )

    def build(
        self, algorithm: Schedule | None = None, run_id: str | None = None, max_epochs: int | None = None
    ) -> tuple[MultiTaskModule, MultiTaskDataModule, L.Trainer, str]:
        """The module, datamodule, Lightning Trainer and run id a launch would use."""
        experiment = self.experiment(algorithm, run_id, max_epochs=max_epochs)
        return experiment.net, experiment.data, experiment.make_trainer(), str(experiment.cfg.run_id)

    def launch(
        self,
        algorithm: Schedule | None = None,
        run_id: str | None = None,
        ckpt_path: str | Path | None = None,
        max_epochs: int | None = None,
        checkpoint_trusted: bool = False,
    ) -> MultiTaskResults:
        """Fit, evaluate, save artifacts; with ``run_id`` of an earlier launch (or
        ``ckpt_path``), resume it. The checkpoint loads weights-only (see
        :mod:`m3l.weights.checkpoints`); ``checkpoint_trusted=True`` also loads pickled Python objects
        from it, which can run code: only for files from a trusted source."""
        baselines = self._baseline_metrics(algorithm)
        experiment = self.experiment(algorithm, run_id, ckpt_path, max_epochs, checkpoint_trusted)
        module = experiment.net
        has_test = any(t.test is not None for t in self.tasks)
        fitted = experiment.fit(test=has_test)  # then the test sets, with the trained weights
        lightning_trainer, run_dir = experiment.trainer, experiment.output_dir
        with experiment.run.recording("train"):  # the report below goes to train.log too
            val = split_metrics(fitted, "val")
            epoch_eval = {s: split_metrics(fitted, f"eval_{s}") for s in ("train", "test")}
            test = split_metrics(fitted, "test") if has_test else {}
            metrics = test or val
            for head, values in metrics.items():
                log.info("%s: %s", head, ", ".join(f"{k}={v:.4g}" for k, v in sorted(values.items())))
            score = None
            usable = _defined_baselines(baselines)
            if usable:
                score = delta_m(metrics, usable, _directions(module))
                log.info("Delta_m = %+.2f%% against baselines %s", score, usable)
        saver = next((c for c in lightning_trainer.callbacks if isinstance(c, SaveArtifacts)), None)
        last = run_dir / "checkpoints" / "last.ckpt"
        return MultiTaskResults(
            metrics=metrics,
            val=val,
            test=test,
            delta_m=score,
            baselines=baselines,
            artifacts=dict(saver.paths) if saver is not None else {},
            epoch_eval={k: v for k, v in epoch_eval.items() if v},
            run_id=str(experiment.cfg.run_id),
            checkpoint=last if last.exists() else None,
            log_dir=run_dir,
            module=module,
        )

    def _baseline_metrics(self, algorithm: Schedule | None) -> dict[str, dict[str, float]] | None:
        if self.baselines is None:
            return None
        if isinstance(self.baselines, Mapping):
            return {k: dict(v) for k, v in self.baselines.items()}
        backbone, tasks = self._initial
        epochs = self.max_epochs
        if epochs is None and algorithm is not None:
            epochs = max(1, algorithm.epochs_per_round(len(tasks)) // len(tasks))
        out: dict[str, dict[str, float]] = {}
        for task in tasks:
            log.info("single-task baseline: %s", task.name)
            alone = Trainer(
                copy.deepcopy(backbone),
                [copy_task(task)],
                max_epochs=epochs,
                root_dir=self.root_dir / "baselines",
                num_workers=self.num_workers,
                pin_memory=self.pin_memory,
                **self.module_kwargs,
                **self.trainer_kwargs,
            )
            out.update(alone.launch(Joint()).metrics)
        return out


def _defined_baselines(baselines: Mapping[str, Mapping[str, float]] | None) -> dict[str, dict[str, float]]:
    """The baselines Delta_m can be computed against at the end of a launch: a metric whose
    baseline is 0 (a single-task model at chance, e.g. accuracy 0 after a few steps) has no
    relative change, so it is left out with a warning rather than failing the finished run
    (``mtl.delta_m`` called by hand still refuses it, naming it)."""
    usable: dict[str, dict[str, float]] = {}
    for task, values in (baselines or {}).items():
        kept = {m: v for m, v in values.items() if v != 0}
        dropped = sorted(set(values) - set(kept))
        if dropped:
            log.warning(
                "Delta_m leaves out %s: the baseline is 0, so the relative change is undefined",
                ", ".join(f"{task}/{m}" for m in dropped),
            )
        if kept:
            usable[task] = kept
    return usable


# names users bring from EMTL (and Lightning 1.x) -> what m3l takes instead
_EQUIVALENTS = {
    "algorithm": "pass the algorithm to launch(): Trainer(backbone, tasks).launch(mtl.Sequential(epochs_per_task=3))",
    "use_mlflow": "mlflow=True",
    "device": "accelerator='cpu' or 'gpu' (and devices=N): Lightning moves the models and batches",
    "config": "m3l reads no config.ini: pass the settings as arguments, or run a Hydra config "
    "(python -m m3l.run.train model=...); see docs/migrating.md",
    "epochs": "max_epochs=N (or the algorithm's own, e.g. mtl.Sequential(epochs_per_task=N))",
    "optimizer_fn": "optimizer=functools.partial(torch.optim.Adam, lr=...)",
    "optimizer_params": "optimizer=functools.partial(torch.optim.Adam, **params)",
    "scheduler_fn": "scheduler=functools.partial(torch.optim.lr_scheduler.StepLR, step_size=...)",
    "scheduler_params": "scheduler=functools.partial(SchedulerClass, **params)",
    "dataloader_params": "Task(batch_size=...) per task, and num_workers=..., pin_memory=... here",
    "mlflow_database": "mlflow.set_tracking_uri(...) before launch() (honoured), or "
    "logger=m3l.records.tracking.MLFlowLogger(tracking_uri=...)",
    "mlflow_experiment": "experiment_name=... (or mlflow.set_experiment(...) before launch())",
    "mlflow_tags": "logger=m3l.records.tracking.MLFlowLogger(tags={...})",
    "mlflow_params": "nothing: mtl.Trainer's settings are logged as MLflow params",
    "rmc_lookback": "callbacks=[mtl.diagnostics.Capacity(lookback=N)]",
    "gpus": "accelerator='gpu', devices=N",
}


def check_trainer_kwargs(kwargs: Mapping[str, Any]) -> None:
    """Refuse keyword arguments that neither ``mtl.Trainer`` nor Lightning's Trainer (``lightning.Trainer``) takes."""
    import difflib
    import inspect

    accepted = set(inspect.signature(L.Trainer.__init__).parameters) - {"self"}
    for name in kwargs:
        if name in accepted:
            continue
        own = set(inspect.signature(Trainer.__init__).parameters) - {"self", "trainer_kwargs"}
        if name in _EQUIVALENTS:
            fix = _EQUIVALENTS[name]
        else:
            close = difflib.get_close_matches(name, sorted(accepted | own), n=3)
            fix = f"did you mean {' or '.join(close)}?" if close else "remove it"
        raise TrainerArgumentError(
            f"mtl.Trainer got an unknown argument {name}={kwargs[name]!r}: it is neither an "
            f"mtl.Trainer argument nor a lightning.Trainer one.\n  fix: {fix}"
        )


def _describe(value: Any) -> Any:
    """A loggable description: plain values as they are, functions and partials by name and
    arguments, modules by class (with their recorded constructor arguments)."""
    import functools

    from m3l.mtl.contracts import INIT_ARGS_ATTR

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    if isinstance(value, functools.partial):
        args = ", ".join([*map(repr, value.args), *(f"{k}={v!r}" for k, v in value.keywords.items())])
        return f"{_qualname(value.func)}({args})"
    if isinstance(value, nn.Module):
        init = getattr(value, INIT_ARGS_ATTR, None)
        return f"{_qualname(type(value))}({', '.join(f'{k}={v!r}' for k, v in (init or {}).items())})"
    if callable(value) and hasattr(value, "__qualname__"):
        return _qualname(value)
    return repr(value)


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', type(obj).__name__)}".lstrip(".")


def _describe_task(task: Task) -> dict[str, Any]:
    return {
        "heads": {o.name: _describe(o.head) for o in task.objectives},
        "criterion": {o.name: _describe(o.criterion) for o in task.objectives},
        "metrics": {o.name: sorted(o.metrics) for o in task.objectives},
        "weight": {o.name: o.weight for o in task.objectives},
        **({"head_inputs": {k: _describe(v) for k, v in task.head_inputs.items()}} if task.head_inputs else {}),
        "batch_size": task.batch_size,
        "samples": {
            split: len(ds) for split, ds in task.datasets().items() if ds is not None and hasattr(ds, "__len__")
        },
        "optimizer": _describe(task.optimizer),
        "scheduler": _describe(task.scheduler),
    }


def _directions(module: MultiTaskModule) -> Callable[[str, str], bool]:
    by_name = {o.name: o for o in module.objectives}
    return lambda head, metric: by_name[head].is_higher_better(metric)
