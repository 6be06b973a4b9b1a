"""Capacity metrics and gradient conflict, as functions and as a callback in a real run."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from m3l import mtl
from m3l.mtl import diagnostics as d

from .conftest import FAST, LeNet


def test_independent_capacity_counts_weak_weights():
    layer = torch.nn.Linear(4, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.5], [0.001, 1.0, 1.0, 1.0]]))
    assert d.independent_capacity(torch.nn.Sequential(layer)) == {"0": pytest.approx(3 / 8)}


def test_feature_entropy_and_correlation(digits):
    features = LeNet()(digits["left/val"].images)
    assert 0.0 < d.normalized_entropy(features) <= 1.0
    x = torch.randn(500, 1)
    assert d.mean_abs_correlation(torch.cat([x, 2 * x, -x], 1)) == pytest.approx(1.0, abs=1e-5)
    assert d.mean_abs_correlation(torch.randn(2000, 3)) < 0.1


def test_residual_model_capacity():
    assert d.residual_model_capacity([2.0, 1.5, 1.0], k=2) == pytest.approx(0.5)
    assert d.residual_model_capacity([1.0, 2.0], k=1) == 0.0


def test_gradient_cosines():
    jac = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    cos = d.gradient_cosines(jac, ["a", "b", "c"])
    assert cos[("a", "b")] == pytest.approx(0.0) and cos[("a", "c")] == pytest.approx(-1.0)


def test_callback_logs_metrics_and_plots_to_tensorboard(tmp_path, tasks, adam):
    diagnostics = d.Diagnostics(every_n_steps=2, k=2, plot_every_n_steps=4)
    tb = TensorBoardLogger(str(tmp_path), name="tb")
    results = mtl.Trainer(LeNet(), tasks, optimizer=adam, root_dir=tmp_path, max_epochs=1, logger=tb,
                          callbacks=[diagnostics], **FAST).launch(mtl.Joint(mtl.RandomWeighting()))
    metrics = results.module.trainer.callback_metrics
    assert "diag/grad_cosine/left-vs-right" in metrics
    assert -1.0 <= float(metrics["diag/grad_cosine/left-vs-right"]) <= 1.0
    assert "diag/weak_weights/fc" in metrics and "diag/feature_entropy" in metrics
    assert "diag/residual_capacity/left" in metrics
    assert len(diagnostics.history["weights/left"]) == 6
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(tb.log_dir, size_guidance={"images": 0})
    events.Reload()
    assert {"diag/weights", "diag/grad_cosine"} <= set(events.Tags()["images"])


def test_alternating_logs_no_stale_loss_or_capacity_for_the_idle_task(tmp_path, digits, adam):
    import csv

    from .conftest import make_task

    diagnostics = d.Diagnostics(every_n_steps=1, k=1, plot_every_n_steps=0)
    tasks = [make_task(digits, "left"), make_task(digits, "right")]  # 3 batches each
    results = mtl.Trainer(LeNet(), tasks, optimizer=adam, root_dir=tmp_path, max_epochs=1, callbacks=[diagnostics],
                          **FAST).launch(mtl.Alternating())
    rows = [r for r in csv.DictReader((results.log_dir / "csv" / "version_0" / "metrics.csv").open()) if r.get("train/loss")]
    assert len(rows) == 6
    for row in rows[:3]:  # left's pass
        assert row["train/left/loss"] and not row.get("train/right/loss") and not row.get("diag/residual_capacity/right")
    for row in rows[3:]:  # right's pass: nothing about left
        assert row["train/right/loss"] and not row.get("train/left/loss") and not row.get("diag/residual_capacity/left")
    assert len(diagnostics.losses["left"]) == 2 and len(diagnostics.losses["right"]) == 2  # k + 1, only trained steps
    assert [float(r["train/left/loss"]) for r in rows[1:3]] == pytest.approx(list(diagnostics.losses["left"]), rel=1e-5)
