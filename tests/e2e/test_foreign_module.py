"""A foreign LightningModule and DataModule, unchanged: Lightning's own ``BoringModel`` and
``BoringDataModule`` (they log no metric) train through the real command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import cli_env, run_cli

pytestmark = pytest.mark.slow


def test_boring_model_trains_past_epoch_one_with_last_checkpoint(tmp_path: Path, workdir: Path) -> None:
    env = cli_env(tmp_path)
    configs = Path(env["XDG_CONFIG_HOME"]) / "m3l"
    for group, text in {
        "net": "_target_: lightning.pytorch.demos.boring_classes.BoringModel\n",
        "data": "_target_: lightning.pytorch.demos.boring_classes.BoringDataModule\n",
        "model": "# @package _global_\ndefaults:\n  - /data: boring\n  - /net: boring\n\nname: boring\n",
    }.items():
        (configs / group).mkdir(parents=True)
        (configs / group / "boring.yaml").write_text(text)
    result = run_cli(
        "train",
        "model=boring",
        "trainer.max_epochs=3",
        "+trainer.limit_train_batches=8",
        "+trainer.limit_val_batches=4",
        cwd=workdir,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (Path(env["M3L_RUNS_DIR"]) / "boring" / "train").iterdir()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]
    output = result.stdout + result.stderr
    assert "monitor='val/psnr' is not logged by BoringModel" in output and "keeping only last.ckpt" in output
