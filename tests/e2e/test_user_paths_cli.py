"""The paths the original M3L's users take (issue 27, items 1-4 and 16) and the config and
command-line hardening of issue 26 (items 5, 14, 19): real commands in subprocesses, with a
user package and configs written the way the original M3L documents them."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import OWN_CODE, cli_env, random_image, run_cli

pytestmark = pytest.mark.slow


def _error_line(result: subprocess.CompletedProcess, code: int = 2) -> str:
    """The one `m3l: error:` line of a failed command (and no traceback)."""
    assert result.returncode == code, (result.returncode, result.stdout[-2000:], result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("m3l: error:")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def _user_package(tmp_path: Path, lightning_import: str = "lightning.pytorch") -> Path:
    """examples/own_code's package, importing Lightning as ``lightning_import`` (the original
    M3L prescribes ``import pytorch_lightning as pl``); the folder to put on PYTHONPATH."""
    root = tmp_path / f"code_{lightning_import.replace('.', '_')}"
    shutil.copytree(OWN_CODE / "my_library", root / "my_library")
    for path in (root / "my_library").glob("*.py"):
        text = path.read_text()
        path.write_text(text.replace("import lightning.pytorch as pl", f"import {lightning_import} as pl"))
    return root


def _user_env(tmp_path: Path, *code: Path) -> tuple[dict[str, str], Path]:
    path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH", ""), *map(str, code)) if p)
    env = cli_env(tmp_path, PYTHONPATH=path)
    configs = Path(env["XDG_CONFIG_HOME"]) / "m3l"
    shutil.copytree(OWN_CODE / "configs", configs)
    return env, configs


def _model_config(configs: Path, name: str, defaults: list[str], extra: str = "") -> None:
    lines = "\n".join(f"  - {item}" for item in defaults)
    (configs / "model" / f"{name}.yaml").write_text(
        f"# @package _global_\ndefaults:\n  - /data: my_dataset\n  - /net: my_net\n{lines}\n"
        f"trainer:\n  max_epochs: 1\nname: {name}\n{extra}"
    )


# ------------------------------------------------------------------ issue 27 item 1


@pytest.mark.parametrize("entry", ["/logger: wandb", "override /logger: wandb"])
def test_logger_picked_in_the_model_configs_defaults(entry: str, tmp_path: Path, photo_dirs: Path, workdir: Path):
    pytest.importorskip("wandb")
    env, configs = _user_env(tmp_path, OWN_CODE)
    _model_config(configs, "with_wandb", [entry])  # the original M3L's form
    result = run_cli("train", "model=with_wandb", f"data.root_dir={photo_dirs}", "debug=fdr", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    (run_dir,) = (Path(env["M3L_RUNS_DIR"]) / "with_wandb" / "train").iterdir()
    assert list((run_dir / "wandb").glob("offline-run-*")), sorted(p.name for p in run_dir.iterdir())
    assert not (run_dir / "tensorboard").exists()  # m3l's default logger gave way


# ------------------------------------------------------------------ issue 27 item 2


@pytest.mark.parametrize(("flag", "tools"), [("--cluster-launch", []), ("-m", []), ("--cluster-launch", ["sbatch"])])
def test_cluster_launch_without_slurm_is_one_line_and_leaves_nothing(
    flag: str, tools: list[str], tmp_path: Path, workdir: Path
):
    """No Slurm client here (or sbatch without srun, which submitit also needs: 'Could not
    detect "srun"'): the same line as without the flag, before Hydra makes a sweep folder."""
    (tmp_path / "bin").mkdir()
    for tool in tools:  # a stand-in that is never run: the check only looks for it
        (tmp_path / "bin" / tool).symlink_to(shutil.which("true") or "/bin/true")
    env = cli_env(tmp_path, PATH=str(tmp_path / "bin"))
    result = run_cli("train", "model=demo", "cluster=slurm", flag, cwd=workdir, env=env)
    line = _error_line(result)
    assert "cluster=slurm submits the train job to Slurm (submitit_slurm)" in line
    assert ("no `srun`" if tools else "no `sbatch` or `srun`") in line, line
    assert not (tmp_path / "runs").exists() and not list(workdir.iterdir())
    assert "submitit" not in result.stderr.replace("(submitit_slurm)", "")


def test_slurm_refusing_the_submission_is_one_line_and_leaves_nothing(tmp_path: Path, workdir: Path):
    """sbatch there but the submission refused (no controller, a bad partition): a stand-in
    sbatch that answers as Slurm's does, srun present."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(
        '#!/bin/sh\necho "sbatch: error: Batch job submission failed: Invalid partition name specified" >&2\nexit 1\n'
    )
    sbatch.chmod(0o755)
    (bin_dir / "srun").symlink_to(shutil.which("true") or "/bin/true")
    env = cli_env(tmp_path, PATH=str(bin_dir))
    result = run_cli("train", "model=demo", "cluster=slurm", "--cluster-launch", cwd=workdir, env=env)
    line = _error_line(result)
    assert "Slurm did not accept the train job: sbatch: error: Batch job submission failed: Invalid partition" in line
    runs = tmp_path / "runs"
    assert not runs.exists() or not list(runs.rglob("*")), sorted(runs.rglob("*"))


# ------------------------------------------------------------------ issue 27 items 3 and 4


def _trials(env: dict[str, str], name: str) -> dict:
    (sweep,) = (Path(env["M3L_RUNS_DIR"]) / name / "train" / "multirun").iterdir()
    return yaml.safe_load((sweep / "optimization_results.yaml").read_text())


SWEEP = ["-m", "hparams_search=optuna", "net.width=choice(8,16)", "hydra.sweeper.n_trials=2", "logger=csv"]


def test_sweep_of_a_module_logging_its_own_metric(tmp_path: Path, photo_dirs: Path, workdir: Path):
    """A pytorch_lightning 2.x module that logs `val_psnr`, no `monitor` in its model config:
    the sweep optimizes the metric the checkpoints are ranked by, and both trials complete."""
    env, configs = _user_env(tmp_path, _user_package(tmp_path, "pytorch_lightning"))
    _model_config(configs, "own_metric", [])
    result = run_cli("train", "model=own_metric", f"data.root_dir={photo_dirs}", *SWEEP, cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    report = _trials(env, "own_metric")
    assert report["n_complete"] == 2 and report["n_failed"] == 0, report
    best = report["trials"][report["best_trial"]]["job_dir"]
    assert isinstance(report["best_value"], float) and all(t["values"] for t in report["trials"]), report
    assert "val_psnr" in (Path(best) / "train.log").read_text()
    assert "The sweep's objective is val_psnr" in result.stdout + result.stderr


def test_sweep_in_which_no_trial_completes_fails(tmp_path: Path, photo_dirs: Path, workdir: Path):
    """The checkpoints rank by val_psnr (higher is better) but the sweep minimizes: every trial
    fails with the setting to give, and the sweep exits non-zero."""
    env, configs = _user_env(tmp_path, OWN_CODE)
    _model_config(configs, "wrong_way", [])
    result = run_cli(
        "train", "model=wrong_way", f"data.root_dir={photo_dirs}", "monitor_mode=min", *SWEEP, cwd=workdir, env=env
    )
    assert result.returncode == 1, result.stderr[-4000:]
    report = _trials(env, "wrong_way")
    assert report["n_complete"] == 0 and report["n_failed"] == 2, report
    assert all("Set monitor=val_psnr monitor_mode=max" in t["failure"] for t in report["trials"]), report
    line = _error_line(result, code=1)
    assert line.startswith("m3l: error: No trial of this sweep completed (2 failed; the first reason: ConfigError")
    assert "the run returned no value" not in result.stdout + result.stderr


def test_pytorch_lightning_2_module_trains_tests_and_corrects(tmp_path: Path, photo_dirs: Path, workdir: Path):
    env, configs = _user_env(tmp_path, _user_package(tmp_path, "pytorch_lightning"))
    common = ["model=my_model", f"data.root_dir={photo_dirs}"]
    trained = run_cli("train", *common, "trainer.max_epochs=1", "logger=csv", cwd=workdir, env=env)
    assert trained.returncode == 0, trained.stderr[-4000:]
    assert "Best checkpoint:" in trained.stdout
    tested = run_cli("test", *common, "checkpoint=last", cwd=workdir, env=env)
    assert tested.returncode == 0, tested.stderr[-4000:]
    assert re.search(r"test_psnr\s+│\s+\d+\.\d+", tested.stdout), tested.stdout[-2000:]
    out = tmp_path / "corrected"
    corrected = run_cli(
        "correct",
        *common,
        "checkpoint=last",
        f"data.correct_dir={photo_dirs / 'val'}",
        f"serializer.root_dir={out}",
        cwd=workdir,
        env=env,
    )
    assert corrected.returncode == 0, corrected.stderr[-4000:]
    assert (out / "rocket.png").is_file()


def test_lightning1_hook_in_a_pytorch_lightning_module_is_named(tmp_path: Path, photo_dirs: Path, workdir: Path):
    """Code written for Lightning 1.x (its `validation_epoch_end`) under the 2.x package: one
    line naming the hook and its replacement, before anything trains (not Lightning's traceback)."""
    package = _user_package(tmp_path, "pytorch_lightning")
    net = package / "my_library" / "net.py"
    net.write_text(net.read_text() + "\n    def validation_epoch_end(self, outputs):\n        pass\n")
    env, _ = _user_env(tmp_path, package)
    result = run_cli(
        "train", "model=my_model", f"data.root_dir={photo_dirs}", "trainer.max_epochs=1", cwd=workdir, env=env
    )
    line = _error_line(result)
    assert "my_library.net.MyRestorationNetwork implements `validation_epoch_end`, a Lightning 1.x hook" in line
    assert "`on_validation_epoch_end(self)`" in line
    assert not (Path(env["M3L_RUNS_DIR"]) / "my_network").exists() or not list(
        (Path(env["M3L_RUNS_DIR"]) / "my_network").rglob("*.ckpt")
    )


def test_pytorch_lightning_1_module_keeps_its_named_error(tmp_path: Path, photo_dirs: Path, workdir: Path):
    """Where the installed pytorch_lightning is a 1.x release (a stand-in package with its
    dist-info, first on PYTHONPATH), a module built on it is refused by name."""
    old = tmp_path / "old_release"
    (old / "pytorch_lightning").mkdir(parents=True)
    (old / "pytorch_lightning" / "__init__.py").write_text(
        '__version__ = "1.9.5"\nimport torch\n\n\nclass LightningModule(torch.nn.Module):\n    pass\n'
    )
    (old / "pytorch_lightning-1.9.5.dist-info").mkdir()
    (old / "pytorch_lightning-1.9.5.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: pytorch_lightning\nVersion: 1.9.5\n"
    )
    package = _user_package(tmp_path, "lightning.pytorch")
    net = package / "my_library" / "net.py"
    net.write_text(net.read_text().replace("import lightning.pytorch as pl", "import pytorch_lightning as pl"))
    env, _ = _user_env(tmp_path, old, package)
    line = _error_line(
        run_cli("train", "model=my_model", f"data.root_dir={photo_dirs}", "debug=fdr", cwd=workdir, env=env)
    )
    assert "my_library.net.MyRestorationNetwork is built on `pytorch_lightning` 1.9.5 (Lightning 1.x)" in line
    assert "import `lightning.pytorch as pl`" in line


# ------------------------------------------------------------------ issue 27 item 16


def test_test_prints_its_metrics_once_and_no_mixed_precision_it_does_not_run(
    tmp_path: Path, workdir: Path, demo_checkpoint: Path
):
    """A model config that trains in bf16-mixed (ffdnet_color_blind does): `test` computes in
    the precision of its own `precision=` option (fp32 by default), so Lightning must not
    announce bfloat16 autocast; and the metrics table comes once (m3l's, not Lightning's too)."""
    result = run_cli(
        "test",
        "model=demo",
        f"checkpoint={demo_checkpoint}",
        "trainer.precision=bf16-mixed",
        cwd=workdir,
        env=cli_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    output = result.stdout + result.stderr
    assert "bfloat16" not in output and "Mixed Precision" not in output, output[-3000:]
    assert output.count("test/psnr ") == 1, result.stdout  # one table row (plus the gain line)
    assert "Test metric" not in output  # Lightning's own table


# ------------------------------------------------------------------ issue 26 items 5, 14, 19


def test_header_names_user_configs_that_replace_packaged_ones(tmp_path: Path, workdir: Path):
    """Also a config another one includes: logger=many takes logger/csv from the user's dir."""
    env = cli_env(tmp_path)
    packaged = Path(__file__).resolve().parents[2] / "src" / "m3l" / "configs"
    home = Path(env["XDG_CONFIG_HOME"]) / "m3l"
    for name in ("net/dncnn_small", "logger/csv"):
        (home / name).parent.mkdir(parents=True)
        shutil.copy(packaged / f"{name}.yaml", home / f"{name}.yaml")
    result = run_cli("train", "model=demo", "logger=many", "preflight_only=true", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [line for line in result.stdout.splitlines() if "your configs in place of m3l's:" in line]
    assert f"net/dncnn_small ({home / 'net/dncnn_small.yaml'})" in line, line
    assert f"logger/csv ({home / 'logger/csv.yaml'})" in line, line
    plain = run_cli("train", "model=demo", "preflight_only=true", cwd=workdir, env=cli_env(tmp_path / "other"))
    assert plain.returncode == 0 and "in place of m3l's" not in plain.stdout


@pytest.mark.parametrize("key", ["paths.output_dir", "paths.runs_dir", "hydra.run.dir"])
def test_unset_environment_variable_in_an_override_is_one_line(key: str, tmp_path: Path, workdir: Path):
    """Resolved in the job (paths.output_dir) or by Hydra for its run directory (the others)."""
    env = cli_env(tmp_path)
    env.pop("M3L_TEST_RDX", None)
    result = run_cli("train", "model=demo", f"{key}=${{oc.env:M3L_TEST_RDX}}", cwd=workdir, env=env)
    line = _error_line(result)
    assert f"{key}=${{oc.env:M3L_TEST_RDX}}: the environment variable M3L_TEST_RDX is not set" in line
    assert (result.stdout + result.stderr).strip().splitlines() == [line]  # the only line (README: exit codes)
    runs = tmp_path / "runs"
    assert not runs.exists() or not [p for p in runs.rglob("*") if p.is_file()]


def test_sigterm_line_is_two_sentences(tmp_path: Path, workdir: Path, demo_checkpoint: Path):
    inputs = tmp_path / "inputs"
    for i in range(30):
        random_image(inputs / f"photo{i:02d}.png", (640, 480), seed=i)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "m3l.run.correct",
            "model=demo",
            f"checkpoint={demo_checkpoint}",
            f"data.correct_dir={inputs}",
            f"serializer.root_dir={out}",
        ],
        cwd=workdir,
        env=cli_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    start = time.monotonic()
    while not any(out.glob("photo*.png")):
        assert proc.poll() is None, proc.stderr.read()[-3000:]  # type: ignore[union-attr]
        assert time.monotonic() - start < 300, "correct wrote nothing in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr[-3000:]
    (line,) = [line for line in stderr.splitlines() if "stopped by SIGTERM" in line]
    assert re.search(rf"written under {re.escape(str(out))}\. \d+ input\(s\) not corrected yet", line), line
