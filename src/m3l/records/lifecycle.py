"""The life of a run directory, from its choice to its removal: one owner, :class:`Run`.

A run directory (``<paths.runs_dir>/<name>/<verb>/<date_time>/``) holds the resolved
``config.yaml``, ``checkpoints/``, the loggers' files, ``<verb>.log`` and, under the commands,
Hydra's ``.hydra/`` record. Its rules, for the commands, notebooks and ``mtl.Trainer`` alike:

- **choose**: every verb gets a fresh directory, never one that exists (``pick_dir``, and
  :func:`new_dir`, the ``${m3l.new_dir:...}`` resolver Hydra's ``hydra.run.dir`` goes
  through); a directory given as ``paths.output_dir`` (or ``hydra.run.dir``) must be new or
  empty (:func:`check_output_dir_free`).
- **create**: when the verb starts (:meth:`Run.running`); under the commands Hydra creates its
  run directory, and the other ranks of a distributed run write into rank zero's.
- **record**: ``config.yaml`` (:meth:`Run.write_config`), the verb's log records in
  ``<verb>.log`` (Hydra's job log under the commands, :func:`m3l.records.tracking.run_log` elsewhere),
  and, when the verb ends with an error, why it ended (:func:`record_end`, in the log only).
  A config with a ``run_id`` key left null (``mtl.Trainer``'s) gets the directory's name.
- **keep or remove**: a verb that fails before it starts Lightning leaves no directory behind
  when it holds nothing but that record (:func:`is_unused`); one that fails after Lightning
  started keeps its directory and its log, whatever it holds. A sweep keeps its failed jobs'
  directories; a sweep Slurm refused leaves none (:func:`remove_unsubmitted_sweeps`).

Which earlier run ``resume=true`` or ``checkpoint=best|last`` means is :mod:`m3l.records.past_runs`.
"""

from __future__ import annotations

import logging
import os
import shutil
import traceback
import weakref
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from m3l.errors import ConfigError, CorrectionFailures, CorrectionInterrupted, M3LError

log = logging.getLogger(__name__)

# what a run writes before it has done anything: Hydra's record and log, m3l's config.yaml
_BOOKKEEPING_FILES = ("config.yaml",)
_BOOKKEEPING_DIRS = (".hydra",)


def is_rank_zero() -> bool:
    """Whether this process is rank zero (of a distributed run started by Lightning, torchrun
    or Slurm): the one that creates, writes and removes run directories."""
    return (
        int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")) or 0) == 0
        and int(os.environ.get("LOCAL_RANK", "0") or 0) == 0
    )


# ---------------------------------------------------------------------------- choose


def timestamp() -> str:
    """The ``<date_time>`` a run directory is named by."""
    return datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def check_output_dir_free(path: Path, key: str = "paths.output_dir") -> None:
    """Refuse ``path`` as a new run's directory when it exists and is not empty."""
    if not path.is_dir() or not any(path.iterdir()):
        if path.exists() and not path.is_dir():
            raise ConfigError(
                f"{key}={path} is a file, not a directory. Pass a new directory, or leave "
                f"{key} out: every run gets a fresh one under paths.runs_dir."
            )
        return
    markers = [name for name in ("config.yaml", "checkpoints", ".hydra") if (path / name).exists()]
    markers += sorted(p.name for p in path.glob("*.log"))[:2]
    what = f"a run ({', '.join(markers)})" if markers else "files"
    raise ConfigError(
        f"{key}={path} already holds {what}; m3l never writes into an existing run directory. Leave "
        f"{key} out (every run gets a fresh directory under paths.runs_dir) or pass a new, empty one."
    )


def check_creatable_dir(path: Path, key: str) -> None:
    """Refuse (:class:`ConfigError` naming ``key``) a folder that cannot be created or written:
    its nearest existing ancestor is a file, or not writable."""
    ancestor = path.expanduser().absolute()
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"{key}: cannot create {path}: {ancestor} is a file, not a folder. Choose another folder.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: cannot write into {ancestor} (permission denied). Choose a folder you can write to.")


_picked: set[str] = set()


def pick_dir(base: Path) -> Path:
    """``base``, else ``base_2``, ``base_3``...: the first that does not exist and that this
    process has not picked before (two runs started in the same second get two)."""
    candidate, n = str(base), 1
    while Path(candidate).exists() or candidate in _picked:
        n += 1
        candidate = f"{base}_{n}"
    _picked.add(candidate)
    return Path(candidate)


def free_dir(path: object, empty_is_free: bool = True) -> str:
    """``path`` if it is free, else ``path_2``, ``path_3``...: a run never reuses a directory."""
    key = str(path)
    candidate, n = key, 1
    while Path(candidate).exists() and not (empty_is_free and not any(Path(candidate).iterdir())):
        n += 1
        candidate = f"{key}_{n}"
    return candidate


# the run (and sweep) directories the ${m3l.new_dir:...} resolver chose in this process
_new_dirs: dict[str, str] = {}


def new_dir(path: object) -> str:
    """The ``${m3l.new_dir:...}`` resolver: :func:`free_dir`, memoized so every resolution of
    one run directory in a process agrees (Hydra creates the directory between resolutions)."""
    key = str(path)
    if key not in _new_dirs:
        _new_dirs[key] = free_dir(key)
    return _new_dirs[key]


# ---------------------------------------------------------------------------- create


def claim_dir(path: Path) -> list[Path]:
    """Create ``path`` (which must not exist: another process may have just taken it, then
    :class:`FileExistsError`); returns the directories created, outermost first."""
    made = []
    parent = path.parent
    while not parent.exists():
        made.append(parent)
        parent = parent.parent
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir()
    return [*reversed(made), path]


# ---------------------------------------------------------------------------- keep or remove


def is_unused(path: Path) -> bool:
    """Whether ``path`` holds nothing but what a run writes before it does anything (its
    config.yaml, Hydra's ``.hydra/`` and ``<verb>.log``) and empty directories."""
    if not path.is_dir():
        return False
    for entry in path.iterdir():
        if entry.is_symlink():
            return False
        if entry.is_dir():
            if entry.name in _BOOKKEEPING_DIRS:
                if any(not f.is_file() or f.is_symlink() for f in entry.rglob("*") if not f.is_dir()):
                    return False
            elif any(not f.is_dir() for f in entry.rglob("*")):
                return False
        elif entry.name not in _BOOKKEEPING_FILES and entry.suffix != ".log":  # Hydra's <verb>.log
            return False
    return True


def remove_unused(path: Path, made: list[Path] | None = None, stop_at: Path | None = None) -> bool:
    """Remove the run directory ``path`` if it is unused (see :func:`is_unused`), then those of
    ``made`` (directories this run created) and the parents below ``stop_at`` left empty."""
    if not is_unused(path):
        return False
    shutil.rmtree(path)
    log.debug("Removed the unused run directory %s", path)  # the error line stays the only line
    parents = [p for p in reversed(made or []) if p != path]
    if stop_at is not None:
        stop = stop_at.resolve()
        parent = path.resolve().parent
        while parent != stop and stop in parent.parents:
            parents.append(parent)
            parent = parent.parent
    for parent in parents:
        try:
            parent.rmdir()  # only if empty
        except OSError:
            pass
    return True


def _hydra_run_dir() -> Path | None:
    """Hydra's run directory of the job running now; None outside a Hydra app."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(str(HydraConfig.get().runtime.output_dir))
    except (ValueError, ImportError):
        return None


def is_multirun() -> bool:
    """Whether the job running now is one of a Hydra sweep (``-m``, a launcher)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except (ValueError, ImportError):
        return False


def remove_unused_hydra_run_dir(runs_dir: Path) -> bool:
    """The commands' part of "a run that failed before it did anything leaves no directory":
    Hydra's run directory goes when it is unused (:func:`is_unused`), with the folders up to
    ``runs_dir`` it leaves empty. Single runs on rank zero only: a sweep keeps its failed
    jobs' directories. (The caller knows the verb did not start Lightning.)"""
    run_dir = _hydra_run_dir()
    if run_dir is None or is_multirun() or not is_rank_zero():
        return False
    return remove_unused(run_dir, stop_at=runs_dir)


def remove_unsubmitted_sweeps() -> None:
    """Remove the sweep directories of this process (:func:`new_dir`'s choices) that hold
    nothing but Hydra's ``multirun.yaml`` and submitit's files of a job that was never
    accepted, and the folders above them that this leaves empty (``<name>/<verb>/multirun``)."""
    for value in list(_new_dirs.values()):
        path = Path(value)
        if not path.is_dir() or path.is_symlink():
            continue
        if any(entry.name not in ("multirun.yaml", ".submitit") for entry in path.iterdir()):
            continue
        shutil.rmtree(path)
        for parent in list(path.parents)[:3]:
            try:
                parent.rmdir()  # only when empty
            except OSError:
                break


# ---------------------------------------------------------------------------- record


def _file_handlers(path: Path) -> list[logging.FileHandler]:
    """The logging handlers that write into ``path`` (Hydra's job log, :func:`run_log`'s)."""
    target = str(path.resolve())
    loggers = [
        logging.getLogger(),
        *(lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)),
    ]
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
        message = f"{verb} stopped: {exc}"
    elif isinstance(exc, Exception):
        message = (
            f"{verb} failed: {type(exc).__name__}: {exc}\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
        )
    else:  # KeyboardInterrupt, SystemExit (Lightning's SIGTERM)
        message = f"{verb} stopped: {type(exc).__name__} {exc}".rstrip()
    # a file name that is not UTF-8 (its bytes kept as surrogates) is written as \xNN: the log
    # is UTF-8, and a record it cannot encode would be lost
    message = message.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    record = logging.getLogger("m3l").makeRecord("m3l", logging.ERROR, __file__, 0, message, (), None)
    for handler in _file_handlers(log_file):
        handler.handle(record)


# ---------------------------------------------------------------------------- the run


# the run directory a Run picked, by the id of the config it wrote it into (dropped with the config)
_picked_for: dict[int, str] = {}


class Run:
    """The directory of each verb one config runs: picked when the Run is made (or Hydra's,
    under the commands, or the config's ``paths.output_dir``), created when a verb starts,
    written (config, log, the error it ended with), kept or removed when the verb ends.

    :class:`m3l.engine.experiment.Experiment` holds one (``experiment.run``); every verb runs
    inside :meth:`running`, and marks the start of Lightning with :meth:`start`.
    """

    def __init__(self, cfg: DictConfig, verb: str) -> None:
        self.cfg = cfg
        paths = cfg.paths
        self.verbs_run: list[str] = []  # the verbs run so far, each in its own directory
        self.started = False  # whether the current verb got as far as running Lightning
        self.made: list[Path] = []  # directories the current verb created
        self.own = (
            OmegaConf.is_missing(paths, "output_dir")
            or paths.get("output_dir") is None
            # a config an earlier Run picked its directory in, made into a new Experiment
            or _picked_for.get(id(cfg)) == str(paths.output_dir)
        )
        if self.own:
            self._pick(verb)
        elif is_rank_zero() and not self.is_hydra_run_dir():
            # (Hydra's own run directory is fresh; other ranks share rank zero's)
            check_output_dir_free(self.path)
        if "run_id" in cfg and cfg.get("run_id") is None:  # a run known by its first directory's name
            with open_dict(cfg):
                cfg.run_id = self.path.name

    @property
    def path(self) -> Path:
        return Path(str(self.cfg.paths.output_dir))

    def _pick(self, verb: str) -> None:
        base = Path(str(self.cfg.paths.runs_dir)) / str(self.cfg.name) / verb / timestamp()
        with open_dict(self.cfg):
            self.cfg.paths.output_dir = str(pick_dir(base))
        if id(self.cfg) not in _picked_for:
            weakref.finalize(self.cfg, _picked_for.pop, id(self.cfg), None)
        _picked_for[id(self.cfg)] = str(self.cfg.paths.output_dir)
        self._verb = verb

    def is_hydra_run_dir(self) -> bool:
        hydra_dir = _hydra_run_dir()
        return hydra_dir is not None and hydra_dir.resolve() == self.path.resolve()

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

    def start(self) -> None:
        """Lightning starts now: from here on, the verb's directory stays whatever happens."""
        self.started = True

    @contextmanager
    def running(self, verb: str) -> Iterator[None]:
        """Claim the verb's directory, log into its ``<verb>.log``; when the verb fails, say why
        in the log, and remove what it created if it had not started Lightning."""
        from m3l.records.tracking import run_log

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

    @contextmanager
    def recording(self, verb: str) -> Iterator[None]:
        """Copy the log records into the verb's ``<verb>.log`` meanwhile, after the verb ended:
        the report a front end adds (``mtl.Trainer``'s metrics per head, Delta_m). Under the
        commands Hydra's job log is that file already."""
        from m3l.records.tracking import run_log

        if not is_rank_zero() or self.is_hydra_run_dir():
            yield
            return
        with run_log(self.path / f"{verb}.log"):
            yield

    def ensure(self) -> None:
        """Create the directory if it does not exist yet (rank zero writes into it first)."""
        if not self.path.exists():
            self.made = claim_dir(self.path)

    def write_config(self) -> Path:
        """Write the resolved config as the run's ``config.yaml`` (rank zero); its path."""
        path = self.path / "config.yaml"
        if is_rank_zero():
            self.ensure()
            cfg = OmegaConf.to_container(self.cfg, resolve=True, throw_on_missing=False)
            if isinstance(cfg, dict):
                cfg.pop("m3l_choices", None)
            path.write_text(OmegaConf.to_yaml(cfg))
        return path

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
        return False  # Hydra's run directory: the command line removes it (remove_unused_hydra_run_dir)


def discard_failed_command_run(cfg: Any, run: Run | None) -> None:
    """The command line's end of a failed job: Hydra's run directory goes when the verb did
    not start Lightning and the directory holds nothing but its record; never fails."""
    if run is not None and run.started:
        return
    try:
        remove_unused_hydra_run_dir(Path(str(cfg.paths.runs_dir)))
    except Exception:  # noqa: BLE001 - tidying up must never hide the error being reported
        log.debug("could not remove the unused run directory", exc_info=True)
