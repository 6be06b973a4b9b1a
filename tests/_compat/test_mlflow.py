"""Canaries of :mod:`m3l._compat.mlflow` (CI installs the mlflow extra: they fail without it)."""

from __future__ import annotations

import pytest

from m3l._compat import mlflow as compat
from tests._compat import canary


@pytest.fixture
def mlflow_state(monkeypatch):
    """MLflow's process-wide choices (tracking URI, experiment) undone after the test."""
    import mlflow  # the test extra installs it: a missing one fails
    from mlflow.tracking import fluent
    from mlflow.tracking._tracking_service import utils

    monkeypatch.setattr(utils, "_tracking_uri", utils._tracking_uri)
    monkeypatch.setattr(fluent, "_active_experiment_id", fluent._active_experiment_id)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return mlflow


def test_tracking_uri_is_set(mlflow_state, tmp_path, monkeypatch):
    mlflow = mlflow_state
    with canary(
        "MLflow",
        "where it keeps a chosen tracking URI (tracking._tracking_service.utils)",
        "mlflow.tracking_uri_is_set",
    ):
        mlflow.set_tracking_uri(None)
        assert not compat.tracking_uri_is_set(), "no URI chosen, and it says one is"
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
        assert compat.tracking_uri_is_set()
        mlflow.set_tracking_uri(None)
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'env.db'}")
        assert compat.tracking_uri_is_set(), "MLFLOW_TRACKING_URI is not taken for a choice"


def test_active_experiment_id(mlflow_state, tmp_path, monkeypatch):
    mlflow = mlflow_state
    with canary(
        "MLflow",
        "where it keeps the experiment set_experiment chose (tracking.fluent._active_experiment_id)",
        "mlflow.active_experiment_id",
    ):
        assert compat.active_experiment_id() is None
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
        experiment = mlflow.set_experiment("canary")
        monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)  # MLflow 3 exports it too: the kept id alone
        assert compat.active_experiment_id() == experiment.experiment_id
