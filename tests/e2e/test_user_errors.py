"""Mistakes that are the user's to fix end as one `m3l: error:` line naming the key or path,
exit status 2, no traceback (issue 13, item 14); `HYDRA_FULL_ERROR=1` brings the traceback back."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import random_image, run_cli

pytestmark = pytest.mark.slow


def _one_error_line(result, *expected: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("m3l: error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.batch_size=-1", ["data.batch_size must be an integer >= 1, got -1"]),
        ("data.patch_size=abc", ["data.patch_size must be an integer"]),
        ("data.degradation.sigma=-3", ["GaussianNoise", "[0, inf]", "-3"]),
        (
            "data.train_dir=/nonexistent/m3l-photos",
            ["data.train_dir: /nonexistent/m3l-photos does not exist", "set data.train_dir=PATH"],
        ),
    ],
)
def test_bad_values_in_train(workdir: Path, env: dict[str, str], override: str, expected: list[str]):
    result = run_cli("train", "model=demo", "trainer.max_epochs=1", override, cwd=workdir, env=env)
    _one_error_line(result, *expected)
    assert not list(Path(env["M3L_RUNS_DIR"]).rglob("*.ckpt"))


def test_unwritable_runs_dir(workdir: Path, env: dict[str, str], tmp_path: Path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    result = run_cli("train", "model=demo", f"paths.runs_dir={a_file / 'runs'}", cwd=workdir, env=env)
    _one_error_line(result, "paths.runs_dir", str(a_file), "is a file, not a folder")
    assert a_file.read_text() == "not a folder"


def test_correct_into_the_input_folder_and_into_a_file(
    workdir: Path, env: dict[str, str], tmp_path: Path, demo_checkpoint: Path
):
    inputs = tmp_path / "inputs"
    random_image(inputs / "photo.png", (32, 24))
    before = (inputs / "photo.png").read_bytes()
    common = ("model=demo", f"checkpoint={demo_checkpoint}", f"data.correct_dir={inputs}")
    inside = run_cli("correct", *common, f"serializer.root_dir={inputs / 'out'}", cwd=workdir, env=env)
    _one_error_line(inside, "serializer.root_dir", "inside the input folder", "allow_inside_input")
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    unwritable = run_cli("correct", *common, f"serializer.root_dir={a_file / 'out'}", cwd=workdir, env=env)
    _one_error_line(unwritable, "serializer.root_dir: cannot write into", "Not a directory")
    assert sorted(p.name for p in inputs.iterdir()) == ["photo.png"] and (inputs / "photo.png").read_bytes() == before

    full = run_cli(
        "correct", *common, f"serializer.root_dir={inputs / 'out'}", cwd=workdir, env={**env, "HYDRA_FULL_ERROR": "1"}
    )
    assert full.returncode != 0 and "Traceback" in full.stderr and "ConfigError" in full.stderr
