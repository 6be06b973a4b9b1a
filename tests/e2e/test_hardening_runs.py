"""Training runs as a careless or hostile user starts them (issues 26 and 27): what
``checkpoint=`` and ``resume=true`` take from a checkpoint, which run ``checkpoint=best``
means, a diverged run's "best" checkpoint, and the README's examples in the order shown."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli
from tests.e2e.conftest import toy_env

pytestmark = pytest.mark.slow

# 8 steps per epoch of 16x16 gray images: seconds per run
TOY = ["model=toy", "logger=csv", "data.n_train=32", "trainer.max_epochs=1"]


def _run_dirs(env: dict[str, str]) -> list[Path]:
    return sorted(Path(env["M3L_RUNS_DIR"]).glob("toy/train/*"), key=lambda d: (d / "config.yaml").stat().st_mtime)


def _lr(checkpoint: Path) -> float:
    """The learning rate the run's optimizer used, as its checkpoint records it."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return float(state["optimizer_states"][0]["param_groups"][0]["lr"])


def test_checkpoint_path_starts_from_the_weights_with_the_optimizer_given_now(tmp_path: Path, workdir: Path):
    """Issue 26 item 11: ``checkpoint=PATH net.optimizer.lr=X`` trains with lr X (a new run from
    the weights); ``resume=true checkpoint=PATH`` continues the file exactly (its lr, its epoch)."""
    env = toy_env(tmp_path)
    first = run_cli("train", *TOY, cwd=workdir, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    (origin,) = _run_dirs(env)
    last = origin / "checkpoints" / "last.ckpt"
    assert _lr(last) == pytest.approx(1e-2)  # the toy config's lr

    started = run_cli("train", *TOY, f"checkpoint={last}", "net.optimizer.lr=0.125", cwd=workdir, env=env)
    assert started.returncode == 0, started.stderr[-3000:]
    new_dir = _run_dirs(env)[-1]
    new_last = new_dir / "checkpoints" / "last.ckpt"
    assert _lr(new_last) == pytest.approx(0.125)  # the optimizer of the config given now
    assert torch.load(new_last, weights_only=True)["epoch"] == 0  # a new run: its own first epoch
    log = (new_dir / "train.log").read_text()
    assert "Starting from the weights of" in log and "Resuming from" not in log
    assert "net.optimizer.lr: 0.01 there, 0.125 now" in log  # how it differs from the checkpoint's run
    weights = torch.load(last, weights_only=True)["state_dict"]
    # it really started from those weights: one epoch at lr 0.125 from them is not one from scratch
    assert not all(torch.equal(weights[k], v) for k, v in torch.load(new_last, weights_only=True)["state_dict"].items())

    resumed = run_cli("train", *TOY, "trainer.max_epochs=2", "resume=true", f"checkpoint={last}",
                      "net.optimizer.lr=0.125", cwd=workdir, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    resumed_dir = _run_dirs(env)[-1]
    resumed_last = resumed_dir / "checkpoints" / "last.ckpt"
    assert _lr(resumed_last) == pytest.approx(1e-2)  # exactly the checkpoint's optimizer
    assert torch.load(resumed_last, weights_only=True)["epoch"] == 1  # its second epoch
    assert "Resuming from" in (resumed_dir / "train.log").read_text()
