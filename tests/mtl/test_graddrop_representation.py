"""GradDrop on the shared representation: signs dropped in the per-sample gradients of the
backbone's output (as Chen et al. 2020 and LibMTL apply it), then back-propagated."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn

from m3l import mtl
from m3l.mtl import algorithms as A

pytest.importorskip("torchjd")

from m3l.mtl.examples.multimnist import Classifier, LeNet, MultiMNIST  # noqa: E402


def _module(algorithm: A.GradDrop) -> tuple[mtl.MultiTaskModule, MultiMNIST]:
    torch.manual_seed(0)
    data = MultiMNIST("train", 64, target="both", seed=3)
    task = mtl.MultiHeadTask(
        "pair",
        {"left": Classifier(), "right": Classifier()},
        {"left": nn.CrossEntropyLoss(), "right": nn.CrossEntropyLoss()},
        train=data,
        batch_size=16,
    )
    return mtl.MultiTaskModule(LeNet(), [task], algorithm=mtl.Joint(algorithm)), data


def _papers_rule(per_sample: torch.Tensor, rep: torch.Tensor, leak: float = 0.0) -> torch.Tensor:
    """Algorithm 1 of Chen et al. written out: purity per feature from sum_batch sign(A) * grad."""
    g = [(row * rep.sign()).sum(0) for row in per_sample]  # per objective: [D]
    purity = 0.5 * (1 + sum(g) / (sum(x.abs() for x in g) + 1e-7))
    u = torch.rand_like(purity)
    out = torch.zeros_like(per_sample[0])
    for row, gt in zip(per_sample, g):
        keep = ((purity > u) & (gt > 0)) | ((purity < u) & (gt < 0))
        out += row * (leak + (1 - leak) * keep.float())  # one mask per feature, every sample
    return out


@pytest.mark.parametrize("leak", [0.0, 0.3])
def test_graddrop_on_the_representation_matches_the_papers_computation(leak):
    module, data = _module(A.GradDrop(wrt="representation", leak=leak))
    x = data.images[:16]
    targets = {"left": data.left[:16], "right": data.right[:16]}
    shared = list(module.backbone.parameters())
    heads = list(module.heads.parameters())

    def losses_and_rep():
        rep = module.backbone(x)
        losses = torch.stack([nn.functional.cross_entropy(module.heads[n](rep), targets[n]) for n in targets])
        return losses, rep

    losses, rep = losses_and_rep()
    per_sample = torch.stack([torch.autograd.grad(loss, rep, retain_graph=True)[0] for loss in losses])
    torch.manual_seed(42)
    update = _papers_rule(per_sample, rep.detach(), leak)
    expected = torch.autograd.grad(rep, shared, grad_outputs=update)
    # the objectives disagree in sign on some features, so something was dropped
    assert not torch.allclose(update, per_sample.sum(0))

    losses, rep = losses_and_rep()
    torch.manual_seed(42)
    context = module.step_context(["left", "right"], list(losses), {"pair": rep})
    module.method.backward(context.losses, context)
    for p, g in zip(shared, expected):
        torch.testing.assert_close(p.grad, g)
    head_sum = torch.autograd.grad(losses_and_rep()[0].sum(), heads)
    for p, g in zip(heads, head_sum):
        torch.testing.assert_close(p.grad, g)


def test_graddrop_leak_out_of_range_is_refused():
    with pytest.raises(Exception, match="leak must be in"):
        A.GradDrop(wrt="representation", leak=1.5)


def test_graddrop_on_the_representation_trains(tmp_path):
    module, data = _module(A.GradDrop(wrt="representation"))
    before = [p.detach().clone() for p in module.backbone.parameters()]
    trainer = L.Trainer(
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=mtl.MultiTaskDataModule.from_tasks(module.tasks))
    after = list(module.backbone.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before))


def test_graddrop_on_the_representation_needs_one_shared_pass():
    with pytest.raises(A.RepresentationNotSupportedError, match="MultiHeadTask"):
        digits = {side: MultiMNIST("train", 32, target=side, seed=i) for i, side in enumerate(("left", "right"))}
        tasks = [mtl.Task(s, Classifier(), nn.CrossEntropyLoss(), train=d, batch_size=16) for s, d in digits.items()]
        module = mtl.MultiTaskModule(LeNet(), tasks, algorithm=mtl.Joint(A.GradDrop(wrt="representation")))
        L.Trainer(
            max_steps=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
        ).fit(module, datamodule=mtl.MultiTaskDataModule.from_tasks(tasks))
