"""Lightning 1.x ``Trainer`` arguments of older configs (``gpus``, ``replace_sampler_ddp``,
``progress_bar_refresh_rate``, ...): each mapped to its Lightning 2 form or refused with the new
name, and the 1.x hooks a module may still implement. Applied by
:func:`m3l.config.trainer.args.lightning2_kwargs`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from m3l.errors import ConfigError


@dataclass(frozen=True)
class Lightning1Key:
    """A ``Trainer`` argument Lightning 2 removed or renamed.

    ``new`` says what to write instead; ``convert`` (when the old meaning has an exact
    Lightning 2 form) turns the old value into Trainer arguments; without it, the key is
    refused with ``new`` in the message.
    """

    new: str
    convert: Callable[[Any], dict[str, Any]] | None = None


def _devices(accelerator: str) -> Callable[[Any], dict[str, Any]]:
    def convert(value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if isinstance(value, str) and "," in value:  # gpus="0,1": device indices
            value = [int(v) for v in value.split(",") if v.strip()]
        if isinstance(value, (list, tuple)):
            return {"accelerator": accelerator, "devices": list(value)} if value else {"accelerator": "cpu"}
        count = int(value)
        if count == 0:
            return {"accelerator": "cpu"}
        return {"accelerator": accelerator, "devices": count}

    return convert


def _rename(new: str, convert: Callable[[Any], Any] = lambda v: v) -> Lightning1Key:
    return Lightning1Key(f"trainer.{new}", lambda value: {new: convert(value)})


def _weights_summary(value: Any) -> dict[str, Any]:
    if value in (None, "none", "None", False):
        return {"enable_model_summary": False}
    if value == "top":
        return {"enable_model_summary": True}
    raise ConfigError(
        f"trainer.weights_summary={value} is a Lightning 1.x key: for a full summary add the callback "
        "callbacks.model_summary={_target_: lightning.pytorch.callbacks.ModelSummary, max_depth: -1}."
    )


def _progress_bar_refresh_rate(value: Any) -> dict[str, Any]:
    # the refresh rate itself goes to m3l's progress bar callback (see upgrade_config)
    return {"enable_progress_bar": False} if value in (0, "0") else {}


_GRAD_NORM = "lightning.pytorch.utilities.grad_norm in your module's on_before_optimizer_step"

LIGHTNING1_KEYS: dict[str, Lightning1Key] = {
    "gpus": Lightning1Key("trainer.accelerator=gpu trainer.devices=N", _devices("gpu")),
    "nodes": _rename("num_nodes", int),  # the seed's cluster configs use trainer.nodes
    "num_processes": Lightning1Key("trainer.accelerator=cpu trainer.devices=N", _devices("cpu")),
    "tpu_cores": Lightning1Key("trainer.accelerator=tpu trainer.devices=N", _devices("tpu")),
    "replace_sampler_ddp": _rename("use_distributed_sampler", bool),
    "checkpoint_callback": _rename("enable_checkpointing", bool),
    "weights_summary": Lightning1Key("trainer.enable_model_summary=true|false", _weights_summary),
    "progress_bar_refresh_rate": Lightning1Key(
        "callbacks.progress_bar.refresh_rate=N (0: trainer.enable_progress_bar=false)", _progress_bar_refresh_rate
    ),
    "reload_dataloaders_every_epoch": _rename("reload_dataloaders_every_n_epochs", lambda v: int(bool(v))),
    "distributed_backend": _rename("strategy"),
    "max_nb_epochs": _rename("max_epochs", int),
    "min_nb_epochs": _rename("min_epochs", int),
    "row_log_interval": _rename("log_every_n_steps", int),
    "train_percent_check": _rename("limit_train_batches"),
    "val_percent_check": _rename("limit_val_batches"),
    "test_percent_check": _rename("limit_test_batches"),
    "resume_from_checkpoint": Lightning1Key(
        "resume=true checkpoint=PATH (resume=true alone: the newest run of these settings; checkpoint=PATH alone: a new run from its weights)"
    ),
    "auto_select_gpus": Lightning1Key(
        "trainer.devices=N (Lightning picks the GPUs; CUDA_VISIBLE_DEVICES selects them)"
    ),
    "auto_lr_find": Lightning1Key("lightning.pytorch.tuner.Tuner(trainer).lr_find(...) in Python"),
    "auto_scale_batch_size": Lightning1Key("lightning.pytorch.tuner.Tuner(trainer).scale_batch_size(...) in Python"),
    "track_grad_norm": Lightning1Key(_GRAD_NORM),
    "log_gpu_memory": Lightning1Key(
        "callbacks.device_stats={_target_: lightning.pytorch.callbacks.DeviceStatsMonitor}"
    ),
    "flush_logs_every_n_steps": Lightning1Key("the logger's own setting, e.g. logger.tensorboard.flush_secs"),
    "log_save_interval": Lightning1Key("the logger's own setting, e.g. logger.tensorboard.flush_secs"),
    "terminate_on_nan": Lightning1Key("trainer.detect_anomaly=true"),
    "stochastic_weight_avg": Lightning1Key(
        "callbacks.swa={_target_: lightning.pytorch.callbacks.StochasticWeightAveraging, swa_lrs: LR}"
    ),
    "amp_backend": Lightning1Key("trainer.precision=16-mixed (or bf16-mixed)"),
    "amp_level": Lightning1Key("trainer.precision=16-mixed (or bf16-mixed)"),
    "prepare_data_per_node": Lightning1Key("the attribute prepare_data_per_node of your LightningDataModule"),
    "truncated_bptt_steps": Lightning1Key("the attribute truncated_bptt_steps of your LightningModule"),
    "move_metrics_to_cpu": Lightning1Key("nothing: Lightning 2 dropped it (metrics stay where they are computed)"),
    "multiple_trainloader_mode": Lightning1Key(
        "lightning.pytorch.utilities.CombinedLoader(..., mode=...) in your datamodule"
    ),
    "process_position": Lightning1Key("nothing: Lightning 2 dropped it"),
    "ipus": Lightning1Key("nothing: Lightning 2 has no IPU support"),
}

# 1.x spelled strategies as accelerators (accelerator=ddp)
_STRATEGY_ACCELERATORS = ("dp", "ddp", "ddp2", "ddp_spawn", "ddp_cpu", "ddp_sharded", "deepspeed", "horovod")

# hooks of Lightning 1.x that Lightning 2 removed, and what replaces each
_LIGHTNING1_HOOKS = {
    "training_epoch_end": "on_train_epoch_end",
    "validation_epoch_end": "on_validation_epoch_end",
    "test_epoch_end": "on_test_epoch_end",
}
