"""The command line's conveniences rewritten into plain Hydra overrides (``trainer.X=...`` for
any Lightning Trainer argument, ``--cluster-launch``), and the value an override gives a key.

Overrides are read by Hydra's own parser (``hydra.core.override_parser``, the public API Hydra's
sweeper plugins use), so m3l reads ``key=value``, ``+key``, ``~key``, ``key@package``, quoting
and sweeps exactly as Hydra will; what Hydra cannot parse is left alone for Hydra to report.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

# ``trainer.<argument>=value`` for any argument of ``lightning.pytorch.Trainer`` (and the
# Lightning 1.x ones, mapped when the Trainer is built: see m3l.config.trainer.args) is turned into
# ``++trainer.<argument>=value``: every Trainer argument is settable whether or not the trainer
# config lists it (the 1.x keys are deliberately absent, so ``${oc.select:trainer.gpus,1}`` in
# cluster configs falls back to its default). A name that is not an argument is left alone and
# answered with the closest one (:func:`composition_error`).
# The seed's data config template has no ``correct_dir`` key while its correct command sets
# ``data.correct_dir=...``: added the same way (whether the datamodule takes it is checked by
# :class:`m3l.Experiment`).
_ADDABLE_KEYS = ("data.correct_dir",)


@lru_cache(maxsize=1)
def _parser() -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def parse_override(item: str) -> Any:
    """Hydra's reading of one command-line override (a ``hydra.core.override_parser.types.Override``:
    ``key_or_group``, ``type``, ``package``, ``value()``), or None for a flag (``-m``) and for
    what Hydra cannot parse (Hydra reports it when it composes the config)."""
    if not item or item.startswith("-"):
        return None
    try:
        return _parser().parse_override(item)
    except Exception:  # noqa: BLE001 - Hydra's OverrideParseException and HydraException: Hydra reports them
        return None


def override_key(item: str) -> str | None:
    """The key (or config group) ``item`` sets, adds or deletes, as Hydra reads it."""
    override = parse_override(item)
    return override.key_or_group if override is not None else None


def override_value(overrides: Iterable[str], key: str) -> str | None:
    """The value the first override of ``key`` in ``overrides`` gives it, as Hydra reads it
    (quotes removed; ``${...}`` kept as written); None when none sets it, or sets it to null or
    to a sweep (``model=a,b``)."""
    for item in overrides:
        override = parse_override(item)
        if override is None or override.key_or_group != key or override.package is not None:
            continue
        if override.is_delete() or override.is_sweep_override():
            return None
        value = override.value()
        return None if value is None else str(value)
    return None


def normalize_overrides(overrides: Iterable[str]) -> list[str]:
    """Rewrite the command-line conveniences m3l accepts into plain Hydra overrides."""
    from m3l.config.trainer.args import is_trainer_key

    from hydra.core.override_parser.types import OverrideType

    result = []
    for item in overrides:
        override = parse_override(item)
        if (
            override is not None
            and override.package is None
            and override.type in (OverrideType.CHANGE, OverrideType.ADD)
        ):
            parts = override.key_or_group.split(".")
            if len(parts) == 2 and parts[0] == "trainer" and is_trainer_key(parts[1]):
                item = "++" + item.lstrip("+")  # also `+trainer.max_epochs=3`, which Hydra refuses
            elif override.type is OverrideType.CHANGE and override.key_or_group in _ADDABLE_KEYS:
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
