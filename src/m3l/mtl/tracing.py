"""What failed where, for the messages of :mod:`m3l.mtl.validation`: a short description of a
value's structure, and a module run that, when it raises, names the submodule that was
running, the input it received and the line of user code that failed.
"""

from __future__ import annotations

import inspect
import os
import traceback
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn


def describe(value: Any) -> str:
    """A short description of a value's structure: shapes and dtypes of its tensors."""
    if isinstance(value, Tensor):
        return f"tensor {tuple(value.shape)} {str(value.dtype).replace('torch.', '')}"
    if isinstance(value, Mapping):
        return "dict{" + ", ".join(f"{k!r}: {describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__}[" + ", ".join(describe(v) for v in value) + "]"
    return type(value).__name__


def part_name(obj: Any) -> str:
    """The name of a class or function, else of the value's class."""
    return getattr(obj, "__name__", None) or type(obj).__name__


class TracedFailure(Exception):
    """A module raised; which of its submodules was running, on what input, where."""

    def __init__(
        self, error: BaseException, submodule: str | None, layer: nn.Module | None, received: Any, at_first_layer: bool
    ) -> None:
        super().__init__(str(error))
        self.error, self.submodule, self.layer = error, submodule, layer
        self.received, self.at_first_layer = received, at_first_layer

    def where(self) -> str:
        """`` in submodule 'x' (Linear(...)) on input ..., raised at file:line`` (or less)."""
        text = ""
        if self.submodule is not None:
            text += f", in its submodule {self.submodule!r} ({self.layer!r}) on input {describe(self.received)}"
        frame = _user_frame(self.error)
        if frame is not None:
            text += f", at {frame.filename}:{frame.lineno} ({frame.line})"
        return text


def _user_frame(error: BaseException) -> Any:
    """The innermost traceback frame outside torch: the line of user code that failed."""
    torch_dir = os.path.dirname(torch.__file__)
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith(torch_dir)]
    return frames[-1] if frames else None


def run_traced(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """``module(*args, **kwargs)``; on an exception, a :class:`TracedFailure` naming the
    innermost submodule that was running and the input it received."""
    stack: list[tuple[str, nn.Module, Any]] = []
    names = {id(m): n for n, m in module.named_modules() if n}
    first = next((n for n, m in module.named_modules() if n and any(True for _ in m.parameters(recurse=False))), None)

    def enter(layer: nn.Module, inputs: Any) -> None:
        if id(layer) in names:
            stack.append((names[id(layer)], layer, inputs[0] if len(inputs) == 1 else inputs))

    def leave(layer: nn.Module, inputs: Any, output: Any) -> None:
        if id(layer) in names and stack:
            stack.pop()

    handles = [
        h
        for m in module.modules()
        if m is not module
        for h in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))
    ]
    try:
        return module(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - re-raised with where it happened
        name, layer, received = stack[-1] if stack else (None, None, None)
        raise TracedFailure(err, name, layer, received, name is not None and name == first) from err
    finally:
        for handle in handles:
            handle.remove()


def missing_arguments(module: nn.Module, given_positional: int, given: Mapping[str, Any]) -> list[str]:
    """Required parameters of ``module.forward`` left unset by ``given_positional`` positional
    and the ``given`` keyword arguments."""
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return []
    missing = []
    positional = given_positional
    for param in params:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD) and positional > 0:
            positional -= 1
            continue
        if param.default is param.empty and param.name not in given:
            missing.append(param.name)
    return missing
