"""The command line as a Lightning user expects it (issue 16) and the seed's Lightning 1.x
configs and cluster line (issue 14, items 3 and 4): real commands in subprocesses."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import OWN_CODE, cli_env, run_cli

pytestmark = pytest.mark.slow

NOISE = ("Total FLOPs", "LeafSpec", "Tip:", "srun", "Error importing", "GPU available", "├──")


def _error(result: subprocess.CompletedProcess, code: int = 2) -> str:
    """The one `m3l: error:` line of a failed command (and nothing like a traceback)."""
    assert result.returncode == code, (result.returncode, result.stdout[-2000:], result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("m3l: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_demo_prints_a_short_header_and_whole_paths(tmp_path: Path, workdir: Path):
    # a runs directory longer than 80 columns: a log must still hold the whole checkpoint path
    runs = tmp_path / ("a_long_directory_name_" * 4) / "runs"
    env = cli_env(tmp_path, M3L_RUNS_DIR=str(runs))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "m3l.run.train",
            "model=demo",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=1",
            "trainer.log_every_n_steps=1",
        ],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:]
    # (matplotlib says once per machine that it built its font cache: a fresh HOME here)
    lines = [line for line in out.splitlines() if "matplotlib.font_manager" not in line]
    assert lines[0] == "m3l train: model demo, net DnCNN, data samples_gaussian", out
    run_dir = next(Path(line.split(": ", 1)[1]) for line in lines if line.startswith("  run directory: "))
    assert run_dir.parent == runs / "demo" / "train" and (run_dir / "config.yaml").is_file()
    first_progress = next(i for i, line in enumerate(lines) if "train epoch 1" in line)
    assert first_progress <= 8, out  # header, model line, Lightning's note on limit_val_batches
    assert not [n for n in NOISE if n in out], out
    best = next(line for line in lines if line.startswith("Best checkpoint: "))
    path = Path(best.split(": ", 1)[1])
    assert len(str(path)) > 120 and path.is_file()


def test_print_config_prints_the_config(workdir: Path, tmp_path: Path):
    result = run_cli(
        "train", "model=demo", "print_config=true", "trainer.max_epochs=abc", cwd=workdir, env=cli_env(tmp_path)
    )
    assert "├── trainer" in result.stdout and "max_epochs: abc" in result.stdout
    assert _error(result).startswith("m3l: error: trainer.max_epochs=abc:")


def test_wrong_type_is_one_line_before_anything_is_built(workdir: Path, tmp_path: Path):
    result = run_cli("train", "model=demo", "trainer.max_epochs=abc", cwd=workdir, env=cli_env(tmp_path))
    assert _error(result) == (
        "m3l: error: trainer.max_epochs=abc: lightning.pytorch.Trainer expects an integer or null for "
        "`max_epochs` (got a string)."
    )
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*"))  # nothing left
    assert "├──" not in result.stdout and "m3l train:" not in result.stdout  # no config tree, no header


def test_typos_of_other_groups_get_the_closest_key(user, workdir: Path):
    env, _, common = user
    line = _error(run_cli("train", "model=demo", "data.batch_sise=4", cwd=workdir, env=env))
    assert "data.batch_sise" in line and "Did you mean `batch_size`?" in line and "+data" not in line
    line = _error(run_cli("train", *common, "net.n_layer=4", cwd=workdir, env=env))
    assert "(my_library.net.MyRestorationNetwork)" in line and "Did you mean `n_layers`?" in line
    # an argument of the target that the config does not list: say how to add it
    line = _error(run_cli("train", *common, "net.lr=0.01", cwd=workdir, env=env))
    assert "takes `lr`" in line and "+net.lr=VALUE" in line


def test_lightning1_keys_of_a_seed_config_are_mapped(user, workdir: Path):
    env, configs, common = user
    model = configs / "model" / "my_model.yaml"
    model.write_text(
        model.read_text().replace(
            "trainer:\n",
            "trainer:\n  gpus: 0\n  replace_sampler_ddp: false\n  progress_bar_refresh_rate: 0\n"
            "  weights_summary: null\n",
        )
    )
    result = run_cli("train", *common, "debug=fdr", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    assert "trainer.replace_sampler_ddp=False is Lightning 1.x: using trainer.use_distributed_sampler=False" in out
    assert "trainer.gpus=0 is Lightning 1.x: using trainer.accelerator=cpu" in out
    assert "train epoch" not in out  # progress_bar_refresh_rate: 0 turned the progress display off


def test_removed_lightning1_key_is_refused_with_the_new_name(workdir: Path, tmp_path: Path):
    line = _error(
        run_cli("train", "model=demo", "trainer.resume_from_checkpoint=x.ckpt", cwd=workdir, env=cli_env(tmp_path))
    )
    assert "Lightning 1.x argument" in line and "checkpoint=PATH" in line


def test_module_importing_a_lightning1_name_is_named(user, workdir: Path, tmp_path: Path):
    """`pytorch_lightning` 2.x is the package m3l runs (tests/e2e/test_user_paths_cli.py); a
    name only Lightning 1.x had is refused with what to do."""
    env, _, common = user
    package = tmp_path / "old_code" / "my_library"
    shutil.copytree(OWN_CODE / "my_library", package)
    net = package / "net.py"
    net.write_text(
        net.read_text().replace(
            "import lightning.pytorch as pl",
            "import pytorch_lightning as pl\nfrom pytorch_lightning.callbacks.base import Callback",
        )
    )
    env = dict(env, PYTHONPATH=os.pathsep.join([os.environ.get("PYTHONPATH", ""), str(package.parent)]))
    result = run_cli("train", *common, "debug=fdr", cwd=workdir, env=env)
    assert "Could not build 'net'" in _error(result)
    assert (
        "uses a `pytorch_lightning` name that Lightning 2 does not have (`pytorch_lightning.callbacks.base`"
        in result.stderr
    )


@pytest.mark.parametrize("with_override", [True, False])
def test_model_config_without_package_line(user, workdir: Path, with_override: bool):
    env, configs, common = user
    model = configs / "model" / "my_model.yaml"
    text = model.read_text().replace("# @package _global_\n", "")
    if not with_override:
        text = text.replace("  - override /serializer: image_serializer  # required for correcting images\n", "")
    model.write_text(text)
    line = _error(run_cli("train", *common, cwd=workdir, env=env))
    assert f"{model} has no `# @package _global_` line" in line


@pytest.mark.parametrize("part", ["job", "hydra", "all"])
def test_cfg_resolve_prints_the_config(workdir: Path, tmp_path: Path, part: str):
    result = run_cli("train", "model=demo", "--cfg", part, "--resolve", cwd=workdir, env=cli_env(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("runs_dir: " in result.stdout) == (part != "hydra")
    assert part == "job" or re.search(r"dir: .*/runs/demo/train/\d{4}-", result.stdout)


def test_cluster_without_launch_flag_says_where_to_submit(workdir: Path, tmp_path: Path):
    (tmp_path / "bin").mkdir()
    env = cli_env(tmp_path, PATH=str(tmp_path / "bin"))  # no sbatch here
    result = run_cli("train", "model=demo", "cluster=vulcan", "trainer.gpus=4", cwd=workdir, env=env)
    line = _error(result)
    assert "cluster=vulcan submits the train job to Slurm (submitit_slurm)" in line
    assert "no `sbatch`" in line and "submission node" in line
    assert not (tmp_path / "runs").exists()


def test_base_install_has_no_sweeper_warning(workdir: Path, tmp_path: Path):
    """Without Optuna (no m3l[sweep]) Hydra's plugin scan stays quiet."""
    code = (
        "import runpy, sys; sys.modules['optuna'] = None; "
        "sys.argv = ['train', 'model=demo', '--cfg', 'job']; runpy.run_module('m3l.run.train', run_name='__main__')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=workdir, env=cli_env(tmp_path), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
