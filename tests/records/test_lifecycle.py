"""Run directories (m3l.records.lifecycle): which are free, which a failed run may remove; earlier
runs (m3l.records.past_runs): how two runs' settings differ."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from m3l.records import lifecycle as run_lifecycle
from m3l.records import past_runs
from m3l.errors import ConfigError


def test_only_a_new_or_empty_directory_is_free(tmp_path: Path):
    run_lifecycle.check_output_dir_free(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    run_lifecycle.check_output_dir_free(tmp_path / "empty")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("name: x\n")
    (run / "train.log").write_text("")
    with pytest.raises(
        ConfigError, match=r"paths.output_dir=.*/run already holds a run \(config.yaml, checkpoints, train.log\)"
    ):
        run_lifecycle.check_output_dir_free(run)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="hydra.run.dir=.* already holds files; m3l never writes"):
        run_lifecycle.check_output_dir_free(tmp_path / "mine", "hydra.run.dir")


def test_pick_dir_never_gives_one_twice(tmp_path: Path):
    first = run_lifecycle.pick_dir(tmp_path / "2026-01-01_00-00-00")
    second = run_lifecycle.pick_dir(tmp_path / "2026-01-01_00-00-00")
    assert first != second and not first.exists() and second.name == "2026-01-01_00-00-00_2"
    made = run_lifecycle.claim_dir(first / "deeper")
    assert made == [first, first / "deeper"] and (first / "deeper").is_dir()
    with pytest.raises(FileExistsError):
        run_lifecycle.claim_dir(first / "deeper")


def test_unused_run_dirs_go_and_used_ones_stay(tmp_path: Path):
    runs = tmp_path / "runs"
    unused = runs / "demo" / "train" / "t1"
    (unused / ".hydra").mkdir(parents=True)
    (unused / ".hydra" / "config.yaml").write_text("a: 1\n")
    (unused / "train.log").write_text("log\n")
    (unused / "config.yaml").write_text("a: 1\n")
    (unused / "tensorboard").mkdir()
    used = runs / "demo" / "test" / "t2"
    (used / "csv").mkdir(parents=True)
    (used / "config.yaml").write_text("a: 1\n")
    (used / "csv" / "metrics.csv").write_text("x\n")
    assert run_lifecycle.is_unused(unused) and not run_lifecycle.is_unused(used)
    assert not run_lifecycle.remove_unused(used, stop_at=runs) and (used / "csv" / "metrics.csv").is_file()
    assert run_lifecycle.remove_unused(unused, stop_at=runs)
    assert not (runs / "demo" / "train").exists() and runs.is_dir()  # empty parents go, up to runs/


def test_differences_ignore_the_runs_own_directories():
    def settings(output_dir: str, **changes) -> dict:
        cfg = OmegaConf.create(
            {
                "name": "toy",
                "seed": 7,
                "checkpoint": None,
                "resume": False,
                "paths": {"runs_dir": "runs", "output_dir": output_dir},
                "trainer": {"max_epochs": 2, "default_root_dir": "${paths.output_dir}"},
                "callbacks": {"model_checkpoint": {"dirpath": "${paths.output_dir}/checkpoints"}},
            }
        )
        cfg.merge_with(OmegaConf.from_dotlist([f"{k}={v}" for k, v in changes.items()]))
        return past_runs.run_settings(cfg)

    then = settings("runs/toy/train/t1")
    assert past_runs.differences(then, settings("runs/toy/train/t2", resume=True)) == []
    diffs = past_runs.differences(then, settings("/abs/t3", seed=8, **{"trainer.max_epochs": 4}))
    assert diffs == [("seed", 7, 8), ("trainer.max_epochs", 2, 4)]
    assert past_runs.describe(diffs) == "seed: 7 there, 8 now; trainer.max_epochs: 2 there, 4 now"


def _run(tmp_path: Path, **more) -> run_lifecycle.Run:
    cfg = OmegaConf.create({"name": "toy", "paths": {"runs_dir": str(tmp_path / "runs"), "output_dir": None}, **more})
    return run_lifecycle.Run(cfg, "train")


def test_a_verb_that_fails_says_why_in_its_log_and_keeps_its_directory_once_started(tmp_path: Path):
    import io
    import logging

    console = io.StringIO()
    handler = logging.StreamHandler(console)
    logging.getLogger("m3l").addHandler(handler)
    try:
        run = _run(tmp_path)
        with pytest.raises(RuntimeError, match="broke"), run.running("train"):
            run.write_config()
            run.start()
            raise RuntimeError("the module broke")
        log = (run.path / "train.log").read_text()
        assert "train failed: RuntimeError: the module broke" in log and "Traceback" in log
        assert "broke" not in console.getvalue()  # the terminal gets the error from whoever reports it

        before = _run(tmp_path)
        with pytest.raises(ConfigError), before.running("train"):
            before.write_config()
            raise ConfigError("a setting is wrong")
        assert not before.path.exists() and run.path.is_dir()  # nothing started: nothing left
    finally:
        logging.getLogger("m3l").removeHandler(handler)


def test_a_run_id_left_null_is_the_directory_name(tmp_path: Path):
    run = _run(tmp_path, run_id=None)
    assert run.cfg.run_id == run.path.name
    assert _run(tmp_path, run_id="abc").cfg.run_id == "abc"
    assert "run_id" not in _run(tmp_path).cfg


def test_a_report_after_the_verb_goes_to_its_log(tmp_path: Path):
    import logging

    run = _run(tmp_path)
    with run.running("train"):
        run.write_config()
    with run.recording("train"):
        logging.getLogger("m3l.mtl.trainer").info("left: acc=0.9")
    logging.getLogger("m3l.mtl.trainer").info("not recorded")
    log = (run.path / "train.log").read_text()
    assert "left: acc=0.9" in log and "not recorded" not in log
