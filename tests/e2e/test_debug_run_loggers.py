"""A debug run (`debug=fdr`: Lightning's fast_dev_run, which runs with a dummy logger) closes the
MLflow run m3l opened for it: it does not stay RUNNING."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import cli_env, run_cli


@pytest.mark.slow
def test_a_debug_run_leaves_no_mlflow_run_open(tmp_path: Path, workdir: Path) -> None:
    mlflow = pytest.importorskip("mlflow")
    result = run_cli("train", "model=demo", "debug=fdr", "logger=mlflow", cwd=workdir, env=cli_env(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert runs and all(r.info.status == "FINISHED" and r.info.end_time for r in runs), [r.info for r in runs]
