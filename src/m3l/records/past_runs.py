"""Earlier runs: which one ``resume=true`` means, which file ``checkpoint=best|last`` names,
and the launches of an ``mtl.Trainer`` ``run_id``; how two runs' settings differ.

The directory of the run being started (chosen, created, kept or removed) is
:mod:`m3l.records.lifecycle`'s; this module only reads the directories of earlier runs
(``runs/<name>/<verb>/<date_time>/``: their ``config.yaml`` and ``checkpoints/``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from m3l.errors import CheckpointError

log = logging.getLogger(__name__)

# top-level config keys that may differ between a run and its resumption
_RESUME_KEYS = (
    "paths",
    "run_id",
    "checkpoint",
    "resume",
    "checkpoint_trusted",
    "preflight_only",
    "m3l_choices",
    "hydra",
)
# how long to train: a run may be resumed to train longer (the difference is logged)
_LENGTH_KEYS = (
    "trainer.max_epochs",
    "trainer.max_steps",
    "trainer.max_time",
    "trainer.min_epochs",
    "trainer.min_steps",
)


# ---------------------------------------------------------------------------- settings of a run


def run_settings(cfg: Any) -> dict[str, Any]:
    """The resolved config of a run as a plain dict, the way ``config.yaml`` records it."""
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert isinstance(container, dict)
    container.pop("m3l_choices", None)
    # through YAML, so that a config and one read back from config.yaml compare equal
    loaded = OmegaConf.to_container(OmegaConf.create(OmegaConf.to_yaml(container)), resolve=False)
    assert isinstance(loaded, dict)
    return loaded


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def differences(then: Mapping[str, Any], now: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, value then, value now)`` of the settings that differ, ignoring the keys that
    name the run's own directories (``paths``, checkpoint and log dirs) and how it was started
    (``checkpoint``, ``resume``)."""

    def relevant(settings: Mapping[str, Any]) -> dict[str, Any]:
        own = str((settings.get("paths") or {}).get("output_dir") or "")
        flat = _flatten({k: v for k, v in settings.items() if k not in _RESUME_KEYS})
        return {k: v for k, v in flat.items() if not (own and isinstance(v, str) and own in v)}

    a, b = relevant(then), relevant(now)
    missing = "(not set)"
    return [
        (key, a.get(key, missing), b.get(key, missing))
        for key in sorted(a.keys() | b.keys())
        if a.get(key, missing) != b.get(key, missing)
    ]


def describe(diffs: list[tuple[str, Any, Any]], limit: int = 4) -> str:
    parts = [f"{key}: {then!r} there, {now!r} now" for key, then, now in diffs[:limit]]
    more = f"; and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return "; ".join(parts) + more


# ---------------------------------------------------------------------------- resume


@dataclass
class _Candidate:
    run_dir: Path
    started: float
    last: Path | None
    diffs: list[tuple[str, Any, Any]] | None = field(default=None)  # None: no config.yaml


def _candidates(root: Path, now: Mapping[str, Any], exclude: Path) -> list[_Candidate]:
    dirs = {p.parent for p in root.glob("**/config.yaml") if ".hydra" not in p.parent.parts}
    dirs |= {p.parent.parent for p in root.glob("**/checkpoints/last*.ckpt") if p.is_file()}
    found = []
    for run_dir in dirs:
        if run_dir.resolve() == exclude.resolve():
            continue
        lasts = [p for p in (run_dir / "checkpoints").glob("last*.ckpt") if p.is_file()]
        config = run_dir / "config.yaml"
        diffs = None
        if config.is_file():
            try:
                diffs = differences(run_settings(OmegaConf.load(config)), now)
            except Exception:  # noqa: BLE001 - an unreadable config.yaml: settings unknown
                diffs = None
        started = (config if config.is_file() else run_dir).stat().st_mtime
        found.append(
            _Candidate(run_dir, started, max(lasts, key=lambda p: p.stat().st_mtime) if lasts else None, diffs)
        )
    return sorted(found, key=lambda c: c.started, reverse=True)


def resume_checkpoint(cfg: Any, output_dir: Path, option: str) -> Path:
    """The ``last`` checkpoint of the run that ``resume=true`` (or ``checkpoint=last``) means:
    the newest training run of ``cfg.name`` with the same settings. Refuses, listing the runs
    there are, when that run has no checkpoint or no run has these settings."""
    root = Path(str(cfg.paths.runs_dir)) / str(cfg.name) / "train"
    candidates = _candidates(root, run_settings(cfg), output_dir)
    with_checkpoint = [c for c in candidates if c.last is not None]
    if not with_checkpoint:
        raise CheckpointError(
            f"checkpoint=last: no training run of '{cfg.name}' has a last checkpoint under {root}. "
            "Train it first (python -m m3l.run.train model=...) or pass checkpoint=PATH."
        )
    same = [c for c in candidates if c.diffs is not None and all(key in _LENGTH_KEYS for key, _, _ in c.diffs)]
    if same and same[0].last is not None:
        chosen = same[0]
        longer = f", to train for another length ({describe(chosen.diffs)})" if chosen.diffs else ""
        (log.warning if chosen.diffs else log.info)(
            "%s resumes the newest run of '%s' with these settings, %s%s", option, cfg.name, chosen.run_dir, longer
        )
        return chosen.last
    listing = "\n".join(
        f"  {c.last}  ({'same settings' if c in same else 'settings unknown: no config.yaml' if c.diffs is None else 'other settings: ' + describe(c.diffs)})"
        for c in with_checkpoint[:8]
    )
    if same:
        reason = (
            f"the newest run of '{cfg.name}' with these settings, {same[0].run_dir}, has no checkpoint "
            "(it stopped before the end of its first epoch): there is nothing of it to resume."
        )
    else:
        reason = f"no training run of '{cfg.name}' under {root} has these settings."
    raise CheckpointError(
        f"{option}: {reason}\nRuns with a last checkpoint, newest first:\n{listing}\n"
        "To continue one of them exactly, pass resume=true checkpoint=PATH; to train its weights with the "
        f"settings given now, pass checkpoint=PATH alone; to start a new run, leave out {option}."
    )


def warn_if_other_settings(checkpoint: Path, cfg: Any, resume: bool = False) -> None:
    """Say so when ``checkpoint`` comes from a run whose config.yaml has other settings, and
    what the run now takes from where: ``checkpoint=`` alone trains the checkpoint's weights
    with the settings given now; ``resume=true`` continues its optimizer and schedule."""
    config = checkpoint.parent.parent / "config.yaml"
    if not config.is_file():
        return
    try:
        diffs = differences(run_settings(OmegaConf.load(config)), run_settings(cfg))
    except Exception:  # noqa: BLE001 - an unreadable config.yaml: nothing to compare
        return
    if not diffs:
        return
    if resume:
        log.warning(
            "%s comes from a run with other settings (%s); resume=true continues it exactly: its "
            "optimizer state (learning rate included), schedule and epoch come from the checkpoint, the "
            "rest from the settings given now.",
            checkpoint,
            describe(diffs),
        )
    else:
        log.warning(
            "%s comes from a run with other settings (%s); this run starts from its weights with the "
            "settings given now (optimizer, learning rate and schedule included).",
            checkpoint,
            describe(diffs),
        )


# ---------------------------------------------------------------------------- checkpoint=best|last

# keys of a module's config that say how it is trained, not what its weights are
_TRAINING_KEYS = ("optimizer", "scheduler", "lr_scheduler", "scheduler_interval", "loss")


def net_signature(net: Any) -> dict[str, Any] | None:
    """What of a ``net`` config decides its weights' names and shapes, flattened: the
    architecture ``net.net`` of m3l's RestorationModule configs, else the whole ``net`` without
    the keys of how it is trained (optimizer, scheduler, loss). None without a ``net``."""
    if net is None:
        return None
    try:
        if OmegaConf.is_config(net):
            net = OmegaConf.to_container(net, resolve=True, throw_on_missing=False)
        # through YAML, so that a config and one read back from config.yaml compare equal
        net = OmegaConf.to_container(OmegaConf.create(OmegaConf.to_yaml(net)), resolve=False)
    except Exception:  # noqa: BLE001 - a value that does not resolve: nothing to compare by
        return None
    if not isinstance(net, Mapping):
        return None
    inner = net.get("net")
    if isinstance(inner, Mapping) and "_target_" in inner:
        return _flatten(inner, "net.net.")
    return _flatten({k: v for k, v in net.items() if k not in _TRAINING_KEYS}, "net.")


def _net_differences(run_dir: Path, now: Mapping[str, Any]) -> list[tuple[str, Any, Any]] | None:
    """How the net of the run in ``run_dir`` (its config.yaml) differs from ``now`` (a
    :func:`net_signature`); None when its config.yaml is missing or unreadable."""
    try:
        then = net_signature(OmegaConf.load(run_dir / "config.yaml").get("net"))
    except Exception:  # noqa: BLE001 - no or an unreadable config.yaml: the run's net is unknown
        return None
    if then is None:
        return None
    missing = "(not set)"
    return [
        (key, then.get(key, missing), now.get(key, missing))
        for key in sorted(then.keys() | now.keys())
        if then.get(key, missing) != now.get(key, missing)
    ]


def _monitored_score(path: Path) -> tuple[str, float, str] | None:
    """``(monitor, score, mode)`` that the checkpoint callback recorded in the checkpoint
    ``path`` when it saved it; None when the file does not say (or cannot be read safely)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - unreadable here: the loader names the problem later
        return None
    found = []
    for value in (state.get("callbacks") or {}).values() if isinstance(state, dict) else ():
        if isinstance(value, Mapping) and value.get("monitor") and value.get("current_score") is not None:
            score = float(value["current_score"])
            named_here = Path(str(value.get("best_model_path", ""))).name == path.name
            found.append((not named_here, str(value["monitor"]), score, str(value.get("mode", ""))))
    if not found:
        return None
    _, monitor, score, mode = min(found, key=lambda item: item[0])
    return monitor, score, mode


def pick_checkpoint(cfg: Any, kind: str) -> tuple[Path, str]:
    """The file ``checkpoint=best`` (``kind`` best) or ``checkpoint=last`` means, and a note
    saying which run it comes from and why (for the run header and the log).

    It is a checkpoint of the newest training run of ``cfg.name`` (sweep trials included)
    whose net fits the config given now (:func:`net_signature`: a trial of another width
    does not); of several best checkpoints of that run, the one with the best monitored
    score. Refuses, listing the runs there are and how their nets differ, when none fits.
    """
    root = Path(str(cfg.paths.runs_dir)) / str(cfg.name) / "train"
    pattern = "last*.ckpt" if kind == "last" else "best*.ckpt"
    files = [p for p in root.glob(f"**/checkpoints/{pattern}") if p.is_file()]
    if not files:
        raise CheckpointError(
            f"checkpoint={kind}: no training run of '{cfg.name}' has a {kind} checkpoint under "
            f"{root}. Train it first (python -m m3l.run.train model=...) or pass checkpoint=PATH."
        )
    runs: dict[Path, list[Path]] = {}
    for path in files:
        runs.setdefault(path.parent.parent, []).append(path)
    ordered = sorted(runs, key=lambda d: max(p.stat().st_mtime for p in runs[d]), reverse=True)
    now = net_signature(cfg.get("net"))
    skipped: list[tuple[Path, list[tuple[str, Any, Any]] | None]] = []
    for run_dir in ordered:
        diffs = [] if now is None else _net_differences(run_dir, now)  # no net here: nothing to compare
        if diffs == []:
            break
        skipped.append((run_dir, diffs))
    else:
        listing = "\n".join(
            f"  {run_dir}: " + ("net unknown (no config.yaml)" if diffs is None else "another net: " + describe(diffs))
            for run_dir, diffs in skipped[:8]
        )
        raise CheckpointError(
            f"checkpoint={kind}: no training run of '{cfg.name}' under {root} has the net of this config, so none "
            f"of their {kind} checkpoints fits it. Runs with a {kind} checkpoint, newest first:\n{listing}\n"
            "Pass the net settings of one of them (its config.yaml), or its file as checkpoint=PATH with those "
            "settings, or train this net first."
        )
    scored = [(path, _monitored_score(path)) for path in runs[run_dir]]
    chosen, score = max(scored, key=lambda item: item[0].stat().st_mtime)
    if kind == "best" and len(scored) > 1 and all(s is not None for _, s in scored):
        sign = -1.0 if scored[0][1][2] == "min" else 1.0  # type: ignore[index]
        chosen, score = max(scored, key=lambda item: sign * item[1][1])  # type: ignore[index]
    where = run_dir.relative_to(root) if root in run_dir.parents else run_dir
    value = (
        f", {score[0]}={score[1]:.4g} ({'lowest' if score[2] == 'min' else 'highest'} of the run)"
        if (kind == "best" and score is not None)
        else ""
    )
    why = f"the newest run of '{cfg.name}'" + (" whose net fits this config" if now is not None else "")
    if skipped:
        newest, diffs = skipped[0]
        other = "net unknown: no config.yaml" if diffs is None else describe(diffs, limit=2)
        named = newest.relative_to(root) if root in newest.parents else newest
        why += f"; {len(skipped)} newer run(s) skipped for another net, e.g. {named} ({other})"
    return chosen, f"{chosen} (run {where}{value}; {why})"


def _recorded_run_id(config: Path) -> str | None:
    try:
        recorded = OmegaConf.load(config).get("run_id")
    except Exception:  # noqa: BLE001 - an unreadable config.yaml: the run is known by its folder name only
        return None
    return None if recorded is None else str(recorded)


def run_checkpoint(root: Path, run_id: str, option: str = "run_id") -> Path:
    """The last checkpoint of the run ``run_id`` under ``root`` (``<runs dir>/<name>/train``):
    the newest of its launches, each a run directory named by its start time whose
    ``config.yaml`` records ``run_id`` (the first one is named ``run_id`` itself). Refuses,
    listing the runs there are, when none of its launches left a checkpoint."""
    launches = [c.parent for c in root.glob("*/config.yaml") if run_id in (c.parent.name, _recorded_run_id(c))]
    if (root / run_id).is_dir() and root / run_id not in launches:
        launches.append(root / run_id)
    lasts = [p for d in launches for p in (d / "checkpoints").glob("last*.ckpt") if p.is_file()]
    if lasts:
        return max(lasts, key=lambda p: p.stat().st_mtime)
    runs = sorted({p.parent.parent.name for p in root.glob("*/checkpoints/last*.ckpt")})
    what = (
        (
            f"its run directory {launches[-1]} has no checkpoint (it stopped before the end of its first epoch, "
            "or was a debug run)"
        )
        if launches
        else f"no run {run_id!r} under {root}"
    )
    raise CheckpointError(
        f"{option}={run_id!r}: nothing to resume: {what}. Runs there with a last checkpoint: "
        f"{', '.join(runs) or '(none)'}. Leave {option} out to start a new run."
    )


def run_id_of(root: Path, name: str) -> str:
    """The run id that the launch directory ``root / name`` records in its config.yaml (the
    MLflow run's id when that launch logged to MLflow); any other ``name`` as it is."""
    config = root / name / "config.yaml"
    recorded = _recorded_run_id(config) if config.is_file() else None
    return recorded or name
