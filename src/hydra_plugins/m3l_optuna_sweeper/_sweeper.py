"""A Hydra sweeper that runs an Optuna study through Optuna's ask/tell API.

Each batch of ``n_jobs`` trials is asked from the study, launched by Hydra's launcher (in
process, subprocesses, or a Slurm job array), and told back: the job's return value (the
``monitor`` metric of an m3l run) completes the trial; an exception, a missing value or a
NaN/inf marks it FAILED with the reason, and the sweep goes on. The end of the sweep writes
``optimization_results.yaml`` (best trial, every trial with its job directory, state, value
and failure reason) in the sweep directory.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from hydra_plugins.m3l_optuna_sweeper.config import register
from m3l._compat.hydra import job_return_value, override_value_text

log = logging.getLogger(__name__)
register()

_DIRECTIONS = {"maximize": "maximize", "max": "maximize", "minimize": "minimize", "min": "minimize"}
_FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
RESULTS_FILE = "optimization_results.yaml"


class SweepError(CompactHydraException):
    """A sweep config that cannot work, with what to change."""


class NoTrialCompleted(SweepError):
    """Every trial this sweep ran failed: the sweep has no result (the command exits 1)."""

    exit_code = 1


def parse_direction(direction: Any) -> list[str]:
    """``maximize``/``max``/... or a list of them -> Optuna's direction names."""
    items = list(direction) if isinstance(direction, Sequence) and not isinstance(direction, str) else [direction]
    out = []
    for item in items:
        key = str(item).lower()
        if key not in _DIRECTIONS:
            raise SweepError(
                f"hydra.sweeper.direction={item!r} is not a direction: use maximize or minimize (max/min "
                "also work, e.g. direction: ${monitor_mode}), or a list of them for several objectives."
            )
        out.append(_DIRECTIONS[key])
    return out


def _distribution(override: Override) -> BaseDistribution:
    key, value = override.get_key_element(), override.value()
    tags = set(getattr(value, "tags", set()) or set())
    if isinstance(value, ChoiceSweep):
        choices = [override_value_text(override, v) if isinstance(v, (dict, list)) else v for v in value.list]
        return CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step if value.step is not None else 1
        if all(isinstance(v, int) for v in (start, stop, step)):
            values = list(range(start, stop, step))
            if not values:
                raise SweepError(f"hydra.sweeper.params.{key}: range({start},{stop},{step}) is empty.")
            return IntDistribution(values[0], values[-1], step=step)
        count = int(math.floor((stop - start) / step + 1e-9))
        return CategoricalDistribution([round(start + i * step, 12) for i in range(count)])
    if isinstance(value, IntervalSweep):
        low, high = value.start, value.end
        if low is None or high is None or not low < high:
            raise SweepError(f"hydra.sweeper.params.{key}: interval({low},{high}) needs low < high.")
        if "int" in tags:
            return IntDistribution(int(low), int(high), log="log" in tags)
        return FloatDistribution(float(low), float(high), log="log" in tags)
    raise SweepError(f"hydra.sweeper.params.{key}: unsupported sweep {value!r}.")


def parse_search_space(
    params: Mapping[str, Any] | None, arguments: Sequence[str]
) -> tuple[dict[str, BaseDistribution], list[str]]:
    """The search space and fixed overrides from ``hydra.sweeper.params`` and the command line
    (the command line wins for a key given in both)."""
    specs = {str(k): str(v) for k, v in (params or {}).items()}
    items = [f"{k}={v}" for k, v in specs.items()] + list(arguments)
    parser = OverridesParser.create()
    space: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for item in items:
        try:
            (override,) = parser.parse_overrides([item])
        except Exception as exc:  # noqa: BLE001 - the grammar's message is what the user needs
            raise SweepError(
                f"Cannot parse the sweep parameter '{item}': {exc}\nUse choice(a,b,...), range(start,stop[,step]), "
                "interval(low,high), tag(log,interval(low,high)) or tag(int,interval(low,high))."
            ) from exc
        key = override.get_key_element()
        space.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            space[key] = _distribution(override)
        else:
            fixed[key] = item
    return space, list(fixed.values())


def suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    """A value of ``dist`` for ``name`` through the trial's public ``suggest_*`` API."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, list(dist.choices))
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    raise SweepError(f"unsupported distribution {dist!r} for {name}")


def _format(value: Any) -> str:
    """A suggested value as Hydra override text."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _failure_reason(ret: JobReturn) -> str | None:
    """Why a finished job is not a valid trial, or None when its value is usable."""
    if ret.status != JobStatus.COMPLETED:
        exc = job_return_value(ret)
        text = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
    return None


def _values(ret: JobReturn, n_objectives: int) -> tuple[list[float] | None, str | None]:
    reason = _failure_reason(ret)
    if reason:
        return None, reason
    value = ret.return_value
    if value is None:
        return None, "the run returned no value: is `monitor` a metric the model logs?"
    raw = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(raw) != n_objectives:
        return None, f"the run returned {len(raw)} value(s) for {n_objectives} objective(s)"
    try:
        values = [float(v) for v in raw]
    except (TypeError, ValueError):
        return None, f"the run returned {value!r}, not a number"
    if not all(math.isfinite(v) for v in values):
        return None, f"the objective is {values if len(values) > 1 else values[0]} (not finite)"
    return values, None


class OptunaSweeper(Sweeper):
    """Optuna study driven by Hydra: ask a batch, launch it, tell the results."""

    def __init__(
        self,
        sampler: Any,
        direction: Any = "maximize",
        storage: str | None = None,
        study_name: str | None = None,
        n_trials: int = 20,
        n_jobs: int = 1,
        params: Mapping[str, Any] | None = None,
        max_failure_rate: float = 1.0,
    ) -> None:
        self.sampler_config = sampler
        self.direction = direction
        self.directions: list[str] = []
        self.storage = storage
        self.study_name = study_name
        self.n_trials, self.n_jobs = n_trials, n_jobs
        self.params = dict(params or {})
        self.max_failure_rate = float(max_failure_rate)
        self.job_idx = 0
        self.config: DictConfig | None = None
        self._grid_size: int | None = None  # the number of points of the grid the grid sampler is given

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # ------------------------------------------------------------------ study

    def _sampler(self, space: Mapping[str, BaseDistribution]) -> optuna.samplers.BaseSampler:
        target = str(OmegaConf.select(self.sampler_config, "_target_") or "")
        if target.endswith("GridSampler"):
            grid = {}
            for name, dist in space.items():
                if isinstance(dist, CategoricalDistribution):
                    grid[name] = list(dist.choices)
                elif isinstance(dist, IntDistribution) and not dist.log:
                    grid[name] = list(range(dist.low, dist.high + 1, dist.step))
                else:
                    raise SweepError(
                        f"The grid sampler needs a finite set of values for '{name}': use choice(...) or "
                        "range(...), not interval(...)."
                    )
            self._grid_size = math.prod(len(values) for values in grid.values())
            return instantiate(self.sampler_config, search_space=grid)
        try:
            return instantiate(self.sampler_config)
        except Exception as exc:  # noqa: BLE001
            raise SweepError(f"Cannot build the sampler {target or self.sampler_config}: {exc}") from exc

    def _study(self, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
        directions = self.directions
        kwargs: dict[str, Any] = {"directions": directions}
        study = optuna.create_study(
            study_name=self.study_name, storage=self.storage, sampler=sampler, load_if_exists=True, **kwargs
        )
        if [d.name.lower() for d in study.directions] != directions:
            raise SweepError(
                f"The study '{study.study_name}' in {self.storage} was created with directions "
                f"{[d.name.lower() for d in study.directions]}, not {directions}: pick another "
                "hydra.sweeper.study_name or the same direction."
            )
        return study

    def _reseed_for_a_resumed_study(self, study: optuna.Study, sampler: optuna.samplers.BaseSampler) -> None:
        """A study resumed by a later sweep, with a seeded sampler (``seed: ${seed}``), would
        draw the very values its first trials drew (the same random stream from the start): the
        sampler of a resumed study is seeded with ``seed + <trials so far>`` instead, still
        reproducible, never a repeat of the first sweep's draws."""
        seed = OmegaConf.select(self.sampler_config, "seed")
        trials = len(study.get_trials(deepcopy=False))
        if not trials or seed is None or isinstance(sampler, optuna.samplers.GridSampler):
            return
        study.sampler = instantiate(self.sampler_config, seed=int(seed) + trials)
        log.info(
            "The study holds %d trial(s): its sampler is seeded %d + %d, so it does not draw them again.",
            trials,
            int(seed),
            trials,
        )

    def _fail_orphans(self, study: optuna.Study) -> None:
        """Trials left RUNNING by an earlier sweeper process of this host that has died."""
        host = socket.gethostname()
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = str(trial.user_attrs.get("m3l.sweeper", ""))
            name, _, pid = owner.rpartition(":")
            if name == host and pid.isdigit() and not _alive(int(pid)):
                study.tell(trial.number, state=TrialState.FAIL)
                log.warning("Trial %d was left running by an interrupted sweep: marked failed.", trial.number)

    # ------------------------------------------------------------------ sweep

    def sweep(self, arguments: list[str]) -> list[JobReturn]:
        assert self.config is not None and self.launcher is not None
        self.directions = parse_direction(self.direction)
        if int(self.n_trials) < 1 or int(self.n_jobs) < 1:
            raise SweepError(
                f"hydra.sweeper.n_trials ({self.n_trials}) and hydra.sweeper.n_jobs ({self.n_jobs}) must be at least 1."
            )
        self.n_trials, self.n_jobs = int(self.n_trials), int(self.n_jobs)
        self.storage = _storage_url(self.storage)
        space, fixed = parse_search_space(self.params, arguments)
        if not space:
            raise SweepError(
                "Nothing to search: give hydra.sweeper.params in an hparams_search config or sweep overrides on "
                "the command line, e.g. 'net.optimizer.lr=tag(log,interval(1e-4,1e-1))'."
            )
        sampler = self._sampler(space)
        n_trials = self.n_trials
        if isinstance(sampler, optuna.samplers.GridSampler) and self._grid_size is not None:
            size = self._grid_size  # the grid _sampler gave it (GridSampler keeps every value)
            if size < n_trials:
                log.info("The grid has %d points: n_trials %d -> %d.", size, n_trials, size)
                n_trials = size
        study = self._study(sampler)
        self._fail_orphans(study)
        self._reseed_for_a_resumed_study(study, sampler)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(
            "Optuna study '%s' (%s, %s, storage %s): %d trial(s), %d at a time; sweep dir %s",
            study.study_name,
            type(sampler).__name__,
            "/".join(self.directions),
            self.storage or "in memory",
            n_trials,
            self.n_jobs,
            sweep_dir,
        )
        for name, dist in space.items():
            log.info("  %s: %s", name, dist)
        owner = f"{socket.gethostname()}:{os.getpid()}"
        returns: list[JobReturn] = []
        mine: list[tuple[optuna.trial.FrozenTrial | optuna.Trial, int]] = []
        failed = 0
        while True:
            counted = len(study.get_trials(deepcopy=False, states=(*_FINISHED, TrialState.RUNNING)))
            batch_size = min(self.n_jobs, n_trials - counted)
            if batch_size <= 0:
                break
            trials = [study.ask() for _ in range(batch_size)]
            overrides = []
            for offset, trial in enumerate(trials):
                trial.set_user_attr("m3l.sweeper", owner)
                trial.set_user_attr("m3l.job_num", self.job_idx + offset)
                trial.set_user_attr("m3l.job_dir", str(sweep_dir / str(self.job_idx + offset)))
                values = {name: suggest(trial, name, dist) for name, dist in space.items()}
                overrides.append(tuple(fixed) + tuple(f"{k}={_format(v)}" for k, v in values.items()))
            self.validate_batch_is_legal(overrides)
            try:
                batch = list(self.launcher.launch(overrides, initial_job_idx=self.job_idx))
            except Exception as exc:  # noqa: BLE001 - e.g. a cluster job killed without a result
                log.error("The launcher lost the batch: %s", exc)
                batch = [None] * len(trials)  # type: ignore[list-item]
                reason_all = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            else:
                reason_all = ""
            self.job_idx += len(trials)
            for trial, ret in zip(trials, batch):
                if ret is None:
                    values, reason = None, reason_all or "the job returned nothing"
                else:
                    values, reason = _values(ret, len(self.directions))
                    returns.append(ret)
                if values is None:
                    failed += 1
                    trial.set_user_attr("m3l.failure", reason)
                    _tell(study, trial, state=TrialState.FAIL)
                    log.warning(
                        "Trial %d failed: %s (job dir %s)", trial.number, reason, trial.user_attrs.get("m3l.job_dir")
                    )
                else:
                    _tell(study, trial, values if len(values) > 1 else values[0])
                    log.info(
                        "Trial %d: %s with %s", trial.number, values if len(values) > 1 else values[0], trial.params
                    )
                mine.append((trial, trial.number))
            done = len(mine)
            if done >= self.n_jobs and failed / done > self.max_failure_rate:
                self._report(study, sweep_dir)
                raise SweepError(
                    f"{failed} of {done} trials failed (more than max_failure_rate={self.max_failure_rate}); "
                    f"see {sweep_dir / RESULTS_FILE}."
                )
        self._report(study, sweep_dir)
        if mine and failed == len(mine):
            reasons = sorted({str(t.user_attrs.get("m3l.failure", "?")) for t, _ in mine})
            raise NoTrialCompleted(
                f"No trial of this sweep completed ({failed} failed; the first reason: {reasons[0]}). The trials "
                f"are listed in {sweep_dir / RESULTS_FILE}."
            )
        return returns

    # ------------------------------------------------------------------ report

    def _report(self, study: optuna.Study, sweep_dir: Path) -> None:
        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        rows = []
        for t in trials:
            rows.append(
                {
                    "number": t.number,
                    "state": t.state.name,
                    "values": t.values,
                    "params": dict(t.params),
                    "job_dir": t.user_attrs.get("m3l.job_dir"),
                    **({"failure": t.user_attrs["m3l.failure"]} if "m3l.failure" in t.user_attrs else {}),
                }
            )
        result: dict[str, Any] = {
            "study_name": study.study_name,
            "storage": self.storage,
            "directions": self.directions,
            "n_complete": len(complete),
            "n_failed": sum(t.state == TrialState.FAIL for t in trials),
            "trials": rows,
        }
        if complete and len(self.directions) == 1:
            best = study.best_trial
            result.update(best_trial=best.number, best_value=best.value, best_params=dict(best.params))
            log.info("Best trial %d: %s = %s with %s", best.number, self.directions[0], best.value, best.params)
        elif complete:
            result["best_trials"] = [
                {"number": t.number, "values": t.values, "params": dict(t.params)} for t in study.best_trials
            ]
        for row in rows:
            if row["state"] == "FAIL":
                log.warning("Failed trial %d: %s (%s)", row["number"], row.get("failure", "?"), row["job_dir"])
        if not complete:
            log.error("No trial completed; the failures are listed in %s", sweep_dir / RESULTS_FILE)
        OmegaConf.save(OmegaConf.create(result), sweep_dir / RESULTS_FILE)
        log.info("Sweep results: %s", sweep_dir / RESULTS_FILE)


def _tell(study: optuna.Study, trial: optuna.Trial, values: Any = None, state: TrialState | None = None) -> None:
    """``study.tell``. The grid sampler asks the study to stop once every point was tried,
    which outside ``optimize()`` raises after the trial is stored; the sweep stops anyway
    (its n_trials is capped to the grid size)."""
    try:
        study.tell(trial, values, state=state)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _storage_url(storage: str | None) -> str | None:
    """Absolute sqlite paths (and their folder created), so jobs in other directories agree."""
    if not storage:
        return None
    prefix = "sqlite:///"
    if storage.startswith(prefix) and not storage.startswith(prefix + "/"):
        path = Path(storage[len(prefix) :]).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return prefix + str(path)
    if storage.startswith(prefix + "/"):
        Path(storage[len(prefix) :]).parent.mkdir(parents=True, exist_ok=True)
    return str(storage)
