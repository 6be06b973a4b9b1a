"""Where configs are read from, highest priority first:

1. each directory of ``$M3L_CONFIG_PATH`` (colon separated, for project-local configs),
2. ``$XDG_CONFIG_HOME/m3l`` (``~/.config/m3l`` when ``XDG_CONFIG_HOME`` is unset),
3. ``/etc/m3l``,
4. the configs packaged with m3l (``m3l/configs``).

A user config with the same group and name as a packaged one replaces it (the run header names
it: :func:`shadowing_configs`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

CONFIG_MODULE = "m3l.configs"
PACKAGED_CONFIG_DIR = Path(__file__).parent.parent / "configs"
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
