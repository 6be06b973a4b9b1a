"""The ``trainer`` config as Lightning defines it.

Every argument of ``lightning.pytorch.Trainer`` is a key of ``trainer``: the names come from
the signature of the installed Lightning (read from its source, so the command line needs no
import of Lightning to know them), values are checked against its annotations before anything
is built, and the Lightning 1.x keys of older configs (``gpus``, ``replace_sampler_ddp``,
``progress_bar_refresh_rate``, ...) are mapped to their Lightning 2 form or refused with the
new name.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import logging
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from m3l.errors import ConfigError

log = logging.getLogger(__name__)

# keys of a config node that belong to Hydra, not to the target's arguments
HYDRA_KEYS = ("_target_", "_convert_", "_recursive_", "_partial_", "_args_")


@dataclass(frozen=True)
class TrainerParameter:
    """One argument of ``lightning.pytorch.Trainer``: its annotation and default as written."""

    name: str
    annotation: str
    default: str


@lru_cache(maxsize=1)
def trainer_parameters() -> dict[str, TrainerParameter]:
    """The arguments of ``lightning.pytorch.Trainer.__init__`` of the installed Lightning.

    Read from the source with :mod:`ast` (a few milliseconds; importing Lightning takes
    seconds). Empty when Lightning's source cannot be found or read.
    """
    try:
        spec = importlib.util.find_spec("lightning")
        if spec is None or spec.origin is None:
            return {}
        source = Path(spec.origin).parent / "pytorch" / "trainer" / "trainer.py"
        tree = ast.parse(source.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError, ImportError):
        return {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Trainer":
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    return _parameters(item.args)
    return {}


def _parameters(args: ast.arguments) -> dict[str, TrainerParameter]:
    positional = args.posonlyargs + args.args
    pos_defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    pairs = [*zip(positional, pos_defaults), *zip(args.kwonlyargs, args.kw_defaults)]
    params = {}
    for arg, default in pairs:
        if arg.arg == "self":
            continue
        params[arg.arg] = TrainerParameter(
            name=arg.arg,
            annotation=ast.unparse(arg.annotation) if arg.annotation is not None else "Any",
            default=ast.unparse(default) if default is not None else "",
        )
    return params


# ---------------------------------------------------------------------- Lightning 1.x keys


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
    "resume_from_checkpoint": Lightning1Key("resume=true checkpoint=PATH (resume=true alone: the newest run of these settings; checkpoint=PATH alone: a new run from its weights)"),
    "auto_select_gpus": Lightning1Key("trainer.devices=N (Lightning picks the GPUs; CUDA_VISIBLE_DEVICES selects them)"),
    "auto_lr_find": Lightning1Key("lightning.pytorch.tuner.Tuner(trainer).lr_find(...) in Python"),
    "auto_scale_batch_size": Lightning1Key("lightning.pytorch.tuner.Tuner(trainer).scale_batch_size(...) in Python"),
    "track_grad_norm": Lightning1Key(_GRAD_NORM),
    "log_gpu_memory": Lightning1Key("callbacks.device_stats={_target_: lightning.pytorch.callbacks.DeviceStatsMonitor}"),
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
    "multiple_trainloader_mode": Lightning1Key("lightning.pytorch.utilities.CombinedLoader(..., mode=...) in your datamodule"),
    "process_position": Lightning1Key("nothing: Lightning 2 dropped it"),
    "ipus": Lightning1Key("nothing: Lightning 2 has no IPU support"),
}

# 1.x spelled strategies as accelerators (accelerator=ddp)
_STRATEGY_ACCELERATORS = ("dp", "ddp", "ddp2", "ddp_spawn", "ddp_cpu", "ddp_sharded", "deepspeed", "horovod")

# arguments m3l passes itself: set through their own config groups
_OWN_GROUPS = {
    "callbacks": "the `callbacks` group: add one as callbacks.NAME={_target_: ...} (callbacks=none for none)",
    "logger": "the `logger` group: logger=none for no logger, logger=csv|tensorboard|wandb|mlflow|many",
}


def is_trainer_key(name: str) -> bool:
    """Whether ``trainer.<name>`` is something m3l knows: a Lightning 2 or 1.x argument."""
    return name in trainer_parameters() or name in LIGHTNING1_KEYS


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` Did you mean `x`?`` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f" Did you mean `{close[0]}`?" if close else ""


def unknown_trainer_key(name: str, where: str = "") -> ConfigError:
    params = trainer_parameters()
    hint = did_you_mean(name, [*params, *LIGHTNING1_KEYS])
    where = f" ({where})" if where else ""
    return ConfigError(
        f"trainer.{name}{where}: lightning.pytorch.Trainer has no argument `{name}`.{hint or ''} "
        "Every argument of lightning.pytorch.Trainer is a key of `trainer` (docs/configs.md#trainer)."
    )


# ---------------------------------------------------------------------- checks


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


_UNRESOLVED = object()


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


def check_types(kwargs: Mapping[str, Any]) -> None:
    """Refuse a value its annotation in ``Trainer.__init__`` does not allow."""
    hints = _trainer_hints()
    for key, value in kwargs.items():
        if key in HYDRA_KEYS or key not in hints or value is _UNRESOLVED:
            continue
        if not _matches(value, hints[key]):
            raise ConfigError(
                f"trainer.{key}={_show(value)}: lightning.pytorch.Trainer expects {describe(hints[key])} "
                f"for `{key}` (got {_kind(value)})."
            )


@lru_cache(maxsize=1)
def _trainer_hints() -> dict[str, Any]:
    try:
        from lightning.pytorch import Trainer

        return typing.get_type_hints(Trainer.__init__)
    except Exception:  # noqa: BLE001 - annotations Python cannot evaluate: check nothing
        return {}


def _matches(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arm) for arm in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint) and type(value) in {type(a) for a in typing.get_args(hint)}
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, Iterable, typing.Sequence) or hint in (list, tuple):
        args = typing.get_args(hint)
        return isinstance(value, (list, tuple)) and (not args or all(_matches(v, args[0]) for v in value))
    if origin is dict or hint is dict:
        return isinstance(value, Mapping)
    if isinstance(hint, type):
        # a class (Accelerator, Strategy, Profiler, timedelta, Path...): an instance, or a
        # config Hydra instantiates
        return isinstance(value, hint) or (isinstance(value, Mapping) and "_target_" in value)
    return True  # a form this check does not know: let Lightning judge


def describe(hint: Any) -> str:
    """An annotation in words: ``Optional[int]`` -> ``an integer or null``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        parts: list[str] = []
        literals: list[str] = []
        for arm in typing.get_args(hint):
            if typing.get_origin(arm) is typing.Literal:
                literals.extend(repr(a) if isinstance(a, str) else str(a) for a in typing.get_args(arm))
                continue
            text = describe(arm)
            if text not in parts:
                parts.append(text)
        if literals:
            parts.insert(0, "one of " + ", ".join(dict.fromkeys(literals)))
        return " or ".join(parts)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) if isinstance(a, str) else str(a) for a in typing.get_args(hint))
    names = {type(None): "null", bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    if hint in names:
        return names[hint]
    if origin in (list, tuple) or hint in (list, tuple):
        args = typing.get_args(hint)
        return f"a list of ({describe(args[0])})" if args else "a list"
    if origin is dict:
        return "a mapping"
    if isinstance(hint, type):
        return f"a {hint.__name__} (a config with _target_)"
    return str(hint)


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) and (not value or " " in value) else str(value)


def _kind(value: Any) -> str:
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    return names.get(type(value), f"a {type(value).__name__}")


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


# ---------------------------------------------------------------------- pytorch_lightning


# The `pytorch_lightning` and `lightning_fabric` packages of Lightning 2 are copies of
# `lightning.pytorch` and `lightning.fabric` under their old names, with classes of their own:
# Lightning's Trainer accepts only modules, datamodules, callbacks and loggers of its own
# package, so a module written against `pytorch_lightning` 2.x does not mix with m3l's
# `lightning.pytorch.Trainer`, m3l's callbacks and m3l's datamodules. Where the installed
# `pytorch_lightning` is a 2.x release, m3l maps those names onto `lightning.pytorch` (an
# import hook, installed before any user code is imported): `import pytorch_lightning as pl`
# then gives the very package m3l runs. A 1.x release is left alone and refused by name.
_ALIASES = {"pytorch_lightning": "lightning.pytorch", "lightning_fabric": "lightning.fabric"}


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (without importing it), or None."""
    import importlib.metadata

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _major(version: str | None) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


class _LightningAlias:
    """A ``sys.meta_path`` finder and loader: ``pytorch_lightning[.X]`` is ``lightning.pytorch[.X]``."""

    def __init__(self, roots: Iterable[str]) -> None:
        self.roots = tuple(roots)
        self._specs: dict[str, Any] = {}

    def _real(self, fullname: str) -> str | None:
        root = fullname.split(".", 1)[0]
        return _ALIASES[root] + fullname[len(root):] if root in self.roots else None

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        real = self._real(fullname)
        if real is None:
            return None
        try:
            found = importlib.util.find_spec(real)
        except (ImportError, ValueError):
            return None
        if found is None:
            return None  # a name Lightning 2 does not have: ModuleNotFoundError, as without the alias
        return importlib.util.spec_from_loader(fullname, self, is_package=found.submodule_search_locations is not None)

    def create_module(self, spec: Any) -> types.ModuleType:
        import importlib

        real_name = self._real(spec.name)
        assert real_name is not None
        module = importlib.import_module(real_name)
        self._specs[spec.name] = module.__spec__  # the import system sets __spec__: restored below
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        alias = module.__spec__.name if module.__spec__ is not None else ""
        if alias in self._specs:
            module.__spec__ = self._specs.pop(alias)


def alias_pytorch_lightning() -> bool:
    """Make ``import pytorch_lightning`` (and ``lightning_fabric``) give ``lightning.pytorch``
    (``lightning.fabric``) where the installed ``pytorch_lightning`` is a Lightning 2 release;
    idempotent. True when the names are mapped. Modules imported before this call keep their
    own classes (:func:`check_lightning2` names them)."""
    import sys

    if any(isinstance(finder, _LightningAlias) for finder in sys.meta_path):
        return True
    if _major(installed_version("pytorch_lightning")) < 2 or installed_version("lightning") is None:
        return False
    # (lightning_fabric comes with pytorch_lightning 2.x, in the same distribution or its own)
    roots = [name for name in _ALIASES if name not in sys.modules]
    if not roots:
        return False
    sys.meta_path.insert(0, _LightningAlias(roots))
    return True


# hooks of Lightning 1.x that Lightning 2 removed, and what replaces each
_LIGHTNING1_HOOKS = {
    "training_epoch_end": "on_train_epoch_end",
    "validation_epoch_end": "on_validation_epoch_end",
    "test_epoch_end": "on_test_epoch_end",
}


def check_lightning2(objects: Mapping[str, Any]) -> None:
    """Refuse objects built on a ``pytorch_lightning`` m3l cannot run (a Lightning 1.x release,
    or a 2.x one imported before m3l could map it: :func:`alias_pytorch_lightning`), and
    modules written for Lightning 1.x (its removed ``*_epoch_end`` hooks), before anything runs."""
    for key, obj in objects.items():
        if obj is None:
            continue
        for cls in type(obj).__mro__:
            if cls.__module__.split(".")[0] == "pytorch_lightning":
                raise ConfigError(pytorch_lightning_message(key, type(obj)))
        for hook, replacement in _LIGHTNING1_HOOKS.items():
            if callable(getattr(obj, hook, None)):
                name = f"{type(obj).__module__}.{type(obj).__qualname__}"
                raise ConfigError(
                    f"'{key}': {name} implements `{hook}`, a Lightning 1.x hook that Lightning 2 (which m3l runs) "
                    f"removed: rename it to `{replacement}(self)` and keep the step outputs it needs as attributes "
                    "(see https://github.com/Lightning-AI/pytorch-lightning/pull/16520)."
                )


def pytorch_lightning_message(key: str, cls: type | None = None, name: str | None = None) -> str:
    """Why ``key``'s object (of class ``cls``, or whose import of ``name`` failed) cannot run
    on m3l's Lightning, and what to change."""
    what = f"{cls.__module__}.{cls.__qualname__}" if cls is not None else f"the `{key}` config's target"
    version = installed_version("pytorch_lightning")
    use = (
        "In your module, import `lightning.pytorch as pl` (or `from lightning.pytorch import LightningModule, "
        "LightningDataModule, Callback`) instead of `pytorch_lightning`."
    )
    if version is None:
        return (
            f"'{key}': {what} imports `pytorch_lightning`, which is not installed; m3l runs Lightning 2 from the "
            f"`lightning` package. {use}"
        )
    if _major(version) < 2:
        return (
            f"'{key}': {what} is built on `pytorch_lightning` {version} (Lightning 1.x), but m3l runs Lightning 2 "
            f"from the `lightning` package and the two do not mix. {use} Code written for Lightning 1.x may need "
            "more changes: see Lightning's upgrade guide (https://lightning.ai/docs/pytorch/stable/upgrade/migration_guide.html)."
        )
    if cls is not None:  # a 2.x pytorch_lightning imported before m3l could map its names
        return (
            f"'{key}': {what} is built on `pytorch_lightning`, imported before m3l, whose classes are not those of "
            "the `lightning` package m3l runs. Import m3l (or `lightning.pytorch`) before `pytorch_lightning`, or: "
            f"{use}"
        )
    example = f"`{name}`" if name else "e.g. `pytorch_lightning.callbacks.base`"
    return (
        f"'{key}': the target uses a `pytorch_lightning` name that Lightning 2 does not have ({example}: code "
        "written for Lightning 1.x); m3l runs Lightning 2, where `pytorch_lightning` "
        "names the same package as `lightning.pytorch`. Update the code to Lightning 2 (see "
        "https://lightning.ai/docs/pytorch/stable/upgrade/migration_guide.html)."
    )
