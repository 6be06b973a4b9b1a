"""Experiment: the objects a config describes, and fit / test / correct on them.

Every command (`python -m m3l.run.train|test|correct`) and the Python API go through this
class, so a config behaves the same from the command line, a notebook or a sweep::

    from m3l import Experiment, compose
    exp = Experiment(compose("demo", ["trainer.max_epochs=1"]))
    metrics = exp.fit()

:class:`m3l.mtl.Trainer` is a Python front over it: it passes the objects it built (module,
datamodule, loggers, callbacks) along with a config of the rest (run directory, trainer,
checkpoint), so both share the run directories, resume, loggers, preflight and report.

The run directory of each verb (chosen, created, recorded, kept or removed) is its
:class:`~m3l.records.lifecycle.Run`'s, ``experiment.run``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from omegaconf import DictConfig, OmegaConf, open_dict

from m3l.engine.call_options import for_one_call, serializer_options, worded_for_python
from m3l.weights.checkpoints import CLI_TRUST_OPTION, RNGStateCheckpoint
from m3l.engine.config_checks import check_correct_dir_taken, check_missing, require_group
from m3l.training.distributed import ExactDistributedTest
from m3l.errors import (
    ConfigError,
    CorrectionFailures,
    CorrectionInterrupted,
)
from m3l.engine.instantiation import instantiate_key
from m3l.engine.lightning_messages import quiet_lightning
from m3l.engine.metrics_report import collect_failures, floats, report_metrics
from m3l.records.lifecycle import Run
from m3l.config.trainer.args import check_lightning2, inference_precision, lightning2_kwargs, upgrade_config
from m3l.engine.weights_choice import WeightsChoice

log = logging.getLogger(__name__)


class Experiment:
    """The data, net, trainer, callbacks, loggers and serializer of one composed config.

    Args:
        cfg: the composed config (``compose(...)``, or the commands' Hydra config).
        net, data: objects built in Python instead of the config's ``net`` / ``data``.
        callbacks, loggers: objects added to those of the config's ``callbacks`` / ``logger``.
        trainer_objects: ``lightning.Trainer`` arguments that are objects (a strategy,
            plugins, a profiler) rather than config values; they win over ``trainer.*``.
        hyperparams: what the loggers record as the run's parameters (default: the config).
        trust_option: how messages name the option that loads pickled objects from a
            checkpoint (the command line's ``checkpoint_trusted=true`` by default).
    """

    #: what each verb builds anew from its own config (the net is built once, or given)
    _PER_VERB = ("data", "callbacks", "loggers", "serializer")

    def __init__(
        self,
        cfg: DictConfig,
        *,
        net: pl.LightningModule | None = None,
        data: pl.LightningDataModule | None = None,
        callbacks: Iterable[pl.Callback] = (),
        loggers: Iterable[Any] = (),
        trainer_objects: Mapping[str, Any] | None = None,
        hyperparams: Mapping[str, Any] | None = None,
        trust_option: str = CLI_TRUST_OPTION,
    ) -> None:
        self.cfg = cfg
        quiet_lightning()
        check_missing(self.cfg)
        upgrade_config(cfg)  # every trainer key a Trainer argument of the right type; 1.x keys mapped
        self.run = Run(cfg, self.verb)
        self.trust_option = trust_option
        self._given = {k: v for k, v in (("net", net), ("data", data)) if v is not None}
        self._objects: dict[str, Any] = dict(self._given)  # built (or given) so far, by name
        self._extra_callbacks, self._extra_loggers = list(callbacks), list(loggers)
        self.trainer_objects, self.hyperparams = dict(trainer_objects or {}), hyperparams
        self.trainer: pl.Trainer | None = None  # the Lightning Trainer the last verb ran
        self.weights = WeightsChoice(cfg)  # what checkpoint= / resume= name, resolved once per verb

    @property
    def verb(self) -> str:
        return str(self.cfg.get("verb", "train"))

    @property
    def output_dir(self) -> Path:
        return self.run.path

    @property
    def started(self) -> bool:
        """Whether the current verb got as far as running Lightning (its directory then stays)."""
        return self.run.started

    @contextmanager
    def running(self, verb: str) -> Iterator[None]:
        """One verb in its :class:`~m3l.records.lifecycle.Run` (its own directory and log, why it
        ended, the directory removed if it failed before doing anything), with the data and
        callbacks built for it."""
        with self.run.running(verb):
            if self.cfg.get("verb") != verb:  # recorded in config.yaml, named in messages
                with open_dict(self.cfg):
                    self.cfg.verb = verb
            for name in self._PER_VERB:  # built from this verb's config
                if name not in self._given:
                    self._objects.pop(name, None)
            status = "failed"
            try:
                yield
                status = "success"
            finally:
                self._close_loggers_lightning_did_not_run(status)
                self.weights.forget()  # checkpoint=best after this verb: resolved again (it may be this run's)

    def _close_loggers_lightning_did_not_run(self, status: str) -> None:
        """Lightning finalizes the loggers it ran with; a debug run (``fast_dev_run``) runs with
        a dummy logger instead, so a configured logger that had already opened its run (MLflow's
        run, opened when m3l logs the config) would stay open ("RUNNING") for ever."""
        ran = list(self.trainer.loggers) if self.trainer is not None else []
        for logger in self._objects.get("loggers") or []:
            if all(logger is not other for other in ran):
                try:
                    logger.finalize(status)
                except Exception as err:  # noqa: BLE001 - closing a tracker must not hide the verb's outcome
                    log.warning("could not close the %s logger: %s", type(logger).__name__, err)

    def discard_if_unused(self) -> bool:
        """Remove this run's directory if it holds nothing but its config.yaml (and, under
        Hydra, Hydra's record and log): a run that failed before it did anything."""
        return self.run.discard_if_unused()

    # ------------------------------------------------------------------ instantiation

    def _instantiate(self, key: str, node: Any | None = None, **kwargs: Any) -> Any:
        return instantiate_key(self.cfg, key, node, **kwargs)

    def _select(self, key: str) -> Any:
        return OmegaConf.select(self.cfg, key)

    def _instantiate_group(self, group: str) -> Any:
        require_group(self.cfg, group)
        return self._instantiate(group)

    def _built(self, name: str, build: Any) -> Any:
        """The object ``name`` of the current verb: given, built already, or built now."""
        if name not in self._objects:
            self._objects[name] = build()
        return self._objects[name]

    def _given_now(self, name: str, value: Any) -> None:
        self._given[name] = self._objects[name] = value

    @property
    def data(self) -> pl.LightningDataModule:
        def build() -> pl.LightningDataModule:
            check_correct_dir_taken(self.cfg)
            return self._instantiate_group("data")

        return self._built("data", build)

    @data.setter
    def data(self, value: pl.LightningDataModule) -> None:
        self._given_now("data", value)

    @property
    def net(self) -> pl.LightningModule:
        return self._built("net", lambda: self._instantiate_group("net"))

    @net.setter
    def net(self, value: pl.LightningModule) -> None:
        self._given_now("net", value)

    @property
    def callbacks(self) -> list[pl.Callback]:
        def build() -> list[pl.Callback]:
            node = self._select("callbacks") or {}
            built = [self._instantiate(f"callbacks.{name}") for name, value in node.items() if value is not None]
            return [*built, *self._extra_callbacks]

        return self._built("callbacks", build)

    @property
    def loggers(self) -> list[Any]:
        def build() -> list[Any]:
            node = self._select("logger") or {}
            built = [self._instantiate(f"logger.{name}") for name, value in node.items() if value is not None]
            return [*built, *self._extra_loggers]

        return self._built("loggers", build)

    @property
    def serializer(self) -> pl.Callback | None:
        def build() -> pl.Callback | None:
            return None if self._select("serializer") is None else self._instantiate("serializer")

        return self._built("serializer", build)

    def make_trainer(self, extra_callbacks: list[pl.Callback] = ()) -> pl.Trainer:
        """A ``lightning.Trainer`` from the ``trainer`` config, with callbacks and loggers."""
        node = OmegaConf.to_container(self.cfg.trainer, resolve=True)
        assert isinstance(node, dict)
        node, _ = lightning2_kwargs(node)
        callbacks = [*self.callbacks, *extra_callbacks]
        check_lightning2(
            {
                "net": self._objects.get("net"),
                "data": self._objects.get("data"),
                **{f"callbacks.{type(cb).__name__}": cb for cb in callbacks},
            }
        )
        if node.get("fast_dev_run"):
            # a debug run writes no checkpoint (Lightning would still write last.ckpt at the end,
            # which checkpoint=last would then load)
            node["enable_checkpointing"] = False
        callbacks = [cb for cb in callbacks if not _disabled_by(node, cb)]
        node = inference_precision(node, self.verb, self._objects.get("net"))
        self.run.start()
        loggers = self.loggers
        if not loggers:
            # Lightning refuses a LearningRateMonitor without a logger (logger=none)
            from lightning.pytorch.callbacks import LearningRateMonitor

            callbacks = [cb for cb in callbacks if not isinstance(cb, LearningRateMonitor)]
        for key in self.trainer_objects:
            node.pop(key, None)
        self._clip_in_the_module(node)
        self.trainer = self._instantiate(
            # _convert_: plain dicts/lists for Trainer arguments (e.g. max_time={hours: 1})
            "trainer",
            OmegaConf.create(node),
            callbacks=callbacks,
            logger=loggers or False,
            _convert_="all",
            **self.trainer_objects,
        )
        return self.trainer

    def _clip_in_the_module(self, node: dict[str, Any]) -> None:
        """``trainer.gradient_clip_val`` for a net that optimizes by hand (a multi-task
        module): Lightning refuses it there, so the net clips (its ``gradient_clip_val``)."""
        net = self._objects.get("net")
        if node.get("gradient_clip_val") is None or net is None or net.automatic_optimization:
            return
        if not hasattr(net, "gradient_clip_val"):
            return  # Lightning's own message: gradient clipping needs automatic optimization
        algorithm = node.pop("gradient_clip_algorithm", None) or "norm"
        if algorithm != "norm":
            raise ConfigError(
                f"trainer.gradient_clip_algorithm={algorithm!r}: {type(net).__name__} clips by the "
                "gradients' norm only; remove trainer.gradient_clip_algorithm (or set it to norm)."
            )
        from m3l.mtl.optimization import check_clip

        net.gradient_clip_val = check_clip(node.pop("gradient_clip_val"))

    # ------------------------------------------------------------------ verbs

    def _seed(self) -> None:
        if self.cfg.get("seed") is not None:
            pl.seed_everything(int(self.cfg.seed), workers=True, verbose=False)

    def preflight(self) -> None:
        """Run the net's own checks on the data (one batch), if it has any."""
        check = getattr(self.net, "preflight", None)
        if callable(check):
            check(self.data)
            log.info("Preflight passed: model and data fit together.")

    def fit(self, *, test: bool = False) -> dict[str, float]:
        """Train; returns the final metrics (the sweepers optimize ``cfg.monitor``). With
        ``test=True``, then evaluate the data's test sets with the trained weights (the last
        step's, not a checkpoint's) in the same run: their metrics join the returned ones."""
        with self.running("train"):
            return self._fit(test)

    def _fit(self, test: bool) -> dict[str, float]:
        self._seed()
        self.save_config()
        self.preflight()
        if self.cfg.get("preflight_only"):
            return {}
        # resume: Lightning restores the file exactly; else a new run (from checkpoint='s weights)
        ckpt_path = self.weights.train_start(self.net, self.output_dir, self.trust_option)
        # RNGStateCheckpoint: a resumed run continues the random streams of the interrupted one
        trainer = self.make_trainer(extra_callbacks=[RNGStateCheckpoint()])
        self._log_hyperparams()
        trainer.fit(
            self.net,
            datamodule=self.data,
            ckpt_path=ckpt_path,
            weights_only=not bool(self.cfg.get("checkpoint_trusted")),
        )
        metrics = floats(trainer.callback_metrics)
        checkpoint_cb = trainer.checkpoint_callback
        if checkpoint_cb is not None and getattr(checkpoint_cb, "best_model_path", ""):
            metrics["best_checkpoint"] = checkpoint_cb.best_model_path  # type: ignore[assignment]
        if trainer.is_global_zero:
            report_metrics("Training finished", metrics, self.output_dir)
            far_worse = getattr(checkpoint_cb, "far_worse_note", None)  # m3l's MonitoredCheckpoint
            if callable(far_worse) and far_worse():
                log.warning(far_worse())
        if test:
            for item in trainer.test(self.net, datamodule=self.data, verbose=False):
                metrics.update(floats(item))
        return metrics

    def resolve_checkpoint(self, spec: str | os.PathLike, announce: bool = True) -> Path:
        """The file ``checkpoint=spec`` names, resolved once per verb (:mod:`m3l.engine.weights_choice`)."""
        return self.weights.resolve(spec, announce)

    def describe_weights(self) -> str | None:
        """The run header's line on the weights (which run and metric value ``best`` is)."""
        return self.weights.describe(self.verb)

    def load_weights(self, spec: str | os.PathLike | None = None) -> Path:
        """Load ``checkpoint`` (path, ``last``, ``best`` or ``pretrained``) into the net, weights only."""
        return self.weights.load(self.net, self.verb, spec)

    def test(
        self, checkpoint: str | os.PathLike | None = None, *, backend: str | None = None, precision: str | None = None
    ) -> dict[str, float]:
        """Evaluate the weights of ``checkpoint`` on the data's test sets (``backend`` and
        ``precision``: the command line's keys of the same names)."""
        options = {k: str(v) for k, v in (("backend", backend), ("precision", precision)) if v is not None}
        with for_one_call(self.cfg, options), self.running("test"):
            return self._test(checkpoint)

    def _test(self, checkpoint: str | os.PathLike | None) -> dict[str, float]:
        self._seed()
        self.save_config()
        self.load_weights(checkpoint)
        self._apply_read_ahead()
        # ExactDistributedTest: with several processes, each test sample is seen exactly once
        trainer = self.make_trainer(extra_callbacks=[ExactDistributedTest(), self.fast_inference()])
        results = trainer.test(self.net, datamodule=self.data, verbose=False)  # report_metrics prints them
        metrics: dict[str, float] = {}
        for item in results:
            metrics.update(floats(item))
        if trainer.is_global_zero:
            report_metrics("Test results", metrics, self.output_dir)
        return metrics

    def correct(
        self,
        checkpoint: str | os.PathLike | None = None,
        correct_dir: str | os.PathLike | None = None,
        root_dir: str | os.PathLike | None = None,
        *,
        overwrite: bool | None = None,
        skip_existing: bool | None = None,
        backend: str | None = None,
        precision: str | None = None,
        **more_options: Any,
    ) -> Path:
        """Correct ``data.correct_dir`` with the weights of ``checkpoint``; returns the output root.

        The options of ``python -m m3l.run.correct``: ``correct_dir`` is ``data.correct_dir``,
        ``root_dir``, ``overwrite``, ``skip_existing`` and any other keyword (``format="jpg"``,
        ``jpeg_quality=90``, ...) are the ``serializer.*`` keys, ``backend`` and ``precision``
        the keys of the same names. Called from Python, its errors name these arguments
        (``overwrite=True``), not the command line's ``serializer.overwrite=true``.
        """
        with worded_for_python():
            if self._select("serializer") is None:
                raise ConfigError(
                    "Nothing would write the corrected files: this model has no serializer. Add "
                    "`- override /serializer: image_serializer` to the model config's defaults, or pass "
                    "serializer=image_serializer (video_serializer for videos)."
                )
            options = serializer_options(
                self.cfg,
                {"overwrite": overwrite, "skip_existing": skip_existing, **more_options},
                "Experiment.correct()",
            )
            options.update({k: str(v) for k, v in (("backend", backend), ("precision", precision)) if v is not None})
            with open_dict(self.cfg):
                if correct_dir is not None:
                    self.cfg.data.correct_dir = str(correct_dir)
                if root_dir is not None:
                    self.cfg.serializer.root_dir = str(root_dir)
            if OmegaConf.select(self.cfg, "data.correct_dir") is None:
                raise ConfigError(
                    "No input to correct: pass data.correct_dir=DIR_OR_FILE (a folder, searched "
                    "recursively, an image or a video file)."
                )
            with for_one_call(self.cfg, options):  # overwrite=True & co. hold for this call only
                check_missing(self.cfg, with_serializer=True)
                with self.running("correct"):
                    return self._correct(checkpoint)

    def _correct(self, checkpoint: str | os.PathLike | None) -> Path:
        self._seed()
        self.save_config()
        self.load_weights(checkpoint)
        self._apply_read_ahead()
        serializer = self.serializer
        trainer = self.make_trainer(extra_callbacks=[serializer, self.fast_inference()])
        out = Path(str(self.cfg.serializer.root_dir))
        try:
            trainer.predict(self.net, datamodule=self.data, return_predictions=False)
        except CorrectionInterrupted as stop:
            left = sum(1 for f in serializer.failures if f.reason.startswith("not corrected: the run was stopped"))
            raise CorrectionInterrupted(
                f"{stop}. {left} input(s) not corrected yet are listed in {out / 'failures.tsv'}. To finish, run "
                "the same command again with serializer.skip_existing=true (it keeps what is written)."
            ) from None
        failures = collect_failures(self.data, serializer)
        if failures:
            listing = "\n".join(f"  {path}: {reason}" for path, reason in failures)
            raise CorrectionFailures(
                f"{len(failures)} input(s) could not be corrected (every other one was written to "
                f"{out}):\n{listing}\nThe list is also in {out / 'failures.tsv'}."
            )
        log.info("Corrected files are in %s", out)
        return out

    def _apply_read_ahead(self) -> None:
        """``read_ahead=N`` of ``correct`` and ``test``: batches decoded ahead on a reader thread
        while the net runs (without worker processes); 0 reads on the compute thread."""
        from m3l.data.datamodules import check_int

        value = self.cfg.get("read_ahead")
        if value is not None and hasattr(self.data, "read_ahead"):
            self.data.read_ahead = check_int("read_ahead", value, minimum=0)

    def fast_inference(self) -> pl.Callback:
        """The callback that runs ``correct``'s and ``test``'s forward on the fastest backend
        (``backend=``, ``precision=``; see :mod:`m3l.deploy.backends`)."""
        from m3l.callbacks import FastInference

        net = OmegaConf.select(self.cfg, "net.net")
        config_text = OmegaConf.to_yaml(net, resolve=True) if net is not None else ""
        return FastInference(
            backend=str(self.cfg.get("backend", "auto")),
            precision=str(self.cfg.get("precision", "auto")),
            name=str(self.cfg.name),
            config_text=config_text,
        )

    # ------------------------------------------------------------------ records

    def save_config(self) -> Path:
        """Write the resolved config next to the run's checkpoints and logs."""
        return self.run.write_config()

    def _log_hyperparams(self) -> None:
        params = self.hyperparams
        if params is None:
            params = OmegaConf.to_container(self.cfg, resolve=True, throw_on_missing=False)
            if isinstance(params, dict):
                params.pop("m3l_choices", None)
        for logger in self.loggers:
            logger.log_hyperparams(params)


# ---------------------------------------------------------------------------- helpers


def _disabled_by(trainer: Mapping[str, Any], callback: Any) -> bool:
    """Whether a Trainer argument turns ``callback`` off (Lightning refuses the pair)."""
    from lightning.pytorch.callbacks import ModelCheckpoint, ModelSummary, ProgressBar

    switches = (
        ("enable_checkpointing", ModelCheckpoint),
        ("enable_progress_bar", ProgressBar),
        ("enable_model_summary", ModelSummary),
    )
    return any(trainer.get(key) is False and isinstance(callback, kind) for key, kind in switches)
