"""The optimizer layout of a MultiTaskModule and Lightning's step count, in real fits."""

from __future__ import annotations

from functools import partial

import lightning as L
import pytest
import torch

from m3l import mtl
from m3l.mtl import algorithms as A

from .conftest import LeNet, make_task

QUIET = dict(
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    limit_val_batches=0,
    num_sanity_val_steps=0,
    accelerator="cpu",
    devices=1,
)


def fit(tasks, tmp_path, algorithm=None, **kwargs):
    trainer_kwargs = {
        k: kwargs.pop(k) for k in ("max_steps", "max_epochs", "limit_train_batches", "callbacks") if k in kwargs
    }
    module = mtl.MultiTaskModule(LeNet(), tasks, algorithm=algorithm, save_artifacts=False, **kwargs)
    quiet = QUIET | {"enable_checkpointing": "callbacks" in trainer_kwargs}
    trainer = L.Trainer(default_root_dir=tmp_path, **quiet, **trainer_kwargs)
    trainer.fit(module, datamodule=mtl.MultiTaskDataModule.from_tasks(tasks))
    return module, trainer


def own_optimizer(digits):
    """Two tasks, the right one with its own optimizer (so two optimizers at least)."""
    return [make_task(digits, "left"), make_task(digits, "right", optimizer=partial(torch.optim.SGD, lr=0.01))]


@pytest.mark.parametrize(
    "layout, n_optimizers",
    [
        ("one optimizer", 1),
        ("a task's own optimizer", 2),
        ("a method with parameters (UW)", 2),
        ("frozen backbone, one optimizer per task", 2),
    ],
)
def test_global_step_counts_batches_whatever_the_optimizers(tmp_path, digits, layout, n_optimizers):
    """Lightning counts every optimizer step in global_step under manual optimization; m3l
    counts one per batch, so max_steps, log_every_n_steps and checkpoint cadence mean batches."""
    torch.manual_seed(0)
    tasks = (
        own_optimizer(digits)
        if layout == "a task's own optimizer"
        else [make_task(digits, "left"), make_task(digits, "right")]
    )
    algorithm = mtl.Joint(A.UncertaintyWeighting()) if "UW" in layout else None
    frozen = layout.startswith("frozen")
    module, trainer = fit(tasks, tmp_path, algorithm, max_steps=5, freeze_backbone=frozen)
    opts = module.optimizers()
    assert len(opts if isinstance(opts, list) else [opts]) == n_optimizers
    # 96 training pairs, batch 32 (left) / 32: 3 batches an epoch; max_steps=5 stops after 5 batches
    assert module.train_steps == 5
    assert trainer.global_step == 5


@pytest.mark.slow
def test_checkpoint_every_n_steps_means_every_n_batches(tmp_path, digits):
    torch.manual_seed(0)
    every = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_top_k=-1, filename="{step}"
    )
    module, trainer = fit(own_optimizer(digits), tmp_path, max_epochs=2, callbacks=[every])
    assert module.train_steps == trainer.global_step == 6
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["step=2.ckpt", "step=4.ckpt", "step=6.ckpt"]


@pytest.mark.slow
def test_one_optimizer_updates_as_one_optimizer_per_role(tmp_path, digits):
    """Heads that share the backbone's optimizer factory join its optimizer: the same training
    as separate optimizers (Adam is per parameter), one optimizer step of framework work."""
    adam = partial(torch.optim.Adam, lr=3e-3)
    states = {}
    for layout, head_optimizer in (("one", None), ("per role", partial(torch.optim.Adam, lr=3e-3))):
        torch.manual_seed(0)
        tasks = [make_task(digits, "left"), make_task(digits, "right")]
        L.seed_everything(0, verbose=False)
        module, _ = fit(tasks, tmp_path / layout, optimizer=adam, head_optimizer=head_optimizer, max_epochs=2)
        opts = module.optimizers()
        assert len(opts if isinstance(opts, list) else [opts]) == (1 if layout == "one" else 3)
        states[layout] = {k: v.clone() for k, v in module.state_dict().items()}
    assert states["one"].keys() == states["per role"].keys()
    for key, value in states["one"].items():
        torch.testing.assert_close(value, states["per role"][key], msg=key)


def test_a_scheduler_keeps_heads_on_their_own_optimizers(tmp_path, digits):
    """A scheduler steps per role (its own metric, idle tasks waiting): heads with one keep their
    own optimizer, and a backbone with one keeps its optimizer to itself."""
    step = partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    torch.manual_seed(0)
    module, trainer = fit(
        [make_task(digits, "left", scheduler=step), make_task(digits, "right")],
        tmp_path / "a",
        max_epochs=1,
        limit_train_batches=2,
    )
    assert module._roles == ["backbone", "task:left"]  # noqa: SLF001 - the right head joined the backbone's
    assert trainer.global_step == 2
    module, trainer = fit(
        [make_task(digits, "left"), make_task(digits, "right")],
        tmp_path / "b",
        scheduler=step,
        max_epochs=1,
        limit_train_batches=2,
    )
    assert module._roles == ["backbone", "task:left", "task:right"]  # noqa: SLF001
    assert trainer.global_step == 2


@pytest.mark.slow
def test_resuming_into_another_optimizer_layout_names_the_checkpoint_and_the_fix(tmp_path, digits):
    """A checkpoint with one optimizer per role (as m3l wrote them before the shared optimizer)
    resumes with that layout, and is refused with the fix where the heads now share the backbone's."""
    from m3l.errors import CheckpointError

    per_role = dict(optimizer=partial(torch.optim.Adam, lr=1e-3), head_optimizer=partial(torch.optim.Adam, lr=1e-3))
    torch.manual_seed(0)
    tasks = [make_task(digits, "left"), make_task(digits, "right")]
    module, trainer = fit(tasks, tmp_path, max_epochs=1, limit_train_batches=2, **per_role)
    ckpt = tmp_path / "per_role.ckpt"
    trainer.save_checkpoint(ckpt)

    resumed = mtl.MultiTaskModule(LeNet(), tasks, save_artifacts=False, **per_role)
    again = L.Trainer(default_root_dir=tmp_path, max_epochs=2, limit_train_batches=2, **QUIET)
    again.fit(resumed, datamodule=mtl.MultiTaskDataModule.from_tasks(tasks), ckpt_path=ckpt)
    assert again.global_step == resumed.train_steps == 4

    shared = mtl.MultiTaskModule(LeNet(), tasks, save_artifacts=False)
    other = L.Trainer(default_root_dir=tmp_path, max_epochs=2, limit_train_batches=2, **QUIET)
    with pytest.raises(
        CheckpointError, match=r"(?s)per_role\.ckpt.*3 optimizer state.*1 optimizer.*fix: .*head_optimizer"
    ):
        other.fit(shared, datamodule=mtl.MultiTaskDataModule.from_tasks(tasks), ckpt_path=ckpt)


def test_default_optimizer_is_fused_adam_with_the_loop_update(tmp_path):
    """The default is torch's fused Adam where the parameters allow it, and it makes the
    update of the loop implementation; parameters it cannot fuse get the loop one."""
    from m3l.mtl.optimization import default_optimizer

    torch.manual_seed(0)
    start = [torch.randn(64, 32), torch.randn(32)]
    grads = [[torch.randn_like(p) for p in start] for _ in range(5)]
    runs = {}
    for kind in ("default", "loop"):
        params = [torch.nn.Parameter(p.clone()) for p in start]
        opt = default_optimizer(params) if kind == "default" else torch.optim.Adam(params, lr=1e-3)
        for g in grads:
            for p, gp in zip(params, g):
                p.grad = gp.clone()
            opt.step()
        runs[kind] = (opt, params)
    assert runs["default"][0].defaults["fused"] is True
    for a, b in zip(runs["default"][1], runs["loop"][1]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)

    # a checkpoint of either kind loads into the other and goes on stepping
    loop_opt, loop_params = runs["loop"]
    fused = default_optimizer([torch.nn.Parameter(p.detach().clone()) for p in loop_params])
    fused.load_state_dict(loop_opt.state_dict())
    fused.param_groups[0]["params"][0].grad = torch.ones(64, 32)
    fused.step()

    complex_param = torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64))
    complex_param.grad = torch.ones(3, dtype=torch.complex64)
    plain = default_optimizer([complex_param])
    assert not plain.defaults["fused"]
    plain.step()  # fused Adam would raise here


def _moved(module, before):
    return torch.cat([(p.detach() - before[n]).flatten() for n, p in module.named_parameters() if n in before])


@pytest.mark.parametrize("scaled", [False, True], ids=["fp32", "fp16-gradscaler"])
def test_gradient_clip_val_bounds_each_step(tmp_path, digits, scaled):
    """With SGD (lr 1) and one shared optimizer, a step moves the parameters by exactly the
    clipped gradient: its norm is at most gradient_clip_val, also under an fp16 GradScaler."""
    from lightning.pytorch.plugins import MixedPrecision

    torch.manual_seed(0)
    tasks = [make_task(digits, "left"), make_task(digits, "right")]
    module = mtl.MultiTaskModule(
        LeNet(), tasks, optimizer=partial(torch.optim.SGD, lr=1.0), save_artifacts=False, gradient_clip_val=1e-3
    )
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    extra = (
        {"plugins": [MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu", init_scale=2.0**10))]}
        if scaled
        else {}
    )
    trainer = L.Trainer(default_root_dir=tmp_path, **QUIET, max_steps=1, **extra)
    trainer.fit(module, datamodule=mtl.MultiTaskDataModule.from_tasks(tasks))
    step = _moved(module, before)
    assert 0.9e-3 < step.norm() <= 1.0001e-3  # clipped (an unclipped step of lr 1 is far larger)


def test_trainer_gradient_clip_val_reaches_the_module(tmp_path, digits):
    """Lightning refuses gradient_clip_val under manual optimization: mtl.Trainer (and the
    command line's trainer.gradient_clip_val) hand it to the module, which clips."""
    tasks = [make_task(digits, "left"), make_task(digits, "right")]
    results = mtl.Trainer(
        LeNet(),
        tasks,
        root_dir=tmp_path,
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        gradient_clip_val=0.5,
        logger=False,
        enable_progress_bar=False,
    ).launch(mtl.Joint())
    assert results.module.gradient_clip_val == 0.5 and results.module.trainer.gradient_clip_val is None

    from m3l.errors import ConfigError

    with pytest.raises(ConfigError, match="gradient_clip_val must be a positive number"):
        mtl.MultiTaskModule(LeNet(), tasks, gradient_clip_val=-1)
    with pytest.raises(ConfigError, match="clips by the gradients' norm only"):
        mtl.Trainer(
            LeNet(),
            tasks,
            root_dir=tmp_path,
            max_epochs=1,
            limit_train_batches=1,
            gradient_clip_val=0.5,
            gradient_clip_algorithm="value",
            logger=False,
        ).launch(mtl.Joint())
