"""The module paths of m3l 0.1 that moved when the package was grouped into folders
(``m3l.experiment`` is now ``m3l.engine.experiment``, ``m3l.tracking`` is
``m3l.records.tracking``...): importing an old path gives the module at its new one, with a
``FutureWarning`` that names it. Configs (``_target_: m3l.tracking.MLFlowLogger``), pickles and
``import`` statements written for 0.1 keep working until these aliases go, in the next minor
release. m3l itself never imports an old path (``tests/test_moved_modules.py``).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

#: old module path -> new module path
MOVED: dict[str, str] = {
    "m3l.experiment": "m3l.engine.experiment",
    "m3l.call_options": "m3l.engine.call_options",
    "m3l.config_checks": "m3l.engine.config_checks",
    "m3l.instantiation": "m3l.engine.instantiation",
    "m3l.metrics_report": "m3l.engine.metrics_report",
    "m3l.weights_choice": "m3l.engine.weights_choice",
    "m3l.lightning_messages": "m3l.engine.lightning_messages",
    "m3l.progress": "m3l.callbacks.progress",
    "m3l.model_summary": "m3l.callbacks.model_summary",
    "m3l.best_checkpoint": "m3l.callbacks.best_checkpoint",
    "m3l.fast_inference": "m3l.callbacks.fast_inference",
    "m3l.image_logging": "m3l.callbacks.image_logging",
    "m3l.checkpoints": "m3l.weights.checkpoints",
    "m3l.hub": "m3l.weights.hub",
    "m3l.config_search": "m3l.config.search",
    "m3l.config_resolvers": "m3l.config.resolvers",
    "m3l.config_overrides": "m3l.config.overrides",
    "m3l.config_messages": "m3l.config.messages",
    "m3l.trainer_args": "m3l.config.trainer.args",
    "m3l.trainer_signature": "m3l.config.trainer.signature",
    "m3l.trainer_types": "m3l.config.trainer.types",
    "m3l.trainer_lightning1": "m3l.config.trainer.lightning1",
    "m3l.pytorch_lightning_alias": "m3l.config.trainer.pytorch_lightning_alias",
    "m3l.run_lifecycle": "m3l.records.lifecycle",
    "m3l.past_runs": "m3l.records.past_runs",
    "m3l.tracking": "m3l.records.tracking",
    "m3l.optim": "m3l.training.optim",
    "m3l.distributed": "m3l.training.distributed",
    "m3l.dct": "m3l.data.dct",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.new}: import it from there (the old path goes in the next minor release)",
            FutureWarning,
            stacklevel=2,
        )
        module = importlib.import_module(self.new)
        self.spec, self.loader = module.__spec__, module.__loader__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # the import system set the alias's spec on the module: give it back its own
        module.__spec__, module.__loader__ = self.spec, self.loader


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001 - the import system's signature
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(new))


def install() -> None:
    """Make the old paths importable (called once by ``import m3l``)."""
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.append(_Finder())
