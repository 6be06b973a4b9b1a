"""MLflow's private parts that m3l uses, one function each (see :mod:`m3l._compat`).

MLflow is an optional extra (``m3l[mlflow]``); it is imported inside the functions.
Checked on MLflow 3.17.
"""

from __future__ import annotations


def tracking_uri_is_set() -> bool:
    """Whether this process set MLflow's tracking URI (``mlflow.set_tracking_uri`` or
    ``MLFLOW_TRACKING_URI``), as opposed to MLflow's default.

    Reaches: ``mlflow.tracking._tracking_service.utils.is_tracking_uri_set``. Why: the public
    ``mlflow.get_tracking_uri()`` returns the default when none is set, so a user's choice
    cannot be told from it. Checked on MLflow 3.17.
    """
    from mlflow.tracking._tracking_service import utils

    return bool(utils.is_tracking_uri_set())


def active_experiment_id() -> str | None:
    """The experiment ``mlflow.set_experiment`` chose in this process, or None.

    Reaches: ``mlflow.tracking.fluent._active_experiment_id``. Why: MLflow's public
    ``get_experiment_by_name`` needs the name, and the experiment a user set is kept there
    only (MLflow 3 also exports it as ``MLFLOW_EXPERIMENT_ID``, which m3l reads too). Checked
    on MLflow 3.17.
    """
    from mlflow.tracking import fluent

    value = getattr(fluent, "_active_experiment_id", None)
    return str(value) if value else None
