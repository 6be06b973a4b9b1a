"""Every packaged config composes and instantiates (the house rule for config groups)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from m3l import Experiment, compose
from m3l.config import PACKAGED_CONFIG_DIR
from m3l.engine.config_checks import missing_keys
from m3l.errors import ConfigError


def packaged(group: str) -> list[str]:
    root = PACKAGED_CONFIG_DIR / group
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def _fill_required(cfg, tmp_path: Path) -> None:
    """Give every `???` a value: a fresh directory (the configs that need one want a path)."""
    for key in missing_keys(cfg):
        if key.startswith("hydra."):
            continue
        path = tmp_path / key.replace(".", "_")
        path.mkdir(parents=True, exist_ok=True)
        OmegaConf.update(cfg, key, str(path), force_add=True)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("M3L_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("M3L_CONFIG_PATH", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")


def test_every_group_has_packaged_configs():
    for group in ("model", "net", "data", "serializer", "logger", "trainer", "callbacks", "cluster", "debug"):
        assert packaged(group), group


@pytest.mark.parametrize(
    "model", [pytest.param(m, marks=pytest.mark.slow) if m == "original_qgac_paper" else m for m in packaged("model")]
)
def test_model_config_instantiates(model: str, tmp_path: Path):
    from m3l.mtl.examples.multimnist import FASHION_DIR

    if model == "mtl_multifashion" and not FASHION_DIR.is_dir():
        pytest.skip(f"Fashion-MNIST is not installed ({FASHION_DIR}: Debian package dataset-fashion-mnist)")
    cfg = compose(model)
    _fill_required(cfg, tmp_path)
    exp = Experiment(cfg)
    assert isinstance(exp.net, torch.nn.Module)
    assert exp.data is not None
    assert cfg.name


@pytest.mark.parametrize("net", [n for n in packaged("net") if not n.startswith("mtl_")])
def test_restoration_net_config_instantiates(net: str, tmp_path: Path):
    exp = Experiment(compose("demo", [f"net={net}"]))
    module = exp.net
    assert sum(p.numel() for p in module.parameters()) > 0


@pytest.mark.parametrize("data", [d for d in packaged("data") if not d.startswith("mtl_")])
def test_restoration_data_config_instantiates(data: str, tmp_path: Path):
    cfg = compose("dncnn_color_gaussian", [f"data={data}"])
    _fill_required(cfg, tmp_path)
    module = Experiment(cfg).data
    assert hasattr(module, "predict_dataloader") and "correct_dir" in cfg.data


@pytest.mark.parametrize("serializer", packaged("serializer"))
def test_serializer_config_instantiates(serializer: str, tmp_path: Path):
    cfg = compose("demo", [f"serializer={serializer}", f"serializer.root_dir={tmp_path / 'out'}"])
    from lightning.pytorch.callbacks import BasePredictionWriter

    assert isinstance(Experiment(cfg).serializer, BasePredictionWriter)


@pytest.mark.parametrize(
    "logger", [pytest.param(n, marks=pytest.mark.slow) if n == "mlflow" else n for n in packaged("logger")]
)
def test_logger_config_instantiates(logger: str):
    loggers = Experiment(compose("demo", [f"logger={logger}"])).loggers
    assert all(hasattr(item, "log_metrics") for item in loggers)


@pytest.mark.parametrize("callbacks", packaged("callbacks"))
def test_callbacks_config_instantiates(callbacks: str):
    from lightning.pytorch import Callback

    assert all(isinstance(cb, Callback) for cb in Experiment(compose("demo", [f"callbacks={callbacks}"])).callbacks)


@pytest.mark.parametrize("trainer", packaged("trainer"))
def test_trainer_config_instantiates(trainer: str):
    cfg = compose("demo", [f"trainer={trainer}"])
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        # refused before anything is built, not by Lightning's "No supported gpu backend"
        with pytest.raises(ConfigError, match="PyTorch sees none on this machine"):
            Experiment(cfg)
        return
    assert Experiment(cfg).make_trainer() is not None


@pytest.mark.parametrize("debug", packaged("debug"))
def test_debug_config_instantiates(debug: str):
    trainer = Experiment(compose("demo", [f"debug={debug}"])).make_trainer()
    assert trainer is not None


def test_lightning1_gpu_keys_map_to_devices():
    exp = Experiment(compose("demo", ["trainer.gpus=0", "trainer.nodes=1"]))
    trainer = exp.make_trainer()
    assert trainer.num_nodes == 1 and type(trainer.accelerator).__name__ == "CPUAccelerator"


def test_trainer_takes_dict_arguments():
    # Lightning wants a real dict for max_time={hours: ..}, not an OmegaConf node
    trainer = Experiment(compose("demo", ["+trainer.max_time={minutes: 1, seconds: 30}"])).make_trainer()
    timer = next(cb for cb in trainer.callbacks if type(cb).__name__ == "Timer")
    assert timer.time_remaining() == 90


def _hydra_cfg(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from m3l.config import normalize_overrides

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="m3l.configs", version_base="1.3"):
        return hydra_compose("train", overrides=normalize_overrides(overrides), return_hydra_config=True)


@pytest.mark.parametrize("cluster", packaged("cluster"))
def test_cluster_config_builds_its_launcher(cluster: str):
    cfg = _hydra_cfg(["model=demo", f"cluster={cluster}"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["name"] == "demo"
    assert instantiate(cfg.hydra.launcher, _convert_="all") is not None


def test_smart_cluster_config_follows_trainer_gpus_and_nodes():
    cfg = _hydra_cfg(["model=demo", "cluster=vulcan", "trainer.gpus=4", "trainer.nodes=2", "cluster.qos=medium"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["tasks_per_node"] == 4 and launcher["nodes"] == 2 and launcher["mem_gb"] == 128
    assert launcher["timeout_min"] == 4320
    assert launcher["additional_parameters"] == {"qos": "medium", "gres": "gpu:p6000:4"}
    defaults = _hydra_cfg(["model=demo", "cluster=vulcan"])
    launcher = OmegaConf.to_container(defaults.hydra.launcher, resolve=True)
    assert launcher["tasks_per_node"] == 1 and launcher["nodes"] == 1 and launcher["mem_gb"] == 32
