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


@pytest.mark.slow
def test_callback_logs_metrics_and_plots_to_tensorboard(tmp_path, tasks, adam):
    diagnostics = d.Diagnostics(every_n_steps=2, k=2, plot_every_n_steps=4)
    tb = TensorBoardLogger(str(tmp_path), name="tb")
    results = mtl.Trainer(
        LeNet(), tasks, optimizer=adam, root_dir=tmp_path, max_epochs=1, logger=tb, callbacks=[diagnostics], **FAST
    ).launch(mtl.Joint(mtl.RandomWeighting()))
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


@pytest.mark.slow
def test_alternating_logs_no_stale_loss_or_capacity_for_the_idle_task(tmp_path, digits, adam):
    import csv

    from .conftest import make_task

    diagnostics = d.Diagnostics(every_n_steps=1, k=1, plot_every_n_steps=0)
    tasks = [make_task(digits, "left"), make_task(digits, "right")]  # 3 batches each
    results = mtl.Trainer(
        LeNet(), tasks, optimizer=adam, root_dir=tmp_path, max_epochs=1, callbacks=[diagnostics], **FAST
    ).launch(mtl.Alternating())
    rows = [
        r for r in csv.DictReader((results.log_dir / "csv" / "version_0" / "metrics.csv").open()) if r.get("train/loss")
    ]
    assert len(rows) == 6
    for row in rows[:3]:  # left's pass
        assert (
            row["train/left/loss"] and not row.get("train/right/loss") and not row.get("diag/residual_capacity/right")
        )
    for row in rows[3:]:  # right's pass: nothing about left
        assert row["train/right/loss"] and not row.get("train/left/loss") and not row.get("diag/residual_capacity/left")
    assert len(diagnostics.losses["left"]) == 2 and len(diagnostics.losses["right"]) == 2  # k + 1, only trained steps
    assert [float(r["train/left/loss"]) for r in rows[1:3]] == pytest.approx(list(diagnostics.losses["left"]), rel=1e-5)


# ----------------------------------------------------- EMTL's capacity measures, by hand
def _tiny_net() -> torch.nn.Module:
    layer = torch.nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.1, -0.2], [0.3, -0.4]]))
        layer.bias.copy_(torch.tensor([0.5, -0.5]))
    return torch.nn.Sequential(layer)


def test_i_capacity_by_hand():
    # weight |w| = .1 .2 .3 .4: mean .25, unbiased std sqrt(.05 / 3) = .1291, threshold
    # max(.25 - .1291, .001) = .1209: only .1 is under it -> 1/4.
    # bias |b| = .5 .5: std 0, threshold .5: both -> 2/2. I-Capacity = (.25 + 1) / 2
    assert d.i_capacity(_tiny_net()) == pytest.approx(0.625)
    # m3l's independent_capacity: |w| < .01 * .4 -> none: a different, stricter measure
    assert d.independent_capacity(_tiny_net()) == {"0": 0.0}
    # the floor: every |w| = 0 -> threshold .001 -> all weak
    zeros = torch.nn.Linear(3, 3)
    torch.nn.init.zeros_(zeros.weight), torch.nn.init.zeros_(zeros.bias)
    assert d.i_capacity(zeros) == 1.0


def test_dd_capacity_by_hand():
    # two features over four samples: a = 0 0 1 1, b = 0 0 0 1; 2 bins each
    # Entropy: a -> (2, 2): 1 bit / 1 bit = 1; b -> (3, 1): H(.75, .25) / ln 2 = .811278
    # Correlation: r(a, b) = (.5 / 3) / sqrt(1/3 * .25) = 1 / sqrt(3) = .57735
    # DD-Capacity = (.57735 - .905639 + 1) / 2 = .335856
    features = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    values = d.dd_capacity(features, bins=2)
    assert values["Entropy"] == pytest.approx((1 + 0.811278) / 2, abs=1e-5)
    assert values["Correlation"] == pytest.approx(3**-0.5, abs=1e-5)
    assert values["DD-Capacity"] == pytest.approx(0.335856, abs=1e-5)


def test_residual_and_ad_capacity_by_hand():
    rmc = d.ResidualCapacity(lookback=2)
    # losses 4, 3: the window is not full -> 1, 1; then 2 against 4 -> .5; 1 against 3 -> 2/3; 5 against 2 -> 0
    assert [rmc.update("a", x) for x in (4.0, 3.0, 2.0, 1.0, 5.0)] == pytest.approx([1, 1, 0.5, 2 / 3, 0])
    assert d.ad_capacity({}) == 1.0
    assert d.ad_capacity({"a": 0.5, "b": 0.005}) == 0.5  # one of two heads above .01
    assert d.ad_capacity({"a": 0.5, "b": 0.5}, previous=0.5) == 0.5  # never rises


@pytest.mark.slow
def test_capacity_callback_logs_emtl_names_each_epoch(tmp_path, digits, adam):
    from .conftest import make_task

    capacity = d.Capacity(lookback=1)
    tasks = [
        mtl.Task(
            side,
            make_task(digits, side).head,
            torch.nn.CrossEntropyLoss(),
            train=digits[f"{side}/train"],
            test=digits[f"{side}/test"],
        )
        for side in ("left", "right")
    ]
    results = mtl.Trainer(
        LeNet(),
        tasks,
        optimizer=adam,
        root_dir=tmp_path,
        max_epochs=3,
        callbacks=[capacity],
        eval_splits=("train", "test"),
        **FAST,
    ).launch(mtl.Sequential(epochs_per_task=1))
    history = capacity.history
    assert len(history) == 3
    assert {
        "capacity/I-Capacity",
        "capacity/DD-Capacity",
        "capacity/Entropy",
        "capacity/Correlation",
        "capacity/AD-Capacity",
    } <= set(history[0])
    # Sequential: epoch 1 trains left only, epoch 2 right only, epoch 3 left again
    assert "capacity/RMC/left" in history[0] and "capacity/RMC/right" not in history[0]
    assert "capacity/RMC/right" in history[1] and "capacity/RMC/left" not in history[1]
    assert history[0]["capacity/RMC/left"] == 1.0  # the first value of a lookback of 1
    # epoch 3's RMC compares left's full-train-set loss with epoch 1's (lookback 1)
    assert 0.0 <= history[2]["capacity/RMC/left"] < 1.0
    assert history[2]["capacity/I-Capacity"] == pytest.approx(d.i_capacity(results.module.backbone))
    assert all(0.0 <= h["capacity/DD-Capacity"] <= 1.0 for h in history)
    assert history[2]["capacity/AD-Capacity"] <= history[1]["capacity/AD-Capacity"] <= 1.0


def test_documented_gap_between_independent_capacity_and_i_capacity():
    """docs/multi-task.md: 0.013 (m3l's measure) vs EMTL's I-Capacity on the same initialized LeNet trunk."""
    from m3l.mtl.examples.fmnist_mnist import LeNetConvolutions

    torch.manual_seed(0)
    backbone = LeNetConvolutions()
    weak = d.independent_capacity(backbone)
    assert sum(weak.values()) / len(weak) == pytest.approx(0.013, abs=5e-4)
    assert d.i_capacity(backbone) == pytest.approx(0.607, abs=5e-4)
    # the BatchNorm tensors (scales all 1, shifts all 0) count entirely
    assert d.i_capacity(backbone.cnn1[1]) == 1.0
