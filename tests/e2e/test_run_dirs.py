"""Run directories through the real commands: nothing is written into an existing run, a run
that fails before it does anything leaves no directory, a debug run writes no checkpoint, and
``resume=true`` resumes the run of the same settings or refuses, listing the runs there are."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli
from tests.e2e.conftest import toy_env

pytestmark = pytest.mark.slow

SHORT = ["model=toy", "trainer.max_epochs=1", "logger=csv"]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_output_dir_of_an_existing_run_is_refused_and_nothing_is_written(tmp_path: Path, workdir: Path):
    env = toy_env(tmp_path)
    first = run_cli("train", *SHORT, cwd=workdir, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    runs = Path(env["M3L_RUNS_DIR"])
    (run_dir,) = runs.glob("toy/train/*")
    before = _files(runs)

    again = run_cli("train", *SHORT, "seed=3", f"paths.output_dir={run_dir}", cwd=workdir, env=env)
    assert again.returncode == 2, again.stderr[-3000:]
    assert f"paths.output_dir={run_dir} already holds a run (config.yaml, checkpoints" in again.stderr
    assert "Traceback" not in again.stderr
    assert _files(runs) == before  # not a byte changed, no new run directory


def test_a_run_that_fails_before_training_leaves_no_directory(tmp_path: Path, workdir: Path):
    env = toy_env(tmp_path)
    runs = Path(env["M3L_RUNS_DIR"])
    missing = run_cli("train", *SHORT, f"checkpoint={tmp_path / 'absent.ckpt'}", cwd=workdir, env=env)
    assert missing.returncode == 2 and "absent.ckpt: no such file" in missing.stderr, missing.stderr[-3000:]
    broken = run_cli("train", *SHORT, "net.net.width=oops", cwd=workdir, env=env)
    assert broken.returncode == 2 and "Could not build 'net'" in broken.stderr, broken.stderr[-3000:]
    test = run_cli("test", "model=toy", "checkpoint=last", cwd=workdir, env=env)
    assert test.returncode == 2 and "checkpoint=last: no training run" in test.stderr, test.stderr[-3000:]
    assert not runs.exists() or list(runs.rglob("*")) == [], sorted(runs.rglob("*"))


def test_debug_fdr_writes_no_checkpoint_for_checkpoint_last(tmp_path: Path, workdir: Path):
    env = toy_env(tmp_path)
    fdr = run_cli("train", "model=toy", "debug=fdr", "logger=csv", cwd=workdir, env=env)
    assert fdr.returncode == 0, fdr.stderr[-3000:]
    runs = Path(env["M3L_RUNS_DIR"])
    assert list(runs.glob("toy/train/*/config.yaml")), "the debug run has its directory"
    assert list(runs.rglob("*.ckpt")) == []
    test = run_cli("test", "model=toy", "checkpoint=last", cwd=workdir, env=env)
    assert test.returncode == 2
    assert "checkpoint=last: no training run of 'toy' has a last checkpoint" in test.stderr


def _killed_before_its_first_checkpoint(args: list[str], env: dict[str, str], cwd: Path) -> Path:
    """Start a training run and SIGKILL it as soon as it has written its config.yaml."""
    runs = Path(env["M3L_RUNS_DIR"])
    before = set(runs.glob("toy/train/*"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "m3l.run.train", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not [d for d in runs.glob("toy/train/*") if d not in before and (d / "config.yaml").is_file()]:
        assert proc.poll() is None and time.monotonic() < deadline, "the run did not start"
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=60)
    (run_dir,) = set(runs.glob("toy/train/*")) - before
    assert not list(run_dir.rglob("*.ckpt"))
    return run_dir


def test_resume_never_picks_a_run_of_other_settings(tmp_path: Path, workdir: Path):
    env = toy_env(tmp_path)
    runs = Path(env["M3L_RUNS_DIR"])
    finished = run_cli("train", *SHORT, cwd=workdir, env=env)
    assert finished.returncode == 0, finished.stderr[-3000:]
    (finished_dir,) = runs.glob("toy/train/*")
    # a newer run with other settings, killed before its first checkpoint
    slow = [*SHORT, "data.train_delay_s=0.05"]
    killed_dir = _killed_before_its_first_checkpoint(slow, env, workdir)

    resumed = run_cli("train", *slow, "resume=true", cwd=workdir, env=env)
    assert resumed.returncode == 2, resumed.stderr[-3000:]
    text = " ".join(resumed.stderr.split())
    assert f"resume=true: the newest run of 'toy' with these settings, {killed_dir}, has no checkpoint" in text
    assert f"{finished_dir}/checkpoints/last.ckpt (other settings: data.train_delay_s: 0.0 there, 0.05 now)" in text
    assert "Traceback" not in resumed.stderr
    assert set(runs.glob("toy/train/*")) == {finished_dir, killed_dir}  # the refused run left nothing

    other = run_cli("train", *SHORT, "seed=99", "checkpoint=last", cwd=workdir, env=env)
    assert other.returncode == 2, other.stderr[-3000:]
    text = " ".join(other.stderr.split())
    assert "checkpoint=last: no training run of 'toy' under" in text and "seed: 7 there, 99 now" in text

    # the settings of the finished run, one epoch longer: that run goes on, and the log says how it differs
    more = run_cli("train", *SHORT, "resume=true", "trainer.max_epochs=2", cwd=workdir, env=env)
    assert more.returncode == 0, more.stderr[-3000:]
    (new_dir,) = set(runs.glob("toy/train/*")) - {finished_dir, killed_dir}
    log = " ".join((new_dir / "train.log").read_text().split())
    assert f"Resuming from {finished_dir}/checkpoints/last.ckpt" in log
    assert "trainer.max_epochs: 1 there, 2 now" in log
    assert torch.load(new_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
