"""The config system's front: :func:`compose` for notebooks and the resolvers' registration
(the run directory's naming, ``${m3l.new_dir:...}``, is :mod:`m3l.records.lifecycle`'s).

Its parts, one job each, are re-exported here (``from m3l.config import X`` keeps working):

- :mod:`m3l.config.search`: where configs are read from (``$M3L_CONFIG_PATH``, ``~/.config/m3l``,
  ``/etc/m3l``, the packaged ones), the options of a group, user configs replacing packaged ones;
- :mod:`m3l.config.resolvers`: the ``m3l.*`` resolvers that compute values;
- :mod:`m3l.config.overrides`: the command line's conveniences rewritten into Hydra overrides;
- :mod:`m3l.config.messages`: composition and interpolation errors worded for a user.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from m3l.config.messages import (  # noqa: F401 - re-exported
    composition_error,
    interpolation_error,
    missing_global_package,
    missing_package_message,
    target_arguments,
)
from m3l.config.overrides import normalize_argv, normalize_overrides  # noqa: F401 - re-exported
from m3l.config.resolvers import VALUE_RESOLVERS
from m3l.config.search import (  # noqa: F401 - re-exported
    CONFIG_MODULE,
    PACKAGED_CONFIG_DIR,
    SYSTEM_CONFIG_DIR,
    cluster_launcher,
    config_dirs,
    group_options,
    shadowing,
    shadowing_configs,
    user_config_dirs,
)
from m3l.records.lifecycle import _new_dirs, free_dir, new_dir  # noqa: F401 - re-exported
from m3l.records.lifecycle import new_dir as _new_dir  # noqa: F401 - the resolver's old name
from m3l.records.lifecycle import timestamp as _timestamp  # noqa: F401 - re-exported under its old name

RESOLVERS = {**VALUE_RESOLVERS, "m3l.new_dir": new_dir}


def register_resolvers() -> None:
    """Register m3l's OmegaConf resolvers (idempotent)."""
    for name, fn in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            # new_dir is cached in the config: a launcher that re-composes the config in the
            # job (submitit, Slurm) copies the cache, so the job writes where it was told to
            OmegaConf.register_new_resolver(name, fn, use_cache=name == "m3l.new_dir")


register_resolvers()


def compose(
    model: str | None = None,
    overrides: Sequence[str] = (),
    verb: str = "train",
) -> DictConfig:
    """Compose the config a ``python -m m3l.run.<verb> model=<model> ...`` run would use.

    For notebooks and scripts: ``cfg = compose("demo", ["trainer.max_epochs=1"])`` then
    ``Experiment(cfg).fit()``. The run directory is chosen by :class:`m3l.Experiment`.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    overrides = normalize_overrides(overrides)
    if model is not None:
        overrides = [f"model={model}", *overrides]
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = hydra_compose(config_name=verb, overrides=list(overrides), return_hydra_config=True)
    # outside a Hydra app there is no ``hydra:`` resolver state: fix the values that use it
    choices = cfg.hydra.runtime.choices
    with open_dict(cfg):
        if OmegaConf.is_interpolation(cfg, "name"):
            cfg.name = choices.get("model") or verb
        if "hydra:" in str(OmegaConf.to_container(cfg.paths, resolve=False).get("output_dir")):
            cfg.paths.output_dir = None  # Hydra's run dir; m3l.Experiment picks one per verb
        del cfg["hydra"]
        cfg.m3l_choices = OmegaConf.create(dict(choices))
    return cfg


def open_dict(cfg: DictConfig):
    """``omegaconf.open_dict``: edit a struct config in place."""
    from omegaconf import open_dict as _open_dict

    return _open_dict(cfg)


def config_choices(cfg: DictConfig) -> dict[str, Any]:
    """The config group choices (``model``, ``data``, ...) a composed config was made from."""
    if "m3l_choices" in cfg:
        return dict(cfg.m3l_choices)
    try:
        from hydra.core.hydra_config import HydraConfig

        return dict(HydraConfig.get().runtime.choices)
    except ValueError:
        return {}
