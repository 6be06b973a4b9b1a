"""Lightning's messages that an m3l user cannot act on, filtered out.

- the LitLogger / LitModels advertisements ("Tip: For seamless cloud ..."),
- "GPU available: False, used: False" and its TPU/HPU siblings (m3l's header names the device),
- that m3l's one-line model summary replaces Lightning's default one,
- the hint to prepend ``srun`` printed wherever Slurm is installed, also when it is not used
  (a Slurm job started by m3l's launcher runs under srun and never sees it),
- ``isinstance(treespec, LeafSpec)`` deprecation raised inside Lightning's own code with
  torch 2.13,
- that a resumed run's checkpoint folder differs from the interrupted run's ("The dirpath has
  changed"): m3l resumes into a new run directory on purpose (:mod:`m3l.records.lifecycle`).

Everything else Lightning says is kept.
"""

from __future__ import annotations

import logging
import warnings

_DROPPED_INFO = (
    "Tip: For seamless cloud",
    "GPU available:",
    "TPU available:",
    "HPU available:",
    "Trainer already configured with model summary callbacks",
)

_WARNINGS = (
    r"The `srun` command is available on your system but is not used",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"The dirpath has changed from",
)


def _keep(record: logging.LogRecord) -> bool:
    message = str(record.msg)
    return not any(text in message for text in _DROPPED_INFO)


def quiet_lightning() -> None:
    """Install the filters (idempotent)."""
    for pattern in _WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _keep not in logger.filters:
        logger.addFilter(_keep)
    fabric = logging.getLogger("lightning.fabric.utilities.rank_zero")
    if _keep not in fabric.filters:
        fabric.addFilter(_keep)
