"""The command line's options as arguments of :class:`~m3l.engine.experiment.Experiment`'s verbs.

``exp.correct(..., overwrite=True)`` is ``serializer.overwrite=true`` for that call only, and
a message that names a command-line option (``set serializer.overwrite=true``) is worded,
when the verb was called from Python, with the argument's name (``pass overwrite=True``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from m3l.errors import ConfigError, CorrectionFailures, CorrectionInterrupted


@contextmanager
def for_one_call(cfg: DictConfig, options: Mapping[str, Any]) -> Iterator[None]:
    """Set the dotted ``options`` (``{"serializer.overwrite": True}``) in ``cfg`` while the
    block runs; their earlier values come back after it."""
    earlier = {key: OmegaConf.select(cfg, key) for key in options}
    with open_dict(cfg):
        for key, value in options.items():
            OmegaConf.update(cfg, key, value, force_add=True)
    try:
        yield
    finally:
        with open_dict(cfg):
            for key, value in earlier.items():
                OmegaConf.update(cfg, key, value, force_add=True)


def serializer_options(cfg: DictConfig, options: Mapping[str, Any], caller: str) -> dict[str, Any]:
    """``options`` (keyword arguments; None: not given) as dotted ``serializer.*`` keys,
    refusing those the configured serializer does not have."""
    given = {k: v for k, v in options.items() if v is not None}
    node = cfg.serializer
    unknown = sorted(k for k in given if k not in node or k == "_target_")
    if unknown:
        known = ", ".join(k for k in node if k != "_target_")
        raise ConfigError(
            f"{caller}: {', '.join(unknown)} is not an option of the serializer {node.get('_target_', '')}; "
            f"its options (the serializer.* keys): {known}."
        )
    return {f"serializer.{k}": v for k, v in given.items()}


def under_hydra_app() -> bool:
    """Whether this runs inside a Hydra app (the commands), not a notebook or script."""
    try:
        from hydra.core.hydra_config import HydraConfig
    except ImportError:
        return False
    return HydraConfig.initialized()


# the command line's words in a message, and Experiment.correct()'s
_CLI_WORDS = (
    (re.compile(r"\bset serializer\.(\w+)=(true|false)\b"), lambda m: f"pass {m[1]}={m[2].capitalize()}"),
    (re.compile(r"\bserializer\.(\w+)=(true|false)\b"), lambda m: f"{m[1]}={m[2].capitalize()}"),
    (
        re.compile(r"\b(overwrite|skip_existing|allow_inside_input)=(true|false)\b"),
        lambda m: f"{m[1]}={m[2].capitalize()}",
    ),
    (re.compile(r"\bpass data\.correct_dir="), lambda m: "pass correct_dir="),
    (re.compile(r"\brun the same command again with\b"), lambda m: "call Experiment.correct() again with"),
)


def in_python_words(text: str) -> str:
    """``text`` with the command line's options named as :meth:`Experiment.correct`'s
    arguments (``serializer.overwrite=true`` -> ``overwrite=True``)."""
    for pattern, words in _CLI_WORDS:
        text = pattern.sub(words, text)
    return text


@contextmanager
def worded_for_python() -> Iterator[None]:
    """Re-raise the correction and config errors of the block in Python's words, unless a
    command (a Hydra app) runs it."""
    try:
        yield
    except (CorrectionFailures, CorrectionInterrupted, ConfigError) as exc:
        worded = str(exc) if under_hydra_app() else in_python_words(str(exc))
        if worded == str(exc):
            raise
        raise type(exc)(worded).with_traceback(exc.__traceback__) from None
