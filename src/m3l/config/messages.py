"""What went wrong in composing or resolving a config, worded for an m3l user (one line: the
file or key, what was expected, what to do)."""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from m3l.config.overrides import override_value, parse_override
from m3l.config.search import group_options


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
        from m3l.config.trainer.args import trainer_parameters

        return list(trainer_parameters())
    import inspect

    try:
        from hydra.utils import get_object

        obj = get_object(target)
        params = inspect.signature(obj).parameters.values()
    except Exception:  # noqa: BLE001 - a target we cannot inspect: no suggestions from it
        return []
    return [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name != "self"]


def renamed_arguments(target: object) -> dict[str, str]:
    """``{old: new}`` keyword names a ``_target_`` still accepts under their old name (its
    ``renamed_arguments`` attribute, e.g. ``m3l.mtl.Joint``'s ``weighting`` -> ``method``)."""
    if not isinstance(target, str):
        return {}
    try:
        from hydra.utils import get_object

        renamed = getattr(get_object(target), "renamed_arguments", None)
    except Exception:  # noqa: BLE001 - a target we cannot import: nothing renamed that we know of
        return {}
    return dict(renamed) if isinstance(renamed, dict) else {}


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def composition_error(exc: BaseException, overrides: Sequence[str] = ()) -> str:
    """What went wrong in Hydra's composition of the config, said for an m3l user: a key that
    is not in a group's config (with the closest key or ``_target_`` argument), an option of a
    group that does not exist, a model config without ``# @package _global_``."""
    from omegaconf import DictConfig
    from omegaconf.errors import InterpolationResolutionError

    from m3l.config.trainer.args import did_you_mean

    for error in (exc, exc.__cause__):
        if isinstance(error, InterpolationResolutionError):
            return interpolation_error(None, error, overrides)
    text = str(exc).strip()
    model = override_value(overrides, "model")
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
            from m3l.config.trainer.args import unknown_trainer_key

            return str(unknown_trainer_key(str(key)))
        arguments = target_arguments(target)
        where = f"the `{group}` config" if group else "the config"
        new = renamed_arguments(target).get(str(key))
        if new is not None:  # an old command line: the key was renamed (the old one still builds, warning)
            prefix = f"{group}." if group else ""
            return f"{full_key}: `{key}` is the old name of `{new}` ({target}): write {prefix}{new} instead."
        if target and str(key) in arguments:
            return f"{full_key}: {target} takes `{key}`, but {where} does not set it; add it with +{full_key}=VALUE."
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
        if (
            group == "hydra/launcher"
            and name.startswith("submitit")
            and not _importable("hydra_plugins.hydra_submitit_launcher")
        ):
            return (
                f"{group}={name}: Hydra's Slurm launcher is not installed (a cluster= config uses it): "
                'pip install "m3l[slurm]" (or -e ".[slurm]" in a clone), then run the same command again.'
            )
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
        override = parse_override(item)
        value = override.value() if override is not None and not override.is_sweep_override() else None
        if isinstance(value, str) and "${" in value:
            raws.setdefault(override.key_or_group, value)
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
    """``(key, raw text)`` of every interpolation in ``node``, without resolving any (OmegaConf's
    unresolved container keeps each interpolation as its text)."""
    if not OmegaConf.is_config(node):
        return
    try:
        raw = OmegaConf.to_container(node, resolve=False)
    except Exception:  # noqa: BLE001 - a config that cannot be read holds nothing we look for
        return
    yield from _raw_interpolations(raw, prefix)


def _raw_interpolations(value: Any, prefix: str) -> Iterable[tuple[str, str]]:
    if isinstance(value, (dict, list)):
        for k, child in value.items() if isinstance(value, dict) else enumerate(value):
            yield from _raw_interpolations(child, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, str) and "${" in value and prefix:
        yield prefix, value
