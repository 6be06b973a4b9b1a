"""Which weights a verb of an :class:`~m3l.engine.experiment.Experiment` uses.

What ``checkpoint=`` and ``resume=`` name, resolved once per verb (the run header and the run
use the same file), how the run header says it, and what ``train`` does with it:

- ``resume=true`` (or ``checkpoint=last``, the run of these very settings) continues the
  newest run of these settings exactly: weights, optimizer state, schedule, epoch, random
  states (:func:`m3l.records.past_runs.resume_checkpoint`); ``resume=true checkpoint=PATH|best``
  continues that file exactly;
- ``checkpoint=PATH|best|pretrained`` alone starts a new run from its weights, with the
  optimizer, learning rate and schedule of the config given now.

``test``, ``correct`` and ``export`` load the weights alone.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from m3l.weights.checkpoints import check_checkpoint, load_weights_into, resolve_checkpoint_noted
from m3l.errors import CheckpointError
from m3l.records.past_runs import resume_checkpoint, warn_if_other_settings

log = logging.getLogger(__name__)


class WeightsChoice:
    """The checkpoint of one config's verbs, resolved once per verb (:meth:`forget` between)."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self._resolved: dict[str, tuple[Path, str | None]] = {}  # checkpoint= values resolved so far

    def forget(self) -> None:
        """Resolve again from now on (``checkpoint=best`` after a verb may be that verb's run)."""
        self._resolved.clear()

    @property
    def trusted(self) -> bool:
        return bool(self.cfg.get("checkpoint_trusted"))

    def given(self) -> Any:
        return None if OmegaConf.is_missing(self.cfg, "checkpoint") else self.cfg.get("checkpoint")

    def resolve(self, spec: str | os.PathLike, announce: bool = True) -> Path:
        """The file ``checkpoint=spec`` names (:func:`m3l.weights.checkpoints.resolve_checkpoint`). For
        ``best`` and ``last``, which run's file it is gets logged (unless the header said it)."""
        key = str(spec)
        if key not in self._resolved:
            path, note = resolve_checkpoint_noted(key, self.cfg)
            if note and announce:
                log.info("checkpoint=%s: %s", key, note)
            self._resolved[key] = (path, note)
        return self._resolved[key][0]

    def describe(self, verb: str) -> str | None:
        """What the run header says of the weights: ``checkpoint=`` as given, for ``best`` and
        ``last`` the file, run and monitored value it resolved to, and for ``train`` whether
        the run continues a checkpoint or starts from its weights. None: no weights given."""
        spec, resume = self.given(), verb == "train" and bool(self.cfg.get("resume"))
        if spec is None and not resume:
            return None if verb == "train" else "checkpoint=None"
        if verb == "train" and str(spec or "last") == "last":
            return f"{'resume=true' if resume else 'checkpoint=last'} (continues the newest run with these settings exactly)"
        text = f"checkpoint={spec}"
        if str(spec) in ("best", "last"):
            try:
                self.resolve(str(spec), announce=False)  # the header says it
                text += f": {self._resolved[str(spec)][1]}"
            except CheckpointError:
                pass  # the run itself reports it
        if verb == "train":
            text += (
                " (resume=true: continues it exactly)"
                if resume
                else " (a new run from its weights; optimizer and schedule as configured now)"
            )
        return text

    def train_start(self, net: Any, output_dir: Path, trust_option: str) -> Path | None:
        """What ``train`` starts from: the checkpoint Lightning resumes exactly, or None (a new
        run, after loading the weights ``checkpoint=`` names into ``net``, when it names any)."""
        spec, resume = self.cfg.get("checkpoint"), bool(self.cfg.get("resume"))
        if not spec and not resume:
            return None
        if str(spec or "last") == "last":  # the run of these settings, never one of others (m3l.records.past_runs)
            path = resume_checkpoint(self.cfg, output_dir, "resume=true" if resume else "checkpoint=last")
        else:
            path = self.resolve(spec)
            warn_if_other_settings(path, self.cfg, resume=resume)
        if path.suffix == ".safetensors" or not resume and str(spec) != "last":
            # weights only (checkpoint=pretrained, a shipped file, or any checkpoint= without
            # resume): a new run from them, optimizer and schedule as configured now
            load_weights_into(net, path, trusted=self.trusted)
            if resume:
                log.warning(
                    "%s holds weights only: resume=true starts a new run from them (nothing else to continue)", path
                )
            log.info(
                "Starting from the weights of %s (a new run: optimizer, learning rate and schedule as "
                "configured now; resume=true checkpoint=PATH continues a run exactly)",
                path,
            )
            return None
        check_checkpoint(path, trusted=self.trusted, trust_option=trust_option)
        log.info("Resuming from %s (exactly: weights, optimizer, schedule, epoch and random states)", path)
        return path

    def load(self, net: Any, verb: str, spec: str | os.PathLike | None = None) -> Path:
        """Load ``spec`` (default: ``checkpoint=``; a path, ``last``, ``best``, ``pretrained``)
        into ``net``, weights only."""
        if spec is None:
            spec = self.given()
        if spec is None:
            raise CheckpointError(
                f"`{verb}` needs weights: pass checkpoint=PATH (a .ckpt or .safetensors file), "
                "or checkpoint=last / checkpoint=best for the newest training run of this model."
            )
        if str(spec) == "pretrained" and callable(getattr(net, "load_pretrained", None)):
            # a model that brings its own zoo weights (plug-and-play: its denoiser priors)
            return net.load_pretrained()
        path = self.resolve(str(spec))
        load_weights_into(net, path, trusted=self.trusted)
        log.info("Loaded weights from %s", path)
        return path
