"""Structured configs of the sweeper, registered as ``hydra/sweeper=m3l_optuna`` (also
``optuna`` when the published hydra-optuna-sweeper is not installed) and the samplers
``hydra/sweeper/sampler=tpe|random|grid|cmaes``.

The keys are those of hydra-optuna-sweeper, so its users' configs keep working.
"""

import importlib.util
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TPESamplerConf:
    _target_: str = "optuna.samplers.TPESampler"
    seed: Optional[int] = None
    n_startup_trials: int = 10
    multivariate: bool = False


@dataclass
class RandomSamplerConf:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: Optional[int] = None


@dataclass
class GridSamplerConf:
    """The grid is built from the ``choice``/``range`` params; every point is tried once."""

    _target_: str = "optuna.samplers.GridSampler"
    seed: Optional[int] = None


@dataclass
class CmaEsSamplerConf:
    """CMA-ES (needs the ``cmaes`` package); for float/int params."""

    _target_: str = "optuna.samplers.CmaEsSampler"
    seed: Optional[int] = None
    n_startup_trials: int = 1
    warn_independent_sampling: bool = True


@dataclass
class OptunaSweeperConf:
    """``hydra.sweeper`` of an Optuna sweep.

    direction: ``maximize``/``minimize`` (``max``/``min`` accepted, so ``${monitor_mode}``
        works), or a list of them for a multi-objective study.
    storage: an Optuna RDB URL (``sqlite:///path.db``, ``postgresql://...``) or null for an
        in-memory study; trials of every sweep that names the same storage and study share
        one study.
    study_name: the study in the storage; an existing study is resumed.
    n_trials: the study's size: the sweep stops once this many trials have finished (or are
        running) in the study, counting earlier and parallel sweeps.
    n_jobs: trials launched at once (a batch: parallel with a parallel launcher, a Slurm job
        array with submitit_slurm).
    params: the search space, in Hydra's sweep syntax: ``choice(a,b)``, ``range(1,8)``,
        ``interval(0,1)``, ``tag(log,interval(1e-4,1e-1))``, ``tag(int,interval(1,9))``;
        plain values are fixed overrides.
    max_failure_rate: stop the sweep (error) once more than this fraction of its trials
        failed, after at least ``n_jobs`` trials; 1.0 never stops.
    """

    _target_: str = "hydra_plugins.m3l_optuna_sweeper._sweeper.OptunaSweeper"
    # the sampler is built by the sweeper (the grid sampler needs the search space)
    _recursive_: bool = False
    defaults: List[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])
    sampler: Any = MISSING
    direction: Any = "maximize"
    storage: Optional[str] = None
    study_name: Optional[str] = None
    n_trials: int = 20
    n_jobs: int = 1
    params: Optional[Dict[str, Any]] = None
    max_failure_rate: float = 1.0


def _published_plugin_installed() -> bool:
    try:
        return importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is not None
    except (ImportError, ValueError):
        return False


def register() -> None:
    """Put the sweeper and sampler configs into Hydra's ConfigStore."""
    store = ConfigStore.instance()
    names = ["m3l_optuna"] + ([] if _published_plugin_installed() else ["optuna"])
    for name in names:
        store.store(group="hydra/sweeper", name=name, node=OptunaSweeperConf, provider="m3l")
    for name, node in {
        "tpe": TPESamplerConf,
        "random": RandomSamplerConf,
        "grid": GridSamplerConf,
        "cmaes": CmaEsSamplerConf,
    }.items():
        store.store(group="hydra/sweeper/sampler", name=name, node=node, provider="m3l")
