"""End to end: Trainer.launch with real MultiMNIST data, results, artifacts, resume."""

from __future__ import annotations

import json
import re

import lightning as L
import pytest
import torch

from m3l import mtl
from m3l.mtl.artifacts import load_backbone, load_head
from torchmetrics.classification import MulticlassAccuracy

from .conftest import FAST, LeNet, make_task

pytestmark = pytest.mark.slow  # trains or exports for real: CI runs it, the fast loop does not


def test_launch_joint_ew_trains_and_saves(tmp_path, tasks, adam):
    torch.manual_seed(0)
    results = mtl.Trainer(LeNet(), tasks, optimizer=adam, root_dir=tmp_path, max_epochs=2, **FAST).launch(mtl.Joint())
    assert set(results.metrics) == {"left", "right"}
    for head in ("left", "right"):
        assert 0.0 <= results.metrics[head]["acc"] <= 1.0
        assert results.metrics[head]["loss"] < 2.5
    assert results.run_id and results.checkpoint.exists()
    assert (results.log_dir / "train.log").read_text().count("preflight ok") == 1
    assert list((results.log_dir / "csv").glob("version_0/metrics.csv"))
    card = json.loads(results.artifacts["backbone"].with_suffix(".json").read_text())
    assert card["tasks"] == ["left", "right"] and card["out_channels"] == 50
    assert card["metrics"]["left"]["acc"] == pytest.approx(results.metrics["left"]["acc"])
    backbone = load_backbone(results.artifacts["backbone"])
    assert isinstance(backbone, LeNet)
    assert torch.equal(backbone.fc.weight, results.module.backbone.fc.weight.cpu())
    head = load_head(results.artifacts["left"], backbone=results.artifacts["backbone"])
    x = tasks[0].val[0][0][None]
    with torch.no_grad():
        assert torch.allclose(head(backbone(x)), results.module.eval()(x, task="left")["left"])


def test_launch_again_with_run_id_resumes(tmp_path, digits, adam):
    first = mtl.Trainer(
        LeNet(),
        [make_task(digits, "left")],
        optimizer=adam,
        root_dir=tmp_path,
        max_epochs=1,
        limit_train_batches=2,
        **FAST,
    ).launch()
    module = first.module
    steps = module.train_steps
    again = mtl.Trainer(
        LeNet(), [make_task(digits, "left")], optimizer=adam, root_dir=tmp_path, limit_train_batches=2, **FAST
    ).launch(run_id=first.run_id, max_epochs=2)
    assert again.run_id == first.run_id
    # the commands' run directories: timestamped, and a resumed launch writes into a new one
    assert first.log_dir.parent == tmp_path / "mtl" / "train" and first.log_dir.name == first.run_id
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d(_\d+)?", first.run_id)
    assert again.log_dir.parent == first.log_dir.parent and again.log_dir != first.log_dir
    assert (again.log_dir / "config.yaml").exists() and "Resuming from" in (again.log_dir / "train.log").read_text()
    assert again.module.train_steps == steps + 2  # continued, not restarted
    assert again.module.current_epoch == 2


def test_test_split_and_given_baselines_give_delta_m(tmp_path, digits, adam):
    task = make_task(digits, "left", test=digits["left/test"])
    results = mtl.Trainer(
        LeNet(), [task], optimizer=adam, root_dir=tmp_path, max_epochs=1, baselines={"left": {"acc": 0.5}}, **FAST
    ).launch()
    acc = results.test["left"]["acc"]
    assert results.metrics is results.test
    assert results.delta_m == pytest.approx(100 * (acc - 0.5) / 0.5)


def test_mlflow_run_id_and_resume_or_clear_message(tmp_path, digits, adam):
    import importlib.util

    from m3l.errors import M3LError

    def trainer():
        return mtl.Trainer(
            LeNet(),
            [make_task(digits, "left")],
            optimizer=adam,
            root_dir=tmp_path,
            mlflow=True,
            limit_train_batches=1,
            **FAST,
        )

    if importlib.util.find_spec("mlflow") is None:
        with pytest.raises(M3LError, match="(?s)mlflow=True needs the mlflow package.*pip install 'm3l\\[mlflow\\]'"):
            trainer().launch()
        return
    import os

    before = os.environ.get("MLFLOW_TRACKING_URI")
    first = trainer().launch(max_epochs=1)
    assert (tmp_path / "mlflow.db").exists() and first.run_id
    # the process's tracking URI is left as it was (a later launch elsewhere is not redirected here)
    assert os.environ.get("MLFLOW_TRACKING_URI") == before
    again = trainer().launch(run_id=first.run_id, max_epochs=2)
    assert again.run_id == first.run_id and again.module.current_epoch == 2


def test_resume_refuses_a_planted_pickle_even_with_force_no_weights_only(tmp_path, digits, adam, monkeypatch):
    from m3l.errors import CheckpointError
    from tests.weights.test_checkpoints import plant

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    target = tmp_path / "pwned"
    planted = tmp_path / "runs" / "mtl" / "train" / "planted" / "checkpoints" / "last.ckpt"
    planted.parent.mkdir(parents=True)
    plant(planted, target)
    trainer = mtl.Trainer(
        LeNet(),
        [make_task(digits, "left")],
        optimizer=adam,
        root_dir=tmp_path / "runs",
        max_epochs=1,
        limit_train_batches=2,
        **FAST,
    )
    with pytest.raises(CheckpointError, match="checkpoint_trusted=True") as err:
        trainer.launch(run_id="planted")
    assert "last.ckpt" in str(err.value)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        trainer.launch(ckpt_path=planted)
    assert not target.exists()


class _NaNFromEpoch(L.Callback):
    """Makes the backbone's weights NaN when epoch ``epoch`` (0-based) starts: the loss
    becomes NaN in that epoch and the module raises at its end."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                for p in pl_module.backbone.parameters():
                    p.fill_(float("nan"))


def test_nan_in_epoch_3_leaves_the_checkpoint_of_epoch_2_to_resume(tmp_path, digits, adam):
    from m3l.mtl.errors import NonFiniteLossError

    def trainer(*callbacks):
        return mtl.Trainer(
            LeNet(),
            [make_task(digits, "left")],
            optimizer=adam,
            root_dir=tmp_path,
            limit_train_batches=2,
            callbacks=callbacks,
            **FAST,
        )

    with pytest.raises(NonFiniteLossError):
        trainer(_NaNFromEpoch(2)).launch(max_epochs=4)
    (last,) = tmp_path.glob("mtl/train/*/checkpoints/last.ckpt")
    run_id = last.parent.parent.name
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["epoch"] == 1  # the end of epoch 2 (0-based 1)
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]

    again = trainer().launch(run_id=run_id, max_epochs=4)
    assert again.module.current_epoch == 4 and again.module.train_steps == 8  # 4 saved + epochs 3 and 4
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]  # the failed launch's, kept
    assert sorted(p.name for p in again.checkpoint.parent.iterdir()) == ["last.ckpt"]


def test_a_run_id_with_nothing_to_resume_is_refused_listing_the_runs(tmp_path, digits, adam):
    from m3l.errors import CheckpointError

    trainer = mtl.Trainer(
        LeNet(), [make_task(digits, "left")], optimizer=adam, root_dir=tmp_path, limit_train_batches=1, **FAST
    )
    with pytest.raises(
        CheckpointError,
        match=r"run_id='nope': nothing to resume: no run 'nope' under .*mtl/train\. "
        r"Runs there with a last checkpoint: \(none\)\. Leave run_id out",
    ):
        trainer.launch(run_id="nope")
    assert not (tmp_path / "mtl").exists()  # nothing was started


def test_trainer_arguments_that_are_objects_reach_lightning_beside_the_config(tmp_path, tasks):
    from lightning.pytorch.profilers import PassThroughProfiler

    profiler = PassThroughProfiler()
    experiment = mtl.Trainer(LeNet(), tasks, root_dir=tmp_path, profiler=profiler, **FAST).experiment(mtl.Alternating())
    assert "profiler" not in experiment.cfg.trainer and experiment.cfg.trainer.limit_val_batches == 1
    assert experiment.make_trainer().profiler is profiler
    assert experiment.data.schedule is experiment.net.algorithm  # the datamodule is handed the schedule


def test_fast_dev_run_writes_no_checkpoint(tmp_path, digits, adam):
    results = mtl.Trainer(
        LeNet(), [make_task(digits, "left")], optimizer=adam, root_dir=tmp_path, **{**FAST, "fast_dev_run": True}
    ).launch()
    assert results.checkpoint is None and not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.parametrize(
    ("name", "fix"),
    [
        ("algorithm", r"launch\(mtl.Sequential"),
        ("use_mlflow", "mlflow=True"),
        ("device", "accelerator="),
        ("config", "config.ini"),
        ("max_epoch", "did you mean max_epochs"),
    ],
)
def test_unknown_arguments_fail_at_construction_with_the_equivalent(tasks, name, fix):
    from m3l.mtl.errors import TrainerArgumentError

    with pytest.raises(TrainerArgumentError, match=rf"(?s)unknown argument {name}=.*fix: .*{fix}"):
        mtl.Trainer(LeNet(), tasks, **{name: "x"})


def test_without_val_sets_train_and_test_are_evaluated_every_epoch(tmp_path, digits, adam):
    import csv

    tasks = [
        mtl.Task(
            side,
            make_task(digits, side).head,
            torch.nn.CrossEntropyLoss(),
            train=digits[f"{side}/train"],
            test=digits[f"{side}/test"],
            metrics={"acc": MulticlassAccuracy(num_classes=10, average="micro")},
        )
        for side in ("left", "right")
    ]
    results = mtl.Trainer(
        LeNet(),
        tasks,
        optimizer=adam,
        root_dir=tmp_path,
        max_epochs=2,
        eval_splits=("train", "test"),
        limit_train_batches=2,
        enable_progress_bar=False,
        accelerator="cpu",
    ).launch(mtl.Alternating())
    rows = list(csv.DictReader((results.log_dir / "csv" / "version_0" / "metrics.csv").open()))
    for split in ("train", "test"):
        for head in ("left", "right"):
            values = [float(r[f"eval_{split}/{head}/acc"]) for r in rows if r.get(f"eval_{split}/{head}/acc")]
            assert len(values) == 2 and all(0.0 <= v <= 1.0 for v in values)  # one per epoch
            assert sum(1 for r in rows if r.get(f"eval_{split}/{head}/loss")) == 2
        assert sum(1 for r in rows if r.get(f"eval_{split}/loss")) == 2
    assert set(results.epoch_eval) == {"train", "test"} and set(results.epoch_eval["train"]["left"]) == {"acc", "loss"}
    # the full train split is evaluated: 96 samples, not the 2 training batches
    assert results.epoch_eval["train"]["left"]["acc"] * 96 == pytest.approx(
        round(results.epoch_eval["train"]["left"]["acc"] * 96), abs=1e-4
    )


def test_eval_splits_are_checked_and_reachable_from_the_command_line():
    from m3l.config import compose
    from m3l.errors import M3LError

    with pytest.raises(M3LError, match=r"eval_splits=\['train', 'valid'\].*e.g. eval_splits=\[train, test\]"):
        mtl.MultiTaskDataModule({"left": {"train": []}}, eval_splits=["train", "valid"])
    cfg = compose("mtl_multimnist", ["data.eval_splits=[train,test]"])
    assert list(cfg.data.eval_splits) == ["train", "test"]


@pytest.fixture
def user_mlflow(monkeypatch, tmp_path):
    """mlflow.set_tracking_uri / set_experiment as an EMTL user calls them, undone afterwards."""
    mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'm3l[mlflow]')")
    from mlflow.tracking import fluent
    from mlflow.tracking._tracking_service import utils

    monkeypatch.setattr(utils, "_tracking_uri", utils._tracking_uri)
    monkeypatch.setattr(fluent, "_active_experiment_id", fluent._active_experiment_id)
    # mlflow.set_tracking_uri / set_experiment also write these variables: undo them afterwards
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    uri = f"sqlite:///{tmp_path / 'user' / 'mlflow.db'}"
    (tmp_path / "user").mkdir()
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("EMTL Example")
    return uri


def test_mlflow_honours_the_users_store_and_experiment_with_params_and_tags(tmp_path, digits, adam, user_mlflow):
    from mlflow.tracking import MlflowClient

    import m3l

    results = mtl.Trainer(
        LeNet(),
        [make_task(digits, "left"), make_task(digits, "right", batch_size=16)],
        optimizer=adam,
        root_dir=tmp_path / "runs",
        mlflow=True,
        max_epochs=1,
        limit_train_batches=1,
        **FAST,
    ).launch(mtl.Joint(mtl.GradNorm()))
    assert not (tmp_path / "runs" / "mlflow.db").exists()  # the user's store, not m3l's default
    client = MlflowClient(user_mlflow)
    experiment = client.get_experiment_by_name("EMTL Example")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_id == results.run_id and run.info.status == "FINISHED"
    tags, params = run.data.tags, run.data.params
    assert tags["m3l.version"] == m3l.__version__ and tags["m3l.tasks"] == "left,right"
    assert tags["m3l.algorithm"] == "Joint(method=GradNorm)"
    assert tags["m3l.run_dir"] == str(results.log_dir.resolve())  # the launch's run directory
    assert (
        params["algorithm"] == "Joint(method=GradNorm(alpha=1.5, lr=0.025, parameters='last'), mode='max_size_cycle')"
    )
    assert params["optimizer"] == "torch.optim.adam.Adam(lr=0.003)"
    assert params["tasks/right/batch_size"] == "16" and params["tasks/left/samples/train"] == "96"
    assert params["backbone"].startswith("m3l.mtl.examples.multimnist.LeNet(") and params["max_epochs"] == "1"
    assert "val/left/acc" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"backbone.safetensors", "heads", "config.yaml"} <= artifacts


def _mlflow_trainer(digits, adam, tmp_path, **kwargs):
    return mtl.Trainer(
        LeNet(), [make_task(digits, "left")], optimizer=adam, root_dir=tmp_path, limit_train_batches=1, **FAST, **kwargs
    )


def test_resuming_to_train_longer_logs_the_change_in_the_same_mlflow_run(tmp_path, digits, adam, user_mlflow):
    """Issue 27 item 7: max_epochs 2 -> 3 on resume is logged as max_epochs.resume_1, not MLflow's error."""
    from mlflow.tracking import MlflowClient

    first = _mlflow_trainer(digits, adam, tmp_path, max_epochs=2, mlflow=True).launch(mtl.Alternating())
    again = _mlflow_trainer(digits, adam, tmp_path, max_epochs=3, mlflow=True).launch(
        mtl.Alternating(), run_id=first.run_id
    )
    assert again.run_id == first.run_id and again.module.current_epoch == 3 and again.checkpoint.exists()
    (run,) = MlflowClient(user_mlflow).search_runs(
        [MlflowClient(user_mlflow).get_experiment_by_name("EMTL Example").experiment_id]
    )
    assert run.info.run_id == first.run_id
    assert run.data.params["max_epochs"] == "2" and run.data.params["max_epochs.resume_1"] == "3"
    assert run.data.tags["m3l.resume_1"] == "max_epochs: 2 -> 3"
    assert [k for k in run.data.params if ".resume_" in k] == ["max_epochs.resume_1"]


def test_a_users_mlflow_logger_is_the_one_mlflow_run_and_its_id_resumes(tmp_path, digits, adam, user_mlflow):
    """Issue 27 item 8: logger=MLFlowLogger(tags=...), with or without mlflow=True: one MLflow
    run per launch, results.run_id is its id, and that id (or the launch directory's name) resumes."""
    from mlflow.tracking import MlflowClient

    from m3l.records.tracking import MLFlowLogger

    client = MlflowClient(user_mlflow)
    first = _mlflow_trainer(
        digits, adam, tmp_path, max_epochs=1, logger=MLFlowLogger(tags={"team": "vision"}), mlflow=True
    ).launch()
    (run,) = client.search_runs([client.get_experiment_by_name("EMTL Example").experiment_id])
    assert run.info.run_id == first.run_id and run.data.tags["team"] == "vision"
    again = _mlflow_trainer(digits, adam, tmp_path, max_epochs=2, logger=MLFlowLogger(tags={"team": "vision"})).launch(
        run_id=first.log_dir.name
    )
    assert again.run_id == first.run_id and again.module.current_epoch == 2
    (run,) = client.search_runs([client.get_experiment_by_name("EMTL Example").experiment_id])
    assert run.data.params["max_epochs.resume_1"] == "2"


def test_lightnings_own_mlflow_logger_refuses_a_changed_setting_before_anything_is_written(
    tmp_path, digits, adam, user_mlflow
):
    from lightning.pytorch.loggers import MLFlowLogger as LightningMLFlowLogger

    from m3l.errors import ConfigError

    first = _mlflow_trainer(
        digits, adam, tmp_path, max_epochs=1, logger=LightningMLFlowLogger(tracking_uri=user_mlflow)
    ).launch()
    launches = sorted((tmp_path / "mtl" / "train").iterdir())
    with pytest.raises(
        ConfigError, match=r"(?s)other settings \(max_epochs: 1 -> 2\).*m3l.records.tracking.MLFlowLogger"
    ):
        _mlflow_trainer(
            digits, adam, tmp_path, max_epochs=2, logger=LightningMLFlowLogger(tracking_uri=user_mlflow)
        ).launch(run_id=first.run_id)
    assert sorted((tmp_path / "mtl" / "train").iterdir()) == launches


def test_params_tell_runs_with_other_algorithm_arguments_apart(tasks):
    """Issue 27 item 9: every argument of the algorithm and the epochs the run trains for."""
    one, two = (mtl.Trainer(LeNet(), tasks).settings(mtl.Sequential(epochs_per_task=n)) for n in (1, 2))
    assert one["algorithm"] == "Sequential(method=EqualWeighting(), epochs_per_task=1, order=None)"
    assert two["algorithm"] == "Sequential(method=EqualWeighting(), epochs_per_task=2, order=None)"
    assert (one["max_epochs"], two["max_epochs"]) == (2, 4)
    joint = mtl.Trainer(LeNet(), tasks, max_epochs=5).settings(mtl.Joint(mtl.GradNorm(alpha=0.5)))
    assert joint["algorithm"] == "Joint(method=GradNorm(alpha=0.5, lr=0.025, parameters='last'), mode='max_size_cycle')"
    assert joint["max_epochs"] == 5


def test_a_run_started_without_mlflow_keeps_one_mlflow_run_over_its_resumptions(tmp_path, digits, adam, user_mlflow):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(user_mlflow)
    first = _mlflow_trainer(digits, adam, tmp_path, max_epochs=1).launch()
    for epochs in (2, 3):
        again = _mlflow_trainer(digits, adam, tmp_path, max_epochs=epochs, mlflow=True).launch(run_id=first.run_id)
        assert again.run_id == first.run_id and again.module.current_epoch == epochs
    (run,) = client.search_runs([client.get_experiment_by_name("EMTL Example").experiment_id])
    assert run.data.tags["m3l.run_id"] == first.run_id
    assert (run.data.params["max_epochs"], run.data.params["max_epochs.resume_1"]) == ("2", "3")


def test_params_tell_tasks_with_other_loss_weights_apart(digits):
    one, two = (
        mtl.Trainer(LeNet(), [make_task(digits, "left", weight=w)]).settings()["tasks"]["left"]["weight"]
        for w in (1.0, 0.5)
    )
    assert (one, two) == ({"left": 1.0}, {"left": 0.5})
