"""Checks of a composed config before anything is built from it, and where a key comes from.

Messages name the config file a key comes from (``net/dncnn.yaml (key 'net.depth')``), what
was expected and what to do. The walk uses OmegaConf's public API only.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from m3l.config import config_choices, group_options
from m3l.errors import ConfigError

# keys that may legitimately stay `???` in a composed config
OPTIONAL_MISSING = ("checkpoint",)


def config_source(cfg: DictConfig, key: str) -> str:
    """Where the config of ``key`` comes from, e.g. ``net/dncnn.yaml``, for messages."""
    group = key.split(".")[0]
    choices = config_choices(cfg)
    choice = choices.get(group)
    if choice:
        return f"{group}/{choice}.yaml (key '{key}')"
    model = choices.get("model")
    return f"model/{model}.yaml (key '{key}')" if model else f"key '{key}'"


def missing_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose value is ``???`` (without resolving interpolations)."""
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


def check_missing(cfg: DictConfig, with_serializer: bool = False) -> None:
    """Refuse a config with required values left ``???``, naming each key and its file."""
    # the serializer (and its root_dir) is only needed by `correct`, checked there
    skip = ("hydra.",) if with_serializer else ("hydra.", "serializer.")
    missing = [key for key in missing_keys(cfg) if not key.startswith(skip) and key not in OPTIONAL_MISSING]
    if missing:
        lines = [f"  {key}  (from {config_source(cfg, key)})" for key in sorted(missing)]
        example = " ".join(f"{key}=..." for key in sorted(missing))
        raise ConfigError(
            "These config values are required but not set:\n"
            + "\n".join(lines)
            + f"\nSet them on the command line, e.g. `{example}`, or in your model config."
        )


def require_group(cfg: DictConfig, group: str) -> None:
    """Refuse a config that selects no ``group`` (``data``, ``net``)."""
    if OmegaConf.select(cfg, group) is None:
        raise ConfigError(
            f"No {group} config: the model config must select one (`- /{group}: NAME` in its "
            f"defaults) or pass {group}=NAME. Available: {', '.join(group_options(group))}"
        )


def check_correct_dir_taken(cfg: DictConfig) -> None:
    """``data.correct_dir`` may be set on any data config (the seed's template has no such
    key); say clearly when the datamodule it would be passed to does not take it."""
    node = OmegaConf.select(cfg, "data")
    if node is None or "correct_dir" not in node:
        return
    target = node.get("_target_")
    if target is None:
        raise ConfigError(
            "data.correct_dir is set but no data config is selected: the model config must select "
            f"one (`- /data: NAME` in its defaults) or pass data=NAME. Available: {', '.join(group_options('data'))}"
        )
    if not takes_argument(str(target), "correct_dir"):
        raise ConfigError(
            f"data.correct_dir is set, but the datamodule of {config_source(cfg, 'data.correct_dir')}, "
            f"{target}, takes no `correct_dir` argument, so it has no input to correct. m3l corrects "
            f"through the datamodule's predict_dataloader: give {str(target).rsplit('.', 1)[-1]}.__init__ a "
            "`correct_dir=None` parameter and read the inputs from it in predict_dataloader (see "
            "docs/own-model.md), or correct with a data config that has one (e.g. data=samples)."
        )


def takes_argument(target: str, name: str) -> bool:
    """Whether the callable ``target`` names has a parameter ``name`` (or ``**kwargs``); True
    when it cannot be told (an import error is reported by the instantiation itself)."""
    import inspect

    from hydra.utils import get_object

    try:
        params = inspect.signature(get_object(target)).parameters
    except Exception:  # noqa: BLE001 - not importable or no signature: instantiation reports it
        return True
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
