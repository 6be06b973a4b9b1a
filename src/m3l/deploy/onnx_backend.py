"""The ONNX Runtime backend of ``correct`` and ``test`` (:mod:`m3l.deploy.backends`): the
export cached beside the checkpoint (or in the m3l cache) under a key of the weights, stale
exports of a rewritten checkpoint removed, sessions tuned for one model at a time, and int8
static quantization calibrated on a run's first input."""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger("m3l.deploy.backends")  # one logger for the backend choice and its exports


def weights_key(module: nn.Module, *extra: str) -> str:
    """A hex key of a module's weights (names, shapes, values), its structure and ``extra``."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    digest.update(repr(module).encode())
    for text in extra:
        digest.update(text.encode())
    return digest.hexdigest()


def onnx_cache_places(name: str, key: str, cache_dir: Path, checkpoint: Path | None = None) -> list[Path]:
    """Where the ONNX export of a net is looked for, in order, and made at the first writable:
    beside its checkpoint (``<checkpoint file name>.<key>.onnx``; not for the weights shipped
    inside the m3l package), then in ``cache_dir``. Both
    names carry the key, so a changed checkpoint or config never reuses an old export, and no
    file of the user's is ever replaced (the export is written to a temporary file and renamed)."""
    places = [cache_dir / f"{name}-{key[:20]}.onnx"]
    if checkpoint is not None and not _packaged(checkpoint):
        places.insert(0, checkpoint.parent / f"{checkpoint.name}.{key[:16]}.onnx")
    return places


def _packaged(path: Path) -> bool:
    """Whether ``path`` is inside the installed m3l package (its shipped weights): nothing is
    written there."""
    package = Path(__file__).resolve().parents[1]
    return package in path.resolve().parents


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)


def onnx_artifact(module: nn.Module, places: list[Path], name: str, rebuild: bool = False) -> Path:
    """The module's ONNX export: the first of ``places`` that exists (unless ``rebuild``), else
    made (and parity-checked) at the first place whose folder can be written."""
    from m3l.deploy.export import ExportError, export_model

    found = next((p for p in places if p.is_file()), None)
    if found is not None and not rebuild:
        damage = cached_export_damage(found)
        if not damage:
            return found
        log.warning("the cached ONNX export %s %s; exporting it again", found, damage)
        rebuild = True
    start, last_error = time.perf_counter(), None
    for path in ([found] if found is not None else []) + [p for p in places if p != found]:
        if not _writable(path.parent):
            continue
        try:
            export_model(
                module, path, fmt="onnx", name=name, sizes=((64, 64), (75, 123)), overwrite=rebuild and path == found
            )
        except ExportError:
            if path.is_file():  # another process made it in the meantime
                return path
            raise
        except OSError as err:  # a folder that looked writable and was not: try the next place
            last_error = err
            continue
        log.info("exported %s to ONNX in %.1f s (cached: %s)", name, time.perf_counter() - start, path)
        remove_stale_exports(path)
        return path
    raise OSError(
        f"no writable place for the ONNX export of {name} (tried {', '.join(str(p.parent) for p in places)})"
    ) from last_error


def cached_export_damage(path: Path) -> str:
    """Why the cached export at ``path`` cannot be trusted ("" when it can): its metadata
    (``path.json``, written by the export) is missing or unreadable, or the file's sha256 is not
    the one the metadata records (cut short, overwritten, random bytes)."""
    import json

    from m3l.deploy.runtime import sha256_of

    try:
        recorded = json.loads(path.with_name(path.name + ".json").read_bytes()).get("sha256")
    except (OSError, ValueError, AttributeError):
        return "has no readable metadata beside it"
    if not isinstance(recorded, str):
        return "has no sha256 in its metadata"
    actual = sha256_of(path)
    if actual != recorded.lower():
        return f"does not match the sha256 its metadata records ({actual[:12]}... vs {recorded[:12]}...: damaged or changed)"
    return ""


def remove_stale_exports(export: Path) -> list[Path]:
    """Delete the exports m3l made beside the same checkpoint from its earlier contents.

    ``export`` is ``<checkpoint>.<key>.onnx``; a sibling ``<checkpoint>.<other key>.onnx`` (and
    its ``.json``) older than the checkpoint file was made from weights that file no longer
    holds (``last.ckpt`` is rewritten at every save), so nothing can use it again. Exports of
    other checkpoints, and any file not named by this pattern, are left alone. Returns what
    was deleted."""
    match = re.fullmatch(r"(.+)\.([0-9a-f]{16})\.onnx", export.name)
    checkpoint = export.parent / match.group(1) if match else None
    if checkpoint is None or not checkpoint.is_file():
        return []
    written = checkpoint.stat().st_mtime
    removed = []
    for old in export.parent.glob(f"{glob.escape(checkpoint.name)}.*.onnx"):
        if old == export or not re.fullmatch(r"[0-9a-f]{16}", old.name[len(checkpoint.name) + 1 : -5]):
            continue
        try:
            if old.stat().st_mtime >= written:
                continue
            old.unlink()
            old.with_name(old.name + ".json").unlink(missing_ok=True)
        except OSError:  # gone already, or not ours to delete: leave it
            continue
        removed.append(old)
    if removed:
        log.info(
            "removed %d stale ONNX export(s) of an earlier %s: %s",
            len(removed),
            checkpoint.name,
            ", ".join(p.name for p in removed),
        )
    return removed


def onnx_session(path: Path | bytes, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session tuned for one model at a time: all graph optimizations,
    ``threads`` intra-op threads (torch's count by default), sequential execution. ``path``:
    an ``.onnx`` file or a serialized model."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def quantize_int8(path: Path, feeds: list[dict[str, Any]]) -> bytes:
    """The ONNX model at ``path`` quantized to int8 by ONNX Runtime (static, QDQ format):
    weights int8 per output channel, activations uint8 with scales calibrated (min/max) on
    ``feeds`` (``{input name: array}`` each), the first and the last convolution left in fp32.
    Returns the serialized model; nothing is written beside ``path``."""
    import tempfile

    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = iter(feeds)

        def get_next(self) -> dict[str, Any] | None:
            return next(self.left, None)

    convs = [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type == "Conv"]
    root = logging.getLogger()  # the quantizer advises pre-processing on the root logger
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        with tempfile.TemporaryDirectory(prefix="m3l-int8-") as tmp:
            out = Path(tmp) / "int8.onnx"
            quantize_static(
                str(path),
                str(out),
                Feeds(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=[convs[0], convs[-1]] if len(convs) >= 3 else [],
                calibrate_method=CalibrationMethod.MinMax,
            )
            return out.read_bytes()
    finally:
        root.setLevel(level)


def onnx_forward(session: Any, conditions: tuple[str, ...]) -> Callable[..., torch.Tensor]:
    """The forward of ``session``: the input and the net's ``conditions`` in, the output as a tensor."""
    names = [i.name for i in session.get_inputs()]

    def forward(x: torch.Tensor, **cond: torch.Tensor) -> torch.Tensor:
        arrays = [
            x.detach().float().contiguous().numpy(),
            *(cond[c].detach().float().contiguous().numpy() for c in conditions),
        ]
        return torch.from_numpy(session.run(None, dict(zip(names, arrays)))[0])

    return forward
