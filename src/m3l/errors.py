"""User-facing errors.

An :class:`M3LError` is a mistake the user can fix (a config key, a path, a checkpoint). The
command-line entry points print its message without a traceback (set ``HYDRA_FULL_ERROR=1``
to see one) and exit with :attr:`M3LError.exit_code`: 2 for usage and config errors, 1 when
some inputs failed (the rest were done), 143 when stopped by SIGTERM.
"""

from __future__ import annotations


class M3LError(Exception):
    """A problem with the user's input, with a message that says what to do.

    ``exit_code`` is the status the commands exit with: 2 for usage and config errors."""

    exit_code = 2


class ConfigError(M3LError, ValueError):
    """A config is missing a value, names an unknown target, has a value out of range, or
    does not fit together (a ``ValueError`` too, for callers that catch those)."""


class CheckpointError(M3LError):
    """A checkpoint does not exist, is unsafe to load, or does not match the net."""


class CorrectionFailures(M3LError):
    """Some inputs of a correction run could not be read or written (the rest were)."""

    exit_code = 1


class CorrectionInterrupted(M3LError):
    """A correction run stopped on SIGTERM (or Ctrl+C) after finishing the file it was writing;
    the inputs not yet corrected are listed in ``failures.tsv``."""

    exit_code = 143


class PredictionFormatError(M3LError):
    """``predict_step`` returned something no serializer can write."""
