"""The command line's conveniences rewritten into plain Hydra overrides (``trainer.X=...`` for
any Lightning Trainer argument, ``--cluster-launch``), and the value an override gives a key."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

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


def _chosen(overrides: Sequence[str], group: str) -> str | None:
    for item in overrides:
        match = _OVERRIDE.match(item)
        if match and match["key"] == group:
            return match["value"]
    return None
