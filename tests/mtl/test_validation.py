"""Each bad input gets its own message naming the task, the part, expected, received, fix."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from m3l import mtl
from m3l.errors import M3LError
from m3l.mtl import errors
from m3l.mtl.examples.multimnist import Classifier

from .conftest import FAST, LeNet, make_task


def preflight(backbone, tasks):
    module = mtl.MultiTaskModule(backbone, tasks)
    return module.preflight(mtl.MultiTaskDataModule.from_tasks(tasks))


def test_errors_are_user_facing():
    assert issubclass(errors.MTLValidationError, M3LError)


def test_empty_task_list():
    with pytest.raises(errors.EmptyTaskListError, match="(?s)no tasks given.*fix: pass tasks="):
        mtl.Trainer(LeNet(), []).launch()


def test_duplicate_task_names(digits):
    with pytest.raises(errors.DuplicateTaskNameError, match="(?s)duplicate task name 'left'.*fix: rename"):
        mtl.MultiTaskModule(LeNet(), [make_task(digits, "left"), make_task(digits, "right", name="left")])


def test_duplicate_head_names_across_tasks(digits):
    scene = mtl.MultiHeadTask(
        "scene", {"left": Classifier()}, {"left": nn.CrossEntropyLoss()}, train=digits["left/train"]
    )
    with pytest.raises(
        errors.DuplicateTaskNameError, match="(?s)duplicate head name 'left' \\(used by task 'left' and task 'scene'\\)"
    ):
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
    with pytest.raises(errors.DatasetStructureError) as err:
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
    with pytest.raises(
        errors.DatasetStructureError,
        match=r"(?s)without keys \['input', 'target'\].*input_key/target_key.*'image', 'label'",
    ):
        preflight(LeNet(), [task])
    task.input_key, task.target_key = "image", "label"
    assert set(preflight(LeNet(), [task])) == {"left"}


def test_multihead_dataset_without_target_dict(digits):
    task = mtl.MultiHeadTask(
        "pair",
        {"l": Classifier(), "r": Classifier()},
        {"l": nn.CrossEntropyLoss(), "r": nn.CrossEntropyLoss()},
        train=digits["left/train"],
    )
    with pytest.raises(errors.DatasetStructureError, match=r"(?s)MultiHeadTask.*target dict with keys \['l', 'r'\]"):
        preflight(LeNet(), [task])


def test_head_input_mismatch_names_the_fix(digits):
    task = mtl.Task("depth", Classifier(in_features=256), nn.CrossEntropyLoss(), train=digits["left/train"])
    with pytest.raises(errors.HeadInputMismatchError) as err:
        preflight(LeNet(), [task])
    assert str(err.value).startswith(
        "task 'depth': head 'depth' (Classifier) expects 256 input channels; backbone 'LeNet' "
        "produces 50 (tensor (32, 50) float32): set head.in_features=50"
    )


def test_backbone_rejecting_the_input(digits):
    with pytest.raises(
        errors.BackboneOutputError,
        match="(?s)task 'left': backbone 'LeNet' failed on the task's input tensor \\(32, 1, 36, 36\\).*fix:",
    ):
        preflight(LeNet(in_channels=3), [make_task(digits, "left")])


def test_head_output_rejected_by_criterion(digits):
    task = mtl.Task("left", Classifier(num_classes=1), nn.CrossEntropyLoss(), train=digits["left/train"])
    with pytest.raises(errors.CriterionRejectedError) as err:
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
    with pytest.raises(
        errors.CriterionRejectedError,
        match="(?s)criterion 'mse'.*expects float targets.*received.*int64.*fix: return targets as float32",
    ):
        preflight(LeNet(), [task])


def test_metric_that_does_not_fit(digits):
    from torchmetrics.classification import MulticlassAccuracy

    task = make_task(digits, "left", metrics={"acc": MulticlassAccuracy(num_classes=3)})
    with pytest.raises(errors.MetricError, match="(?s)task 'left': metric 'acc'.*fix: configure the metric"):
        preflight(LeNet(), [task])


@pytest.mark.slow
def test_nan_loss_names_task_and_step(tmp_path, digits):
    sgd = partial(torch.optim.SGD, lr=1e12)
    trainer = mtl.Trainer(
        LeNet(),
        [make_task(digits, "left"), make_task(digits, "right")],
        optimizer=sgd,
        root_dir=tmp_path,
        max_epochs=1,
        **FAST,
    )
    with pytest.raises(
        errors.NonFiniteLossError,
        match=r"(?s)task '(left|right)': loss is not finite at training step [1-9]\d*\..*fix: lower the learning rate",
    ):
        trainer.launch()


def test_decorating_a_function_as_backbone():
    with pytest.raises(errors.ContractDeclarationError, match="(?s)@mtl.backbone expects an nn.Module subclass"):
        mtl.backbone(lambda x: x)


def test_declared_dataset_shape(digits):
    @mtl.task_dataset(input_shape=(3, 32, 32))
    class Declared(ImagesOnly):
        def __getitem__(self, i):
            return self.base[i]

    task = make_task(digits, "left")
    task.train = Declared(digits["left/train"])
    with pytest.raises(
        errors.DatasetStructureError,
        match=r"(?s)declares input_shape \(3, 32, 32\) but yields input tensor \(1, 36, 36\)",
    ):
        preflight(LeNet(), [task])


class DigitMasks(Dataset):
    """Segmentation on real digits: the mask of the left digit's pixels (from MultiMNIST)."""

    def __init__(self, base: Dataset, as_dict: bool = False) -> None:
        self.base, self.as_dict = base, as_dict

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        image = self.base[i][0]
        mask = (image[0] > 0.5).long()
        if self.as_dict:
            return {"input": image, "target": mask, "size": torch.tensor(image.shape[-2:])}
        return image, mask


class ConvTrunk(nn.Module):
    """A small convolutional backbone: (B, 1, 36, 36) -> (B, 8, 9, 9)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU()
        )

    def forward(self, x):
        return self.layers(x)


class UpsamplingHead(nn.Module):
    """EMTL's segmentation head pattern: per-pixel logits resized to ``original_shape``."""

    def __init__(self) -> None:
        super().__init__()
        self.classify = nn.Conv2d(8, 2, 1)

    def forward(self, x, original_shape):
        size = tuple(
            int(s)
            for s in (
                original_shape[0] if torch.is_tensor(original_shape) and original_shape.dim() == 2 else original_shape
            )
        )
        return nn.functional.interpolate(self.classify(x), size=size, mode="bilinear", align_corners=False)


def _segmentation(digits, **kwargs) -> mtl.Task:
    as_dict = kwargs.pop("as_dict", False)
    return mtl.Task(
        "seg",
        UpsamplingHead(),
        nn.CrossEntropyLoss(),
        train=DigitMasks(digits["left/train"], as_dict),
        val=DigitMasks(digits["left/val"], as_dict),
        batch_size=16,
        **kwargs,
    )


def test_head_taking_more_than_the_features_is_named_with_the_fix(digits):
    with pytest.raises(
        errors.HeadInputMismatchError,
        match=r"(?s)UpsamplingHead\)\.forward requires original_shape.*"
        r"and the task passes nothing else.*head_inputs=",
    ):
        preflight(ConvTrunk(), [_segmentation(digits)])


@pytest.mark.parametrize("source", [lambda x: x.shape[-2:], "size"])
def test_head_inputs_from_the_input_or_the_batch_train_and_predict(tmp_path, digits, adam, source):
    as_dict = isinstance(source, str)
    task = _segmentation(digits, head_inputs={"original_shape": source}, as_dict=as_dict)
    results = mtl.Trainer(
        ConvTrunk(), [task], optimizer=adam, root_dir=tmp_path, max_epochs=1, limit_train_batches=2, **FAST
    ).launch()
    assert results.metrics["seg"]["loss"] < 1.0
    x = task.val[0]["input" if as_dict else 0][None]
    extra = {} if not as_dict else {"original_shape": (36, 36)}
    with torch.no_grad():
        assert results.module.eval()(x, task="seg", **extra)["seg"].shape == (1, 2, 36, 36)


def test_head_inputs_key_missing_from_the_batch_is_named(digits):
    task = _segmentation(digits, head_inputs={"original_shape": "shape"}, as_dict=True)
    with pytest.raises(
        errors.DatasetStructureError, match=r"(?s)head_inputs\['original_shape'\] = 'shape' cannot be read.*'size'"
    ):
        preflight(ConvTrunk(), [task])


def test_head_failing_inside_names_the_layer_not_the_first_one(digits):
    deep = nn.Sequential(nn.Linear(50, 20), nn.ReLU(), nn.Linear(30, 10))
    task = mtl.Task("left", deep, nn.CrossEntropyLoss(), train=digits["left/train"])
    with pytest.raises(
        errors.HeadInputMismatchError,
        match=r"(?s)in its submodule '2' \(Linear\(in_features=30.*on input "
        r"tensor \(32, 20\).*fix: the features passed the head's first layers; fix submodule '2'",
    ) as err:
        preflight(LeNet(), [task])
    assert "first layer" not in str(err.value).split("fix:")[1].split("first layers")[1]
    first = mtl.Task("left", nn.Sequential(nn.Linear(40, 10)), nn.CrossEntropyLoss(), train=digits["left/train"])
    with pytest.raises(errors.HeadInputMismatchError, match=r"(?s)fix: make the head's first layer \('0'\) accept"):
        preflight(LeNet(), [first])


def test_head_bug_in_its_own_forward_points_at_the_line(digits):
    class Buggy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(50, 10)

        def forward(self, x):
            return self.fc(x).softmax(dim=3)

    task = mtl.Task("left", Buggy(), nn.CrossEntropyLoss(), train=digits["left/train"])
    with pytest.raises(
        errors.HeadInputMismatchError,
        match=r"(?s)at .*test_validation.py:\d+ \(return self.fc\(x\).softmax.*"
        r"error is in the head's own forward\(\)",
    ):
        preflight(LeNet(), [task])


class _Triples(Dataset):
    """(input, target, extra): a sample with one element the task does not read."""

    def __init__(self, base) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return x, y, torch.tensor(x.shape[-2:])


def test_a_sample_with_an_element_the_task_does_not_read_is_refused(digits):
    """Issue 27 item 10: a 3-tuple where the task reads (input, target) is named, not ignored."""
    task = mtl.Task("left", Classifier(), nn.CrossEntropyLoss(), train=_Triples(digits["left/train"]), batch_size=8)
    with pytest.raises(
        errors.DatasetStructureError,
        match=r"(?s)task 'left': train dataset '_Triples' yields a tuple "
        r"of length 3\..*expected: \(input, target\).*fix: return \(input, target\).*head_inputs=\{'argument': 2\}",
    ):
        preflight(LeNet(), [task])


def test_a_third_element_the_head_reads_is_accepted(digits):
    seg = _segmentation(digits, head_inputs={"original_shape": 2})
    seg.train = _Triples(seg.train)
    preflight(ConvTrunk(), [seg])
