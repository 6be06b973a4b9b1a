"""Build a config's ``_target_`` with m3l's messages: the key, the file it comes from, and
what to check (an importable target, the arguments of its signature, a Lightning 1.x name)."""

from __future__ import annotations

import re
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from m3l.config import target_arguments
from m3l.engine.config_checks import config_source
from m3l.errors import ConfigError, M3LError
from m3l.config.trainer.args import alias_pytorch_lightning, did_you_mean, pytorch_lightning_message

# before any user code is imported: a module written against pytorch_lightning 2.x gets the
# package m3l runs (see m3l.config.trainer.args)
alias_pytorch_lightning()


def instantiate_key(cfg: DictConfig, key: str, node: Any | None = None, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` of ``cfg``'s ``key`` (or of ``node``, reported as ``key``);
    a failure becomes a :class:`ConfigError` naming the key and its config file (an m3l error
    the target raised keeps its type and gets that location appended)."""
    node = OmegaConf.select(cfg, key) if node is None else node
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        while cause is not None and not isinstance(cause, M3LError):
            cause = cause.__cause__
        if cause is not None:  # the target's own check: its message already says what to do
            # the same error with the location appended (not type(cause)(...): many errors'
            # constructors take other arguments, e.g. MediaReadError(path, reason))
            cause.args = (f"{cause} (building '{key}' from {config_source(cfg, key)})",)
            raise cause from None
        text = str(exc)
        detail = "\n  ".join(
            line.strip()
            for line in text.splitlines()
            if line.strip() and not line.strip().startswith(("full_key:", "object_type="))
        )
        missing = _missing_module(exc)
        if "pytorch_lightning" in text or missing.startswith("pytorch_lightning"):
            hint = pytorch_lightning_message(key, name=missing or None)
        elif "Error locating target" in text:
            hint = (
                "Check that the `_target_` names an importable class or function and that "
                "your package is on PYTHONPATH (or installed)."
            )
        else:
            hint = "Check the arguments in that config against the signature of its `_target_`."
            unexpected = re.search(r"unexpected keyword argument '(\w+)'", text)
            if unexpected and OmegaConf.is_dict(node):
                hint += did_you_mean(unexpected[1], target_arguments(node.get("_target_")))
        raise ConfigError(f"Could not build '{key}' from {config_source(cfg, key)}:\n  {detail}\n{hint}") from exc
    except Exception as exc:  # errors raised by the user's constructor
        if isinstance(exc, M3LError):
            raise
        raise ConfigError(
            f"Building '{key}' from {config_source(cfg, key)} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _missing_module(exc: BaseException) -> str:
    """The module name of a ``ModuleNotFoundError`` in ``exc``'s chain (Hydra's message hides
    it), or ``""``."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ModuleNotFoundError) and cause.name:
            return str(cause.name)
        cause = cause.__cause__ or cause.__context__
    return ""
