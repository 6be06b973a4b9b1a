"""The values of the ``trainer`` config checked against the annotations of
``lightning.pytorch.Trainer.__init__`` before anything is built, and annotations in words."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from m3l.errors import ConfigError
from m3l.config.trainer.signature import HYDRA_KEYS

#: a value that cannot be resolved yet (an interpolation Hydra reports later): not checked
UNRESOLVED = object()


def check_types(kwargs: Mapping[str, Any]) -> None:
    """Refuse a value its annotation in ``Trainer.__init__`` does not allow."""
    hints = _trainer_hints()
    for key, value in kwargs.items():
        if key in HYDRA_KEYS or key not in hints or value is UNRESOLVED:
            continue
        if not _matches(value, hints[key]):
            raise ConfigError(
                f"trainer.{key}={_show(value)}: lightning.pytorch.Trainer expects {describe(hints[key])} "
                f"for `{key}` (got {_kind(value)})."
            )


@lru_cache(maxsize=1)
def _trainer_hints() -> dict[str, Any]:
    try:
        from lightning.pytorch import Trainer

        return typing.get_type_hints(Trainer.__init__)
    except Exception:  # noqa: BLE001 - annotations Python cannot evaluate: check nothing
        return {}


def _matches(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arm) for arm in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint) and type(value) in {type(a) for a in typing.get_args(hint)}
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, Iterable, typing.Sequence) or hint in (list, tuple):
        args = typing.get_args(hint)
        return isinstance(value, (list, tuple)) and (not args or all(_matches(v, args[0]) for v in value))
    if origin is dict or hint is dict:
        return isinstance(value, Mapping)
    if isinstance(hint, type):
        # a class (Accelerator, Strategy, Profiler, timedelta, Path...): an instance, or a
        # config Hydra instantiates
        return isinstance(value, hint) or (isinstance(value, Mapping) and "_target_" in value)
    return True  # a form this check does not know: let Lightning judge


def describe(hint: Any) -> str:
    """An annotation in words: ``Optional[int]`` -> ``an integer or null``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        parts: list[str] = []
        literals: list[str] = []
        for arm in typing.get_args(hint):
            if typing.get_origin(arm) is typing.Literal:
                literals.extend(repr(a) if isinstance(a, str) else str(a) for a in typing.get_args(arm))
                continue
            text = describe(arm)
            if text not in parts:
                parts.append(text)
        if literals:
            parts.insert(0, "one of " + ", ".join(dict.fromkeys(literals)))
        return " or ".join(parts)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) if isinstance(a, str) else str(a) for a in typing.get_args(hint))
    names = {type(None): "null", bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    if hint in names:
        return names[hint]
    if origin in (list, tuple) or hint in (list, tuple):
        args = typing.get_args(hint)
        return f"a list of ({describe(args[0])})" if args else "a list"
    if origin is dict:
        return "a mapping"
    if isinstance(hint, type):
        return f"a {hint.__name__} (a config with _target_)"
    return str(hint)


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) and (not value or " " in value) else str(value)


def _kind(value: Any) -> str:
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    return names.get(type(value), f"a {type(value).__name__}")
