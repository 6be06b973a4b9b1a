"""Every packaged mtl_* config composes, instantiates, passes preflight and trains a step."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import lightning as L
import pytest
from hydra.utils import instantiate

from m3l.config import compose
from m3l.mtl import MultiTaskDataModule, MultiTaskModule

CONFIG_DIR = Path(str(importlib.resources.files("m3l") / "configs" / "model"))
MODELS = sorted(p.stem for p in CONFIG_DIR.glob("mtl_*.yaml"))
FASHION = Path("/usr/share/datasets/fashion-mnist")


def test_all_four_examples_are_packaged():
    assert MODELS == ["mtl_allinone", "mtl_multifashion", "mtl_multimnist", "mtl_multimnist_multihead"]


@pytest.mark.parametrize("model", MODELS)
def test_config_trains_one_step(model, tmp_path):
    if model == "mtl_multifashion" and not FASHION.is_dir():
        pytest.skip(f"Fashion-MNIST absent: apt-get install dataset-fashion-mnist ({FASHION})")
    cfg = compose(model)
    assert cfg.data.correct_dir is None and cfg.monitor.startswith("val/")
    net, data = instantiate(cfg.net), instantiate(cfg.data)
    assert isinstance(net, MultiTaskModule) and isinstance(data, MultiTaskDataModule)
    assert set(net.task_by_name) == set(data.task_names)
    net.preflight(data)
    trainer = L.Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False,
                        default_root_dir=str(tmp_path), enable_model_summary=False)
    trainer.fit(net, datamodule=data)
    assert cfg.monitor in trainer.callback_metrics
