"""The "Optimizing Your Own Model" walkthrough, end to end, in a temporary HOME.

A user's own package (plain LightningModule + LightningDataModule, no m3l base class) and
configs in ~/.config/m3l: train, test with the checkpoint, correct a folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import OWN_CODE, cli_env, random_image, run_cli

pytestmark = pytest.mark.slow


def _own_code_path() -> str:
    """The example package first, then whatever PYTHONPATH the tests run with (a checkout's src)."""
    return os.pathsep.join(p for p in (str(OWN_CODE), os.environ.get("PYTHONPATH", "")) if p)


def _install_user_configs(home: Path) -> Path:
    target = home / ".config" / "m3l"
    shutil.copytree(OWN_CODE / "configs", target)
    return target


def test_walkthrough_train_test_correct(tmp_path: Path, photo_dirs: Path, workdir: Path):
    env = cli_env(tmp_path, PYTHONPATH=_own_code_path())
    _install_user_configs(Path(env["HOME"]))
    common = ["model=my_model", f"data.root_dir={photo_dirs}"]

    train = run_cli("train", *common, "trainer.max_epochs=2", cwd=workdir, env=env)
    assert train.returncode == 0, train.stderr[-3000:]
    runs = Path(env["M3L_RUNS_DIR"]) / "my_network" / "train"
    (run_dir,) = list(runs.iterdir())
    assert (run_dir / "config.yaml").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list((run_dir / "checkpoints").glob("best-*.ckpt"))
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert (run_dir / "train.log").is_file()

    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    test = run_cli("test", *common, f"checkpoint={checkpoint}", cwd=workdir, env=env)
    assert test.returncode == 0, test.stderr[-3000:]
    assert "test_psnr" in test.stdout

    inputs = tmp_path / "to_correct"
    random_image(inputs / "a.png", (37, 29))
    random_image(inputs / "nested" / "deeper" / "b.png", (64, 48), seed=1)
    out = tmp_path / "corrected"
    correct = run_cli(
        "correct",
        *common,
        "checkpoint=best",
        f"data.correct_dir={inputs}",
        f"serializer.root_dir={out}",
        cwd=workdir,
        env=env,
    )
    assert correct.returncode == 0, correct.stderr[-3000:]
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["a.png", "nested/deeper/b.png"]
    assert Image.open(out / "a.png").size == (37, 29)
    assert Image.open(out / "nested" / "deeper" / "b.png").size == (64, 48)


def test_project_config_path_wins_over_home(tmp_path: Path, photo_dirs: Path, workdir: Path):
    """$M3L_CONFIG_PATH (project-local) overrides ~/.config/m3l for the same name."""
    project = tmp_path / "project_cfg"
    shutil.copytree(OWN_CODE / "configs", project)
    (project / "net" / "my_net.yaml").write_text(
        "_target_: my_library.net.MyRestorationNetwork\nn_layers: 3\nwidth: 8\nepsilon: 0.001\n"
    )
    env = cli_env(tmp_path, PYTHONPATH=_own_code_path(), M3L_CONFIG_PATH=str(project))
    _install_user_configs(Path(env["HOME"]))
    result = run_cli(
        "train",
        "model=my_model",
        f"data.root_dir={photo_dirs}",
        "debug=fdr",
        "--cfg",
        "job",
        "--resolve",
        cwd=workdir,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "width: 8" in result.stdout and "n_layers: 3" in result.stdout
