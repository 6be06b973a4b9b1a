"""Bad inputs: a record per file (path and reason) and the ``failures.tsv`` report."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from m3l.deploy.runtime import FAILURES_FILENAME, write_failures_file

log = logging.getLogger(__name__)

__all__ = [
    "FAILURES_FILENAME",
    "Failure",
    "data_failures",
    "printable",
    "read_failures",
    "record_failure",
    "write_failures",
]


class Failure(NamedTuple):
    """One input that could not be used or one output that could not be written (a
    ``(path, reason)`` tuple)."""

    path: str
    reason: str

    def __str__(self) -> str:
        return printable(f"{self.path}: {self.reason}")


def printable(text: str) -> str:
    """``text`` safe for any log or terminal: the bytes of a file name that is not UTF-8 (kept
    by ``os.fsdecode`` as lone surrogates, which a UTF-8 log file refuses) as ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape" if _escapable(text) else "backslashreplace").decode(
        "utf-8", "backslashreplace"
    )


def _escapable(text: str) -> bool:
    try:
        text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True


def record_failure(failures: list[Failure], path: str | os.PathLike[str], reason: str) -> Failure:
    """Append a failure (once per path and reason) and log it as a warning."""
    failure = Failure(str(path), reason)
    if failure not in failures:
        failures.append(failure)
        log.warning("skipping %s", failure)
    return failure


def write_failures(path: str | os.PathLike[str], failures: Sequence[Failure]) -> Path | None:
    """Write ``failures.tsv`` at ``path`` atomically: the one writer of ``correct`` and the
    runtime (:func:`m3l.deploy.runtime.write_failures_file`; format in
    :func:`m3l.deploy.runtime.format_failures`: tab-separated with csv quoting, file names kept
    byte for byte). When it cannot be written (a full disk...), the list is logged instead and
    None is returned."""
    path = Path(path)
    return write_failures_file(path.parent, [(f.path, f.reason) for f in failures], name=path.name)


def read_failures(path: str | os.PathLike[str]) -> list[Failure]:
    """The rows of a ``failures.tsv`` (what :func:`write_failures` wrote), paths as written."""
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    return [Failure(*row) for row in rows[1:]]


def data_failures(trainer: Any) -> list[Failure]:
    """Bad inputs found by the data side of a Lightning run (the datamodule's ``failures``, or
    its predict datasets')."""
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is not None and hasattr(datamodule, "failures"):
        return list(datamodule.failures)
    loaders = getattr(trainer, "predict_dataloaders", None) or []
    loaders = loaders if isinstance(loaders, Sequence) else [loaders]
    return [f for loader in loaders for f in getattr(getattr(loader, "dataset", None), "failures", [])]
