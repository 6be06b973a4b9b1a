"""One writer and one reader per export format: ONNX (``torch.onnx.export(dynamo=True)``,
run with onnxruntime), ``torch.export`` (.pt2) and TorchScript (traced; deprecated in PyTorch).
Each writer exports with dynamic batch, height and width."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

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
    shape = (2, spec.temporal_window, spec.channels, side, side + spec.pad_multiple) if spec.temporal_window else (
        2, spec.channels, side, side + spec.pad_multiple)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    return (x, *(torch.full((2,), 25.0 / 255.0) for _ in spec.conditions))


def input_names(spec: ExportSpec) -> list[str]:
    return ["input", *spec.conditions]


def _save_onnx(wrapper: ExportWrapper, spec: ExportSpec, path: Path, opset: int | None) -> None:
    kwargs: dict[str, Any] = {"opset_version": opset} if opset else {}
    # the exporter logs a warning per missing torchvision op; m3l never uses torchvision
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper, _example(spec), dynamo=True, dynamic_shapes=_dynamic_shapes(spec),
                input_names=input_names(spec), output_names=list(spec.outputs), verbose=False, **kwargs,
            )
    finally:
        registration.setLevel(level)
    if program is None:
        raise ExportError("torch.onnx.export returned nothing; is onnxscript installed? (pip install 'm3l[export]')")
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation and tracer warnings: parity below is the check
        traced = torch.jit.trace(wrapper, _example(spec), check_trace=False, strict=False)
        torch.jit.save(traced, str(path))


SAVERS: dict[str, Callable[[ExportWrapper, ExportSpec, Path, int | None], None]] = {
    "onnx": _save_onnx, "pt2": _save_pt2, "torchscript": _save_torchscript,
}


def load_artifact(path: str | os.PathLike[str], fmt: str) -> Callable[..., list[np.ndarray]]:
    """A function running the artifact on numpy arrays and returning numpy outputs."""
    path = str(path)
    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ExportError("format=onnx checks parity with onnxruntime: pip install onnxruntime") from exc
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
