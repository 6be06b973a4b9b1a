"""The arguments of ``lightning.pytorch.Trainer`` of the installed Lightning, read from its
source (so the command line needs no import of Lightning to know them), and the words for a
``trainer`` key that is not one of them."""

from __future__ import annotations

import ast
import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from m3l._compat.lightning import trainer_init_arguments
from m3l.errors import ConfigError
from m3l.config.trainer.lightning1 import LIGHTNING1_KEYS

# keys of a config node that belong to Hydra, not to the target's arguments
HYDRA_KEYS = ("_target_", "_convert_", "_recursive_", "_partial_", "_args_")


@dataclass(frozen=True)
class TrainerParameter:
    """One argument of ``lightning.pytorch.Trainer``: its annotation and default as written."""

    name: str
    annotation: str
    default: str


@lru_cache(maxsize=1)
def trainer_parameters() -> dict[str, TrainerParameter]:
    """The arguments of ``lightning.pytorch.Trainer.__init__`` of the installed Lightning.

    Read from the source with :mod:`ast` (a few milliseconds; importing Lightning takes
    seconds). Empty when Lightning's source cannot be found or read.
    """
    args = trainer_init_arguments()  # Lightning's source file, found by its path
    return _parameters(args) if args is not None else {}


def _parameters(args: ast.arguments) -> dict[str, TrainerParameter]:
    positional = args.posonlyargs + args.args
    pos_defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    pairs = [*zip(positional, pos_defaults), *zip(args.kwonlyargs, args.kw_defaults)]
    params = {}
    for arg, default in pairs:
        if arg.arg == "self":
            continue
        params[arg.arg] = TrainerParameter(
            name=arg.arg,
            annotation=ast.unparse(arg.annotation) if arg.annotation is not None else "Any",
            default=ast.unparse(default) if default is not None else "",
        )
    return params


def is_trainer_key(name: str) -> bool:
    """Whether ``trainer.<name>`` is something m3l knows: a Lightning 2 or 1.x argument."""
    return name in trainer_parameters() or name in LIGHTNING1_KEYS


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` Did you mean `x`?`` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f" Did you mean `{close[0]}`?" if close else ""


def unknown_trainer_key(name: str, where: str = "") -> ConfigError:
    params = trainer_parameters()
    hint = did_you_mean(name, [*params, *LIGHTNING1_KEYS])
    where = f" ({where})" if where else ""
    return ConfigError(
        f"trainer.{name}{where}: lightning.pytorch.Trainer has no argument `{name}`.{hint or ''} "
        "Every argument of lightning.pytorch.Trainer is a key of `trainer` (docs/configs.md#trainer)."
    )
