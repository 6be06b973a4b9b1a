"""Inference backends for ``correct`` and ``test``: the same restoration forward run by eager
PyTorch, ``torch.compile`` or ONNX Runtime, in fp32, bf16 or int8, picked on the first
representative input and checked again as the job goes.

A :class:`InferenceBackend` stands in for a restoration module's forward (a padded batch and
the net's conditions in, the unclamped output with the residual added out, as
:class:`m3l.deploy.export.ExportWrapper`). Inputs too small or too flat to judge on
(:func:`~m3l.deploy.backend_checks.unrepresentative`: thumbnails, black frames) run on the
module as it is (eager fp32, the reference), before the pick and after it. On the first
representative input it builds the candidates that ``backend`` and ``precision`` allow, runs
each on a crop of that input next to the reference, and keeps the fastest one that reproduces
the reference: fp32 backends to :data:`PARITY_TOLERANCE` (max abs difference), bf16 and int8
ones to :data:`BF16_MIN_PSNR` dB PSNR against the fp32 output. It says what it picked, and why
not the others, in one log line; anything that fails falls back to eager. Every
:data:`~m3l.deploy.backend_checks.CHECK_EVERY`-th call after the pick compares it with the
reference again on a crop of that call's input; a pick that fails the rule there is dropped
with a warning, that input is recomputed by the reference, and the rest of the run is eager
fp32 (a precision the user forced is not checked again: its loss was accepted).

- ``eager``: PyTorch on a copy of the net in ``channels_last`` memory format (oneDNN's
  fastest convolution layout on CPU);
- ``compile``: ``torch.compile`` of that copy (a one-time compilation per input shape);
- ``onnx``: an ONNX Runtime session on the net exported by :func:`m3l.deploy.export.export_model`
  (its own parity check included), made once and cached under a key of the weights, the net's
  config, the input channels and the torch version (:func:`~m3l.deploy.onnx_backend.onnx_cache_places`): beside the
  checkpoint (``<checkpoint>.<key>.onnx``) where its folder is writable, else in the m3l cache,
  so later runs skip the export;
- ``auto`` (default): ``onnx`` (when ``onnxruntime`` and ``onnxscript`` are installed) and
  ``eager``, in fp32 and, where the CPU has bf16 units (AVX512-BF16, AMX), in bf16; ONNX
  Runtime also in int8 where the CPU has int8 dot-product units (AVX512-VNNI, AVX-VNNI, AMX).

int8 (:func:`~m3l.deploy.onnx_backend.quantize_int8`) is ONNX Runtime's static quantization of the cached fp32 export,
calibrated on the crop of the run's first representative input: int8 weights per output channel, uint8
activations, the first and the last convolution kept in fp32 (measured here: the same speed,
less error). It is made again at each run (about a second), since its scales come from the
run's own input. Like bf16, ``auto`` keeps it only when its output is at least
:data:`BF16_MIN_PSNR` dB from the fp32 one; ``precision=int8`` forces it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from m3l.deploy.backend_checks import CHECK_EVERY, closeness_in_words, compare, unrepresentative
from m3l.deploy.backend_checks import psnr_db as psnr_db  # re-exported
from m3l.deploy.capabilities import cpu_has_bf16, cpu_has_int8, onnx_unavailable
from m3l.deploy.onnx_backend import (
    onnx_artifact,
    onnx_cache_places,
    onnx_forward,
    onnx_session,
    quantize_int8,
    weights_key,
)
from m3l.deploy.torch_backend import Forward, no_autocast, torch_forward
from m3l.errors import ConfigError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "eager", "compile", "onnx")
PRECISIONS = ("auto", "fp32", "bf16", "int8")
#: largest absolute difference an fp32 backend may show against eager PyTorch
PARITY_TOLERANCE = 1e-4
#: smallest PSNR (dB) of a bf16 output against the fp32 one. With errors uncorrelated to the
#: fp32 output's, 10 log10(1 + 10^(-(55 - P) / 10)) <= 0.05 dB: the PSNR of outputs up to
#: P = 35.6 dB moves by at most 0.05 dB (see docs/correction.md#speed-backend-and-precision)
BF16_MIN_PSNR = 55.0
#: side of the crop of an input the candidates are checked and timed on
PROBE_SIDE = 128
#: ``auto`` exports to ONNX (when not cached yet) only for jobs whose eager PyTorch time is
#: estimated above this many seconds: the export costs a few seconds once per checkpoint
ONNX_EXPORT_WORTH_S = 30.0
#: ``auto`` tries int8 only for jobs whose eager PyTorch time is estimated above this many
#: seconds: the quantization (calibration included) costs about a second at every run
INT8_WORTH_S = 10.0
#: ``auto`` replaces eager PyTorch only with a candidate at least this much faster on the probe:
#: one crop timed on a shared machine moves by 10-20%, and a small win on a 128 px crop turned
#: into a 0.7x loss over a whole folder (docs/benchmarks.md, correction throughput)
AUTO_MIN_SPEEDUP = 1.25

#: what each backend is, in the backend choice line
ENGINES = {"eager": "eager PyTorch", "compile": "torch.compile", "onnx": "ONNX Runtime"}
#: the precisions each backend runs
RUNS = {"eager": ("fp32", "bf16"), "compile": ("fp32", "bf16"), "onnx": ("fp32", "int8")}


def check_choice(backend: str, precision: str) -> None:
    """Refuse an unknown ``backend=`` or ``precision=`` value, naming the accepted ones."""
    if backend not in BACKENDS:
        raise ConfigError(
            f"backend={backend!r} is not a backend; use one of: {', '.join(BACKENDS)} (auto picks the fastest)."
        )
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} is not a precision; use one of: {', '.join(PRECISIONS)}.")
    if backend == "onnx" and precision == "bf16":
        raise ConfigError(
            "precision=bf16 runs on PyTorch: use backend=eager, compile or auto with it (ONNX Runtime runs fp32 or int8 here)."
        )
    if precision == "int8" and backend not in ("onnx", "auto"):
        raise ConfigError(
            f"precision=int8 runs on ONNX Runtime: use backend=onnx or auto with it, not backend={backend}."
        )


# ---------------------------------------------------------------------------- candidates


# ---------------------------------------------------------------------------- selection


@dataclass
class Candidate:
    backend: str
    precision: str
    forward: Forward | None = None
    seconds: float = math.inf
    check: str = ""
    failed: str = ""

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.precision}"

    @property
    def words(self) -> str:
        """What runs, as a user reads it: ``ONNX Runtime fp32``, ``eager PyTorch channels-last
        bf16`` (named apart from the reference, eager PyTorch fp32 on the net as it is)."""
        engine = ENGINES.get(self.backend, self.backend)
        if self.backend == "eager" and not self.precision.endswith("as is"):
            engine += " channels-last"
        return f"{engine} {self.precision.split()[0]}"


class InferenceBackend:
    """The forward of a restoration module, run by the fastest backend that reproduces it.

    Args:
        module: a :class:`m3l.models.restoration.RestorationModule` (``net``, ``residual``).
        backend: ``auto``, ``eager``, ``compile`` or ``onnx``.
        precision: ``auto`` (bf16 where the CPU has the units and the output holds), ``fp32``
            or ``bf16`` (forced, even when slower or further from fp32: with a warning).
        cache_dir: where ONNX exports are kept when not beside the checkpoint (default: the m3l
            cache, see :mod:`m3l.weights.hub`).
        checkpoint: the weights file the module was loaded from (default: the module's
            ``weights_file``, set by :func:`m3l.weights.checkpoints.load_weights_into`): ONNX exports
            are kept beside it where its folder is writable.
        name: names the cached export.
        config_text: the net's config, part of the cache key.
        expected_calls: how many batches the job has (None: unknown); ``auto`` skips a first
            ONNX export for jobs estimated under :data:`ONNX_EXPORT_WORTH_S` of eager time, and
            int8 for those under :data:`INT8_WORTH_S`.
    """

    def __init__(
        self,
        module: nn.Module,
        backend: str = "auto",
        precision: str = "auto",
        cache_dir: str | Path | None = None,
        name: str = "model",
        config_text: str = "",
        expected_calls: int | None = None,
        checkpoint: str | Path | None = None,
    ) -> None:
        check_choice(backend, precision)
        self.module, self.backend, self.precision = module, backend, precision
        self.cache_dir, self.name, self.config_text = cache_dir, name, config_text
        checkpoint = checkpoint if checkpoint is not None else getattr(module, "weights_file", None)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.expected_calls = expected_calls
        self.chosen: Candidate | None = None
        self.candidates: list[Candidate] = []
        self.reference_seconds = math.inf
        # a choice the user made: falling back from it is a warning, not a note
        self._forced = backend != "auto" or precision in ("bf16", "int8")
        #: every this-many-th call after the pick is checked against the reference on a crop
        self.check_every = CHECK_EVERY
        self.calls = 0  # calls run by the pick since it was made
        self._waiting = ""

    def __call__(self, x: torch.Tensor, **conditions: torch.Tensor) -> torch.Tensor:
        if self.chosen is not None and self.chosen.forward == self.module.forward:
            return self._reference(x, conditions)
        odd = unrepresentative(x, PROBE_SIDE)
        if odd:  # nothing to pick on nor to check: the reference, cheap on thumbnails
            if self.chosen is None and not self._waiting:
                self._waiting = odd
                if not self._plan(x)[0]:  # nothing to pick from anyway: say why now
                    self.select(x, conditions)
                else:
                    self._say(f"eager PyTorch fp32 until an input fit to pick on (the first: {odd})")
            return self._reference(x, conditions)
        if self.chosen is None:
            self.select(x, conditions)
            assert self.chosen is not None and self.chosen.forward is not None
            return self.chosen.forward(x, **conditions)
        assert self.chosen.forward is not None
        out = self.chosen.forward(x, **conditions)
        self.calls += 1
        if self.calls % self.check_every == 0 and not self._holds(x, conditions):
            return self._reference(x, conditions)
        return out

    def _reference(self, x: torch.Tensor, conditions: dict[str, torch.Tensor]) -> torch.Tensor:
        """The module as it is, in fp32: what every backend is held to."""
        with no_autocast():
            return self.module.forward(x, **conditions)

    def _holds(self, x: torch.Tensor, conditions: dict[str, torch.Tensor]) -> bool:
        """Whether the pick still reproduces the reference on a crop of ``x``; when not, warns
        and makes the reference the pick for the rest of the run."""
        assert self.chosen is not None and self.chosen.forward is not None
        if self.precision == self.chosen.precision and self.precision in ("bf16", "int8"):
            return True  # forced, with its loss measured and warned about at the pick
        probe, probe_cond = self._probe(x, conditions)
        with torch.inference_mode(), no_autocast():
            check, failed = compare(
                self.chosen.precision,
                self.chosen.forward(probe, **probe_cond),
                self.module.forward(probe, **probe_cond),
                BF16_MIN_PSNR,
                PARITY_TOLERANCE,
            )
        if not failed:
            return True
        dropped, self.chosen = self.chosen, Candidate("eager", "fp32 as is", forward=self.module.forward)
        self._say(
            f"{dropped.words} failed the check on call {self.calls} after the pick ({failed}): "
            "that input recomputed, and eager PyTorch fp32 for the rest of the run",
            warn=True,
        )
        return False

    # -- what to try ---------------------------------------------------------------------

    def _plan(self, x: torch.Tensor) -> tuple[list[Candidate], str]:
        """The candidates to try, and a note on what was left out and why."""
        if x.device.type != "cpu":
            return [], f"the input is on {x.device.type}; m3l's fast backends are CPU ones"
        from m3l.deploy.spec import is_restoration_module

        if not is_restoration_module(self.module):  # backends run a restoration module's net (RUNS)
            return [], f"{type(self.module).__name__} is not a restoration module m3l runs on other backends"
        try:
            from m3l.deploy.export import describe

            self.spec = describe(self.module, self.name)
        except Exception as err:  # noqa: BLE001 - not a restoration module: eager as it is
            return (
                [],
                f"{type(self.module).__name__} is not a restoration module m3l can export: {str(err).split('. ')[0]}",
            )
        notes = []
        precisions = ["fp32", "bf16", "int8"] if self.precision == "auto" else [self.precision]
        for precision, has_units in (("bf16", cpu_has_bf16), ("int8", cpu_has_int8)):
            if self.precision == "auto" and not has_units():
                precisions.remove(precision)
                notes.append(f"no {precision} units on this CPU")
        backends = {"auto": ["onnx", "eager"], "eager": ["eager"], "compile": ["compile"], "onnx": ["onnx"]}[
            self.backend
        ]
        if "onnx" in backends:
            missing = onnx_unavailable()
            if missing:
                if self.backend == "onnx" or self.precision == "int8":
                    return [], f"{'backend=onnx' if self.backend == 'onnx' else 'precision=int8'} needs {missing}"
                notes.append(f"ONNX Runtime: {missing}")
                backends = [b for b in backends if b != "onnx"]
        plan = [Candidate(b, p) for b in backends for p in precisions if p in RUNS[b]]
        return plan, "; ".join(notes)

    def _onnx_feed(self, x: torch.Tensor, conditions: dict[str, torch.Tensor]) -> dict[str, Any]:
        """ONNX Runtime's inputs for ``x`` and the net's conditions, as :func:`~m3l.deploy.onnx_backend.onnx_forward` feeds them."""
        from m3l.deploy.formats import input_names

        arrays = [x, *(conditions[c] for c in self.spec.conditions)]
        return {n: a.detach().float().contiguous().numpy() for n, a in zip(input_names(self.spec), arrays)}

    def _onnx_places(self) -> list[Path]:
        if getattr(self, "_places", None) is None:  # the key hashes every weight: once
            from m3l.weights import hub

            cache = Path(self.cache_dir) if self.cache_dir else hub.cache_dir() / "onnx"
            key = weights_key(self.module.net, self.config_text, f"channels={self.spec.channels}", torch.__version__)
            self._places = onnx_cache_places(self.name, key, cache, self.checkpoint)
        return self._places

    def _not_worth_it(self, x: torch.Tensor, probe: torch.Tensor, plan: list[Candidate]) -> tuple[list[Candidate], str]:
        """What ``auto`` leaves out for a short job, and why: a first ONNX export (a few
        seconds once per checkpoint) under :data:`ONNX_EXPORT_WORTH_S` of estimated eager time,
        int8 (quantized again at every run, about a second) under :data:`INT8_WORTH_S`."""
        if self.backend != "auto" or self.expected_calls is None:
            return [], ""
        estimate = self.reference_seconds * x.numel() / probe.numel() * self.expected_calls
        if estimate < ONNX_EXPORT_WORTH_S and not any(p.is_file() for p in self._onnx_places()):
            dropped = [c for c in plan if c.backend == "onnx"]
            return (
                dropped,
                f"ONNX Runtime, not worth an export for a job of about {estimate:.0f} s (backend=onnx to force)",
            )
        if estimate < INT8_WORTH_S and self.precision == "auto":
            dropped = [c for c in plan if c.precision == "int8"]
            return dropped, f"int8, not worth quantizing for a job of about {estimate:.0f} s (precision=int8 to force)"
        return [], ""

    def _build(self, candidate: Candidate, rebuild: bool = False) -> Forward:
        if candidate.backend == "onnx":
            self._onnx_path = onnx_artifact(self.module, self._onnx_places(), self.name, rebuild=rebuild)
            try:
                return self._onnx_candidate(candidate)
            except Exception as err:  # noqa: BLE001 - a cached file onnxruntime cannot load: made again, once
                if rebuild:
                    raise
                first = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
                log.warning(
                    "the cached ONNX export %s cannot be loaded (%s: %s); exporting it again",
                    self._onnx_path,
                    type(err).__name__,
                    first,
                )
                self._onnx_path = onnx_artifact(self.module, self._onnx_places(), self.name, rebuild=True)
                return self._onnx_candidate(candidate)
        dtype = torch.bfloat16 if candidate.precision == "bf16" else torch.float32
        return torch_forward(self.module, dtype, compile=candidate.backend == "compile")

    def _onnx_candidate(self, candidate: Candidate) -> Forward:
        model: Path | bytes = self._onnx_path
        if candidate.precision == "int8":
            model = quantize_int8(self._onnx_path, [self._onnx_feed(*self._calibration)])
        return onnx_forward(onnx_session(model), tuple(self.spec.conditions))

    # -- trying ----------------------------------------------------------------------------

    @staticmethod
    def _timed(forward: Forward, x: torch.Tensor, conditions: dict[str, torch.Tensor]) -> tuple[torch.Tensor, float]:
        start = time.perf_counter()
        out = forward(x, **conditions)  # warm-up: allocations, oneDNN primitives, compilation
        first = time.perf_counter() - start
        start = time.perf_counter()
        forward(x, **conditions)
        # the faster of the two: other work on the machine only ever adds time
        return out, min(first, time.perf_counter() - start)

    def _probe(
        self, x: torch.Tensor, conditions: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        multiple = int(getattr(self.spec, "pad_multiple", 1) or 1)
        h, w = x.shape[-2:]
        ph, pw = (
            max(multiple, min(h, PROBE_SIDE) // multiple * multiple),
            max(multiple, min(w, PROBE_SIDE) // multiple * multiple),
        )
        return x[:1, ..., :ph, :pw].contiguous(), {k: v[:1] for k, v in conditions.items()}

    def select(self, x: torch.Tensor, conditions: dict[str, torch.Tensor]) -> Candidate:
        """Pick the backend on this (first representative) input; logs one line saying which and why."""
        with no_autocast():
            return self._select(x, conditions)

    def _select(self, x: torch.Tensor, conditions: dict[str, torch.Tensor]) -> Candidate:
        eager = Candidate("eager", "fp32 as is", forward=self.module.forward)
        plan, note = self._plan(x)
        if not plan:
            self.chosen = eager
            self._say(f"eager PyTorch fp32 runs the net ({note})", warn=self._forced)
            return eager
        probe, probe_cond = self._probe(x, conditions)
        self._calibration = (probe, probe_cond)  # int8's scales come from the first representative input
        with torch.inference_mode():
            reference, self.reference_seconds = self._timed(self.module.forward, probe, probe_cond)
        dropped, skip = self._not_worth_it(x, probe, plan)
        if skip:
            plan = [c for c in plan if c not in dropped]
            note = "; ".join(n for n in (note, skip) if n)
        for candidate in plan:
            self.candidates.append(candidate)
            for rebuild in (False, True):  # a cached export that no longer matches is made again
                candidate.failed = ""
                try:
                    candidate.forward = self._build(candidate, rebuild)
                    out, candidate.seconds = self._timed(candidate.forward, probe, probe_cond)
                except Exception as err:  # noqa: BLE001 - an exporter/compiler failure: try the next
                    candidate.failed = (
                        f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
                    )
                    break
                candidate.check = self._check(candidate, out, reference)
                if not candidate.failed or candidate.backend != "onnx" or candidate.precision != "fp32":
                    break  # only an fp32 export that does not reproduce eager is stale; int8 only rounds
        with torch.inference_mode():  # the reference again: a slow moment before must not flatter the others
            start = time.perf_counter()
            self.module.forward(probe, **probe_cond)
            self.reference_seconds = min(self.reference_seconds, time.perf_counter() - start)
        good = [c for c in plan if not c.failed]
        faster = [c for c in good if self.backend != "auto" or c.seconds * AUTO_MIN_SPEEDUP < self.reference_seconds]
        if not faster:
            self.chosen = eager
            tried = "; ".join(
                f"{c.words} {'refused: ' + c.failed if c.failed else self._speed(c) + ' as fast'}" for c in plan
            )
            why = (
                f"no other way ran at least {AUTO_MIN_SPEEDUP}x as fast on a crop of the first input"
                if good
                else "every other way failed"
            )
            self._say(
                f"eager PyTorch fp32 runs the net as it is: {why} (tried: {tried})."
                f"{' Not tried: ' + note + '.' if note else ''}",
                warn=self._forced,
            )
            return eager
        self.chosen = min(faster, key=lambda c: c.seconds)
        others = "; ".join(
            f"{c.words} {f'refused: {c.failed}' if c.failed else f'{self._speed(c)} as fast'}"
            for c in plan
            if c is not self.chosen
        )
        where = f" The export: {self._onnx_path}." if self.chosen.backend == "onnx" else ""
        self._say(
            f"{self.chosen.words} runs the net, {self._speed(self.chosen)} as fast as eager PyTorch fp32 on a crop "
            f"of the first input; {closeness_in_words(self.chosen.check, BF16_MIN_PSNR)}.{where}"
            f"{' Also tried: ' + others + '.' if others else ''}{' Not tried: ' + note + '.' if note else ''}"
        )
        return self.chosen

    def _speed(self, candidate: Candidate) -> str:
        return f"{self.reference_seconds / candidate.seconds:.2f}x"

    def _check(self, candidate: Candidate, out: torch.Tensor, reference: torch.Tensor) -> str:
        """Whether ``out`` reproduces ``reference``; sets ``candidate.failed`` when not."""
        check, failed = compare(candidate.precision, out, reference, BF16_MIN_PSNR, PARITY_TOLERANCE)
        if failed and check.startswith("PSNR") and self.precision == candidate.precision:
            log.warning(
                "precision=%s: the output is at %s (below %.0f dB); used as forced",
                candidate.precision,
                check,
                BF16_MIN_PSNR,
            )
        else:
            candidate.failed = failed
        return check

    def _say(self, text: str, warn: bool = False) -> None:
        line = f"backend={self.backend} precision={self.precision}: {text}"
        (log.warning if warn else log.info)(line)
        self.summary = line
