"""Experiment: the objects a config describes, and fit / test / correct on them.

Every command (`python -m m3l.run.train|test|correct`) and the Python API go through this
class, so a config behaves the same from the command line, a notebook or a sweep::

    from m3l import Experiment, compose
    exp = Experiment(compose("demo", ["trainer.max_epochs=1"]))
    metrics = exp.fit()
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from m3l.checkpoints import RNGStateCheckpoint, check_checkpoint, load_weights_into, resolve_checkpoint
from m3l.config import _timestamp, config_choices, target_arguments
from m3l.distributed import ExactDistributedTest
from m3l.errors import CheckpointError, ConfigError, CorrectionFailures, CorrectionInterrupted, M3LError
from m3l.lightning_messages import quiet_lightning
from m3l.trainer_args import (
    check_lightning2,
    did_you_mean,
    lightning2_kwargs,
    pytorch_lightning_message,
    upgrade_config,
)
from m3l.rundirs import (
    check_output_dir_free,
    claim_dir,
    is_unused,
    pick_dir,
    remove_unused,
    resume_checkpoint,
    warn_if_other_settings,
)

log = logging.getLogger(__name__)

# the run directory an Experiment picked, by the id of the config it wrote it into
_picked_for: dict[int, str] = {}

# keys that may legitimately stay `???` in a composed config
_OPTIONAL_MISSING = ("checkpoint",)


def _config_source(cfg: DictConfig, key: str) -> str:
    """Where the config of ``key`` comes from, e.g. ``net/dncnn.yaml``, for messages."""
    group = key.split(".")[0]
    choices = config_choices(cfg)
    choice = choices.get(group)
    if choice:
        return f"{group}/{choice}.yaml (key '{key}')"
    model = choices.get("model")
    return f"model/{model}.yaml (key '{key}')" if model else f"key '{key}'"


def _rank_zero() -> bool:
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")) or 0) == 0 and int(
        os.environ.get("LOCAL_RANK", "0") or 0
    ) == 0


class Experiment:
    """The data, net, trainer, callbacks, loggers and serializer of one composed config."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        quiet_lightning()
        self._check_missing()
        upgrade_config(cfg)  # every trainer key a Trainer argument of the right type; 1.x keys mapped
        self._ensure_output_dir()

    # ------------------------------------------------------------------ config checks

    def _check_missing(self, with_serializer: bool = False) -> None:
        # the serializer (and its root_dir) is only needed by `correct`, checked there
        skip = ("hydra.",) if with_serializer else ("hydra.", "serializer.")
        missing = [
            key
            for key in missing_keys(self.cfg)
            if not key.startswith(skip) and key not in _OPTIONAL_MISSING
        ]
        if missing:
            lines = [f"  {key}  (from {_config_source(self.cfg, key)})" for key in sorted(missing)]
            example = " ".join(f"{key}=..." for key in sorted(missing))
            raise ConfigError(
                "These config values are required but not set:\n"
                + "\n".join(lines)
                + f"\nSet them on the command line, e.g. `{example}`, or in your model config."
            )

    @property
    def verb(self) -> str:
        return str(self.cfg.get("verb", "train"))

    def _ensure_output_dir(self) -> None:
        """Outside a Hydra app (notebooks), every verb gets a fresh run directory
        ``runs/<name>/<verb>/<date_time>`` (picked now, created when the verb starts); a
        directory given as ``paths.output_dir`` must be new or empty."""
        paths = self.cfg.paths
        self._verbs_run: list[str] = []  # the verbs this Experiment ran, each in its own directory
        self.started = False  # whether the current verb got as far as running Lightning
        self._made: list[Path] = []  # directories the current verb created
        self._own_dirs = (
            OmegaConf.is_missing(paths, "output_dir") or paths.get("output_dir") is None
            # a config an earlier Experiment picked its directory in, made into a new Experiment
            or _picked_for.get(id(self.cfg)) == str(paths.output_dir)
        )
        if self._own_dirs:
            self._pick_output_dir(self.verb)
        elif _rank_zero() and not self._is_hydra_run_dir():
            # (Hydra's own run directory is fresh; other ranks share rank zero's)
            check_output_dir_free(self.output_dir)

    def _pick_output_dir(self, verb: str) -> None:
        base = Path(str(self.cfg.paths.runs_dir)) / str(self.cfg.name) / verb / _timestamp()
        with open_dict(self.cfg):
            self.cfg.paths.output_dir = str(pick_dir(base))
        _picked_for[id(self.cfg)] = str(self.cfg.paths.output_dir)
        self._dir_verb = verb

    def _is_hydra_run_dir(self) -> bool:
        try:
            from hydra.core.hydra_config import HydraConfig

            hydra_dir = HydraConfig.get().runtime.output_dir
        except (ValueError, ImportError):
            return False
        return Path(str(hydra_dir)).resolve() == self.output_dir.resolve()

    @contextmanager
    def running(self, verb: str) -> Iterator[None]:
        """One verb: its own run directory, data and callbacks built for it; when it fails
        before writing anything, the directory it created is removed."""
        if self._own_dirs:
            if self._verbs_run or self._dir_verb != verb:
                self._pick_output_dir(verb)
            while True:
                try:
                    self._made = claim_dir(self.output_dir)
                    break
                except FileExistsError:  # another process took it in the meantime
                    self._pick_output_dir(verb)
        else:
            if self._verbs_run:
                raise ConfigError(
                    f"This Experiment already ran `{self._verbs_run[-1]}` in paths.output_dir={self.output_dir}; "
                    f"m3l never writes into an existing run directory, so `{verb}` cannot run there. Leave "
                    "paths.output_dir unset (each verb then gets its own directory under paths.runs_dir), or "
                    "make a new Experiment with another paths.output_dir."
                )
            self._made = [] if self.output_dir.exists() else claim_dir(self.output_dir)
        if self.cfg.get("verb") != verb:  # recorded in config.yaml, named in messages
            with open_dict(self.cfg):
                self.cfg.verb = verb
        self._verbs_run.append(verb)
        for name in ("data", "callbacks", "loggers", "serializer"):  # built from this verb's config
            self.__dict__.pop(name, None)
        self.started = False
        try:
            yield
        except (CorrectionFailures, CorrectionInterrupted):
            raise  # the rest was corrected (or stopped cleanly): the run's record stays
        except BaseException:
            if _rank_zero() and not self.started:
                self.discard_if_unused()
            raise

    def discard_if_unused(self) -> bool:
        """Remove this run's directory if it holds nothing but its config.yaml (and, under
        Hydra, Hydra's record and log): a run that failed before it did anything."""
        if self._made:
            return remove_unused(self.output_dir, self._made)
        if not self._is_hydra_run_dir() and is_unused(self.output_dir):
            # a given directory, empty before (checked): only the config this run wrote goes
            (self.output_dir / "config.yaml").unlink(missing_ok=True)
        return False  # Hydra's run directory: the app removes it (m3l.run._app)

    @property
    def output_dir(self) -> Path:
        return Path(str(self.cfg.paths.output_dir))

    # ------------------------------------------------------------------ instantiation

    def _instantiate(self, key: str, node: Any | None = None, **kwargs: Any) -> Any:
        node = OmegaConf.select(self.cfg, key) if node is None else node
        try:
            return instantiate(node, **kwargs)
        except InstantiationException as exc:
            cause = exc.__cause__
            while cause is not None and not isinstance(cause, M3LError):
                cause = cause.__cause__
            if cause is not None:  # the target's own check: its message already says what to do
                raise type(cause)(f"{cause} (building '{key}' from {_config_source(self.cfg, key)})") from exc
            text = str(exc)
            detail = "\n  ".join(
                line.strip() for line in text.splitlines()
                if line.strip() and not line.strip().startswith(("full_key:", "object_type="))
            )
            if "pytorch_lightning" in text:
                hint = pytorch_lightning_message(key)
            elif "Error locating target" in text:
                hint = ("Check that the `_target_` names an importable class or function and that "
                        "your package is on PYTHONPATH (or installed).")
            else:
                hint = "Check the arguments in that config against the signature of its `_target_`."
                unexpected = re.search(r"unexpected keyword argument '(\w+)'", text)
                if unexpected and OmegaConf.is_dict(node):
                    hint += did_you_mean(unexpected[1], target_arguments(node.get("_target_")))
            raise ConfigError(
                f"Could not build '{key}' from {_config_source(self.cfg, key)}:\n  {detail}\n{hint}"
            ) from exc
        except Exception as exc:  # errors raised by the user's constructor
            if isinstance(exc, M3LError):
                raise
            raise ConfigError(
                f"Building '{key}' from {_config_source(self.cfg, key)} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _select(self, key: str) -> Any:
        return OmegaConf.select(self.cfg, key)

    def _instantiate_group(self, group: str) -> Any:
        if self._select(group) is None:
            raise ConfigError(
                f"No {group} config: the model config must select one (`- /{group}: NAME` in its "
                f"defaults) or pass {group}=NAME. Available: {', '.join(_options(group))}"
            )
        return self._instantiate(group)

    @cached_property
    def data(self) -> pl.LightningDataModule:
        self._check_correct_dir_taken()
        return self._instantiate_group("data")

    def _check_correct_dir_taken(self) -> None:
        """``data.correct_dir`` may be set on any data config (the seed's template has no such
        key); say clearly when the datamodule it would be passed to does not take it."""
        node = self._select("data")
        if node is None or "correct_dir" not in node:
            return
        target = node.get("_target_")
        if target is None:
            raise ConfigError(
                "data.correct_dir is set but no data config is selected: the model config must select "
                f"one (`- /data: NAME` in its defaults) or pass data=NAME. Available: {', '.join(_options('data'))}"
            )
        if not _takes_argument(str(target), "correct_dir"):
            raise ConfigError(
                f"data.correct_dir is set, but the datamodule of {_config_source(self.cfg, 'data.correct_dir')}, "
                f"{target}, takes no `correct_dir` argument, so it has no input to correct. m3l corrects "
                f"through the datamodule's predict_dataloader: give {str(target).rsplit('.', 1)[-1]}.__init__ a "
                "`correct_dir=None` parameter and read the inputs from it in predict_dataloader (see "
                "docs/own-model.md), or correct with a data config that has one (e.g. data=samples)."
            )

    @cached_property
    def net(self) -> pl.LightningModule:
        return self._instantiate_group("net")

    @cached_property
    def callbacks(self) -> list[pl.Callback]:
        node = self._select("callbacks") or {}
        return [self._instantiate(f"callbacks.{name}") for name, value in node.items() if value is not None]

    @cached_property
    def loggers(self) -> list[Any]:
        node = self._select("logger") or {}
        loggers = [self._instantiate(f"logger.{name}") for name, value in node.items() if value is not None]
        return loggers

    @cached_property
    def serializer(self) -> pl.Callback | None:
        if self._select("serializer") is None:
            return None
        return self._instantiate("serializer")

    def make_trainer(self, extra_callbacks: list[pl.Callback] = ()) -> pl.Trainer:
        """A ``lightning.Trainer`` from the ``trainer`` config, with callbacks and loggers."""
        node = OmegaConf.to_container(self.cfg.trainer, resolve=True)
        assert isinstance(node, dict)
        node, _ = lightning2_kwargs(node)
        callbacks = [*self.callbacks, *extra_callbacks]
        check_lightning2({"net": self.__dict__.get("net"), "data": self.__dict__.get("data"),
                          **{f"callbacks.{type(cb).__name__}": cb for cb in callbacks}})
        if node.get("fast_dev_run"):
            # a debug run writes no checkpoint (Lightning would still write last.ckpt at the end,
            # which checkpoint=last would then load)
            node["enable_checkpointing"] = False
        callbacks = [cb for cb in callbacks if not _disabled_by(node, cb)]
        self.started = True
        loggers = self.loggers
        if not loggers:
            # Lightning refuses a LearningRateMonitor without a logger (logger=none)
            from lightning.pytorch.callbacks import LearningRateMonitor

            callbacks = [cb for cb in callbacks if not isinstance(cb, LearningRateMonitor)]
        return self._instantiate(
            # _convert_: plain dicts/lists for Trainer arguments (e.g. max_time={hours: 1})
            "trainer", OmegaConf.create(node), callbacks=callbacks, logger=loggers or False,
            _convert_="all",
        )

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

    def fit(self) -> dict[str, float]:
        """Train; returns the final metrics (the sweepers optimize ``cfg.monitor``)."""
        with self.running("train"):
            return self._fit()

    def _fit(self) -> dict[str, float]:
        self._seed()
        self.save_config()
        self.preflight()
        if self.cfg.get("preflight_only"):
            return {}
        ckpt_path = None
        spec = self.cfg.get("checkpoint") or ("last" if self.cfg.get("resume") else None)
        if spec:
            if str(spec) == "last":  # the run of these settings, never one of others (m3l.rundirs)
                option = "checkpoint=last" if self.cfg.get("checkpoint") else "resume=true"
                ckpt_path = resume_checkpoint(self.cfg, self.output_dir, option)
            else:
                ckpt_path = resolve_checkpoint(spec, self.cfg)
                warn_if_other_settings(ckpt_path, self.cfg)
            if ckpt_path.suffix == ".safetensors":
                # weights only (checkpoint=pretrained or a shipped file): fine-tune from them
                load_weights_into(self.net, ckpt_path)
                log.info("Fine-tuning from the weights of %s", ckpt_path)
                ckpt_path = None
            else:
                check_checkpoint(ckpt_path, trusted=bool(self.cfg.get("checkpoint_trusted")))
                log.info("Resuming from %s", ckpt_path)
        # RNGStateCheckpoint: a resumed run continues the random streams of the interrupted one
        trainer = self.make_trainer(extra_callbacks=[RNGStateCheckpoint()])
        self._log_hyperparams()
        trainer.fit(
            self.net, datamodule=self.data, ckpt_path=ckpt_path,
            weights_only=not bool(self.cfg.get("checkpoint_trusted")),
        )
        metrics = _floats(trainer.callback_metrics)
        checkpoint_cb = trainer.checkpoint_callback
        if checkpoint_cb is not None and getattr(checkpoint_cb, "best_model_path", ""):
            metrics["best_checkpoint"] = checkpoint_cb.best_model_path  # type: ignore[assignment]
        if trainer.is_global_zero:
            report_metrics("Training finished", metrics, self.output_dir)
        return metrics

    def load_weights(self, spec: str | os.PathLike | None = None) -> Path:
        """Load ``checkpoint`` (path, ``last`` or ``best``) into the net, weights only."""
        if spec is None and not OmegaConf.is_missing(self.cfg, "checkpoint"):
            spec = self.cfg.get("checkpoint")
        if spec is None:
            raise CheckpointError(
                f"`{self.verb}` needs weights: pass checkpoint=PATH (a .ckpt or .safetensors file), "
                "or checkpoint=last / checkpoint=best for the newest training run of this model."
            )
        path = resolve_checkpoint(str(spec), self.cfg)
        load_weights_into(self.net, path, trusted=bool(self.cfg.get("checkpoint_trusted")))
        log.info("Loaded weights from %s", path)
        return path

    def test(self, checkpoint: str | os.PathLike | None = None) -> dict[str, float]:
        """Evaluate the weights of ``checkpoint`` on the data's test sets."""
        with self.running("test"):
            return self._test(checkpoint)

    def _test(self, checkpoint: str | os.PathLike | None) -> dict[str, float]:
        self._seed()
        self.save_config()
        self.load_weights(checkpoint)
        # ExactDistributedTest: with several processes, each test sample is seen exactly once
        trainer = self.make_trainer(extra_callbacks=[ExactDistributedTest(), self.fast_inference()])
        results = trainer.test(self.net, datamodule=self.data)
        metrics: dict[str, float] = {}
        for item in results:
            metrics.update(_floats(item))
        if trainer.is_global_zero:
            report_metrics("Test results", metrics, self.output_dir)
        return metrics

    def correct(
        self,
        checkpoint: str | os.PathLike | None = None,
        correct_dir: str | os.PathLike | None = None,
        root_dir: str | os.PathLike | None = None,
    ) -> Path:
        """Correct ``data.correct_dir`` with the weights of ``checkpoint``; returns the output root."""
        with open_dict(self.cfg):
            if correct_dir is not None:
                self.cfg.data.correct_dir = str(correct_dir)
            if root_dir is not None and self.cfg.get("serializer") is not None:
                self.cfg.serializer.root_dir = str(root_dir)
        if self._select("serializer") is None:
            raise ConfigError(
                "Nothing would write the corrected files: this model has no serializer. Add "
                "`- override /serializer: image_serializer` to the model config's defaults, or pass "
                "serializer=image_serializer (video_serializer for videos)."
            )
        if OmegaConf.select(self.cfg, "data.correct_dir") is None:
            raise ConfigError(
                "No input to correct: pass data.correct_dir=DIR_OR_FILE (a folder, searched "
                "recursively, an image or a video file)."
            )
        self._check_missing(with_serializer=True)
        with self.running("correct"):
            return self._correct(checkpoint)

    def _correct(self, checkpoint: str | os.PathLike | None) -> Path:
        self._seed()
        self.save_config()
        self.load_weights(checkpoint)
        serializer = self.serializer
        trainer = self.make_trainer(extra_callbacks=[serializer, self.fast_inference()])
        out = Path(str(self.cfg.serializer.root_dir))
        try:
            trainer.predict(self.net, datamodule=self.data, return_predictions=False)
        except CorrectionInterrupted as stop:
            left = sum(1 for f in serializer.failures if f.reason.startswith("not corrected: the run was stopped"))
            raise CorrectionInterrupted(
                f"{stop} {left} input(s) not corrected yet are listed in {out / 'failures.tsv'}. To finish, run "
                "the same command again with serializer.skip_existing=true (it keeps what is written)."
            ) from None
        failures = _collect_failures(self.data, serializer)
        if failures:
            listing = "\n".join(f"  {path}: {reason}" for path, reason in failures)
            raise CorrectionFailures(
                f"{len(failures)} input(s) could not be corrected (every other one was written to "
                f"{out}):\n{listing}\nThe list is also in {out / 'failures.tsv'}."
            )
        log.info("Corrected files are in %s", out)
        return out

    def fast_inference(self) -> pl.Callback:
        """The callback that runs ``correct``'s and ``test``'s forward on the fastest backend
        (``backend=``, ``precision=``; see :mod:`m3l.deploy.backends`)."""
        from m3l.callbacks import FastInference

        net = OmegaConf.select(self.cfg, "net.net")
        config_text = OmegaConf.to_yaml(net, resolve=True) if net is not None else ""
        return FastInference(
            backend=str(self.cfg.get("backend", "auto")), precision=str(self.cfg.get("precision", "auto")),
            name=str(self.cfg.name), config_text=config_text,
        )

    # ------------------------------------------------------------------ records

    def save_config(self) -> Path:
        """Write the resolved config next to the run's checkpoints and logs."""
        path = self.output_dir / "config.yaml"
        if _rank_zero():
            if not self.output_dir.exists():
                self._made = claim_dir(self.output_dir)
            cfg = OmegaConf.to_container(self.cfg, resolve=True, throw_on_missing=False)
            if isinstance(cfg, dict):
                cfg.pop("m3l_choices", None)
            path.write_text(OmegaConf.to_yaml(cfg))
        return path

    def _log_hyperparams(self) -> None:
        params = OmegaConf.to_container(self.cfg, resolve=True, throw_on_missing=False)
        if isinstance(params, dict):
            params.pop("m3l_choices", None)
        for logger in self.loggers:
            logger.log_hyperparams(params)


# ---------------------------------------------------------------------------- helpers


def missing_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose value is ``???`` (without resolving interpolations)."""
    from omegaconf import DictConfig, ListConfig

    found: list[str] = []
    keys = range(len(cfg)) if isinstance(cfg, ListConfig) else cfg.keys()
    for key in keys:
        full = f"{prefix}{key}"
        if OmegaConf.is_missing(cfg, key):
            found.append(full)
            continue
        if OmegaConf.is_interpolation(cfg, key):
            continue  # not resolved here: its target is checked where it lives
        child = cfg[key]
        if isinstance(child, (DictConfig, ListConfig)):
            found.extend(missing_keys(child, f"{full}."))
    return found


def _takes_argument(target: str, name: str) -> bool:
    """Whether the callable ``target`` names has a parameter ``name`` (or ``**kwargs``); True
    when it cannot be told (an import error is reported by the instantiation itself)."""
    import inspect

    from hydra.utils import get_object

    try:
        params = inspect.signature(get_object(target)).parameters
    except Exception:  # noqa: BLE001 - not importable or no signature: instantiation reports it
        return True
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _options(group: str) -> list[str]:
    from m3l.config import group_options

    return list(group_options(group))


def _floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            out[key] = float(value)
        elif isinstance(value, (int, float)):
            out[key] = float(value)
    return out


def _disabled_by(trainer: Mapping[str, Any], callback: Any) -> bool:
    """Whether a Trainer argument turns ``callback`` off (Lightning refuses the pair)."""
    from lightning.pytorch.callbacks import ModelCheckpoint, ModelSummary, ProgressBar

    switches = (
        ("enable_checkpointing", ModelCheckpoint),
        ("enable_progress_bar", ProgressBar),
        ("enable_model_summary", ModelSummary),
    )
    return any(trainer.get(key) is False and isinstance(callback, kind) for key, kind in switches)


def _collect_failures(*sources: Any) -> list[tuple[str, str]]:
    failures: list[tuple[str, str]] = []
    for source in sources:
        for item in getattr(source, "failures", None) or []:
            entry = (str(item[0]), str(item[1])) if isinstance(item, (tuple, list)) else (str(item), "")
            if entry not in failures:
                failures.append(entry)
    return failures


def report_metrics(title: str, metrics: Mapping[str, Any], output_dir: Path) -> None:
    """Print a metrics table (rank zero), and the PSNR gain when the model reports one."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    paths = {k: v for k, v in metrics.items() if not isinstance(v, (int, float))}
    for key in sorted(metrics):
        if key not in paths:
            table.add_row(key, f"{metrics[key]:.4f}" if isinstance(metrics[key], float) else str(metrics[key]))
    Console().print(table)
    for prefix in ("val", "test"):
        out, inp = metrics.get(f"{prefix}/psnr"), metrics.get(f"{prefix}/psnr_input")
        if out is not None and inp is not None:
            print(
                f"{'Validation' if prefix == 'val' else 'Test'} PSNR: input {inp:.2f} dB -> "
                f"output {out:.2f} dB (gain {out - inp:+.2f} dB)"
            )
    # paths printed whole (Rich cuts lines at 80 columns when the output is not a terminal)
    for key, value in sorted(paths.items()):
        print(f"{key.replace('_', ' ').capitalize()}: {value}")
    print(f"Run directory: {output_dir}", flush=True)

