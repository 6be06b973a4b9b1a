"""Every logger on a real short run, reading back what it wrote: TensorBoard event files,
CSV, the W&B offline run file, the MLflow sqlite store and a real ``mlflow server``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from m3l.config import compose
from tests.conftest import run_cli
from tests.e2e.conftest import TOY_CONFIGS, toy_env, wandb_records

SHORT = ["trainer.max_epochs=2", "data.n_train=16"]


def _run_dir(env: dict[str, str], verb: str = "train") -> Path:
    (run_dir,) = sorted((Path(env["M3L_RUNS_DIR"]) / "toy" / verb).iterdir())
    return run_dir


@pytest.mark.parametrize(
    "logger", ["tensorboard", "csv", "wandb", pytest.param("mlflow", marks=pytest.mark.slow), "many", "none"]
)
def test_logger_configs_compose_and_instantiate(logger: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from hydra.utils import instantiate

    monkeypatch.setenv("M3L_CONFIG_PATH", str(TOY_CONFIGS))
    monkeypatch.setenv("M3L_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    cfg = compose("toy", [f"logger={logger}"])
    cfg.paths.output_dir = str(tmp_path / "run")
    expected = {"many": {"tensorboard", "csv"}, "none": set()}.get(logger, {logger})
    assert set(cfg.logger) == expected
    for name in cfg.logger:
        assert instantiate(cfg.logger[name]) is not None


def test_default_logger_is_tensorboard(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("M3L_CONFIG_PATH", str(TOY_CONFIGS))
    monkeypatch.chdir(tmp_path)
    cfg = compose("toy")
    assert list(cfg.logger) == ["tensorboard"]
    assert cfg.logger.tensorboard._target_ == "lightning.pytorch.loggers.TensorBoardLogger"


@pytest.mark.slow
def test_four_loggers_at_once_read_back(tmp_path: Path, workdir: Path):
    env = toy_env(tmp_path)
    result = run_cli("train", "model=toy", *SHORT, "logger=[tensorboard,csv,wandb,mlflow]", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    run_dir = _run_dir(env)
    runs_dir = Path(env["M3L_RUNS_DIR"])
    assert not (workdir / "mlruns").exists() and not list(workdir.iterdir()), "nothing is written to the CWD"

    # TensorBoard: scalars, restoration examples as images, the resolved config as hparams
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"train/loss", "val/psnr", "val/ssim"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("val/psnr")] == [3, 7]
    assert {"examples/0", "examples/1"} <= set(tags["images"])
    hparams = yaml.safe_load((run_dir / "tensorboard" / "hparams.yaml").read_text())
    assert hparams["name"] == "toy" and hparams["trainer"]["max_epochs"] == 2

    # CSV
    csv_text = (run_dir / "csv" / "metrics.csv").read_text().splitlines()
    assert "val/psnr" in csv_text[0].split(",")
    assert yaml.safe_load((run_dir / "csv" / "hparams.yaml").read_text())["data"]["n_train"] == 16

    # W&B offline (WANDB_MODE=offline from the environment): run name, config, history, images
    (run_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    records = list(wandb_records(run_file))
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.display_name == "toy" and run.project == "m3l"
    config = {
        i.key: json.loads(i.value_json)
        for r in records
        if r.WhichOneof("record_type") == "config"
        for i in r.config.update
    }
    assert config["trainer"]["max_epochs"] == 2 and config["name"] == "toy"
    history_keys = {
        i.key or "/".join(i.nested_key)
        for r in records
        if r.WhichOneof("record_type") == "history"
        for i in r.history.item
    }
    assert {"train/loss", "val/psnr"} <= history_keys
    assert any(key.startswith("examples/0/") for key in history_keys)  # an image entry
    assert list(run_file.parent.glob("files/media/images/examples/0_*.png"))

    # MLflow sqlite store: params, metrics, config + checkpoints + images as artifacts
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{runs_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("toy")
    (mlrun,) = client.search_runs([experiment.experiment_id])
    assert mlrun.info.status == "FINISHED" and mlrun.info.run_name == "train"
    assert mlrun.data.params["trainer/max_epochs"] == "2" and mlrun.data.params["data/n_train"] == "16"
    assert "val/psnr" in mlrun.data.metrics
    assert mlrun.data.tags["m3l.run_dir"] == str(run_dir)
    artifacts = {a.path for a in client.list_artifacts(mlrun.info.run_id)}
    assert {"config.yaml", "last", "examples"} <= artifacts
    assert [a.path for a in client.list_artifacts(mlrun.info.run_id, "last")].count("last/last.ckpt") == 1
    logged_config = yaml.safe_load(
        Path(client.download_artifacts(mlrun.info.run_id, "config.yaml", str(tmp_path))).read_text()
    )
    assert logged_config["trainer"]["max_epochs"] == 2
    assert Path(experiment.artifact_location.removeprefix("file://")).parent == runs_dir.resolve()


@pytest.mark.slow
def test_mlflow_server_over_http(mlflow_server: str, tmp_path: Path, workdir: Path):
    env = toy_env(tmp_path)
    result = run_cli(
        "train",
        "model=toy",
        *SHORT,
        "logger=mlflow",
        f"logger.mlflow.tracking_uri={mlflow_server}",
        "logger.mlflow.experiment_name=toy_http",
        "+logger.mlflow.tags.team=restoration",
        cwd=workdir,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("toy_http")
    (mlrun,) = client.search_runs([experiment.experiment_id])
    assert mlrun.info.status == "FINISHED"
    assert mlrun.data.tags["team"] == "restoration" and mlrun.data.tags["m3l.verb"] == "train"
    assert mlrun.data.params["name"] == "toy"
    history = client.get_metric_history(mlrun.info.run_id, "val/psnr")
    assert [m.step for m in history] == [3, 7]
    paths = {a.path for a in client.list_artifacts(mlrun.info.run_id)}
    assert {"config.yaml", "last"} <= paths
    ckpt = client.download_artifacts(mlrun.info.run_id, "last/last.ckpt", str(tmp_path))
    assert Path(ckpt).stat().st_size > 0
    assert not (Path(env["M3L_RUNS_DIR"]) / "mlflow.db").exists()
