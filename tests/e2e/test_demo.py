"""The README's main job, shortened: train the demo, test it, correct a folder with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import random_image, run_cli

pytestmark = pytest.mark.slow


def test_demo_train_test_correct(workdir: Path, env: dict[str, str], tmp_path: Path):
    short = ["trainer.max_epochs=2", "data.patches_per_image=4", "data.val_patch_size=64"]
    train = run_cli("train", "model=demo", *short, cwd=workdir, env=env)
    assert train.returncode == 0, train.stderr[-4000:]
    assert "Validation PSNR: input" in train.stdout and "gain" in train.stdout

    test = run_cli("test", "model=demo", "checkpoint=best", "data.val_patch_size=64", cwd=workdir, env=env)
    assert test.returncode == 0, test.stderr[-4000:]
    assert "test/psnr" in test.stdout and "Test PSNR: input" in test.stdout

    inputs = tmp_path / "inputs"
    random_image(inputs / "odd.png", (33, 21))
    random_image(inputs / "sub" / "gray.png", (40, 30), mode="L")
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    correct = run_cli(
        "correct",
        "model=demo",
        "checkpoint=last",
        f"data.correct_dir={inputs}",
        f"serializer.root_dir={out}",
        cwd=workdir,
        env=env,
    )
    # one bad input: the good ones are written, the bad one is named, the exit status says so
    assert correct.returncode == 1, correct.stderr[-4000:]
    assert "broken.png" in correct.stderr and "Traceback" not in correct.stderr
    assert Image.open(out / "odd.png").size == (33, 21)
    gray = Image.open(out / "sub" / "gray.png")
    assert gray.size == (40, 30) and gray.mode == "L"
    assert "broken.png" in (out / "failures.tsv").read_text()


def test_correct_refuses_to_overwrite(workdir: Path, env: dict[str, str], tmp_path: Path):
    train = run_cli(
        "train",
        "model=demo",
        "debug=fdr",
        "logger=none",
        "trainer.fast_dev_run=false",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=1",
        "+trainer.limit_val_batches=1",
        cwd=workdir,
        env=env,
    )
    assert train.returncode == 0, train.stderr[-4000:]
    inputs = tmp_path / "inputs"
    random_image(inputs / "a.png", (20, 20))
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"user data")
    correct = run_cli(
        "correct",
        "model=demo",
        "checkpoint=last",
        f"data.correct_dir={inputs}",
        f"serializer.root_dir={out}",
        cwd=workdir,
        env=env,
    )
    assert correct.returncode == 1
    assert (out / "a.png").read_bytes() == b"user data"
