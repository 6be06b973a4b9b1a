"""Restoration models: :class:`RestorationModule` and the nets of :mod:`m3l.models.nets`."""

from __future__ import annotations

from typing import Any

__all__ = ["RestorationModule"]


def __getattr__(name: str) -> Any:
    if name == "RestorationModule":
        from m3l.models.restoration import RestorationModule

        return RestorationModule
    raise AttributeError(name)
