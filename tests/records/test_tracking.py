"""m3l's MLflow logger: a resumed run logs only the settings that changed, not where each launch
writes (new every time), and its m3l.run_dir tag names the newest launch's directory."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest


def test_a_resumed_run_does_not_call_its_new_directory_a_changed_setting(tmp_path: Path, caplog) -> None:
    pytest.importorskip("mlflow")
    from m3l.records.tracking import MLFlowLogger

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = MLFlowLogger(tracking_uri=uri, experiment_name="e", run_dir=str(tmp_path / "a"))
    first.log_hyperparams(
        {
            "paths": {"output_dir": str(tmp_path / "a")},
            "trainer": {"default_root_dir": str(tmp_path / "a"), "max_epochs": 2},
        }
    )
    first.finalize("success")
    again = MLFlowLogger(tracking_uri=uri, experiment_name="e", run_id=first.run_id, run_dir=str(tmp_path / "b"))
    with caplog.at_level(logging.WARNING, logger="m3l"):
        again.log_hyperparams(
            {
                "paths": {"output_dir": str(tmp_path / "b")},
                "trainer": {"default_root_dir": str(tmp_path / "b"), "max_epochs": 3},
            }
        )
    run = again.experiment.get_run(first.run_id)
    assert sorted(k for k in run.data.params if ".resume_" in k) == ["trainer/max_epochs.resume_1"]
    assert run.data.tags["m3l.resume_1"] == "trainer/max_epochs: 2 -> 3"
    assert run.data.tags["m3l.run_dir"] == str((tmp_path / "b").resolve())
    assert "output_dir" not in caplog.text and "default_root_dir" not in caplog.text
