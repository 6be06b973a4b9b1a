from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from m3l import config


def test_arithmetic_resolvers():
    cfg = OmegaConf.create(
        {"n": 4, "mul": "${m3l.mul:${n},32}", "sum": "${m3l.sum:1,2,3}", "div": "${m3l.div:25,255}",
         "sub": "${m3l.sub:10,3}", "max": "${m3l.max:1,7,3}", "min": "${m3l.min:5,2}", "fdiv": "${m3l.floordiv:7,2}"}
    )
    assert cfg.mul == 128 and cfg.sum == 6 and cfg.sub == 7 and cfg.max == 7 and cfg.min == 2 and cfg.fdiv == 3
    assert cfg.div == pytest.approx(25 / 255)


def test_new_dir_never_reuses_a_directory(tmp_path: Path):
    taken = tmp_path / "run"
    taken.mkdir()
    (taken / "file").write_text("x")
    chosen = config._new_dir(str(taken))
    assert chosen == f"{taken}_2"
    assert config._new_dir(str(taken)) == chosen  # stable within a process
    free = tmp_path / "free"
    assert config._new_dir(str(free)) == str(free)


def test_user_config_dirs_priority(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    project, xdg = tmp_path / "project", tmp_path / "xdg"
    (project).mkdir()
    (xdg / "m3l").mkdir(parents=True)
    monkeypatch.setenv("M3L_CONFIG_PATH", f"{project}:{tmp_path / 'absent'}")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    dirs = config.user_config_dirs()
    assert dirs[:2] == [project.resolve(), (xdg / "m3l").resolve()]


def test_home_config_used_without_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("M3L_CONFIG_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".config" / "m3l").mkdir(parents=True)
    assert config.user_config_dirs()[0] == (tmp_path / ".config" / "m3l").resolve()


def test_user_config_overrides_packaged_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    user = tmp_path / "cfg"
    (user / "trainer").mkdir(parents=True)
    (user / "trainer" / "cpu.yaml").write_text("_target_: lightning.pytorch.Trainer\nmax_epochs: 77\n")
    monkeypatch.setenv("M3L_CONFIG_PATH", str(user))
    options = config.group_options("trainer")
    assert options["cpu"] == user / "trainer" / "cpu.yaml"
    assert options["default"].parent == config.PACKAGED_CONFIG_DIR / "trainer"


def test_argv_conveniences():
    argv = ["prog", "--cluster-launch", "model=demo", "trainer.gpus=4", "trainer.nodes=2", "+trainer.gpus=1", "a=1"]
    assert config.normalize_argv(argv) == [
        "prog", "--multirun", "model=demo", "++trainer.gpus=4", "++trainer.nodes=2", "++trainer.gpus=1", "a=1"
    ]
