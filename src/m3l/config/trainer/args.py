"""The ``trainer`` config as Lightning defines it.

Every argument of ``lightning.pytorch.Trainer`` is a key of ``trainer``: the names come from
the signature of the installed Lightning (:mod:`m3l.config.trainer.signature`), values are checked
against its annotations before anything is built (:mod:`m3l.config.trainer.types`), and the Lightning
1.x keys of older configs are mapped to their Lightning 2 form or refused with the new name
(:mod:`m3l.config.trainer.lightning1`); code written against ``pytorch_lightning`` is mapped or
refused by :mod:`m3l.config.trainer.pytorch_lightning_alias`. This module applies them to a config; every
name of those modules is re-exported here (``from m3l.config.trainer.args import X`` keeps working).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from m3l.errors import ConfigError
from m3l.config.trainer.pytorch_lightning_alias import (  # noqa: F401 - re-exported
    alias_pytorch_lightning,
    check_lightning2,
    installed_version,
    pytorch_lightning_message,
)
from m3l.config.trainer.lightning1 import (  # noqa: F401
    _STRATEGY_ACCELERATORS,
    LIGHTNING1_KEYS,
    Lightning1Key,
)
from m3l.config.trainer.signature import (  # noqa: F401 - re-exported
    HYDRA_KEYS,
    TrainerParameter,
    did_you_mean,
    is_trainer_key,
    trainer_parameters,
    unknown_trainer_key,
)
from m3l.config.trainer.types import UNRESOLVED as _UNRESOLVED
from m3l.config.trainer.types import check_types, describe  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

# arguments m3l passes itself: set through their own config groups
_OWN_GROUPS = {
    "callbacks": "the `callbacks` group: add one as callbacks.NAME={_target_: ...} (callbacks=none for none)",
    "logger": "the `logger` group: logger=none for no logger, logger=csv|tensorboard|wandb|mlflow|many",
}


def upgrade_config(cfg: Any) -> list[str]:
    """Check the composed config's ``trainer`` node and carry Lightning 1.x keys over.

    Raises :class:`ConfigError` for a key Lightning's Trainer does not have (with the closest
    name), a value its annotation does not allow, or a removed 1.x key; returns notes on the
    1.x keys it maps (logged once here; :func:`lightning2_kwargs` applies them when the
    Trainer is built). Nothing is built.
    """
    from omegaconf import OmegaConf

    node = cfg.get("trainer") if cfg is not None else None
    if node is None or not OmegaConf.is_dict(node) or not trainer_parameters():
        return []
    kwargs = OmegaConf.to_container(node, resolve=False)
    assert isinstance(kwargs, dict)
    resolved = {}
    for key in kwargs:
        try:
            resolved[key] = OmegaConf.to_container(OmegaConf.create({"v": node[key]}), resolve=True)["v"]  # type: ignore[index]
        except Exception:  # noqa: BLE001 - an interpolation that cannot resolve yet: Hydra reports it later
            resolved[key] = _UNRESOLVED
    kwargs, notes = lightning2_kwargs(resolved, check=True)
    _check_accelerator(kwargs, resolved)
    rate = resolved.get("progress_bar_refresh_rate")
    progress = OmegaConf.select(cfg, "callbacks.progress_bar")
    if rate not in (None, 0, "0", _UNRESOLVED) and OmegaConf.is_dict(progress) and "refresh_rate" in progress:
        progress.refresh_rate = int(rate)
    for note in notes:
        log.info(note)
    return notes


def _check_accelerator(kwargs: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    """Refuse GPUs on a machine without any, before Lightning's "No supported gpu backend"."""
    if kwargs.get("accelerator") not in ("gpu", "cuda"):
        return
    import torch

    if torch.cuda.is_available():
        return
    asked = f"trainer.gpus={given['gpus']}" if "gpus" in given else f"trainer.accelerator={kwargs['accelerator']}"
    raise ConfigError(
        f"{asked} asks for GPUs, but PyTorch sees none on this machine (torch.cuda.is_available() is False). "
        "To run here, use trainer.accelerator=cpu (or trainer=cpu); to run on a cluster, add cluster=NAME "
        "(it submits the job: docs/clusters-and-sweeps.md)."
    )


def lightning2_kwargs(node: Mapping[str, Any], check: bool = False) -> tuple[dict[str, Any], list[str]]:
    """``lightning.pytorch.Trainer`` arguments from a resolved ``trainer`` node: Lightning 1.x
    keys converted, unknown keys and wrong types refused (with ``check``, also the values);
    returns the arguments and a note for each conversion."""
    params = trainer_parameters()
    out: dict[str, Any] = {}
    converted: dict[str, Any] = {}
    notes = []
    for key, value in node.items():
        if key in HYDRA_KEYS:
            out[key] = value
        elif key in LIGHTNING1_KEYS:
            old = LIGHTNING1_KEYS[key]
            if old.convert is None:
                raise ConfigError(
                    f"trainer.{key} is a Lightning 1.x argument that Lightning 2 removed; use {old.new} instead."
                )
            if value is _UNRESOLVED:
                continue
            new = old.convert(value)
            converted.update(new)
            shown = " ".join(f"trainer.{k}={v}" for k, v in new.items()) or old.new
            notes.append(f"trainer.{key}={value} is Lightning 1.x: using {shown} (Lightning 2).")
        elif key in _OWN_GROUPS:
            raise ConfigError(f"trainer.{key}: m3l builds the Trainer's {key} from {_OWN_GROUPS[key]}.")
        elif params and key not in params:
            raise unknown_trainer_key(key)
        else:
            out[key] = value
    accelerator = out.get("accelerator")
    if isinstance(accelerator, str) and accelerator in _STRATEGY_ACCELERATORS:
        converted.setdefault("strategy", accelerator)
        converted.setdefault("accelerator", "auto")
        notes.append(
            f"trainer.accelerator={accelerator} is Lightning 1.x: using trainer.strategy={accelerator} "
            "trainer.accelerator=auto (Lightning 2)."
        )
    out.update(converted)  # as before: the 1.x key says what the user asked for (gpus=4)
    if check:
        check_types(out)
    return out, notes


def inference_precision(node: dict[str, Any], verb: str, net: Any) -> dict[str, Any]:
    """The Trainer arguments of ``verb`` for ``net``: in ``test`` and ``correct`` a net whose
    forward m3l's inference backends run (``m3l.callbacks.FastInference``) computes in the
    precision that the ``precision=`` option picks, never under Lightning's autocast; so a
    training precision of the model config (``trainer.precision: bf16-mixed``) becomes
    ``32-true`` there, and Lightning does not announce a mixed precision that does not run."""
    if verb == "train" or net is None or "precision" not in node:
        return node
    handled = callable(getattr(net, "inference_targets", None)) or hasattr(net, "inference_forward")
    if handled and str(node["precision"]) not in ("32", "32-true"):
        return {**node, "precision": "32-true"}
    return node
