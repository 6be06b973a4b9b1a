"""Code written against ``pytorch_lightning``: its names mapped onto ``lightning.pytorch`` where
the installed release is a Lightning 2 one, and a named error for what m3l cannot run."""

from __future__ import annotations

import importlib.util
import types
from collections.abc import Iterable, Mapping
from typing import Any

from m3l.errors import ConfigError
from m3l.config.trainer.lightning1 import _LIGHTNING1_HOOKS

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
        return _ALIASES[root] + fullname[len(root) :] if root in self.roots else None

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
