"""A run that crashes keeps its directory, and its log says why it ended (issue 28 item 1).

Through the real command (``python -m m3l.run.train``) and through the Python API
(:class:`m3l.Experiment`): a user module that raises ``RuntimeError`` in a training step, once
in its first step (Lightning started, but nothing but the config and the log was written) and
once in its third (after Lightning wrote its first records).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.e2e.conftest import TOY_CONFIGS, toy_env

pytestmark = pytest.mark.slow

_MODULE = '''
import lightning.pytorch as pl
import torch


class CrashingModule(pl.LightningModule):
    """A user's own module whose training step number ``crash_at`` (0-based) raises."""

    def __init__(self, crash_at: int = 2):
        super().__init__()
        self.crash_at = crash_at
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

    def training_step(self, batch, batch_idx):
        if self.global_step == self.crash_at:
            raise RuntimeError(f"the user's module broke in training step {self.global_step + 1}")
        loss = torch.nn.functional.mse_loss(self.conv(batch["input"]), batch["target"])
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/psnr", -torch.nn.functional.mse_loss(self.conv(batch["input"]), batch["target"]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)
'''


def _user_code(tmp_path: Path) -> Path:
    code = tmp_path / "user_code"
    code.mkdir(exist_ok=True)
    (code / "crashing_user_module.py").write_text(_MODULE)
    return code


def _env(tmp_path: Path) -> dict[str, str]:
    code = _user_code(tmp_path)
    env = toy_env(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join([str(code), env["PYTHONPATH"]])
    return env


def _crash(tmp_path: Path, workdir: Path, crash_at: int, *more: str) -> Path:
    env = _env(tmp_path)
    result = run_cli(
        "train",
        "model=toy",
        "net._target_=crashing_user_module.CrashingModule",
        f"+net.crash_at={crash_at}",
        "~net.net",
        "~net.residual",
        "~net.optimizer",
        "~net.num_logged_examples",
        *more,
        cwd=workdir,
        env=env,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"RuntimeError: the user's module broke in training step {crash_at + 1}" in result.stderr
    runs = Path(env["M3L_RUNS_DIR"]) / "toy" / "train"
    assert runs.is_dir(), "the crashed run's directory was removed"
    (run_dir,) = runs.iterdir()
    return run_dir


def _says_why(log: Path, crash_at: int) -> None:
    text = log.read_text()
    assert f"RuntimeError: the user's module broke in training step {crash_at + 1}" in text, text[-3000:]
    assert "Traceback" in text and "training_step" in text, text[-3000:]  # where it broke, for the bug report


def test_a_run_that_crashes_in_its_first_step_keeps_its_directory_and_log(tmp_path: Path, workdir: Path):
    # logger=none: nothing but config.yaml, Hydra's record and train.log is written before the crash
    run_dir = _crash(tmp_path, workdir, 0, "logger=none")
    assert (run_dir / "config.yaml").is_file()
    assert (run_dir / "train.log").is_file()
    _says_why(run_dir / "train.log", 0)


def test_a_run_that_crashes_in_its_third_step_logs_why(tmp_path: Path, workdir: Path):
    run_dir = _crash(tmp_path, workdir, 2, "logger=csv")
    assert (run_dir / "config.yaml").is_file()
    _says_why(run_dir / "train.log", 2)


def test_an_experiment_that_crashes_keeps_its_directory_and_logs_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import sys

    from m3l import Experiment, compose

    monkeypatch.syspath_prepend(str(_user_code(tmp_path)))
    monkeypatch.setenv("M3L_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("M3L_CONFIG_PATH", str(TOY_CONFIGS))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    sys.modules.pop("crashing_user_module", None)
    cfg = compose(
        "toy",
        [
            "net._target_=crashing_user_module.CrashingModule",
            "+net.crash_at=0",
            "~net.net",
            "~net.residual",
            "~net.optimizer",
            "~net.num_logged_examples",
            "logger=none",
        ],
    )
    exp = Experiment(cfg)
    with pytest.raises(RuntimeError, match="broke in training step 1"):
        exp.fit()
    assert exp.output_dir.is_dir(), "the crashed run's directory was removed"
    _says_why(exp.output_dir / "train.log", 0)
