"""Kill a real training run mid-epoch (SIGTERM, SIGKILL) and resume it: with deterministic
settings the resumed run ends with exactly the weights of an uninterrupted run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli
from tests.e2e.conftest import toy_env, wandb_records

pytestmark = pytest.mark.slow

# 16 steps per epoch (a slow loader: about 1.3 s), 2 epochs; last.ckpt is written at the end of each
RUN = ["model=toy", "trainer.max_epochs=2", "data.n_train=64", "data.train_delay_s=0.02", "trainer.deterministic=true"]


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """The weights of the same training run, uninterrupted."""
    tmp = tmp_path_factory.mktemp("reference")
    (tmp / "work").mkdir()
    env = toy_env(tmp)
    result = run_cli("train", *RUN, "logger=csv", cwd=tmp / "work", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    (last,) = Path(env["M3L_RUNS_DIR"]).glob("toy/train/*/checkpoints/last.ckpt")
    assert torch.load(last, weights_only=True)["epoch"] == 1
    return _weights(last)


def _start_and_kill(
    args: list[str], env: dict[str, str], cwd: Path, sig: int
) -> tuple[subprocess.CompletedProcess, Path]:
    """Start training, wait until the second epoch has loaded its second batch (the first
    epoch's checkpoint is written before the second epoch loads anything), send ``sig``."""
    runs = Path(env["M3L_RUNS_DIR"])
    trace = cwd / f"loaded-{sig}.txt"  # ToySet writes a line per training item it loads
    trace.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "m3l.run.train", *args],
        cwd=cwd,
        env={**env, "TOY_TRACE_FILE": str(trace)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not trace.is_file() or len(trace.read_text().splitlines()) < 64 + 2 * 4:  # 64 items an epoch, 4 a batch
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "not into the second epoch after 300 s"
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    (run_dir,) = runs.glob("toy/train/*")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), run_dir


def test_sigterm_then_resume_true_gives_the_uninterrupted_weights(reference, tmp_path: Path, workdir: Path):
    env = toy_env(tmp_path)
    env.pop("WANDB_MODE")  # logger.wandb.offline=true must be enough
    wandb = ["logger=[csv,wandb]", "logger.wandb.offline=true", "logger.wandb.id=resume-sigterm"]
    killed, run_dir = _start_and_kill([*RUN, *wandb], env, workdir, signal.SIGTERM)
    assert killed.returncode == 143, (killed.returncode, killed.stderr[-3000:])
    assert "stopped by SIGTERM" in killed.stderr and "resume=true" in killed.stderr
    epoch = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"]
    assert epoch < 1, "the run finished before it was signalled"

    resumed = run_cli("train", *RUN, *wandb, "resume=true", cwd=workdir, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    new_dir = next(d for d in Path(env["M3L_RUNS_DIR"]).glob("toy/train/*") if d != run_dir)
    assert "Resuming from" in (new_dir / "train.log").read_text()
    final = _weights(new_dir / "checkpoints" / "last.ckpt")
    assert final.keys() == reference.keys()
    for key in reference:
        assert torch.equal(final[key], reference[key]), key

    # the W&B run continues under the same id (offline, no WANDB_MODE set)
    steps = []
    for directory in (run_dir, new_dir):
        (run_file,) = directory.glob("wandb/offline-run-*-resume-sigterm/run-resume-sigterm.wandb")
        steps.append(
            sorted(
                int(i.value_json)
                for r in wandb_records(run_file)
                if r.WhichOneof("record_type") == "history"
                for i in r.history.item
                if (i.key or "/".join(i.nested_key)) == "trainer/global_step"
            )
        )
    assert steps[0][-1] < 32  # killed during the second epoch
    assert steps[1][0] >= 16 and steps[1][-1] == 32  # the resumed run logs from its checkpoint on


def test_sigkill_then_checkpoint_last_gives_the_uninterrupted_weights(reference, tmp_path: Path, workdir: Path):
    env = toy_env(tmp_path)
    killed, run_dir = _start_and_kill([*RUN, "logger=csv"], env, workdir, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] < 1

    resumed = run_cli("train", *RUN, "logger=csv", "checkpoint=last", cwd=workdir, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    new_dir = next(d for d in Path(env["M3L_RUNS_DIR"]).glob("toy/train/*") if d != run_dir)
    final = _weights(new_dir / "checkpoints" / "last.ckpt")
    for key in reference:
        assert torch.equal(final[key], reference[key]), key


def test_resume_without_a_checkpoint_says_what_to_do(tmp_path: Path, workdir: Path):
    env = toy_env(tmp_path)
    result = run_cli("train", "model=toy", "resume=true", cwd=workdir, env=env)
    assert result.returncode == 2
    assert "checkpoint=last: no training run of 'toy' has a last checkpoint" in result.stderr
    assert "Traceback" not in result.stderr
