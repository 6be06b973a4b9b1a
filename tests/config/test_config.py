from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from m3l import config


def test_arithmetic_resolvers():
    cfg = OmegaConf.create(
        {
            "n": 4,
            "mul": "${m3l.mul:${n},32}",
            "sum": "${m3l.sum:1,2,3}",
            "div": "${m3l.div:25,255}",
            "sub": "${m3l.sub:10,3}",
            "max": "${m3l.max:1,7,3}",
            "min": "${m3l.min:5,2}",
            "fdiv": "${m3l.floordiv:7,2}",
        }
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
        "prog",
        "--multirun",
        "model=demo",
        "++trainer.gpus=4",
        "++trainer.nodes=2",
        "++trainer.gpus=1",
        "a=1",
    ]
    # -m after the overrides (argparse alone refuses it there)
    assert config.normalize_argv(["prog", "model=demo", "a=choice(1,2)", "-m"]) == [
        "prog",
        "--multirun",
        "model=demo",
        "a=choice(1,2)",
    ]


# ---------------------------------------------------------------- issue 27 item 1: the logger


def _user_model(root: Path, name: str, logger_line: str) -> None:
    (root / "model").mkdir(parents=True, exist_ok=True)
    (root / "model" / f"{name}.yaml").write_text(
        f"# @package _global_\ndefaults:\n  - /data: samples_gaussian\n  - /net: dncnn_small\n{logger_line}\nname: {name}\n"
    )


@pytest.mark.parametrize(
    ("line", "extra", "expected"),
    [
        ("  - /logger: wandb", [], ["wandb"]),  # the original M3L's form
        ("  - override /logger: wandb", [], ["wandb"]),
        ("  - /logger: csv", ["logger=wandb"], ["wandb"]),  # the command line wins over the model's pick
        ("  - override /logger: csv", ["logger=mlflow"], ["mlflow"]),
        ("  - /logger: tensorboard", [], ["tensorboard"]),  # the default's own name, picked explicitly
        ("  - /logger: many", [], ["csv", "tensorboard"]),
        ("  - /logger: [tensorboard, mlflow]", [], ["mlflow", "tensorboard"]),  # docs/logging.md's list
        ("  - /logger: [tensorboard, mlflow]", ["logger=csv"], ["csv"]),
        ("", [], ["tensorboard"]),  # none picked: m3l's default
        ("", ["logger=csv"], ["csv"]),
        ("", ["logger=none"], []),
    ],
)
def test_a_model_config_may_pick_its_logger_in_its_defaults(
    line: str, extra: list[str], expected: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("M3L_CONFIG_PATH", str(tmp_path / "configs"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    _user_model(tmp_path / "configs", "mine", line)
    for verb in ("train", "test"):
        cfg = config.compose("mine", extra, verb=verb)
        assert sorted(cfg.get("logger") or {}) == expected, (verb, line, extra)


def test_a_model_picking_two_loggers_is_hydras_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Two different picks in one defaults tree stay an error (only m3l's fallback gives way)."""
    from hydra.errors import ConfigCompositionException

    monkeypatch.setenv("M3L_CONFIG_PATH", str(tmp_path / "configs"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    _user_model(tmp_path / "configs", "two", "  - /logger: wandb\n  - /logger: csv")
    with pytest.raises(ConfigCompositionException, match="Multiple values for logger"):
        config.compose("two")


# ---------------------------------------------------------------- issue 26 item 5: shadowing configs


def test_user_configs_that_replace_packaged_ones_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "xdg" / "m3l"
    (home / "net").mkdir(parents=True)
    (home / "net" / "dncnn_small.yaml").write_text("_target_: torch.nn.Identity\n")
    (home / "net" / "only_mine.yaml").write_text("_target_: torch.nn.Identity\n")
    (home / "train.yaml").write_text("defaults:\n  - _self_\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("M3L_CONFIG_PATH", raising=False)
    found = config.shadowing_configs(
        {
            "net": "dncnn_small",
            "data": "samples_gaussian",
            "logger": ["csv", "wandb"],
            "hydra/launcher": "basic",
            "debug": None,
        },
        primary="train",
    )
    assert found == [
        ("train", (home / "train.yaml").resolve()),
        ("net/dncnn_small", (home / "net" / "dncnn_small.yaml").resolve()),
    ]
    assert config.shadowing_configs({"net": "only_mine"}) == []  # a new name replaces nothing


# ---------------------------------------------------------------- issue 26 item 14: unresolvable values


def test_an_unset_environment_variable_is_named_with_its_key(monkeypatch: pytest.MonkeyPatch):
    from omegaconf.errors import InterpolationResolutionError

    monkeypatch.delenv("M3L_TEST_UNSET_VAR", raising=False)
    cfg = OmegaConf.create(
        {"paths": {"output_dir": "${oc.env:M3L_TEST_UNSET_VAR}", "runs_dir": "runs"}, "other": "${paths.nowhere}"}
    )
    for key in ("paths.output_dir", "other"):
        parent, _, last = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        with pytest.raises(InterpolationResolutionError) as info:
            node.get(last)  # raises without the key, as Experiment's reads do
        text = config.interpolation_error(cfg, info.value)
        if key == "paths.output_dir":
            assert text.startswith(
                "paths.output_dir=${oc.env:M3L_TEST_UNSET_VAR}: the environment variable M3L_TEST_UNSET_VAR is not set"
            ), text
            assert "${oc.env:M3L_TEST_UNSET_VAR,DEFAULT}" in text
        else:
            assert text.startswith("other=${paths.nowhere}: cannot resolve"), text
