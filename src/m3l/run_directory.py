"""The run directory of each verb an :class:`~m3l.experiment.Experiment` runs.

Outside a Hydra app (a notebook, :class:`m3l.mtl.Trainer`), every verb gets a fresh directory
``<paths.runs_dir>/<name>/<verb>/<date_time>``, picked when the Experiment is made and created
when the verb starts; a directory given as ``paths.output_dir`` must be new or empty. Under the
commands, Hydra's run directory is used. Either way the verb's log records go to
``<run dir>/<verb>.log`` (Hydra's job log under the commands, :func:`m3l.tracking.run_log`
elsewhere), and a verb that fails before it started Lightning leaves no directory behind.
The policies themselves (fresh, unused, resumable) are in :mod:`m3l.rundirs`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from m3l.config import _timestamp
from m3l.errors import ConfigError, CorrectionFailures, CorrectionInterrupted, M3LError
from m3l.rundirs import (
    check_output_dir_free,
    claim_dir,
    is_rank_zero,
    is_unused,
    pick_dir,
    remove_unused,
)
from m3l.tracking import run_log

# the run directory an Experiment picked, by the id of the config it wrote it into
_picked_for: dict[int, str] = {}


class RunDirectory:
    """Picks, creates and (when unused) removes the directory of each verb of one config."""

    def __init__(self, cfg: DictConfig, verb: str) -> None:
        self.cfg = cfg
        paths = cfg.paths
        self.verbs_run: list[str] = []  # the verbs run so far, each in its own directory
        self.started = False  # whether the current verb got as far as running Lightning
        self.made: list[Path] = []  # directories the current verb created
        self.own = (
            OmegaConf.is_missing(paths, "output_dir") or paths.get("output_dir") is None
            # a config an earlier Experiment picked its directory in, made into a new Experiment
            or _picked_for.get(id(cfg)) == str(paths.output_dir)
        )
        if self.own:
            self._pick(verb)
        elif is_rank_zero() and not self.is_hydra_run_dir():
            # (Hydra's own run directory is fresh; other ranks share rank zero's)
            check_output_dir_free(self.path)

    @property
    def path(self) -> Path:
        return Path(str(self.cfg.paths.output_dir))

    def _pick(self, verb: str) -> None:
        base = Path(str(self.cfg.paths.runs_dir)) / str(self.cfg.name) / verb / _timestamp()
        with open_dict(self.cfg):
            self.cfg.paths.output_dir = str(pick_dir(base))
        _picked_for[id(self.cfg)] = str(self.cfg.paths.output_dir)
        self._verb = verb

    def is_hydra_run_dir(self) -> bool:
        try:
            from hydra.core.hydra_config import HydraConfig

            hydra_dir = HydraConfig.get().runtime.output_dir
        except (ValueError, ImportError):
            return False
        return Path(str(hydra_dir)).resolve() == self.path.resolve()

    def claim(self, verb: str) -> None:
        """Create this verb's directory (a fresh one when this config's picks are used)."""
        if self.own:
            if self.verbs_run or self._verb != verb:
                self._pick(verb)
            while True:
                try:
                    self.made = claim_dir(self.path)
                    break
                except FileExistsError:  # another process took it in the meantime
                    self._pick(verb)
        else:
            if self.verbs_run:
                raise ConfigError(
                    f"This Experiment already ran `{self.verbs_run[-1]}` in paths.output_dir={self.path}; "
                    f"m3l never writes into an existing run directory, so `{verb}` cannot run there. Leave "
                    "paths.output_dir unset (each verb then gets its own directory under paths.runs_dir), or "
                    "make a new Experiment with another paths.output_dir."
                )
            self.made = [] if self.path.exists() else claim_dir(self.path)
        self.verbs_run.append(verb)
        self.started = False

    @contextmanager
    def running(self, verb: str) -> Iterator[None]:
        """Claim the verb's directory, log into its ``<verb>.log``; when the verb fails before
        it started Lightning, remove what it created."""
        self.claim(verb)
        log_file = self.path / f"{verb}.log"
        wrote_log = is_rank_zero() and not self.is_hydra_run_dir() and not log_file.exists()
        try:
            with ExitStack() as stack:
                if wrote_log:
                    stack.enter_context(run_log(log_file))
                try:
                    yield
                except BaseException as exc:
                    if is_rank_zero():
                        record_end(log_file, verb, exc)  # the log says why the run ended
                    raise
        except (CorrectionFailures, CorrectionInterrupted):
            raise  # the rest was corrected (or stopped cleanly): the run's record stays
        except BaseException:
            if is_rank_zero() and not self.started:
                self.discard_if_unused(log_file if wrote_log else None)
            raise

    def ensure(self) -> None:
        """Create the directory if it does not exist yet (rank zero writes into it first)."""
        if not self.path.exists():
            self.made = claim_dir(self.path)

    def discard_if_unused(self, log_file: Path | None = None) -> bool:
        """Remove the directory if it holds nothing but its config.yaml and log (and, under
        Hydra, Hydra's record): a run that failed before it did anything."""
        if self.made:
            return remove_unused(self.path, self.made)
        if not self.is_hydra_run_dir() and is_unused(self.path):
            # a given directory, empty before (checked): only what this run wrote goes
            (self.path / "config.yaml").unlink(missing_ok=True)
            if log_file is not None:
                log_file.unlink(missing_ok=True)
        return False  # Hydra's run directory: the app removes it (m3l.run._app)


def _file_handlers(path: Path) -> list[logging.FileHandler]:
    """The logging handlers that write into ``path`` (Hydra's job log, :func:`run_log`'s)."""
    target = str(path.resolve())
    loggers = [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values()
                                      if isinstance(lg, logging.Logger))]
    found: dict[int, logging.FileHandler] = {}
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler) and str(Path(handler.baseFilename).resolve()) == target:
                found[id(handler)] = handler
    return list(found.values())


def record_end(log_file: Path, verb: str, exc: BaseException) -> None:
    """Write why ``verb`` ended into its log file, and there only: the terminal gets the error
    from the command line (its one ``m3l: error:`` line or the traceback) or the caller. An
    m3l error is its message; anything else also its traceback, for a bug report."""
    if isinstance(exc, M3LError):
        message, exc_info = f"{verb} stopped: {exc}", None
    elif isinstance(exc, Exception):
        message, exc_info = f"{verb} failed: {type(exc).__name__}: {exc}", (type(exc), exc, exc.__traceback__)
    else:  # KeyboardInterrupt, SystemExit (Lightning's SIGTERM)
        message, exc_info = f"{verb} stopped: {type(exc).__name__} {exc}".rstrip(), None
    record = logging.getLogger("m3l").makeRecord("m3l", logging.ERROR, __file__, 0, message, (), exc_info)
    for handler in _file_handlers(log_file):
        handler.handle(record)
