"""Config search path, resolvers and config composition for notebooks.

Config directories, highest priority first:

1. each directory of ``$M3L_CONFIG_PATH`` (colon separated, for project-local configs),
2. ``$XDG_CONFIG_HOME/m3l`` (``~/.config/m3l`` when ``XDG_CONFIG_HOME`` is unset),
3. ``/etc/m3l``,
4. the configs packaged with m3l (``m3l/configs``).

A user config with the same group and name as a packaged one replaces it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

CONFIG_MODULE = "m3l.configs"
PACKAGED_CONFIG_DIR = Path(__file__).parent / "configs"
SYSTEM_CONFIG_DIR = Path("/etc/m3l")


def user_config_dirs() -> list[Path]:
    """The user's config directories that exist, highest priority first."""
    candidates: list[Path] = []
    for entry in os.environ.get("M3L_CONFIG_PATH", "").split(os.pathsep):
        if entry.strip():
            candidates.append(Path(entry).expanduser())
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    candidates.append(Path(xdg).expanduser() / "m3l")
    candidates.append(SYSTEM_CONFIG_DIR)
    seen: set[Path] = set()
    dirs = []
    for path in candidates:
        path = path.resolve()
        if path.is_dir() and path not in seen:
            seen.add(path)
            dirs.append(path)
    return dirs


def config_dirs() -> list[Path]:
    """Every directory configs are read from, highest priority first."""
    return [*user_config_dirs(), PACKAGED_CONFIG_DIR]


def group_options(group: str) -> dict[str, Path]:
    """Config names of a group (e.g. ``"model"``) mapped to the file that wins."""
    options: dict[str, Path] = {}
    for directory in reversed(config_dirs()):  # lowest priority first, later ones win
        group_dir = directory / group
        if group_dir.is_dir():
            for file in sorted(group_dir.rglob("*.yaml")):
                options[file.relative_to(group_dir).with_suffix("").as_posix()] = file
    return dict(sorted(options.items()))


def shadowing_configs(choices: dict[str, Any], primary: str | None = None) -> list[tuple[str, Path]]:
    """The user configs a run uses in place of packaged ones of the same group and name:
    ``("net/dncnn_small", Path(".../.config/m3l/net/dncnn_small.yaml"))`` for each group choice
    in ``choices`` (and the ``primary`` config, e.g. ``"train"``) whose winning file is a
    user's while m3l ships one too. A config is code (any ``_target_`` runs): the run header
    names these so that a replaced packaged config never goes unnoticed."""
    names: list[str] = [primary] if primary else []
    for group, option in choices.items():
        if option is None or str(group).startswith("hydra"):
            continue
        options = option if isinstance(option, (list, tuple)) or OmegaConf.is_list(option) else [option]
        names += [f"{group}/{item}" for item in options if item is not None]
    return shadowing(names)


def shadowing(names: Iterable[str]) -> list[tuple[str, Path]]:
    """Of the configs ``names`` (config paths such as ``"net/dncnn_small"`` or ``"train"``),
    those a user config directory replaces, with the user's file; in the given order, once."""
    found: list[tuple[str, Path]] = []
    user_dirs = user_config_dirs()
    for name in dict.fromkeys(names):
        if name.startswith("hydra/"):
            continue
        if not (PACKAGED_CONFIG_DIR / f"{name}.yaml").is_file():
            continue
        user = next((d / f"{name}.yaml" for d in user_dirs if (d / f"{name}.yaml").is_file()), None)
        if user is not None:
            found.append((name, user))
    return found


# ---------------------------------------------------------------------------- resolvers


def _number(value: object) -> float | int:
    if isinstance(value, (int, float)):
        return value
    text = str(value)
    try:
        return int(text)
    except ValueError:
        return float(text)


def _mul(*values: object) -> float | int:
    return math.prod(_number(v) for v in values)


def _sum(*values: object) -> float | int:
    return sum(_number(v) for v in values)


def _sub(a: object, b: object) -> float | int:
    return _number(a) - _number(b)


def _div(a: object, b: object) -> float:
    return _number(a) / _number(b)


def _floordiv(a: object, b: object) -> int:
    return int(_number(a) // _number(b))


def _max(*values: object) -> float | int:
    return max(_number(v) for v in values)


def _min(*values: object) -> float | int:
    return min(_number(v) for v in values)


_new_dirs: dict[str, str] = {}


def free_dir(path: object, empty_is_free: bool = True) -> str:
    """``path`` if it is free, else ``path_2``, ``path_3``...: a run never reuses a directory."""
    key = str(path)
    candidate, n = key, 1
    while Path(candidate).exists() and not (empty_is_free and not any(Path(candidate).iterdir())):
        n += 1
        candidate = f"{key}_{n}"
    return candidate


def _new_dir(path: object) -> str:
    """:func:`free_dir`, memoized so every resolution of one run directory in a process agrees
    (Hydra creates the directory between resolutions)."""
    key = str(path)
    if key not in _new_dirs:
        _new_dirs[key] = free_dir(key)
    return _new_dirs[key]


def _samples(split: str = "train") -> str:
    from m3l.data.samples import sample_dir

    return str(sample_dir(split))


def _timestamp() -> str:
    return datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


RESOLVERS = {
    "m3l.mul": _mul,
    "m3l.sum": _sum,
    "m3l.sub": _sub,
    "m3l.div": _div,
    "m3l.floordiv": _floordiv,
    "m3l.max": _max,
    "m3l.min": _min,
    "m3l.new_dir": _new_dir,
    "m3l.samples": _samples,
}


def register_resolvers() -> None:
    """Register m3l's OmegaConf resolvers (idempotent)."""
    for name, fn in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            # new_dir is cached in the config: a launcher that re-composes the config in the
            # job (submitit, Slurm) copies the cache, so the job writes where it was told to
            OmegaConf.register_new_resolver(name, fn, use_cache=name == "m3l.new_dir")


register_resolvers()

# ---------------------------------------------------------------------------- overrides

# ``trainer.<argument>=value`` for any argument of ``lightning.pytorch.Trainer`` (and the
# Lightning 1.x ones, mapped when the Trainer is built: see m3l.trainer_args) is turned into
# ``++trainer.<argument>=value``: every Trainer argument is settable whether or not the trainer
# config lists it (the 1.x keys are deliberately absent, so ``${oc.select:trainer.gpus,1}`` in
# cluster configs falls back to its default). A name that is not an argument is left alone and
# answered with the closest one (:func:`composition_error`).
# The seed's data config template has no ``correct_dir`` key while its correct command sets
# ``data.correct_dir=...``: added the same way (whether the datamodule takes it is checked by
# :class:`m3l.Experiment`).
_ADDABLE_KEYS = ("data.correct_dir",)
_OVERRIDE = re.compile(r"^(?P<prefix>[+~]*)(?P<key>[\w./@-]+)=(?P<value>.*)$", re.S)


def normalize_overrides(overrides: Iterable[str]) -> list[str]:
    """Rewrite the command-line conveniences m3l accepts into plain Hydra overrides."""
    from m3l.trainer_args import is_trainer_key

    result = []
    for item in overrides:
        match = _OVERRIDE.match(item)
        if match and match["prefix"] in ("", "+"):
            parts = match["key"].split(".")
            if len(parts) == 2 and parts[0] == "trainer" and is_trainer_key(parts[1]):
                item = "++" + item.lstrip("+")  # also `+trainer.max_epochs=3`, which Hydra refuses
            elif not match["prefix"] and match["key"] in _ADDABLE_KEYS:
                item = "++" + item
        result.append(item)
    return result


def normalize_argv(argv: Sequence[str]) -> list[str]:
    """Command-line arguments with ``--cluster-launch`` -> ``--multirun`` and the above.

    The flag (and ``-m``/``--multirun``) goes first, so it may follow overrides
    (``model=x --cluster-launch``), which argparse would otherwise reject.
    """
    if not argv:
        return list(argv)
    rest = list(argv[1:])
    flags = ["--multirun"] if any(arg in ("--cluster-launch", "-m", "--multirun") for arg in rest) else []
    rest = [arg for arg in rest if arg not in ("--cluster-launch", "-m", "--multirun")]
    return [argv[0], *flags, *normalize_overrides(rest)]


# ---------------------------------------------------------------------------- compose


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


# ---------------------------------------------------------------------------- messages


def missing_global_package(model: str) -> Path | None:
    """The model config file of ``model`` when it lacks its ``# @package _global_`` line."""
    path = group_options("model").get(model)
    if path is None:
        return None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        text = line.strip()
        if not text:
            continue
        if not text.startswith("#"):
            break
        if re.match(r"#\s*@package\s+_global_\b", text):
            return None
    return path


def missing_package_message(model: str, path: Path) -> str:
    return (
        f"model={model}: {path} has no `# @package _global_` line. A model config sets keys of the whole "
        "config (data, net, trainer, name), so its first line must be `# @package _global_`; without it, "
        "everything in it lands under `model.` and is ignored. Add that line at the top of the file."
    )


def target_arguments(target: object) -> list[str]:
    """Argument names of a ``_target_`` (empty when it cannot be imported or inspected)."""
    if not isinstance(target, str):
        return []
    if target in ("lightning.pytorch.Trainer", "lightning.Trainer", "lightning.pytorch.trainer.trainer.Trainer"):
        from m3l.trainer_args import trainer_parameters

        return list(trainer_parameters())
    import inspect

    try:
        from hydra.utils import get_object

        obj = get_object(target)
        params = inspect.signature(obj).parameters.values()
    except Exception:  # noqa: BLE001 - a target we cannot inspect: no suggestions from it
        return []
    return [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name != "self"]


def _chosen(overrides: Sequence[str], group: str) -> str | None:
    for item in overrides:
        match = _OVERRIDE.match(item)
        if match and match["key"] == group:
            return match["value"]
    return None


def composition_error(exc: BaseException, overrides: Sequence[str] = ()) -> str:
    """What went wrong in Hydra's composition of the config, said for an m3l user: a key that
    is not in a group's config (with the closest key or ``_target_`` argument), an option of a
    group that does not exist, a model config without ``# @package _global_``."""
    from omegaconf import DictConfig

    from omegaconf.errors import InterpolationResolutionError

    from m3l.trainer_args import did_you_mean

    for error in (exc, exc.__cause__):
        if isinstance(error, InterpolationResolutionError):
            return interpolation_error(None, error, overrides)
    text = str(exc).strip()
    model = _chosen(overrides, "model")
    if model:
        path = missing_global_package(model)
        if path is not None:
            return missing_package_message(model, path)
    cause = exc.__cause__
    parent = getattr(cause, "parent_node", None)
    key = getattr(cause, "key", None)
    full_key = str(getattr(cause, "full_key", "") or "")
    if isinstance(parent, DictConfig) and key is not None and "not in struct" in str(cause):
        group = full_key.rsplit(".", 1)[0] if "." in full_key else ""
        target = OmegaConf.to_container(parent).get("_target_") if "_target_" in parent else None
        if group == "trainer" and str(target).startswith("lightning."):
            from m3l.trainer_args import unknown_trainer_key

            return str(unknown_trainer_key(str(key)))
        arguments = target_arguments(target)
        where = f"the `{group}` config" if group else "the config"
        if target and str(key) in arguments:
            return (
                f"{full_key}: {target} takes `{key}`, but {where} does not set it; add it with "
                f"+{full_key}=VALUE."
            )
        keys = [str(k) for k in parent.keys() if not str(k).startswith("_")]
        hint = did_you_mean(str(key), [*keys, *arguments])
        known = f" ({target})" if target else ""
        listing = ", ".join(keys)
        add = "" if target else f" To add a new key, write +{full_key}=VALUE."
        return f"{full_key}: {where}{known} has no key `{key}`.{hint} Its keys: {listing}.{add}"
    missing = re.search(r"Could not find '(?P<group>[\w/]+)/(?P<name>[^']+)'", text)
    if missing:
        group, name = missing["group"], missing["name"]
        options = list(group_options(group))
        hint = did_you_mean(name, options)
        return (
            f"{group}={name}: no such {group} config.{hint} Available: {', '.join(options) or '(none)'}. "
            f"Your own go in <config dir>/{group}/NAME.yaml (config dirs: $M3L_CONFIG_PATH, "
            "~/.config/m3l, /etc/m3l)."
        )
    detail = f" ({cause})" if cause is not None and str(cause) and str(cause) not in text else ""
    return " ".join(line.strip() for line in text.splitlines() if line.strip()) + detail


def interpolation_error(cfg: DictConfig | None, exc: BaseException, overrides: Sequence[str] = ()) -> str:
    """An interpolation of ``cfg`` that cannot be resolved (``${oc.env:VAR}`` with ``VAR``
    unset, a key that does not exist), said in one line: the key, its value, what to do.
    Without ``cfg`` (Hydra failed to resolve its own run directory), the command-line
    ``overrides`` are searched for the value."""
    reason = str(getattr(exc, "msg", "") or exc).strip().splitlines()[0]
    raws = dict(_interpolations(cfg)) if cfg is not None else {}
    for item in overrides:
        match = _OVERRIDE.match(item)
        if match and "${" in match["value"]:
            raws.setdefault(match["key"], match["value"])
    key = str(getattr(exc, "full_key", "") or "")
    quoted = re.findall(r"'([^']+)'", reason)
    if key not in raws or quoted and quoted[0] not in raws[key]:
        # ``node.get(key)`` raises without the key, and a run directory made of other keys
        # names itself: find the value that names what is missing
        key = next((k for k, raw in raws.items() if quoted and quoted[0] in raw), key)
    where = f"{key}={raws[key]}" if key in raws else (key or "the config")
    variable = re.search(r"Environment variable '([^']+)' not found", reason)
    if variable:
        name = variable[1]
        return (
            f"{where}: the environment variable {name} is not set. Set it (export {name}=...) or give the "
            f"interpolation a default: ${{oc.env:{name},DEFAULT}}."
        )
    return f"{where}: cannot resolve the interpolation ({reason}). Check the keys it refers to."


def _interpolations(node: Any, prefix: str = "") -> Iterable[tuple[str, str]]:
    """``(key, raw text)`` of every interpolation in ``node``, without resolving any."""
    from omegaconf import ListConfig

    if not isinstance(node, (DictConfig, ListConfig)):
        return
    keys = node.keys() if isinstance(node, DictConfig) else range(len(node))
    for k in keys:
        full = f"{prefix}.{k}" if prefix else str(k)
        try:
            child = node._get_node(k)
        except Exception:  # noqa: BLE001 - a node that cannot be read is not the one we look for
            continue
        if isinstance(child, (DictConfig, ListConfig)):
            if child._is_interpolation():
                yield full, str(child._value())
            else:
                yield from _interpolations(child, full)
        elif child is not None and child._is_interpolation():
            yield full, str(child._value())


def cluster_launcher(name: str) -> str | None:
    """The Hydra launcher the cluster config ``name`` selects (``override /hydra/launcher: X``
    in its defaults), or None."""
    path = group_options("cluster").get(name)
    if path is None:
        return None
    try:
        node = OmegaConf.load(path)
    except Exception:  # noqa: BLE001 - a broken file: Hydra reports it when composing
        return None
    for entry in node.get("defaults", None) or [] if isinstance(node, DictConfig) else []:
        if isinstance(entry, DictConfig):
            for key, value in entry.items():
                if str(key).split()[-1].strip("/") == "hydra/launcher":
                    return str(value)
    return None
