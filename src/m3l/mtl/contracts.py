"""Contract decorators: what a multi-task part promises, checked by :mod:`m3l.mtl.validation`.

Decorators declare what a part promises; they return the part unchanged (plus a
``__m3l_contract__`` attribute, and for module classes a record of the constructor's
keyword arguments so artifacts can rebuild them)::

    @mtl.backbone(out_channels=50)
    class LeNet(nn.Module): ...

    @mtl.head(in_channels="in_features")      # read the expected width from an attribute
    class Classifier(nn.Module): ...

    @mtl.criterion(target_dtype="integer", prediction_ndim=2)
    def cross_entropy(pred, target): ...

    @mtl.task_dataset(structure="pair", input_shape=(1, 36, 36))
    class MyDataset(Dataset): ...
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from m3l.mtl.errors import ContractDeclarationError

CONTRACT_ATTR = "__m3l_contract__"
INIT_ARGS_ATTR = "_m3l_init_args"


@dataclass
class Contract:
    """What a decorated part promises."""

    role: str
    options: dict[str, Any] = field(default_factory=dict)


def contract_of(obj: Any) -> Contract | None:
    """The contract declared on ``obj`` or on its class, if any."""
    found = getattr(obj, CONTRACT_ATTR, None)
    if found is None:
        found = getattr(type(obj), CONTRACT_ATTR, None)
    return found


def _record_init_args(cls: type) -> None:
    """Wrap ``cls.__init__`` so instances remember their JSON-able keyword arguments."""
    original = cls.__init__
    if getattr(original, "_m3l_records", False):
        return

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        try:
            bound = inspect.signature(original).bind(self, *args, **kwargs)
        except TypeError:
            return
        bound.apply_defaults()
        recorded = {
            k: v
            for k, v in list(bound.arguments.items())[1:]
            if isinstance(v, (int, float, str, bool, type(None), list, tuple))
        }
        object.__setattr__(self, INIT_ARGS_ATTR, recorded)

    __init__._m3l_records = True  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[method-assign]


def _declare(role: str, needs_module: bool) -> Callable[..., Any]:
    def decorator(target: Any = None, /, **options: Any) -> Any:
        def apply(obj: Any) -> Any:
            if needs_module and not (isinstance(obj, type) and issubclass(obj, nn.Module)):
                raise ContractDeclarationError(
                    f"@mtl.{role} expects an nn.Module subclass; got {obj!r}.\n"
                    f"  fix: decorate a class deriving from torch.nn.Module"
                )
            setattr(obj, CONTRACT_ATTR, Contract(role, dict(options)))
            if isinstance(obj, type) and issubclass(obj, nn.Module):
                _record_init_args(obj)
            return obj

        return apply(target) if target is not None else apply

    decorator.__name__ = role
    decorator.__doc__ = f"Declare a {role.replace('_', ' ')} and what it promises."
    return decorator


backbone = _declare("backbone", needs_module=True)
head = _declare("head", needs_module=True)
criterion = _declare("criterion", needs_module=False)
task_dataset = _declare("task_dataset", needs_module=False)
