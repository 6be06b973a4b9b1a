"""Canary tests of :mod:`m3l._compat`, one module per library (mirroring ``src/m3l/_compat``).

Each test runs one ``m3l._compat`` function against the installed library and, when a
release changed what the function relies on, fails with one line that says so:
``Lightning 2.7.0 changed <thing>: update m3l._compat.lightning.<function>``. CI runs them on
the newest and on the oldest Lightning ``pyproject.toml`` allows (``.ci/run``).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

#: the distribution whose version a failure names, per library
DISTRIBUTIONS = {"Lightning": "lightning", "torch": "torch", "Hydra": "hydra-core", "MLflow": "mlflow"}


def installed(library: str) -> str:
    """The installed version of ``library`` (a key of :data:`DISTRIBUTIONS`)."""
    try:
        return importlib.metadata.version(DISTRIBUTIONS[library])
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


@contextmanager
def canary(library: str, thing: str, function: str) -> Iterator[None]:
    """Turn any failure in the block into the one line that says which release changed what,
    and which function of ``m3l._compat`` to update (``function``: ``"lightning.trainer_of"``)."""
    try:
        yield
    except (Exception, pytest.fail.Exception) as error:  # noqa: BLE001 - an assertion, a pytest.raises, what the library raises
        pytest.fail(
            f"{library} {installed(library)} changed {thing}: update m3l._compat.{function} "
            f"({type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''})",
            pytrace=False,
        )
