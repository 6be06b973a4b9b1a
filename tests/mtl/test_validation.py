"""Each bad input gets its own message naming the task, the part, expected, received, fix."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from m3l import mtl
from m3l.errors import M3LError
from m3l.mtl import validation as v
from m3l.mtl.examples.multimnist import Classifier

from .conftest import FAST, LeNet, make_task


def preflight(backbone, tasks):
    module = mtl.MultiTaskModule(backbone, tasks)
    return module.preflight(mtl.MultiTaskDataModule.from_tasks(tasks))


def test_errors_are_user_facing():
    assert issubclass(v.MTLValidationError, M3LError)


def test_empty_task_list():
    with pytest.raises(v.EmptyTaskListError, match="(?s)no tasks given.*fix: pass tasks="):
        mtl.Trainer(LeNet(), []).launch()


def test_duplicate_task_names(digits):
    with pytest.raises(v.DuplicateTaskNameError, match="(?s)duplicate task name 'left'.*fix: rename"):
        mtl.MultiTaskModule(LeNet(), [make_task(digits, "left"), make_task(digits, "right", name="left")])


def test_duplicate_head_names_across_tasks(digits):
    scene = mtl.MultiHeadTask("scene", {"left": Classifier()}, {"left": nn.CrossEntropyLoss()},
                              train=digits["left/train"])
    with pytest.raises(v.DuplicateTaskNameError, match="(?s)duplicate head name 'left' \\(used by task 'left' and task 'scene'\\)"):
        mtl.MultiTaskModule(LeNet(), [make_task(digits, "left"), scene])


class ImagesOnly(Dataset):
    """A real dataset that forgot to return its labels."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.base[i][0]


def test_dataset_yielding_wrong_structure(digits):
    task = make_task(digits, "left")
    task.train = ImagesOnly(digits["left/train"])
    with pytest.raises(v.DatasetStructureError) as err:
        preflight(LeNet(), [task])
    msg = str(err.value)
    assert "task 'left'" in msg and "ImagesOnly" in msg
    assert "expected: (input, target)" in msg and "tensor (1, 36, 36) float32" in msg and "fix:" in msg


class AsDict(ImagesOnly):
    def __getitem__(self, i: int) -> dict:
        x, y = self.base[i]
        return {"image": x, "label": y}


def test_dict_dataset_with_other_keys(digits):
    task = make_task(digits, "left")
    task.train = AsDict(digits["left/train"])
    with pytest.raises(v.DatasetStructureError, match=r"(?s)without keys \['input', 'target'\].*input_key/target_key.*'image', 'label'"):
        preflight(LeNet(), [task])
    task.input_key, task.target_key = "image", "label"
    assert set(preflight(LeNet(), [task])) == {"left"}


def test_multihead_dataset_without_target_dict(digits):
    task = mtl.MultiHeadTask("pair", {"l": Classifier(), "r": Classifier()},
                             {"l": nn.CrossEntropyLoss(), "r": nn.CrossEntropyLoss()},
                             train=digits["left/train"])
    with pytest.raises(v.DatasetStructureError, match=r"(?s)MultiHeadTask.*target dict with keys \['l', 'r'\]"):
        preflight(LeNet(), [task])


def test_head_input_mismatch_names_the_fix(digits):
    task = mtl.Task("depth", Classifier(in_features=256), nn.CrossEntropyLoss(), train=digits["left/train"])
    with pytest.raises(v.HeadInputMismatchError) as err:
        preflight(LeNet(), [task])
    assert str(err.value).startswith(
        "task 'depth': head 'depth' (Classifier) expects 256 input channels; backbone 'LeNet' "
        "produces 50 (tensor (32, 50) float32): set head.in_features=50"
    )


def test_backbone_rejecting_the_input(digits):
    with pytest.raises(v.BackboneOutputError, match="(?s)task 'left': backbone 'LeNet' failed on the task's input tensor \\(32, 1, 36, 36\\).*fix:"):
        preflight(LeNet(in_channels=3), [make_task(digits, "left")])


def test_head_output_rejected_by_criterion(digits):
    task = mtl.Task("left", Classifier(num_classes=1), nn.CrossEntropyLoss(), train=digits["left/train"])
    with pytest.raises(v.CriterionRejectedError) as err:
        preflight(LeNet(), [task])
    msg = str(err.value)
    assert "task 'left': criterion 'CrossEntropyLoss' of head 'left' rejected the head's output" in msg
    assert "prediction tensor (32, 1) float32, target tensor (32,) int64" in msg
    assert "num_classes > target.max()" in msg


def test_declared_criterion_contract(digits):
    @mtl.criterion(target_dtype="float")
    def mse(pred, target):
        return ((pred - target) ** 2).mean()

    task = mtl.Task("left", Classifier(), mse, train=digits["left/train"])
    with pytest.raises(v.CriterionRejectedError, match="(?s)criterion 'mse'.*expects float targets.*received.*int64.*fix: return targets as float32"):
        preflight(LeNet(), [task])


def test_metric_that_does_not_fit(digits):
    from torchmetrics.classification import MulticlassAccuracy

    task = make_task(digits, "left", metrics={"acc": MulticlassAccuracy(num_classes=3)})
    with pytest.raises(v.MetricError, match="(?s)task 'left': metric 'acc'.*fix: configure the metric"):
        preflight(LeNet(), [task])


def test_nan_loss_names_task_and_step(tmp_path, digits):
    sgd = partial(torch.optim.SGD, lr=1e12)
    trainer = mtl.Trainer(LeNet(), [make_task(digits, "left"), make_task(digits, "right")], optimizer=sgd,
                          root_dir=tmp_path, max_epochs=1, **FAST)
    with pytest.raises(v.NonFiniteLossError, match=r"(?s)task '(left|right)': loss is not finite at training step [1-9]\d*\..*fix: lower the learning rate"):
        trainer.launch()


def test_decorating_a_function_as_backbone():
    with pytest.raises(v.ContractDeclarationError, match="(?s)@mtl.backbone expects an nn.Module subclass"):
        mtl.backbone(lambda x: x)


def test_declared_dataset_shape(digits):
    @mtl.task_dataset(input_shape=(3, 32, 32))
    class Declared(ImagesOnly):
        def __getitem__(self, i):
            return self.base[i]

    task = make_task(digits, "left")
    task.train = Declared(digits["left/train"])
    with pytest.raises(v.DatasetStructureError, match=r"(?s)declares input_shape \(3, 32, 32\) but yields input tensor \(1, 36, 36\)"):
        preflight(LeNet(), [task])
