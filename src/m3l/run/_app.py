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


def _override_key(arg: str) -> str:
    return arg.split("=", 1)[0].lstrip("+~")


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


def _preflight_argv(verb: str, argv: list[str]) -> None:
    """Catch what is cheaper to explain before Hydra starts."""
    args = argv[1:]
    if any(a in _HELP_FLAGS or a.startswith("--cfg") for a in args):
        return
    if not any(_override_key(a) == "model" for a in args if not a.startswith("-")):
        print(f"m3l: no model chosen.\n{_list_models(verb)}", file=sys.stderr)
        raise SystemExit(2)
    if any(os.environ.get(var, "0") not in ("", "0") for var in ("LOCAL_RANK", "RANK", "SLURM_PROCID")):
        return  # the other processes of a distributed run write into rank zero's directory
    from m3l.errors import M3LError
    from m3l.rundirs import check_creatable_dir, check_output_dir_free

    folders = [("M3L_RUNS_DIR", os.environ.get("M3L_RUNS_DIR") or "runs")]
    for arg in args:
        key, _, value = arg.partition("=")
        key = key.lstrip("+~")
        if key in ("hydra.run.dir", "hydra.sweep.dir", "paths.output_dir", "paths.runs_dir") and value:
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
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_drop_advertising)


def _drop_advertising(record: logging.LogRecord) -> bool:
    return "Tip: For seamless cloud" not in str(record.msg)


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def _remove_unused_run_dir(cfg: Any, experiment: Any) -> None:
    """A run that failed before it did anything (before Lightning started) leaves no directory:
    Hydra's run directory goes when it holds nothing but Hydra's record, the log and the
    config (see :func:`m3l.rundirs.is_unused`). Single runs on rank zero only: a sweep keeps
    its failed jobs' directories."""
    if experiment is not None and getattr(experiment, "started", False):
        return
    try:
        from hydra.core.hydra_config import HydraConfig

        from m3l.experiment import _rank_zero
        from m3l.rundirs import remove_unused

        if _is_multirun() or not _rank_zero():
            return
        hydra_cfg = HydraConfig.get()
        run_dir = Path(str(hydra_cfg.runtime.output_dir))
        remove_unused(run_dir, stop_at=Path(str(cfg.paths.runs_dir)))
    except Exception:  # noqa: BLE001 - tidying up must never hide the error being reported
        log.debug("could not remove the unused run directory", exc_info=True)


def make_main(verb: str) -> Callable[[], Any]:
    """The ``main()`` of ``python -m m3l.run.<verb>``."""

    def job(cfg: Any) -> Any:
        from m3l.errors import M3LError

        experiment = None
        try:
            from m3l.experiment import Experiment, _rank_zero

            _route_lightning_logs()

            if _rank_zero():
                print_config_tree(cfg)
            experiment = Experiment(cfg)
            if verb == "train":
                metrics = experiment.fit()
                value = metrics.get(str(cfg.get("monitor")))
                return value
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
        except BaseException:
            _remove_unused_run_dir(cfg, experiment)
            raise

    def main() -> Any:
        import hydra

        from m3l.config import normalize_argv, register_resolvers

        register_resolvers()
        sys.argv = normalize_argv(sys.argv)
        _preflight_argv(verb, sys.argv)
        app = hydra.main(version_base="1.3", config_path="pkg://m3l.configs", config_name=verb)(job)
        try:
            return app()
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

    return main
