"""Every packaged data and serializer config composes and instantiates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import OmegaConf

import m3l.config  # noqa: F401 - registers the m3l.* resolvers
from m3l.data import Degradation

CONFIGS = m3l.config.PACKAGED_CONFIG_DIR
SAMPLE_CONFIGS = sorted(p.stem for p in (CONFIGS / "data").glob("samples*.yaml"))


def compose_group(group: str, name: str, *overrides: str):
    prefix = "" if group == "serializer" else "+"  # train.yaml has `serializer: null` in its defaults
    with initialize_config_module(config_module="m3l.configs", version_base="1.3"):
        return compose(config_name="train", overrides=[f"{prefix}{group}={name}", *overrides])


@pytest.mark.parametrize("name", SAMPLE_CONFIGS)
def test_sample_data_configs_give_batches(name: str) -> None:
    cfg = compose_group("data", name)
    assert "correct_dir" in cfg.data and cfg.data.correct_dir is None
    dm = instantiate(cfg.data)
    assert dm.channels == cfg.data.channels
    assert dm.degradation is None or isinstance(dm.degradation, Degradation)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["input"].shape[0] == cfg.data.batch_size
    assert batch["input"].shape[-3] == cfg.data.channels and batch["input"].dtype == torch.float32
    for value in batch["meta"].values():
        assert value.shape[0] == cfg.data.batch_size


def test_sigma_is_written_on_the_255_scale() -> None:
    dm = instantiate(compose_group("data", "samples_gaussian").data)
    assert dm.degradation.sample(None)["sigma"] == pytest.approx(25 / 255)


@pytest.mark.parametrize("name", ["image_serializer", "video_serializer"])
def test_serializer_configs(name: str, tmp_path: Path) -> None:
    cfg = compose_group("serializer", name, f"serializer.root_dir={tmp_path}")
    serializer = instantiate(cfg.serializer)
    from lightning.pytorch.callbacks import BasePredictionWriter

    assert isinstance(serializer, BasePredictionWriter)
    assert serializer.overwrite is False and serializer.allow_inside_input is False
    assert OmegaConf.is_missing(compose_group("serializer", name).serializer, "root_dir")
