"""The trainer config follows lightning.pytorch.Trainer: every argument settable, values
checked against its annotations, Lightning 1.x keys mapped or refused with the new name."""

from __future__ import annotations

import inspect

import lightning.pytorch as pl
import pytest
import torch

from m3l import Experiment, compose
from m3l._compat.lightning import uses_distributed_sampler
from m3l.config import normalize_overrides
from m3l.errors import ConfigError
from m3l.config.trainer.args import (
    LIGHTNING1_KEYS,
    check_lightning2,
    check_types,
    describe,
    lightning2_kwargs,
    trainer_parameters,
)


def test_parameters_are_those_of_the_installed_lightning():
    signature = inspect.signature(pl.Trainer.__init__).parameters
    assert list(trainer_parameters()) == [name for name in signature if name != "self"]
    assert trainer_parameters()["max_epochs"].annotation == "Optional[int]"


def test_every_argument_is_settable_from_the_command_line():
    names = [n for n in trainer_parameters() if n not in ("callbacks", "logger")]
    overrides = normalize_overrides([f"trainer.{name}=1" for name in names])
    assert overrides == [f"++trainer.{name}=1" for name in names]
    # a typo is left to Hydra, whose error m3l answers with the closest name
    assert normalize_overrides(["trainer.max_epoch=1", "+trainer.x=1", "trainer=cpu"]) == [
        "trainer.max_epoch=1",
        "+trainer.x=1",
        "trainer=cpu",
    ]
    # `+` on a listed key is refused by Hydra ("an item is already at"): any Trainer argument takes it
    assert normalize_overrides(["+trainer.max_epochs=3", "~trainer.benchmark"]) == [
        "++trainer.max_epochs=3",
        "~trainer.benchmark",
    ]
    cfg = compose("demo", ["trainer.limit_train_batches=2", "trainer.overfit_batches=0.5", "trainer.gpus=0"])
    assert cfg.trainer.limit_train_batches == 2 and cfg.trainer.overfit_batches == 0.5


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("max_epochs", "abc", "expects an integer or null for `max_epochs` (got a string)"),
        ("limit_train_batches", True, "expects an integer or a number or null"),
        ("precision", 17, "one of 64, 32, 16, 'transformer-engine'"),
        ("deterministic", "maybe", "one of 'warn' or true/false or null"),
        ("devices", 1.5, "a list of (an integer) or a string or an integer"),
    ],
)
def test_values_are_checked_against_the_annotations(key, value, expected):
    with pytest.raises(ConfigError, match=f"trainer.{key}=") as info:
        check_types({key: value})
    assert expected in str(info.value)


def test_values_lightning_accepts_pass():
    check_types(
        {
            "max_epochs": 3,
            "precision": "bf16-mixed",
            "devices": [0, 1],
            "val_check_interval": 0.25,
            "max_time": {"hours": 1},
            "strategy": {"_target_": "lightning.pytorch.strategies.DDPStrategy"},
            "deterministic": "warn",
            "default_root_dir": "runs",
        }
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"gpus": 4}, {"accelerator": "gpu", "devices": 4}),
        ({"gpus": "0,1"}, {"accelerator": "gpu", "devices": [0, 1]}),
        ({"gpus": 0}, {"accelerator": "cpu"}),
        ({"nodes": 2}, {"num_nodes": 2}),
        ({"num_processes": 2}, {"accelerator": "cpu", "devices": 2}),
        ({"replace_sampler_ddp": False}, {"use_distributed_sampler": False}),
        ({"checkpoint_callback": False}, {"enable_checkpointing": False}),
        ({"weights_summary": None}, {"enable_model_summary": False}),
        ({"progress_bar_refresh_rate": 0}, {"enable_progress_bar": False}),
        ({"reload_dataloaders_every_epoch": True}, {"reload_dataloaders_every_n_epochs": 1}),
        ({"distributed_backend": "ddp"}, {"strategy": "ddp"}),
        ({"accelerator": "ddp"}, {"strategy": "ddp", "accelerator": "auto"}),
        ({"max_nb_epochs": 3}, {"max_epochs": 3}),
        ({"val_percent_check": 0.5}, {"limit_val_batches": 0.5}),
    ],
)
def test_lightning1_keys_are_mapped(old, new):
    kwargs, notes = lightning2_kwargs(old, check=True)
    assert kwargs == new
    assert notes and "Lightning 1.x" in notes[0]


@pytest.mark.parametrize("key", [k for k, v in LIGHTNING1_KEYS.items() if v.convert is None])
def test_removed_lightning1_keys_are_refused_with_the_new_name(key):
    with pytest.raises(ConfigError, match=f"trainer.{key} is a Lightning 1.x argument") as info:
        lightning2_kwargs({key: 1})
    assert f"use {LIGHTNING1_KEYS[key].new} instead" in str(info.value)


def test_lightning1_keys_in_a_config_build_a_trainer(tmp_path):
    cfg = compose(
        "demo",
        [
            "trainer.gpus=0",
            "trainer.replace_sampler_ddp=false",
            "trainer.weights_summary=top",
            "trainer.progress_bar_refresh_rate=5",
            "logger=none",
        ],
    )
    exp = Experiment(cfg)
    assert exp.cfg.callbacks.progress_bar.refresh_rate == 5
    trainer = exp.make_trainer()
    assert trainer.accelerator.__class__.__name__ == "CPUAccelerator"
    assert uses_distributed_sampler(trainer) is False


def test_unknown_key_in_a_config_file_gets_the_closest_name():
    cfg = compose("demo", ["+trainer.max_epoch=3"])
    with pytest.raises(ConfigError, match="Did you mean `max_epochs`"):
        Experiment(cfg)


def test_gpus_without_a_gpu_is_refused_before_lightning(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"trainer.gpus=4 asks for GPUs, but PyTorch sees none.*cluster=NAME"):
        Experiment(compose("demo", ["trainer.gpus=4"]))


def test_describe_says_annotations_in_words():
    from typing import Optional, Union

    assert describe(Optional[int]) == "an integer or null"
    assert describe(Union[int, float, None]) == "an integer or a number or null"


def _fresh_python(code: str) -> str:
    """Run ``code`` in a new interpreter (the import order matters); its stdout."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_pytorch_lightning_2_is_the_package_m3l_runs():
    """Imported after m3l, ``pytorch_lightning`` (2.x here) is ``lightning.pytorch``: a module
    written against it mixes with m3l's Trainer, callbacks and datamodules."""
    out = _fresh_python(
        "import m3l.engine.instantiation, lightning.pytorch as L, lightning.fabric as F\n"
        "import pytorch_lightning as pl, lightning_fabric\n"
        "from pytorch_lightning.callbacks import ModelCheckpoint\n"
        "from m3l.config.trainer.args import check_lightning2\n"
        "check_lightning2({'net': pl.LightningModule()})\n"
        "print(pl.LightningModule is L.LightningModule, ModelCheckpoint is L.callbacks.ModelCheckpoint,\n"
        "      lightning_fabric is F, L.__spec__.name)\n"
    )
    assert out.split() == ["True", "True", "True", "lightning.pytorch"]


@pytest.mark.slow
def test_pytorch_lightning_imported_before_m3l_is_refused_with_the_import_to_use():
    out = _fresh_python(
        "import pytorch_lightning\n"
        "from m3l.errors import ConfigError\n"
        "from m3l.config.trainer.args import check_lightning2\n"
        "class Old(pytorch_lightning.LightningModule): pass\n"
        "try:\n    check_lightning2({'net': Old(), 'data': None})\n"
        "except ConfigError as exc:\n    print(exc)\n"
    )
    assert "'net'" in out and "imported before m3l" in out and "import `lightning.pytorch as pl`" in out
    check_lightning2({"net": pl.LightningModule()})


def test_unknown_argument_in_another_group_gets_the_closest_name():
    cfg = compose("demo", ["+data.batch_sise=3"])
    with pytest.raises(ConfigError, match="(?s)Could not build .data.*Did you mean `batch_size`") as info:
        Experiment(cfg).data
    assert "unexpected keyword argument 'batch_sise'" in str(info.value)
