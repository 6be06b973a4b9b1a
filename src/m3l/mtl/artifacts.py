"""Save and load the backbone and each head separately: safetensors + a JSON card.

The :class:`SaveArtifacts` callback writes them at the end of every fit, from
``mtl.Trainer`` and from the command line alike (a :class:`~m3l.mtl.MultiTaskModule` adds it
itself), into ``<run dir>/artifacts/``: ``backbone.safetensors``, ``heads/<head>.safetensors``
and a ``.json`` card beside each.

A card records the class (``module:qualname``), the constructor's keyword arguments when the
class was declared with ``@mtl.backbone``/``@mtl.head`` (so it can be rebuilt), parameter
shapes, task names and metrics. ``load_backbone``/``load_head`` rebuild the class from the
card, or fill a module you pass. A head can be attached to another trained backbone when the
widths fit (checked against both cards), and a trained backbone can take a new task.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from safetensors.torch import load_file, save_file
from torch import nn

from m3l.mtl.contracts import INIT_ARGS_ATTR, contract_of
from m3l.mtl.errors import ArtifactError

log = logging.getLogger(__name__)
FORMAT = "m3l-mtl-artifact/1"


def _class_path(module: nn.Module) -> str:
    cls = type(module)
    return f"{cls.__module__}:{cls.__qualname__}"


def _card(module: nn.Module, role: str, **extra: Any) -> dict[str, Any]:
    state = module.state_dict()
    return {
        "format": FORMAT,
        "role": role,
        "class": _class_path(module),
        "init_args": getattr(module, INIT_ARGS_ATTR, None),
        "parameters": {k: list(v.shape) for k, v in state.items()},
        "num_parameters": int(sum(p.numel() for p in module.parameters())),
        **extra,
    }


def _save(module: nn.Module, path: Path, card: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(tensors, str(path.with_suffix(".safetensors")), metadata={"format": FORMAT, "role": card["role"]})
    path.with_suffix(".json").write_text(json.dumps(card, indent=2, sort_keys=True, default=str))
    log.info("saved %s %s to %s", card["role"], card["class"], path.with_suffix(".safetensors"))
    return path.with_suffix(".safetensors")


def save_backbone(
    backbone: nn.Module,
    path: str | Path,
    tasks: list[str] | None = None,
    metrics: Mapping[str, Any] | None = None,
    out_channels: int | None = None,
) -> Path:
    """Write ``<path>.safetensors`` and ``<path>.json``; returns the safetensors path."""
    card = _card(backbone, "backbone", tasks=list(tasks or []), metrics=dict(metrics or {}), out_channels=out_channels)
    return _save(backbone, Path(path), card)


def save_head(
    head: nn.Module,
    path: str | Path,
    task: str | None = None,
    head_name: str | None = None,
    backbone_class: str | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> Path:
    """Write one head's ``.safetensors`` and ``.json`` card.

    ``task`` (the task the head belongs to) and ``head_name`` are recorded in the card; each
    defaults to the other, and without both to the file's name (``heads/left`` -> ``left``),
    as :func:`save_module` names them. Give ``task=`` for a head of a ``MultiHeadTask``."""
    task = task or head_name or Path(path).with_suffix("").name
    in_width = next(
        (getattr(head, a) for a in ("in_channels", "in_features") if isinstance(getattr(head, a, None), int)), None
    )
    card = _card(
        head,
        "head",
        task=task,
        head=head_name or task,
        backbone_class=backbone_class,
        in_channels=in_width,
        metrics=dict(metrics or {}),
    )
    return _save(head, Path(path), card)


def read_card(path: str | Path) -> dict[str, Any]:
    """The JSON card next to an artifact (``x.safetensors`` or ``x.json`` or ``x``)."""
    card_path = Path(path).with_suffix(".json")
    if not card_path.exists():
        raise ArtifactError(f"no artifact card at {card_path}: save with m3l.mtl.artifacts.save_*")
    return json.loads(card_path.read_text())


def _build(card: dict[str, Any], path: Path) -> nn.Module:
    module_name, _, qualname = card["class"].partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise ArtifactError(
            f"{path}: cannot import {card['class']} to rebuild the {card['role']}.\n  fix: make "
            f"that module importable, or pass the module: load_{card['role']}(path, module=...)"
        ) from err
    if card.get("init_args") is None:
        raise ArtifactError(
            f"{path}: {card['class']} was not declared with @mtl.{card['role']}, so its "
            f"constructor arguments are unknown.\n  fix: pass an instance: "
            f"load_{card['role']}(path, module={qualname}(...))"
        )
    return obj(**card["init_args"])


def _load(path: str | Path, role: str, module: nn.Module | None, strict: bool) -> nn.Module:
    path = Path(path)
    card = read_card(path)
    if card.get("role") != role:
        raise ArtifactError(f"{path} holds a {card.get('role')}, not a {role}")
    target = module if module is not None else _build(card, path)
    state = load_file(str(path.with_suffix(".safetensors")))
    mismatched = {
        k: (list(v.shape), list(target.state_dict()[k].shape))
        for k, v in state.items()
        if k in target.state_dict() and target.state_dict()[k].shape != v.shape
    }
    if mismatched:
        raise ArtifactError(
            f"{path}: saved shapes do not match {_class_path(target)}: "
            + ", ".join(f"{k} saved {a} vs module {b}" for k, (a, b) in mismatched.items())
            + "\n  fix: build the module with the card's init_args "
            + json.dumps(card.get("init_args"))
        )
    target.load_state_dict(state, strict=strict)
    return target


def load_backbone(path: str | Path, module: nn.Module | None = None, strict: bool = True) -> nn.Module:
    """Rebuild (or fill ``module``) from a saved backbone."""
    return _load(path, "backbone", module, strict)


def load_head(
    path: str | Path,
    module: nn.Module | None = None,
    backbone: str | Path | None = None,
    strict: bool = True,
) -> nn.Module:
    """Rebuild (or fill) a saved head; with ``backbone`` (a backbone artifact path) the
    head's input width is checked against that backbone's output width."""
    head_module = _load(path, "head", module, strict)
    if backbone is not None:
        head_card, backbone_card = read_card(path), read_card(backbone)
        want, got = head_card.get("in_channels"), backbone_card.get("out_channels")
        if want is not None and got is not None and want != got:
            raise ArtifactError(
                f"head {head_card.get('head')!r} ({path}) expects {want} input channels; backbone "
                f"{backbone_card['class']} ({backbone}) produces {got}: retrain the head on that "
                f"backbone (freeze_backbone=True) or pick a backbone with {want} output channels"
            )
    return head_module


def save_module(
    module: Any, directory: str | Path, metrics: Mapping[str, Mapping[str, float]] | None = None
) -> dict[str, Path]:
    """Save a MultiTaskModule's backbone and every head under ``directory``.

    Returns ``{"backbone": path, "<head>": path, ...}``.
    """
    directory = Path(directory)
    metrics = metrics or {}
    out_channels = _probe_out_channels(module)
    paths = {
        "backbone": save_backbone(
            module.backbone,
            directory / "backbone",
            tasks=[t.name for t in module.tasks],
            metrics=metrics,
            out_channels=out_channels,
        )
    }
    for objective in module.objectives:
        paths[objective.name] = save_head(
            objective.head,
            directory / "heads" / objective.name,
            task=objective.task,
            head_name=objective.name,
            backbone_class=_class_path(module.backbone),
            metrics=metrics.get(objective.name, {}),
        )
    return paths


def metrics_by_head(flat: Mapping[str, Any], prefix: str) -> dict[str, dict[str, float]]:
    """``{"val/left/acc": x}`` -> ``{"left": {"acc": x}}`` for one prefix."""
    out: dict[str, dict[str, float]] = {}
    for key, value in flat.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == prefix:
            out.setdefault(parts[1], {})[parts[2]] = float(value)
    return out


class SaveArtifacts(L.Callback):
    """Save the backbone and every head (safetensors + cards) when a fit ends.

    Args:
        dirpath: where to write; default ``<trainer.default_root_dir>/artifacts`` (the run
            directory of ``python -m m3l.run.train`` and of :class:`m3l.mtl.Trainer`); an
            existing folder of files this run did not write is left alone.

    The cards carry the validation metrics; a test run on the same Lightning Trainer
    afterwards rewrites them with the test metrics. Every MLflow logger of that Trainer receives the
    folder as run artifacts. Only rank zero writes; a ``fast_dev_run`` writes nothing.
    """

    def __init__(self, dirpath: str | Path | None = None) -> None:
        self.dirpath = Path(dirpath) if dirpath is not None else None
        self.paths: dict[str, Path] = {}
        self.val_metrics: dict[str, dict[str, float]] = {}

    def directory(self, trainer: L.Trainer) -> Path | None:
        """Where to write: ``dirpath``, else ``<default_root_dir>/artifacts``. A trainer left
        with Lightning's default root (the working directory) writes into its logger's
        versioned folder instead, or nowhere: never into the user's working directory."""
        if self.dirpath is not None:
            return self.dirpath
        root = Path(trainer.default_root_dir)
        cwd = Path.cwd().resolve()
        if root.resolve() == cwd:
            # the logger's own folder: ``trainer.log_dir`` would broadcast, a collective that
            # hangs a DDP run when only rank zero gets here
            log_dir = getattr(trainer.logger, "log_dir", None) if trainer.logger is not None else None
            if log_dir is None or Path(log_dir).resolve() == cwd:
                return None
            root = Path(log_dir)
        return root / "artifacts"

    def save(self, trainer: L.Trainer, module: Any, metrics: Mapping[str, Mapping[str, float]]) -> None:
        if trainer.fast_dev_run:  # a debug run leaves no weights
            return
        directory = self.directory(trainer)  # on every rank: trainer.log_dir broadcasts under DDP
        if not trainer.is_global_zero:
            return
        if directory is None:
            log.info(
                "artifacts not saved: Lightning's Trainer has no run directory (give it default_root_dir, "
                "or add SaveArtifacts(dirpath=...))"
            )
            return
        if self.dirpath is None and not self.paths and directory.exists() and any(directory.iterdir()):
            log.warning(
                "artifacts not saved: %s already holds files this run did not write (kept); "
                "pass SaveArtifacts(dirpath=...) to choose another folder",
                directory,
            )
            return
        self.paths = save_module(module, directory, metrics)
        for logger in trainer.loggers:
            if type(logger).__name__ == "MLFlowLogger":
                logger.experiment.log_artifacts(logger.run_id, str(directory))

    def on_fit_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.val_metrics = metrics_by_head(trainer.callback_metrics, "val")
        self.save(trainer, pl_module, self.val_metrics)

    def on_test_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if self.paths:  # this trainer trained them: record the test metrics in the cards
            test = metrics_by_head(trainer.callback_metrics, "test")
            self.save(trainer, pl_module, {**self.val_metrics, **test})


def _probe_out_channels(module: Any) -> int | None:
    declared = contract_of(module.backbone)
    if declared and isinstance(declared.options.get("out_channels"), int):
        return int(declared.options["out_channels"])
    for attr in ("out_channels", "out_features"):
        value = getattr(module.backbone, attr, None)
        if isinstance(value, int):
            return value
    return None


__all__ = [
    "ArtifactError",
    "SaveArtifacts",
    "load_backbone",
    "load_head",
    "metrics_by_head",
    "read_card",
    "save_backbone",
    "save_head",
    "save_module",
]
