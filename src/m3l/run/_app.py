"""The one Hydra app behind every verb (train, test, correct): argument conveniences,
friendly errors, the config tree, and the hand-off to :class:`m3l.Experiment`.

Lightning is imported only once a job starts, so ``--help`` stays quick.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("m3l")

_HELP_FLAGS = {"--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc"}


def _override_key(arg: str) -> str | None:
    from m3l.config.overrides import override_key  # Hydra's own override parser

    return override_key(arg)


def _list_models(verb: str) -> str:
    from m3l.config import PACKAGED_CONFIG_DIR, group_options

    options = group_options("model")
    width = max((len(name) for name in options), default=0)
    lines = []
    for name, path in options.items():
        where = "packaged" if PACKAGED_CONFIG_DIR in path.parents else str(path)
        lines.append(f"  {name.ljust(width)}  ({where})")
    listing = "\n".join(lines) or "  (none found)"
    return (
        f"Pick a model with model=NAME, e.g.\n  python -m m3l.run.{verb} model=demo\n\n"
        f"Available model configs:\n{listing}\n\n"
        "Your own configs go in $M3L_CONFIG_PATH, ~/.config/m3l (XDG_CONFIG_HOME) or /etc/m3l, "
        "under model/, net/ and data/."
    )


def _preflight_argv(verb: str, argv: list[str]) -> list[str]:
    """Catch what is cheaper to explain before Hydra starts; returns the arguments to run."""
    args = argv[1:]
    if any(a in _HELP_FLAGS or a.startswith("--cfg") for a in args):
        return argv
    if not any(_override_key(a) == "model" for a in args if not a.startswith("-")):
        print(f"m3l: no model chosen.\n{_list_models(verb)}", file=sys.stderr)
        raise SystemExit(2)
    if any(os.environ.get(var, "0") not in ("", "0") for var in ("LOCAL_RANK", "RANK", "SLURM_PROCID")):
        return argv  # the other processes of a distributed run write into rank zero's directory
    from m3l.errors import M3LError
    from m3l.records.lifecycle import check_creatable_dir, check_output_dir_free

    from m3l.config.overrides import override_value

    folders = [("M3L_RUNS_DIR", os.environ.get("M3L_RUNS_DIR") or "runs")]
    for key in ("hydra.run.dir", "hydra.sweep.dir", "paths.output_dir", "paths.runs_dir"):
        value = override_value(args, key)
        if value:
            folders = [f for f in folders if not (key == "paths.runs_dir" and f[0] == "M3L_RUNS_DIR")]
            folders.append((key, value))
    try:
        for key, value in folders:
            if "${" in value:
                continue  # an interpolation: Hydra resolves it
            if key != "paths.runs_dir" and key != "M3L_RUNS_DIR":
                check_output_dir_free(Path(value).expanduser(), key)
            check_creatable_dir(Path(value), key)
    except M3LError as exc:
        print(f"m3l: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return _cluster_launch(verb, argv)


_MULTIRUN_FLAGS = ("-m", "--multirun")


def _cluster_launch(verb: str, argv: list[str]) -> list[str]:
    """``cluster=NAME`` without ``--cluster-launch`` (the seed's own command line): a cluster
    config that selects a launcher means "submit", so submit, and say so; where the launcher
    cannot work here (Slurm without ``sbatch``), say where to run the command instead."""
    import shutil

    args = argv[1:]
    multirun = any(a in _MULTIRUN_FLAGS for a in args)  # -m, or --cluster-launch (normalize_argv)
    from m3l.config.overrides import override_value

    name, launcher = override_value(args, "cluster"), override_value(args, "hydra/launcher")
    source = f"hydra/launcher={launcher}" if launcher else None
    if name and not launcher:
        from m3l.config import cluster_launcher

        launcher = cluster_launcher(name)
        source = f"cluster={name}"
    if not launcher or launcher == "basic":
        return argv
    # submitit submits with sbatch and needs srun ('Could not detect "srun"')
    missing = [command for command in ("sbatch", "srun") if shutil.which(command) is None]
    if "slurm" in launcher and missing:
        # also with -m / --cluster-launch: submitit would fail with a traceback after Hydra made
        # the sweep directory
        print(
            f"m3l: error: {source} submits the {verb} job to Slurm ({launcher}), but this machine has no "
            f"{' or '.join(f'`{c}`' for c in missing)}: run the same command on the cluster's submission node. To run here instead, leave out "
            f"{source} (on a machine without GPUs, also leave out trainer.gpus). See docs/clusters-and-sweeps.md.",
            file=sys.stderr,
        )
        raise SystemExit(2)
    if multirun:
        return argv
    where = "to Slurm" if "slurm" in launcher else "as a local subprocess"
    print(
        f"m3l: {source} selects the {launcher} launcher: submitting the {verb} job {where} "
        "(as with --cluster-launch); Hydra prints the job directory. To run in this process instead, "
        f"leave out {source}.",
        file=sys.stderr,
    )
    return [argv[0], "--multirun", *args]


def print_config_tree(cfg: Any) -> None:
    """Print the composed config as a tree (resolved where it can be)."""
    from omegaconf import OmegaConf
    from rich.console import Console
    from rich.syntax import Syntax
    from rich.tree import Tree

    first = ["data", "net", "trainer", "callbacks", "logger", "serializer"]
    keys = [k for k in first if k in cfg] + [k for k in cfg if k not in first and k != "m3l_choices"]
    tree = Tree("config", guide_style="dim")
    scalars = {k: cfg[k] for k in keys if not OmegaConf.is_config(cfg[k])}
    for key in keys:
        if key in scalars:
            continue
        node = cfg[key]
        try:
            text = OmegaConf.to_yaml(node, resolve=True)
        except Exception:  # noqa: BLE001 - show it unresolved rather than not at all
            text = OmegaConf.to_yaml(node)
        branch = tree.add(f"[bold]{key}[/bold]")
        branch.add(Syntax(text.rstrip(), "yaml", theme="ansi_dark", background_color="default"))
    if scalars:
        text = "\n".join(f"{k}: {v}" for k, v in scalars.items())
        tree.add("[bold]run[/bold]").add(Syntax(text, "yaml", theme="ansi_dark", background_color="default"))
    Console(stderr=False, soft_wrap=True).print(tree)


def _route_lightning_logs() -> None:
    """Lightning adds its own console handler when imported; Hydra already logs to the
    console and the run's log file, so drop Lightning's to avoid every line twice."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True


def _is_multirun() -> bool:
    from m3l.records.lifecycle import is_multirun

    return is_multirun()


def _remove_unused_run_dir(cfg: Any, experiment: Any) -> None:
    """A job that failed before it started Lightning leaves no run directory when that holds
    nothing but Hydra's record, the log and the config (:mod:`m3l.records.lifecycle`)."""
    from m3l.records.lifecycle import discard_failed_command_run

    discard_failed_command_run(cfg, getattr(experiment, "run", None))


def print_header(verb: str, cfg: Any, experiment: Any) -> None:
    """The few lines a run starts with: model, run directory, weights, device (the whole
    config is in the run's config.yaml; ``print_config=true`` prints it)."""
    from m3l.config import config_choices, shadowing_configs

    choices = config_choices(cfg)
    model = choices.get("model") or str(cfg.get("name"))
    net = _select(cfg, "net.net._target_") or _select(cfg, "net._target_")
    data = choices.get("data")
    parts = [f"model {model}"]
    if net:
        parts.append(f"net {str(net).rsplit('.', 1)[-1]}")
    if data:
        parts.append(f"data {data}")
    lines = [f"m3l {verb}: {', '.join(parts)}", f"  run directory: {experiment.output_dir}"]
    weights = experiment.describe_weights()  # checkpoint=best: which run's file, and its metric value
    if weights:
        lines.append(f"  weights: {weights}")
    lines.append(f"  device: {_device_text(cfg)}")
    shadows = _loaded_shadows(verb) or shadowing_configs(choices, primary=verb)
    if shadows:
        listing = ", ".join(f"{name} ({path})" for name, path in shadows)
        lines.append(f"  your configs in place of m3l's: {listing}")
    print("\n".join(lines), flush=True)


def _loaded_shadows(verb: str) -> list[tuple[str, Path]]:
    """:func:`m3l.config.shadowing` of every config file the run was composed from (Hydra's
    defaults list: also those a config includes, e.g. ``logger/csv`` of ``logger=many``, or
    ``train`` under ``test``); empty where it cannot be computed."""
    try:
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from m3l.config import shadowing

        overrides = [str(item) for item in HydraConfig.get().overrides.task]
        defaults = (
            GlobalHydra.instance()
            .config_loader()
            .compute_defaults_list(config_name=verb, overrides=overrides, run_mode=RunMode.RUN)
        )
        return shadowing(str(d.config_path) for d in defaults.defaults if d.config_path)
    except Exception:  # noqa: BLE001 - the header never fails a run; the choices are the fallback
        log.debug("could not list the run's config files", exc_info=True)
        return []


def _select(cfg: Any, key: str) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key, throw_on_resolution_failure=False)


def _is_missing(cfg: Any, key: str) -> bool:
    from omegaconf import OmegaConf

    return key in cfg and OmegaConf.is_missing(cfg, key)


def _device_text(cfg: Any) -> str:
    """Where the run computes, from the trainer config (Lightning 1.x keys mapped)."""
    from omegaconf import OmegaConf

    from m3l.config.trainer.args import lightning2_kwargs

    try:
        node = OmegaConf.to_container(cfg.trainer, resolve=True)
        kwargs, _ = lightning2_kwargs(node)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - the header never fails a run
        return "?"
    accelerator = str(kwargs.get("accelerator", "auto"))
    devices = kwargs.get("devices", "auto")
    if accelerator == "auto":
        import torch

        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    text = accelerator if devices in (1, "1", None) else f"{accelerator}, devices={devices}"
    nodes = kwargs.get("num_nodes", 1)
    if nodes not in (1, None):
        text += f", {nodes} nodes"
    strategy = kwargs.get("strategy")
    if isinstance(strategy, str) and strategy != "auto":
        text += f", strategy={strategy}"
    return text


def _check_composed(cfg: Any) -> None:
    """Problems of the composed config Hydra does not report (see m3l.config)."""
    from omegaconf import OmegaConf

    from m3l.config import config_choices, missing_global_package, missing_package_message
    from m3l.errors import ConfigError

    model = config_choices(cfg).get("model")
    if model and OmegaConf.is_dict(cfg.get("model")):
        path = missing_global_package(str(model))
        if path is not None:
            raise ConfigError(missing_package_message(str(model), path))


def sweep_objective(cfg: Any, metrics: dict[str, Any], trainer: Any) -> float | None:
    """What a training run returns to a sweeper: the metric its best checkpoint was ranked by.

    That is ``monitor``, or the metric the checkpoint callback picked when the module does not
    log ``monitor`` (:class:`m3l.callbacks.MonitoredCheckpoint`), so that a sweep optimizes
    what the checkpoints are chosen by. In a sweep, a run with no such metric, or whose picked
    metric runs the other way than ``monitor_mode`` (the sweep's direction), fails with the
    metrics the module logs and the setting to give."""
    from m3l.callbacks import pick_monitor
    from m3l.errors import ConfigError

    configured, mode = cfg.get("monitor"), str(cfg.get("monitor_mode") or "max")
    if configured is not None and str(configured) in metrics:
        return metrics[str(configured)]
    callback = getattr(trainer, "checkpoint_callback", None) if trainer is not None else None
    logged = sorted(k for k, v in metrics.items() if isinstance(v, float))
    picked: tuple[str, str] | None = None
    if callback is not None and getattr(callback, "monitor", None) in metrics:
        picked = (str(callback.monitor), str(callback.mode))
    elif callback is None:
        picked = pick_monitor(logged)
    if not _is_multirun():
        return metrics.get(picked[0]) if picked else None
    module = type(getattr(trainer, "lightning_module", None)).__name__ if trainer is not None else "the module"
    how = "Set monitor=METRIC monitor_mode=min|max (in the model config or on the command line)"
    if picked is None:
        raise ConfigError(
            f"monitor={configured!r} is not logged by {module} (it logs: {', '.join(logged) or 'nothing'}), so the "
            f"sweep has no objective. {how}."
        )
    if picked[1] != mode:
        raise ConfigError(
            f"monitor={configured!r} is not logged by {module}; its checkpoints are ranked by {picked[0]} "
            f"({'higher' if picked[1] == 'max' else 'lower'} is better), but the sweep's direction is "
            f"monitor_mode={mode}. Set monitor={picked[0]} monitor_mode={picked[1]}."
        )
    log.info(
        "The sweep's objective is %s, the metric the checkpoints are ranked by (monitor=%s is not logged).",
        picked[0],
        configured,
    )
    return metrics[picked[0]]


# set while Hydra composes, so that its errors reach main() (which words them for m3l)
_OWN_FULL_ERROR = "_M3L_HYDRA_FULL_ERROR_SET"


def _restore_full_error() -> None:
    if os.environ.pop(_OWN_FULL_ERROR, None) == "1":
        os.environ.pop("HYDRA_FULL_ERROR", None)


def make_main(verb: str) -> Callable[[], Any]:
    """The ``main()`` of ``python -m m3l.run.<verb>``."""

    def job(cfg: Any) -> Any:
        ours = os.environ.get(_OWN_FULL_ERROR) == "1"
        _restore_full_error()  # errors of the job itself get Hydra's usual report
        try:
            return run_job(cfg)
        finally:
            if ours and _is_multirun():
                # the sweep goes on in this process after the job: a sweep's own error (e.g. no
                # trial completed) reaches main(), which says it in one line
                os.environ["HYDRA_FULL_ERROR"] = os.environ[_OWN_FULL_ERROR] = "1"

    def run_job(cfg: Any) -> Any:
        from omegaconf.errors import InterpolationResolutionError

        from m3l.errors import M3LError

        experiment = None
        try:
            from m3l.engine.experiment import Experiment
            from m3l.records.lifecycle import is_rank_zero

            _route_lightning_logs()
            _check_composed(cfg)
            if cfg.get("print_config") and is_rank_zero():
                print_config_tree(cfg)
            experiment = Experiment(cfg)
            if is_rank_zero():
                print_header(verb, cfg, experiment)
            if verb == "train":
                metrics = experiment.fit()
                return sweep_objective(cfg, metrics, experiment.trainer)
            if verb == "test":
                return experiment.test()
            if verb == "correct":
                return str(experiment.correct())
            if verb == "export":
                from m3l.deploy.export import export_experiment

                return str(export_experiment(experiment))
            raise ValueError(f"unknown verb {verb}")
        except M3LError as exc:
            if exc.exit_code == 2:  # a usage or config error: nothing was done
                _remove_unused_run_dir(cfg, experiment)
            if os.environ.get("HYDRA_FULL_ERROR") == "1" or _is_multirun():
                raise
            print(f"m3l: error: {exc}", file=sys.stderr)
            raise SystemExit(exc.exit_code) from None
        except InterpolationResolutionError as exc:  # e.g. ${oc.env:VAR} with VAR unset: nothing was done
            _remove_unused_run_dir(cfg, experiment)
            if os.environ.get("HYDRA_FULL_ERROR") == "1" or _is_multirun():
                raise
            from m3l.config import interpolation_error

            print(f"m3l: error: {interpolation_error(cfg, exc)}", file=sys.stderr)
            raise SystemExit(2) from None
        except BaseException:
            _remove_unused_run_dir(cfg, experiment)
            raise

    def main() -> Any:
        import hydra
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        from m3l.config import composition_error, normalize_argv, register_resolvers
        from m3l.config.trainer.args import alias_pytorch_lightning

        alias_pytorch_lightning()  # before Hydra imports any user code (see m3l.config.trainer.args)
        register_resolvers()
        sys.argv = normalize_argv(sys.argv)
        sys.argv = _preflight_argv(verb, sys.argv)
        app = hydra.main(version_base="1.3", config_path="pkg://m3l.configs", config_name=verb)(job)
        user_full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
        if not user_full_error:
            os.environ["HYDRA_FULL_ERROR"] = "1"
            os.environ[_OWN_FULL_ERROR] = "1"
        try:
            return app()
        except (HydraException, OmegaConfBaseException) as exc:
            # raised while Hydra composed the config (the job's own errors are reported by Hydra)
            if user_full_error:
                raise
            print(f"m3l: error: {composition_error(exc, sys.argv[1:])}", file=sys.stderr)
            # 2: the config cannot work; a sweeper's own code for a sweep that ran and failed
            raise SystemExit(getattr(exc, "exit_code", 2)) from None
        except Exception as exc:  # noqa: BLE001 - anything else outside the job: Hydra's usual report
            if user_full_error:
                raise
            if type(exc).__name__ == "FailedJobError" and type(exc).__module__.startswith("submitit"):
                # sbatch refused the submission (no controller, a bad partition...): say it in
                # one line and leave no sweep folder that holds nothing but the refused job
                from m3l.records.lifecycle import remove_unsubmitted_sweeps

                remove_unsubmitted_sweeps()
                reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
                print(
                    f"m3l: error: Slurm did not accept the {verb} job: {reason}. Check the cluster config "
                    "(partition, account, qos, resources) with your cluster's documentation, or run without the "
                    "cluster= option here. See docs/clusters-and-sweeps.md.",
                    file=sys.stderr,
                )
                raise SystemExit(2) from None
            _restore_full_error()
            from m3l._compat.hydra import report_and_exit

            report_and_exit(exc)  # prints the trimmed traceback and exits with 1
            raise
        except SystemExit as exc:
            # Lightning stops on SIGTERM with a bare SystemExit (status 0); say so and exit 143
            if type(exc).__name__ != "SIGTERMException":
                raise
            print(
                f"m3l: {verb} stopped by SIGTERM before it finished. Run the same command with resume=true "
                "(or checkpoint=last) to continue from the last checkpoint.",
                file=sys.stderr,
            )
            raise SystemExit(143) from None
        finally:
            _restore_full_error()

    return main
