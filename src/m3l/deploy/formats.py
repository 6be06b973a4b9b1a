"""One writer and one reader per export format: ONNX (``torch.onnx.export(dynamo=True)``,
run with onnxruntime), ``torch.export`` (.pt2) and TorchScript (traced; deprecated in PyTorch).
Each writer exports with dynamic batch, height and width."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from m3l._compat.lightning import lightning_modules_traceable
from m3l._compat.torch import onnx_registration_logger
from m3l.deploy.spec import ExportSpec, ExportWrapper
from m3l.errors import ExportError

log = logging.getLogger(__name__)

FORMATS: dict[str, str] = {"onnx": ".onnx", "pt2": ".pt2", "torchscript": ".ts"}
_torchscript_warned = False


def _dynamic_shapes(spec: ExportSpec) -> tuple[Any, ...]:
    dyn = torch.export.Dim.DYNAMIC
    spatial = {0: dyn, spec.layout.index("H"): dyn, spec.layout.index("W"): dyn}
    if not spec.conditions:
        return (spatial,)
    return (spatial, tuple({0: dyn} for _ in spec.conditions))


def _example(spec: ExportSpec) -> tuple[torch.Tensor, ...]:
    side = max(64, 4 * spec.pad_multiple)
    shape = (
        (2, spec.temporal_window, spec.channels, side, side + spec.pad_multiple)
        if spec.temporal_window
        else (2, spec.channels, side, side + spec.pad_multiple)
    )
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    return (x, *(torch.full((2,), 25.0 / 255.0) for _ in spec.conditions))


def input_names(spec: ExportSpec) -> list[str]:
    return ["input", *spec.conditions]


#: the loggers of the ONNX tools: a dozen lines of their passes per export ("Removed 67 unused
#: nodes", "Skipping constant folding ...") that say nothing to a user
ONNX_TOOL_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx")


@contextmanager
def tool_logs_to_file(names: Sequence[str] = ONNX_TOOL_LOGGERS) -> Iterator[None]:
    """Send the records of the loggers ``names`` to the run's log file only (the root logger's
    file handlers, which Hydra sets up), not to the terminal; where no file is set up (Python
    API) only their warnings and errors pass."""
    root = logging.getLogger()
    files = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
    saved = []
    for name in names:
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate, logger.level, list(logger.handlers)))
        if files:
            logger.propagate = False
            for handler in files:
                logger.addHandler(handler)
        else:
            logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for logger, propagate, level, handlers in saved:
            logger.propagate, logger.handlers[:] = propagate, handlers
            logger.setLevel(level)


def _missing_export_extra() -> list[str]:
    import importlib.util

    return [name for name in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(name) is None]


def export_extra_hint(missing: Sequence[str]) -> str:
    return (
        f'format=onnx needs {", ".join(missing)}, which the `export` extra installs: pip install "m3l[export]" '
        '(in a checkout: pip install -e ".[export]"). Or export with format=pt2 or torchscript, which need torch only.'
    )


def _save_onnx(wrapper: ExportWrapper, spec: ExportSpec, path: Path, opset: int | None) -> None:
    missing = _missing_export_extra()
    if missing:
        raise ExportError(export_extra_hint(missing))
    kwargs: dict[str, Any] = {"opset_version": opset} if opset else {}
    # the exporter logs a warning per missing torchvision op; m3l never uses torchvision
    registration = onnx_registration_logger()
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), tool_logs_to_file():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper,
                _example(spec),
                dynamo=True,
                dynamic_shapes=_dynamic_shapes(spec),
                input_names=input_names(spec),
                output_names=list(spec.outputs),
                verbose=False,
                **kwargs,
            )
    finally:
        registration.setLevel(level)
    if program is None:
        raise ExportError(export_extra_hint(_missing_export_extra() or ["onnxscript"]))
    program.save(str(path))


def _save_pt2(wrapper: ExportWrapper, spec: ExportSpec, path: Path, opset: int | None) -> None:
    program = torch.export.export(wrapper, _example(spec), dynamic_shapes=_dynamic_shapes(spec))
    torch.export.save(program, str(path))


def _save_torchscript(wrapper: ExportWrapper, spec: ExportSpec, path: Path, opset: int | None) -> None:
    global _torchscript_warned
    if not _torchscript_warned:
        _torchscript_warned = True
        log.warning(
            "TorchScript is deprecated in PyTorch; prefer format=pt2 (torch.export) or format=onnx. "
            "The TorchScript export is traced and checked for parity like the others."
        )
    # the tracer reads every attribute of a module; a LightningModule's `trainer` raises when none
    # is attached, unless the module says it is being scripted (what its own to_torchscript does)
    with lightning_modules_traceable(wrapper), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation and tracer warnings: parity below is the check
        traced = torch.jit.trace(wrapper, _example(spec), check_trace=False, strict=False)
        torch.jit.save(traced, str(path))


SAVERS: dict[str, Callable[[ExportWrapper, ExportSpec, Path, int | None], None]] = {
    "onnx": _save_onnx,
    "pt2": _save_pt2,
    "torchscript": _save_torchscript,
}


def load_artifact(path: str | os.PathLike[str], fmt: str) -> Callable[..., list[np.ndarray]]:
    """A function running the artifact on numpy arrays and returning numpy outputs."""
    path = str(path)
    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ExportError(export_extra_hint(["onnxruntime"])) from exc
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]

        def run_onnx(*arrays: np.ndarray) -> list[np.ndarray]:
            return list(session.run(None, dict(zip(names, arrays))))

        return run_onnx
    if fmt == "pt2":
        graph = torch.export.load(path).module()
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = torch.jit.load(path)

    def run_torch(*arrays: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            out = graph(*(torch.from_numpy(a) for a in arrays))
        out = out if isinstance(out, (tuple, list)) else (out,)
        return [o.numpy() for o in out]

    return run_torch
