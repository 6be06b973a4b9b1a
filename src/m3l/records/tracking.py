"""Experiment tracking glue that Lightning's loggers leave to the application.

* :class:`MLFlowLogger` is Lightning's, plus what m3l promises about MLflow: a local store
  keeps its artifacts next to the store (not in the current directory), the resolved config
  is logged as an artifact (``config.yaml``) besides the flattened parameters, and the run
  directory is a tag.
* :func:`sqlite_uri` turns a path into the ``sqlite:///...`` URL MLflow and Optuna expect.
* :func:`active_mlflow` reads what the user set with ``mlflow.set_tracking_uri`` /
  ``mlflow.set_experiment`` (or ``MLFLOW_TRACKING_URI`` / ``MLFLOW_EXPERIMENT_NAME``), which
  m3l's MLflow loggers honour; :func:`set_run_tags` tags a logger's run.
* :func:`mlflow_logger` is the logger ``logger=mlflow`` configures, built in Python
  (``mtl.Trainer(mlflow=True)``): the same store (``<runs dir>/mlflow.db``) and defaults.
* :func:`attach_mlflow_run` points an MLflow logger at the run a resumed ``mtl.Trainer`` launch
  continues (found by id, or by its ``m3l.run_id`` tag); :meth:`MLFlowLogger.log_hyperparams`
  logs a resumed run's changed settings as ``<name>.resume_<n>``.
* :func:`run_log` writes m3l's and Lightning's log records into a run's ``<verb>.log``
  where no Hydra app does (Hydra writes that file under the commands).

W&B, TensorBoard and CSV need nothing beyond their configs in ``configs/logger/``.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger as _LightningMLFlowLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import OmegaConf

from m3l._compat.lightning import (
    flat_params,
    mlflow_logger_client,
    mlflow_logger_experiment_name,
    mlflow_logger_run_id,
    mlflow_logger_started,
    set_mlflow_logger_run,
)
from m3l._compat.mlflow import active_experiment_id, tracking_uri_is_set
from m3l.errors import ConfigError, M3LError

log = logging.getLogger(__name__)

_SQLITE = "sqlite:///"


def sqlite_uri(path: str | Path) -> str:
    """``sqlite:///<absolute path>``, creating the parent directory (a relative path is taken
    from the current directory, as the user typed it)."""
    target = Path(path).expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    return f"{_SQLITE}{target}"


def active_mlflow() -> tuple[str | None, str | None]:
    """``(tracking_uri, experiment_name)`` the user set in this process, each ``None`` when
    unset: ``mlflow.set_tracking_uri(...)`` or ``MLFLOW_TRACKING_URI``, and
    ``mlflow.set_experiment(...)`` or ``MLFLOW_EXPERIMENT_NAME`` / ``MLFLOW_EXPERIMENT_ID``."""
    import os

    try:
        import mlflow
    except ImportError:
        return os.environ.get("MLFLOW_TRACKING_URI"), os.environ.get("MLFLOW_EXPERIMENT_NAME")
    uri = mlflow.get_tracking_uri() if tracking_uri_is_set() else None
    experiment_id = active_experiment_id() or os.environ.get("MLFLOW_EXPERIMENT_ID")
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if experiment_id:
        found = mlflow.tracking.MlflowClient(uri).get_experiment(str(experiment_id))
        name = found.name if found is not None else name
    return uri, name


@rank_zero_only
def set_run_tags(logger: Any, tags: Mapping[str, Any]) -> None:
    """Tag the run of an MLflow logger (any other logger is left alone)."""
    if type(logger).__name__ == "MLFlowLogger" and tags:
        for key, value in tags.items():
            logger.experiment.set_tag(logger.run_id, str(key), str(value))


def mlflow_logger(
    runs_dir: str | Path,
    experiment_name: str | None = None,
    default_experiment: str = "m3l",
    option: str = "logger=mlflow",
    **kwargs: Any,
) -> MLFlowLogger:
    """The MLFlowLogger of ``configs/logger/mlflow.yaml``, built in Python: on the tracking URI
    set with ``mlflow.set_tracking_uri`` (or ``MLFLOW_TRACKING_URI``), else on
    ``sqlite:///<runs_dir>/mlflow.db``; the experiment ``experiment_name``, else the one set with
    ``mlflow.set_experiment``, else ``default_experiment``. ``option`` names the setting that
    asked for it, in the message when mlflow is not installed."""
    if importlib.util.find_spec("mlflow") is None:
        raise M3LError(
            f"{option} needs the mlflow package.\n  fix: pip install 'm3l[mlflow]', or log with another "
            "logger (TensorBoard, W&B, CSV)"
        )
    user_uri, user_experiment = active_mlflow()
    return MLFlowLogger(
        tracking_uri=user_uri or f"{_SQLITE}{Path(runs_dir) / 'mlflow.db'}",
        experiment_name=experiment_name or user_experiment or default_experiment,
        **kwargs,
    )


_RUN_LOGGERS = ("m3l", "lightning.pytorch")


@contextmanager
def run_log(path: Path) -> Iterator[None]:
    """Copy the log records of m3l and Lightning (INFO and above) into ``path`` meanwhile; where
    nothing configured logging (a plain script or notebook, not the commands: Hydra configures
    it), m3l's records also go to the terminal, as Lightning's own do, so that a Python call says
    what the command would (which weights ``best`` took, what was written where)."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    handler.setLevel(logging.INFO)
    console = None
    if not logging.getLogger().handlers and not logging.getLogger("m3l").handlers:
        console = logging.StreamHandler()
        console.setFormatter(logging.Formatter("m3l: %(message)s"))
        console.setLevel(logging.INFO)
        logging.getLogger("m3l").addHandler(console)
    lowered = []
    for name in _RUN_LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            lowered.append((logger, logger.level))
            logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for name in _RUN_LOGGERS:
            logging.getLogger(name).removeHandler(handler)
        if console is not None:
            logging.getLogger("m3l").removeHandler(console)
        for logger, level in lowered:
            logger.setLevel(level)
        handler.close()


def _local_store_path(tracking_uri: str) -> Path | None:
    """The folder of a sqlite tracking store (file stores keep their own artifacts)."""
    if tracking_uri.startswith(_SQLITE):
        return Path(tracking_uri[len(_SQLITE) :]).parent
    return None


class MLFlowLogger(_LightningMLFlowLogger):
    """Lightning's ``MLFlowLogger`` with m3l's defaults.

    Args:
        tracking_uri: ``sqlite:///path.db`` (relative paths are made absolute and their folder
            is created), ``file:`` or ``http(s)://host:port`` of an ``mlflow server``.
        artifact_location: where a *new* experiment keeps artifacts. For a local store it
            defaults to ``mlartifacts/`` beside the store; for a server, the server decides.
        run_dir: the m3l run directory, recorded as the tag ``m3l.run_dir``.
        **kwargs: the arguments of ``lightning.pytorch.loggers.MLFlowLogger``.

    Without ``tracking_uri`` (or ``experiment_name``) the ones set with
    ``mlflow.set_tracking_uri`` / ``mlflow.set_experiment`` are used. Every run is tagged
    ``m3l.version``.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        artifact_location: str | None = None,
        run_dir: str | None = None,
        tags: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if tracking_uri is None or kwargs.get("experiment_name") is None:
            user_uri, user_experiment = active_mlflow()
            tracking_uri = tracking_uri or user_uri
            if kwargs.get("experiment_name") is None:
                kwargs["experiment_name"] = user_experiment or "lightning_logs"
        if tracking_uri and tracking_uri.startswith(_SQLITE):
            tracking_uri = sqlite_uri(tracking_uri[len(_SQLITE) :])
        store = _local_store_path(tracking_uri) if tracking_uri else None
        if artifact_location is None and store is not None:
            artifact_location = (store / "mlartifacts").resolve().as_uri()
        elif artifact_location and "://" not in artifact_location and ":" not in artifact_location[:3]:
            artifact_location = Path(artifact_location).expanduser().resolve().as_uri()
        from m3l import __version__

        all_tags = {"m3l.version": __version__, **{str(k): str(v) for k, v in (tags or {}).items()}}
        if run_dir:
            all_tags["m3l.run_dir"] = str(Path(run_dir).resolve())
        super().__init__(tracking_uri=tracking_uri, artifact_location=artifact_location, tags=all_tags, **kwargs)

    @property
    def experiment(self) -> Any:
        """Lightning's MLflow client, created without changing the process's tracking URI:
        Lightning sets it globally and mlflow exports it as ``MLFLOW_TRACKING_URI``, so a later
        run (or a subprocess) would otherwise go to this logger's store."""
        if mlflow_logger_started(self):
            return super().experiment
        import mlflow

        previous = mlflow.get_tracking_uri() if tracking_uri_is_set() else None
        try:
            return super().experiment
        finally:
            if mlflow.get_tracking_uri() != previous or previous is None:
                mlflow.set_tracking_uri(previous)

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        """Log flattened parameters, and the whole resolved config as ``config.yaml``.

        A run that already holds parameters (resumed with ``run_id=``) keeps them: MLflow
        refuses to change a logged parameter, so a setting whose value changed since is logged
        as ``<name>.resume_<n>`` (the ``n``-th resumption that changed settings), the run is
        tagged ``m3l.resume_<n>`` with what changed (``max_epochs: 2 -> 3``) and this launch's
        config is logged as ``config.resume_<n>.yaml``. Unchanged settings are not logged again.
        """
        from mlflow.entities import Param

        values = {k: _param_value(v) for k, v in flat_params(params).items()}
        logged = self.experiment.get_run(self.run_id).data.params
        # where each launch writes differs by design: not a changed setting (the output_dir
        # param keeps the first launch's; the m3l.run_dir tag names the newest)
        changes = {k: v for k, v in resumed_changes(logged, values).items() if not _per_launch(k)}
        run_dir = (getattr(self, "tags", None) or {}).get("m3l.run_dir")
        if logged and run_dir:
            self.experiment.set_tag(self.run_id, "m3l.run_dir", run_dir)
        new = {k: v for k, v in values.items() if k not in logged}
        config_name = "config.yaml"
        if changes:
            if self._resume_number is None:
                self._resume_number = 1 + max(_resume_numbers(logged), default=0)
            n = self._resume_number
            new.update({f"{key}.resume_{n}": now for key, (_, now) in changes.items()})
            described = "; ".join(f"{key}: {then} -> {now}" for key, (then, now) in changes.items())
            self.experiment.set_tag(self.run_id, f"m3l.resume_{n}", described[:_MAX_TAG])
            log.warning(
                "MLflow run %s resumed with other settings (%s): logged as %s",
                self.run_id,
                described,
                ", ".join(f"{key}.resume_{n}" for key in changes),
            )
            config_name = f"config.resume_{n}.yaml"
        items = [Param(key=k, value=v) for k, v in new.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 parameters per call
            self.experiment.log_batch(run_id=self.run_id, params=items[start : start + 100], **self._log_batch_kwargs)
        if isinstance(params, Mapping) and (not logged or changes):
            text = OmegaConf.to_yaml(OmegaConf.create(_plain(params)))
            self.experiment.log_text(self.run_id, text, config_name)

    _resume_number: int | None = None


def _param_value(value: Any) -> str:
    """A parameter's value as MLflow stores it (at most its longest allowed value)."""
    try:
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
    except ImportError:  # an older mlflow
        MAX_PARAM_VAL_LENGTH = 250  # noqa: N806
    return str(value)[:MAX_PARAM_VAL_LENGTH]


_MAX_TAG = 5000


#: the last part of a parameter that names where a launch writes (new at every launch)
_PER_LAUNCH = ("output_dir", "default_root_dir", "run_dir")


def _per_launch(key: str) -> bool:
    return key.replace(".", "/").rpartition("/")[2] in _PER_LAUNCH


def _resume_numbers(params: Mapping[str, str]) -> list[int]:
    """The ``n`` of the ``<name>.resume_<n>`` parameters a run holds."""
    numbers = []
    for key in params:
        _, sep, n = key.rpartition(".resume_")
        if sep and n.isdigit():
            numbers.append(int(n))
    return numbers


def resumed_changes(logged: Mapping[str, str], values: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """``{name: (value then, value now)}`` of the parameters in ``values`` whose newest logged
    value in ``logged`` (``<name>.resume_<n>`` of the highest ``n``, else ``<name>``) differs."""
    changes = {}
    for key, now in values.items():
        if key not in logged:
            continue
        latest = [
            (int(k.rpartition(".resume_")[2]), v)
            for k, v in logged.items()
            if k.startswith(f"{key}.resume_") and k.rpartition(".resume_")[2].isdigit()
        ]
        then = max(latest)[1] if latest else logged[key]
        if then != now:
            changes[key] = (then, now)
    return changes


def _plain(value: Any) -> Any:
    """A structure OmegaConf accepts (unknown objects become their ``repr``)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


# ---------------------------------------------------------------------------- resuming an MLflow run


def is_mlflow_logger(logger: Any) -> bool:
    """Whether ``logger`` is an MLflow logger (Lightning's or m3l's)."""
    return isinstance(logger, _LightningMLFlowLogger)


def attach_mlflow_run(tracker: Any, run_id: str | None, settings: Mapping[str, Any]) -> str | None:
    """Point the MLflow logger at the run ``run_id`` resumes (a new MLflow run, tagged
    ``m3l.run_id``, when that run never logged to this store); returns the run's id."""
    if run_id is None:
        return tracker.run_id
    own = mlflow_logger_run_id(tracker)
    if own is not None and own != run_id:
        raise ConfigError(
            f"launch(run_id={run_id!r}) resumes one run, and logger=MLFlowLogger(run_id={own!r}) logs another.\n"
            "  fix: leave run_id out of the MLFlowLogger (the launch's run_id picks the MLflow run)"
        )
    mlflow_id = run_id if _mlflow_run_exists(tracker, run_id) else _tagged_run(tracker, run_id)
    if mlflow_id is None:  # the run never logged to this store: a new MLflow run, tagged with its id
        tracker.tags = {**(tracker.tags or {}), "m3l.run_id": run_id}
        return run_id
    set_mlflow_logger_run(tracker, mlflow_id)
    if not isinstance(tracker, MLFlowLogger):  # Lightning's own logger: MLflow refuses a changed parameter
        _refuse_changed_params(tracker, mlflow_id, settings)
    # Lightning applies a logger's tags to the runs it creates only: a resumed run gets them too
    set_run_tags(tracker, {**(tracker.tags or {}), "m3l.run_id": run_id})
    return run_id


def _mlflow_run_exists(tracker: Any, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        run = mlflow_logger_client(tracker).get_run(run_id)
    except MlflowException:
        return False
    return run.info.lifecycle_stage != "deleted"


def _tagged_run(tracker: Any, run_id: str) -> str | None:
    """The newest MLflow run of the logger's experiment tagged ``m3l.run_id=run_id`` (the
    MLflow run of an m3l run whose first launch did not log to MLflow), if any."""
    client = mlflow_logger_client(tracker)
    experiment = client.get_experiment_by_name(mlflow_logger_experiment_name(tracker))
    if experiment is None:
        return None
    quoted = run_id.replace("'", "\\'")
    found = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`m3l.run_id` = '{quoted}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0].info.run_id if found else None


def _refuse_changed_params(tracker: Any, run_id: str, settings: Mapping[str, Any]) -> None:
    logged = mlflow_logger_client(tracker).get_run(run_id).data.params
    values = {k: str(v)[:250] for k, v in flat_params(dict(settings)).items()}
    changes = resumed_changes(logged, values)
    if changes:
        what = "; ".join(f"{key}: {then} -> {now}" for key, (then, now) in list(changes.items())[:4])
        raise ConfigError(
            f"launch(run_id={run_id!r}) resumes an MLflow run with other settings ({what}), and "
            f"lightning's MLFlowLogger cannot log a changed parameter.\n  fix: log with "
            "m3l.records.tracking.MLFlowLogger (same arguments), which logs each change as <name>.resume_<n>, or "
            "resume with the settings of the run"
        )
