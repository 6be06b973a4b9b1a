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


def test_all_five_examples_are_packaged():
    assert MODELS == [
        "mtl_allinone",
        "mtl_fmnist_mnist",
        "mtl_multifashion",
        "mtl_multimnist",
        "mtl_multimnist_multihead",
    ]


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(m, marks=pytest.mark.slow) if m in ("mtl_allinone", "mtl_fmnist_mnist", "mtl_multifashion") else m
        for m in MODELS
    ],
)
def test_config_trains_one_step(model, tmp_path):
    if model in ("mtl_multifashion", "mtl_fmnist_mnist") and not FASHION.is_dir():
        pytest.skip(f"Fashion-MNIST absent: apt-get install dataset-fashion-mnist ({FASHION})")
    cfg = compose(model)
    assert cfg.data.correct_dir is None and cfg.monitor.startswith(("val/", "eval_test/"))
    net, data = instantiate(cfg.net), instantiate(cfg.data)
    assert isinstance(net, MultiTaskModule) and isinstance(data, MultiTaskDataModule)
    assert set(net.task_by_name) == set(data.task_names)
    net.preflight(data)
    trainer = L.Trainer(
        fast_dev_run=True,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        default_root_dir=str(tmp_path),
        enable_model_summary=False,
    )
    trainer.fit(net, datamodule=data)
    assert cfg.monitor in trainer.callback_metrics


@pytest.mark.slow
def test_emtl_config_ini_keys_as_command_line_overrides(tmp_path):
    """The overrides docs/migrating.md gives for EMTL's config.ini keys compose and build."""
    import torch

    if not FASHION.is_dir():
        pytest.skip(f"Fashion-MNIST absent: apt-get install dataset-fashion-mnist ({FASHION})")
    cfg = compose(
        "mtl_fmnist_mnist",
        [
            "net.freeze_backbone=true",
            "data.batch_size=64",
            "data.num_workers=0",
            "+data.pin_memory=true",
            "net.optimizer._target_=torch.optim.SGD",
            "+net.optimizer.momentum=0.9",
            "+net.scheduler={_target_: torch.optim.lr_scheduler.ReduceLROnPlateau, _partial_: true, factor: 0.2}",
            "logger=mlflow",
            "+logger.mlflow.tags.team=vision",
        ],
    )
    net, data = instantiate(cfg.net), instantiate(cfg.data)
    assert net.freeze_backbone and data.pin_memory and data.batch_size == 64
    (head_opt, *_), (plateau, *_) = net.configure_optimizers()  # frozen: the heads' optimizers only
    assert isinstance(head_opt, torch.optim.SGD) and head_opt.param_groups[0]["momentum"] == 0.9
    assert isinstance(plateau, torch.optim.lr_scheduler.ReduceLROnPlateau) and plateau.factor == 0.2
    assert cfg.logger.mlflow.tags.team == "vision" and list(cfg.data.eval_splits) == ["train", "test"]
