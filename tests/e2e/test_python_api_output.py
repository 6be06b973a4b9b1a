"""From a plain Python script (no logging configured), a verb says what the command would on the
terminal: which weights `best` took, what was written where (docs/configs.md, Python API)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli_env, random_image

SCRIPT = """
from m3l import Experiment, compose
short = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "logger=none",
         "data.patches_per_image=2", "data.batch_size=4"]
Experiment(compose("demo", short)).fit()
Experiment(compose("demo", short, verb="correct")).correct(checkpoint="best", correct_dir="in", root_dir="out")
"""


@pytest.mark.slow
def test_a_script_hears_what_the_command_would_say(tmp_path: Path) -> None:
    random_image(tmp_path / "in" / "photo.png", (48, 40))
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    said = result.stderr
    assert "m3l: checkpoint=best: " in said and "m3l: wrote 1 file(s) under out" in said, said[-3000:]
    assert said.count("m3l: wrote 1 file(s)") == 1  # once: no handler left behind from the first verb
