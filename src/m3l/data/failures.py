"""Bad inputs: a record per file (path and reason) and the ``failures.tsv`` report."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from m3l.data.io import atomic_write

log = logging.getLogger(__name__)

FAILURES_FILENAME = "failures.tsv"


class Failure(NamedTuple):
    """One input that could not be used or one output that could not be written (a
    ``(path, reason)`` tuple)."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def record_failure(failures: list[Failure], path: str | os.PathLike[str], reason: str) -> Failure:
    """Append a failure (once per path and reason) and log it as a warning."""
    failure = Failure(str(path), reason)
    if failure not in failures:
        failures.append(failure)
        log.warning("skipping %s", failure)
    return failure


def write_failures(path: str | os.PathLike[str], failures: list[Failure]) -> Path:
    """Write ``path<TAB>reason`` lines (with a header) atomically."""
    lines = ["path\treason"] + [f"{f.path}\t{' '.join(f.reason.split())}" for f in failures]
    return atomic_write(path, lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n", encoding="utf-8"))


def data_failures(trainer: Any) -> list[Failure]:
    """Bad inputs found by the data side of a Lightning run (the datamodule's ``failures``, or
    its predict datasets')."""
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is not None and hasattr(datamodule, "failures"):
        return list(datamodule.failures)
    loaders = getattr(trainer, "predict_dataloaders", None) or []
    loaders = loaders if isinstance(loaders, Sequence) else [loaders]
    return [f for loader in loaders for f in getattr(getattr(loader, "dataset", None), "failures", [])]
