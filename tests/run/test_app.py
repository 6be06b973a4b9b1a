"""The command line's own decisions before Hydra starts: a cluster config without
``--cluster-launch`` submits (or says where to run), the header names the device."""

from __future__ import annotations

from pathlib import Path

import pytest

from m3l import compose
from m3l.run._app import _cluster_launch, _device_text


def test_cluster_config_with_a_launcher_submits(capsys: pytest.CaptureFixture):
    argv = ["train.py", "model=demo", "cluster=local"]
    assert _cluster_launch("train", argv) == ["train.py", "--multirun", "model=demo", "cluster=local"]
    assert "cluster=local selects the submitit_local launcher: submitting the train job" in capsys.readouterr().err
    # already a multirun, or no cluster: unchanged
    assert _cluster_launch("train", ["t", "-m", "cluster=local"]) == ["t", "-m", "cluster=local"]
    assert _cluster_launch("train", ["t", "model=demo"]) == ["t", "model=demo"]


def test_slurm_cluster_without_sbatch_says_where_to_run(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch on this PATH
    with pytest.raises(SystemExit) as info:
        _cluster_launch("test", ["test.py", "model=demo", "cluster=vulcan", "trainer.gpus=4"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("m3l: error: cluster=vulcan submits the test job to Slurm (submitit_slurm)")
    assert "submission node" in err


def test_user_cluster_config_without_launcher_runs_here(tmp_path: Path, monkeypatch):
    (tmp_path / "cluster").mkdir()
    (tmp_path / "cluster" / "lab.yaml").write_text("# @package _global_\ncluster:\n  qos: high\n")
    monkeypatch.setenv("M3L_CONFIG_PATH", str(tmp_path))
    assert _cluster_launch("train", ["t", "cluster=lab"]) == ["t", "cluster=lab"]


def test_header_device_follows_lightning1_keys():
    assert _device_text(compose("demo", ["trainer=ddp_cpu"])) == "cpu, devices=2, strategy=ddp"
    assert _device_text(compose("demo", ["trainer.gpus=0"])) == "cpu"
