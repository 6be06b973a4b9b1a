"""Optuna sweeps through m3l's Hydra sweeper: real training runs as trials, failed trials
recorded with their reason, a persistent sqlite study resumed and shared, parallel trials."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.conftest import run_cli
from tests.e2e.conftest import TOY_CONFIGS, toy_env

QUICK = ["trainer.max_epochs=1", "data.n_train=8", "logger=csv"]


def _sweep_dirs(env: dict[str, str]) -> list[Path]:
    return sorted((Path(env["M3L_RUNS_DIR"]) / "toy" / "train" / "multirun").iterdir())


def _study(env: dict[str, str]) -> optuna.Study:
    return optuna.load_study(study_name="toy", storage=f"sqlite:///{Path(env['M3L_RUNS_DIR']) / 'toy' / 'optuna.db'}")


@pytest.mark.slow
def test_hparams_search_configs_compose(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    monkeypatch.setenv("M3L_CONFIG_PATH", str(TOY_CONFIGS))
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="m3l.configs", version_base="1.3"):
        for search in ("optuna", "restoration"):
            for sampler in ("tpe", "random", "grid", "cmaes"):
                cfg = compose(
                    "train",
                    [f"hparams_search={search}", "model=toy", "monitor_mode=min", f"hydra/sweeper/sampler={sampler}"],
                    return_hydra_config=True,
                )
                sweeper = cfg.hydra.sweeper
                assert sweeper._target_.endswith("m3l_optuna_sweeper._sweeper.OptunaSweeper")
                assert sweeper.direction == "min" and sweeper.study_name == "toy" and cfg.hydra.mode.name == "MULTIRUN"
                assert sweeper.storage.startswith("sqlite:///") and sweeper.storage.endswith("toy/optuna.db")
                extra = {"search_space": {"x": [1, 2]}} if sampler == "grid" else {}
                assert isinstance(instantiate(sweeper.sampler, **extra), optuna.samplers.BaseSampler)
        cfg = compose("train", ["hparams_search=restoration", "model=toy"], return_hydra_config=True)
        assert "net.optimizer.lr" in cfg.hydra.sweeper.params
    GlobalHydra.instance().clear()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["hydra.sweeper.direction=sideways"], "hydra.sweeper.direction='sideways' is not a direction"),
        (
            ["hydra/sweeper/sampler=grid", "net.optimizer.lr=interval(0.001,0.1)"],
            "The grid sampler needs a finite set of values for 'net.optimizer.lr'",
        ),
        (["trainer.max_epochs=1"], "Nothing to search"),
        (["net.optimizer.lr=interval(0.1,0.001)"], "interval(0.1,0.001) needs low < high"),
        (["hydra.sweeper.n_trials=0", "net.optimizer.lr=interval(0.001,0.1)"], "must be at least 1"),
    ],
)
def test_bad_sweep_configs_fail_with_a_clear_message(args: list[str], message: str, tmp_path: Path, workdir: Path):
    env = toy_env(tmp_path)
    result = run_cli("train", "-m", "model=toy", "hparams_search=optuna", *args, cwd=workdir, env=env)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_failed_trials_are_recorded_and_the_sweep_goes_on(tmp_path: Path, workdir: Path):
    """A grid over a net that works, one whose training loss is NaN (the run raises) and one
    whose metric is NaN: one trial completes, two fail with their reason."""
    env = toy_env(tmp_path)
    result = run_cli(
        "train",
        "-m",
        "model=toy",
        "hparams_search=optuna",
        "hydra/sweeper/sampler=grid",
        *QUICK,
        "net.net.nan_in=choice(none,train,eval)",
        cwd=workdir,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    (sweep_dir,) = _sweep_dirs(env)
    report = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert report["n_complete"] == 1 and report["n_failed"] == 2
    by_value = {row["params"]["net.net.nan_in"]: row for row in report["trials"]}
    assert by_value["none"]["state"] == "COMPLETE" and report["best_params"] == {"net.net.nan_in": "none"}
    assert (
        by_value["train"]["state"] == "FAIL"
        and "TrainingDivergedError: training loss is nan" in by_value["train"]["failure"]
    )
    assert by_value["eval"]["state"] == "FAIL" and "not finite" in by_value["eval"]["failure"]
    for row in report["trials"]:  # every trial, failed or not, keeps its run directory and log
        assert (Path(row["job_dir"]) / "train.log").is_file()
    output = result.stdout + result.stderr
    assert "Failed trial" in output and "TrainingDivergedError" in output
    study = _study(env)
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "FAIL", "FAIL"]
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE


@pytest.mark.slow
def test_parallel_trials_then_resume_the_study(tmp_path: Path, workdir: Path):
    """Two trials at once as separate processes (submitit's local launcher), then the same
    study resumed by a second sweep with another sampler: it adds only the missing trial."""
    env = toy_env(tmp_path)
    search = ["hparams_search=optuna", "net.optimizer.lr=tag(log,interval(0.001,0.1))", *QUICK]
    first = run_cli(
        "train",
        "-m",
        "model=toy",
        "cluster=local",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
        *search,
        cwd=workdir,
        env=env,
    )
    assert first.returncode == 0, first.stderr[-4000:]
    (sweep_dir,) = _sweep_dirs(env)
    assert sorted(p.name for p in sweep_dir.iterdir() if p.name.isdigit()) == ["0", "1"]
    assert (sweep_dir / "0" / "checkpoints" / "last.ckpt").is_file()  # jobs wrote where they were told
    assert sorted(t.state.name for t in _study(env).trials) == ["COMPLETE", "COMPLETE"]

    second = run_cli(
        "train",
        "-m",
        "model=toy",
        "hydra.sweeper.n_trials=3",
        "hydra/sweeper/sampler=random",
        *search,
        cwd=workdir,
        env=env,
    )
    assert second.returncode == 0, second.stderr[-4000:]
    later = [d for d in _sweep_dirs(env) if d != sweep_dir]
    assert len(later) == 1 and [p.name for p in later[0].iterdir() if p.name.isdigit()] == ["0"]
    trials = _study(env).trials
    assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials)
    # the resumed study's seeded sampler does not draw the first sweep's values again
    assert len({t.params["net.optimizer.lr"] for t in trials}) == 3, [t.params for t in trials]
    report = yaml.safe_load((later[0] / "optimization_results.yaml").read_text())
    assert report["n_complete"] == 3 and report["best_value"] == max(t.value for t in trials)
