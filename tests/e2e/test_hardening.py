"""`python -m m3l.run.correct` on hostile inputs: decompression bombs, outputs aimed at the
inputs, symlink loops. Every bad input is a listed failure; nothing of the user's is replaced."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.conftest import random_image, run_cli

pytestmark = pytest.mark.slow


def test_correct_lists_a_decompression_bomb_and_corrects_the_rest(
    workdir: Path, env: dict[str, str], tmp_path: Path, demo_checkpoint: Path, huge_png: Path
):
    inputs = tmp_path / "inputs"
    random_image(inputs / "photo.png", (33, 21))
    shutil.copy(huge_png, inputs / "bomb.png")
    out = tmp_path / "out"
    start = time.perf_counter()
    correct = run_cli(
        "correct",
        "model=demo",
        f"checkpoint={demo_checkpoint}",
        f"data.correct_dir={inputs}",
        f"serializer.root_dir={out}",
        cwd=workdir,
        env=env,
    )
    assert correct.returncode == 1, correct.stderr[-4000:]
    assert "Traceback" not in correct.stderr and "bomb.png" in correct.stderr
    assert time.perf_counter() - start < 120
    assert Image.open(out / "photo.png").size == (33, 21)
    listed = (out / "failures.tsv").read_text()
    assert "bomb.png\t14000x14000 = 196,000,000 pixels is over the limit" in listed


def _start_correct(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "m3l.run.correct", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(condition, proc, timeout: float = 300.0) -> None:
    start = time.monotonic()
    while not condition():
        assert proc.poll() is None, f"correct ended before the test could stop it:\n{proc.stderr.read()[-4000:]}"
        assert time.monotonic() - start < timeout, "correct wrote nothing in time"
        time.sleep(0.05)


def test_sigterm_stops_correct_cleanly_and_a_rerun_finishes(
    workdir: Path, env: dict[str, str], tmp_path: Path, demo_checkpoint: Path
):
    import signal

    inputs = tmp_path / "inputs"
    names = [f"photo{i:02d}.png" for i in range(30)]
    for i, name in enumerate(names):
        random_image(inputs / name, (640, 480), seed=i)
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".photo00.png.k3x9_a7q.part"  # what a SIGKILLed run leaves behind
    stale.write_bytes(b"half a file")
    (out / "notes.txt").write_text("the user's own file")
    args = ("model=demo", f"checkpoint={demo_checkpoint}", f"data.correct_dir={inputs}", f"serializer.root_dir={out}")

    proc = _start_correct(*args, cwd=workdir, env=env)
    _wait_for(lambda: any(out.glob("photo*.png")), proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)

    assert proc.returncode == 143, stderr[-4000:]
    assert "Traceback" not in stderr and "stopped by SIGTERM" in stderr and "skip_existing=true" in stderr
    assert not stale.exists() and (out / "notes.txt").read_text() == "the user's own file"
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]
    written = {p.name for p in out.glob("photo*.png")}
    assert 0 < len(written) < len(names), "the run should have stopped part way"
    for name in written:  # every file written is whole
        assert Image.open(out / name).size == (640, 480)
    listed = {Path(line.split("\t")[0]).name for line in (out / "failures.tsv").read_text().splitlines()[1:]}
    assert listed | written == set(names) and not listed & written
    mtimes = {name: (out / name).stat().st_mtime_ns for name in written}

    rerun = run_cli("correct", *args, "serializer.skip_existing=true", cwd=workdir, env=env)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert {p.name for p in out.glob("photo*.png")} == set(names)
    assert all((out / name).stat().st_mtime_ns == mtime for name, mtime in mtimes.items())


def test_sigterm_during_a_video_drops_the_partial_video(
    workdir: Path, env: dict[str, str], tmp_path: Path, demo_checkpoint: Path
):
    import signal

    from m3l.data.io import write_video

    frames = torch.rand(1, 3, 96, 128).expand(400, 3, 96, 128).clone()
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    write_video(inputs / "clip.mp4", frames, fps=25, crf=30)
    out = tmp_path / "out"
    proc = _start_correct(
        "model=demo",
        f"checkpoint={demo_checkpoint}",
        f"data.correct_dir={inputs}",
        f"serializer.root_dir={out}",
        "serializer=video_serializer",
        cwd=workdir,
        env=env,
    )
    _wait_for(lambda: out.is_dir() and any(p.name.endswith(".part") for p in out.iterdir()), proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)

    assert proc.returncode == 143, stderr[-4000:]
    assert "Traceback" not in stderr
    assert sorted(p.name for p in out.iterdir()) == ["failures.tsv"]
    assert "clip.mp4\tnot corrected: the run was stopped" in (out / "failures.tsv").read_text()
