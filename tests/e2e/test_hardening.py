"""`python -m m3l.run.correct` on hostile inputs: decompression bombs, outputs aimed at the
inputs, symlink loops. Every bad input is a listed failure; nothing of the user's is replaced."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.conftest import random_image, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture
def demo_checkpoint(tmp_path: Path) -> Path:
    """The demo model's (untrained) weights as a checkpoint, without a training run."""
    from m3l import compose
    from m3l.experiment import Experiment

    net = Experiment(compose("demo", [f"paths.runs_dir={tmp_path / 'api_runs'}"])).net
    path = tmp_path / "demo.ckpt"
    torch.save({"state_dict": net.state_dict()}, path)
    return path


def test_correct_lists_a_decompression_bomb_and_corrects_the_rest(
    workdir: Path, env: dict[str, str], tmp_path: Path, demo_checkpoint: Path, huge_png: Path
):
    inputs = tmp_path / "inputs"
    random_image(inputs / "photo.png", (33, 21))
    shutil.copy(huge_png, inputs / "bomb.png")
    out = tmp_path / "out"
    start = time.perf_counter()
    correct = run_cli("correct", "model=demo", f"checkpoint={demo_checkpoint}", f"data.correct_dir={inputs}",
                      f"serializer.root_dir={out}", cwd=workdir, env=env)
    assert correct.returncode == 1, correct.stderr[-4000:]
    assert "Traceback" not in correct.stderr and "bomb.png" in correct.stderr
    assert time.perf_counter() - start < 120
    assert Image.open(out / "photo.png").size == (33, 21)
    listed = (out / "failures.tsv").read_text()
    assert "bomb.png\t14000x14000 = 196,000,000 pixels is over the limit" in listed
