"""Artifacts: round trip, a head on another backbone, a new task on a trained backbone; Delta_m."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from m3l import mtl
from m3l.errors import ConfigError, M3LError
from m3l.mtl.artifacts import ArtifactError, load_backbone, load_head, read_card, save_backbone, save_head
from m3l.mtl.examples.multimnist import Classifier

from .conftest import FAST, LeNet, make_task


def test_round_trip_and_card(tmp_path):
    backbone, head = LeNet(out_features=32), Classifier(in_features=32, num_classes=10)
    save_backbone(backbone, tmp_path / "bb", tasks=["left"], out_channels=32)
    save_head(head, tmp_path / "left", task="left")
    assert read_card(tmp_path / "bb")["init_args"] == {"in_channels": 1, "out_features": 32}
    again = load_backbone(tmp_path / "bb.safetensors")
    assert isinstance(again, LeNet) and torch.equal(again.fc.weight, backbone.fc.weight)
    assert torch.equal(load_head(tmp_path / "left", backbone=tmp_path / "bb").net[0].weight, head.net[0].weight)


def test_save_head_takes_its_task_from_the_head_name_or_the_file_name(tmp_path):
    """Issue 27 item 10: task= is needed only where the file does not say it."""
    save_head(Classifier(), tmp_path / "heads" / "left")
    save_head(Classifier(), tmp_path / "heads" / "h", head_name="right")
    assert (read_card(tmp_path / "heads" / "left")["task"], read_card(tmp_path / "heads" / "left")["head"]) == (
        "left",
        "left",
    )
    assert read_card(tmp_path / "heads" / "h")["task"] == "right"


def test_head_on_a_backbone_of_another_width_is_refused(tmp_path):
    save_backbone(LeNet(out_features=64), tmp_path / "wide", out_channels=64)
    save_head(Classifier(in_features=50), tmp_path / "head", task="left")
    with pytest.raises(ArtifactError, match="expects 50 input channels; backbone .*LeNet .* produces 64"):
        load_head(tmp_path / "head", backbone=tmp_path / "wide")


def test_plain_module_needs_an_instance(tmp_path):
    save_backbone(nn.Linear(3, 2), tmp_path / "plain")
    with pytest.raises(ArtifactError, match="(?s)not declared with @mtl.backbone.*pass an instance"):
        load_backbone(tmp_path / "plain")
    assert load_backbone(tmp_path / "plain", module=nn.Linear(3, 2)).weight.shape == (2, 3)


@pytest.mark.slow
def test_head_attached_to_another_trained_backbone_and_new_task(tmp_path, digits, adam):
    first = mtl.Trainer(
        LeNet(), [make_task(digits, "left")], optimizer=adam, root_dir=tmp_path, max_epochs=1, **FAST
    ).launch()
    second = mtl.Trainer(
        LeNet(), [make_task(digits, "right")], optimizer=adam, root_dir=tmp_path, max_epochs=1, **FAST
    ).launch()
    # the left head on the backbone trained for the right task: same widths, it loads and runs
    head = load_head(first.artifacts["left"], backbone=second.artifacts["backbone"])
    backbone = load_backbone(second.artifacts["backbone"])
    assert head(backbone(digits["left/val"].images[:4])).shape == (4, 10)
    # a new task on the trained, frozen backbone
    frozen = load_backbone(first.artifacts["backbone"])
    before = frozen.fc.weight.detach().clone()
    third = mtl.Trainer(
        frozen,
        [make_task(digits, "right", name="right_new")],
        optimizer=adam,
        freeze_backbone=True,
        root_dir=tmp_path,
        max_epochs=1,
        **FAST,
    ).launch()
    assert torch.equal(frozen.fc.weight, before)
    assert read_card(third.artifacts["right_new"])["task"] == "right_new"


def test_delta_m_signs():
    hib = {"a": {"acc": True}, "b": {"err": False}}
    assert mtl.delta_m({"a": {"acc": 0.9}, "b": {"err": 0.1}}, {"a": {"acc": 0.9}, "b": {"err": 0.1}}, hib) == 0
    value = mtl.delta_m({"a": {"acc": 0.99}, "b": {"err": 0.09}}, {"a": {"acc": 0.9}, "b": {"err": 0.1}}, hib)
    assert value == pytest.approx(100 * (0.1 + 0.1) / 2)
    with pytest.raises(M3LError, match="baseline given for task 'c'"):
        mtl.delta_m({"a": {"acc": 1}}, {"c": {"acc": 1}}, hib)


@pytest.mark.parametrize(
    ("baselines", "match"),
    [
        ({"c": {"acc": 1}}, "baseline given for task 'c' .*drop it from the baselines"),
        ({"a": {"f1": 1}}, "baseline metric a/f1 missing .*use one of those names"),
        ({"a": {"acc": 0}}, "baseline a/acc is 0, so the relative change is undefined"),
        ({"a": {}}, "no baseline metrics given; pass baselines="),
    ],
    ids=["unknown task", "unknown metric", "zero baseline", "no metrics"],
)
def test_delta_m_baselines_that_do_not_fit_are_config_errors(baselines, match):
    with pytest.raises(ConfigError, match=match):
        mtl.delta_m({"a": {"acc": 0.9}}, baselines, {"a": {"acc": True}})


@pytest.mark.slow
def test_single_task_baselines_are_trained_for_delta_m(tmp_path, digits, adam):
    tasks = [make_task(digits, "left"), make_task(digits, "right")]
    results = mtl.Trainer(
        LeNet(),
        tasks,
        optimizer=adam,
        root_dir=tmp_path,
        max_epochs=1,
        baselines="single_task",
        limit_train_batches=2,
        **FAST,
    ).launch()
    assert set(results.baselines) == {"left", "right"}
    # a baseline at 0 (a 2-step model at chance) is left out of the run's Delta_m, with a warning
    defined = {t: {m: v for m, v in b.items() if v} for t, b in results.baselines.items()}
    assert results.delta_m == pytest.approx(mtl.delta_m(results.metrics, defined, lambda h, m: m != "loss"))


def _fit(trainer_kwargs, digits):
    import lightning as L

    task = make_task(digits, "left")
    module = mtl.MultiTaskModule(LeNet(), [task])
    data = mtl.MultiTaskDataModule.from_tasks([task])
    L.Trainer(
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        enable_checkpointing=False,
        **trainer_kwargs,
    ).fit(module, data)


@pytest.mark.slow
def test_artifacts_never_land_in_the_working_directory_nor_over_a_users_folder(tmp_path, digits, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    _fit({"logger": False}, digits)  # Lightning's default root is the working directory: nothing written there
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    mine = tmp_path / "run" / "artifacts"
    mine.mkdir(parents=True)
    (mine / "backbone.safetensors").write_bytes(b"the user's own file")
    with caplog.at_level("WARNING", logger="m3l.mtl.artifacts"):
        _fit({"logger": False, "default_root_dir": str(tmp_path / "run")}, digits)
    assert (mine / "backbone.safetensors").read_bytes() == b"the user's own file"
    assert "already holds files this run did not write" in caplog.text
    _fit({"logger": False, "default_root_dir": str(tmp_path / "fresh")}, digits)
    assert (tmp_path / "fresh" / "artifacts" / "heads" / "left.safetensors").exists()
