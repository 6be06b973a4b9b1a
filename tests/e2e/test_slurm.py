"""m3l on a real Slurm cluster (one node, started by .ci/setup-slurm.sh): a 2-task DDP
training and a 2-task test through Hydra's submitit launcher, a 3-trial Optuna sweep as a
job array, and Lightning's auto-requeue after SIGUSR1. The seed's cluster configs are
composed for train, test and correct."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from omegaconf import OmegaConf

from m3l.config import normalize_overrides
from tests.conftest import run_cli
from tests.e2e.conftest import TOY_CONFIGS, toy_env
from tests.e2e.slurm_cluster import release_requeued_job, slurm_unavailable, wait_for_job_state

SLURM = ["--cluster-launch", "cluster=slurm", "logger=csv"]


def _launcher(verb: str, overrides: list[str], monkeypatch: pytest.MonkeyPatch) -> dict:
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    monkeypatch.setenv("M3L_CONFIG_PATH", str(TOY_CONFIGS))
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="m3l.configs", version_base="1.3"):
            cfg = compose(verb, ["model=toy", *normalize_overrides(overrides)], return_hydra_config=True)
            return OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    finally:
        GlobalHydra.instance().clear()


@pytest.mark.parametrize("verb", ["train", "test", "correct"])
def test_seed_cluster_configs_resolve_as_the_readme_says(verb: str, monkeypatch: pytest.MonkeyPatch):
    simple = _launcher(verb, ["cluster=vulcan_simple"], monkeypatch)
    assert simple["_target_"].endswith("SlurmLauncher")
    assert (simple["timeout_min"], simple["tasks_per_node"], simple["nodes"], simple["mem_gb"]) == (2160, 4, 1, 128)
    assert simple["additional_parameters"] == {"qos": "high", "gres": "gpu:gtx1080ti:4"}

    smart = _launcher(verb, ["cluster=vulcan", "trainer.gpus=4"], monkeypatch)
    assert (smart["tasks_per_node"], smart["nodes"], smart["mem_gb"], smart["timeout_min"]) == (4, 1, 128, 2160)
    assert smart["additional_parameters"] == {"qos": "high", "gres": "gpu:p6000:4"}
    smart = _launcher(
        verb,
        ["cluster=vulcan", "trainer.gpus=2", "trainer.nodes=3", "cluster.qos=medium", "cluster.gpu_type=a100"],
        monkeypatch,
    )
    assert (smart["tasks_per_node"], smart["nodes"], smart["mem_gb"], smart["timeout_min"]) == (2, 3, 64, 4320)
    assert smart["additional_parameters"] == {"qos": "medium", "gres": "gpu:a100:2"}
    smart = _launcher(verb, ["cluster=vulcan"], monkeypatch)  # no trainer.gpus: one task
    assert (smart["tasks_per_node"], smart["mem_gb"]) == (1, 32)

    generic = _launcher(verb, ["cluster=slurm", "cluster.tasks_per_node=2", "cluster.partition=cpu"], monkeypatch)
    assert (generic["tasks_per_node"], generic["partition"], generic["gpus_per_node"]) == (2, "cpu", None)
    assert generic["additional_parameters"] == {"signal": "USR1@120"}
    assert _launcher(verb, ["cluster=slurm", "trainer.gpus=4"], monkeypatch)["gpus_per_node"] == 4


@pytest.fixture(scope="module")
def slurm() -> None:
    reason = slurm_unavailable()
    if reason:
        pytest.skip(f"no Slurm cluster: {reason}")


def _sweep_dir(stdout: str) -> Path:
    match = re.search(r"Submitit 'slurm' sweep output dir : (\S+)", stdout)
    assert match, "the job directory is printed at submission:\n" + stdout[-2000:]
    return Path(match.group(1))


@pytest.mark.slow
def test_two_task_ddp_train_then_test_on_slurm(slurm, tmp_path: Path, workdir: Path):
    env = toy_env(tmp_path)
    train = run_cli(
        "train",
        "model=toy",
        *SLURM,
        "trainer=ddp_cpu",
        "cluster.tasks_per_node=2",
        "trainer.max_epochs=1",
        cwd=workdir,
        env=env,
    )
    assert train.returncode == 0, train.stderr[-4000:]
    sweep_dir = _sweep_dir(train.stdout + train.stderr)
    checkpoint = sweep_dir / "0" / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file()
    (job_dir,) = [p for p in (sweep_dir / ".submitit").iterdir() if p.is_dir()]
    logs = {p.name: p.read_text() for p in job_dir.glob("*_log.out")}
    assert len(logs) == 2, logs.keys()
    members = sorted(m for text in logs.values() for m in re.findall(r"GLOBAL_RANK: \d, MEMBER: \d/2", text))
    assert members == ["GLOBAL_RANK: 0, MEMBER: 1/2", "GLOBAL_RANK: 1, MEMBER: 2/2"]

    # the same weights tested by 2 Slurm tasks and by one local process: the same metrics
    results = {}
    for label, extra in {
        "slurm": [*SLURM, "trainer=ddp_cpu", "cluster.tasks_per_node=2"],
        "local": ["logger=csv"],
    }.items():
        test_env = toy_env(tmp_path / label)
        result = run_cli("test", "model=toy", f"checkpoint={checkpoint}", *extra, cwd=workdir, env=test_env)
        assert result.returncode == 0, result.stderr[-4000:]
        (metrics_csv,) = Path(test_env["M3L_RUNS_DIR"]).glob("toy/test/**/csv/metrics.csv")
        (row,) = [r for r in csv.DictReader(metrics_csv.open()) if r.get("test/psnr")]
        results[label] = float(row["test/psnr"])
    assert results["slurm"] == pytest.approx(results["local"], rel=1e-6)


@pytest.mark.slow
def test_three_trial_sweep_runs_as_a_job_array(slurm, tmp_path: Path, workdir: Path):
    env = toy_env(tmp_path)
    result = run_cli(
        "train",
        "model=toy",
        *SLURM,
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.n_jobs=3",
        "net.optimizer.lr=tag(log,interval(0.001,0.1))",
        "trainer.max_epochs=1",
        "data.n_train=8",
        cwd=workdir,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    sweep_dir = _sweep_dir(result.stdout + result.stderr)
    array_tasks = sorted(
        p.name.split("_")[1] for p in (sweep_dir / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name)
    )
    assert array_tasks == ["0", "1", "2"], list((sweep_dir / ".submitit").iterdir())
    assert len({p.name.split("_")[0] for p in (sweep_dir / ".submitit").iterdir() if "_" in p.name and p.is_dir()}) == 1
    study = optuna.load_study(study_name="toy", storage=f"sqlite:///{Path(env['M3L_RUNS_DIR']) / 'toy' / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    for job in range(3):
        assert (sweep_dir / str(job) / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_sigusr1_requeues_the_job_and_it_resumes(slurm, tmp_path: Path, workdir: Path):
    """Slurm's pre-timeout signal (here sent by hand): Lightning saves an HPC checkpoint and
    requeues the job; the requeued job runs in the same directory and resumes from it."""
    env = toy_env(tmp_path)
    name = f"m3l-requeue-{os.getpid()}-{int(time.time())}"
    args = [
        "model=toy",
        *SLURM,
        f"hydra.launcher.name={name}",
        "trainer.max_epochs=4",
        "data.n_train=64",
        "data.train_delay_s=0.02",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "m3l.run.train", *args],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    runs = Path(env["M3L_RUNS_DIR"])
    deadline = time.monotonic() + 300
    while not list(runs.glob("toy/train/multirun/*/0/checkpoints/last.ckpt")):
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.2)
    job_id = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True).stdout.split()[0]
    subprocess.run(["scancel", f"--signal={signal.SIGUSR1.name.removeprefix('SIG')}", job_id], check=True)
    wait_for_job_state(job_id, ("PENDING", "REQUEUED", "REQUEUE_HOLD"), timeout=120)
    # Slurm holds a requeued job (BeginTime about 2 minutes later): let it start now
    release_requeued_job(job_id)
    output, _ = proc.communicate(timeout=420)
    assert proc.returncode == 0, output[-4000:]

    (run_dir,) = runs.glob("toy/train/multirun/*/0")
    log = (run_dir / "train.log").read_text()
    assert "Handling auto-requeue signal" in log or "auto-requeue" in log
    assert f"Restoring states from the checkpoint path at {run_dir / 'hpc_ckpt_1.ckpt'}" in log
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4 * 16  # all epochs
