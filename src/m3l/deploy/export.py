"""Export a trained model to ONNX, ``torch.export`` (.pt2) or TorchScript, with a parity check.

Every export is checked against the eager model on real photos (the packaged samples) of
several sizes; the largest absolute difference is reported and the export fails above a
tolerance. Next to the artifact ``NAME.EXT`` a metadata file ``NAME.EXT.json`` records what
a runtime needs to feed it (see :mod:`m3l.deploy.runtime`)::

    python -m m3l.run.export model=demo checkpoint=best format=onnx

The exported graph takes the input already padded to ``pad_multiple`` (``(B, C, H, W)`` for
images, ``(B, T, C, H, W)`` for video windows, float32 in [0, 1]) and the net's conditions
(e.g. ``sigma`` of shape ``(B,)``) and returns the restored image with the residual added,
not clamped; multi-task models return one output per head. Padding, tiling and clamping
stay in the runtime, as in ``correct``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from m3l.deploy.runtime import temp_file_beside
from m3l.models.tiling import pad_to_multiple
from m3l.errors import M3LError

log = logging.getLogger(__name__)

FORMATS: dict[str, str] = {"onnx": ".onnx", "pt2": ".pt2", "torchscript": ".ts"}
METADATA_SUFFIX = ".json"
_torchscript_warned = False


class ExportError(M3LError):
    """An export could not be made, or does not reproduce the eager model."""


@dataclass
class ExportSpec:
    """What the exported graph takes and returns; written as the artifact's metadata."""

    model: str
    net: str
    kind: str  # "image", "video" or "multitask"
    layout: str  # "NCHW" or "NTCHW"
    channels: int
    pad_multiple: int
    temporal_window: int | None = None
    conditions: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=lambda: ["output"])
    input_range: list[float] = field(default_factory=lambda: [0.0, 1.0])
    dtype: str = "float32"
    tiling: dict[str, Any] | None = None


def metadata_path(artifact: str | os.PathLike[str]) -> Path:
    """The metadata file of ``artifact`` (``model.onnx`` -> ``model.onnx.json``)."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + METADATA_SUFFIX)


# ---------------------------------------------------------------------------- the graph


class ExportWrapper(nn.Module):
    """The forward that is exported: plain modules (no Lightning), tensors in, tensors out.

    A restoration model becomes ``net(x, **conditions)`` plus the input (its centre frame
    for video nets) when the net predicts a residual; a multi-task model becomes the
    backbone and one output per head, in ``spec.outputs`` order.
    """

    def __init__(self, module: nn.Module, spec: ExportSpec) -> None:
        super().__init__()
        self.spec = spec
        self.multitask = spec.kind == "multitask"
        if self.multitask:
            self.backbone = module.backbone
            self.heads = nn.ModuleList([module.heads[name] for name in spec.outputs])
        else:
            self.net = module.net
        self.residual = bool(getattr(module, "residual", False))
        self.conditions = tuple(spec.conditions)
        self.video = spec.temporal_window is not None

    def forward(self, x: torch.Tensor, *conditions: torch.Tensor) -> Any:
        if self.multitask:
            features = self.backbone(x)
            return tuple(head(features) for head in self.heads)
        out = self.net(x, **dict(zip(self.conditions, conditions)))
        if self.residual:
            out = (x[:, x.shape[1] // 2] if self.video else x) + out
        return out


def _first_conv_channels(module: nn.Module) -> int | None:
    first = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    return int(first.in_channels) if first is not None else None


def describe(module: nn.Module, name: str, tiling: dict[str, Any] | None = None) -> ExportSpec:
    """The :class:`ExportSpec` of a RestorationModule or a MultiTaskModule."""
    if hasattr(module, "heads") and hasattr(module, "backbone"):
        heads = list(module.heads.keys())
        channels = getattr(module.backbone, "in_channels", None) or getattr(module.backbone, "channels", None)
        channels = channels or _first_conv_channels(module.backbone)
        multiple = int(getattr(module.backbone, "pad_multiple", 1) or 1)
        return ExportSpec(
            model=name, net=type(module.backbone).__name__, kind="multitask", layout="NCHW",
            channels=int(channels or 3), pad_multiple=multiple, outputs=heads, tiling=tiling,
        )
    net = getattr(module, "net", None)
    if net is None or not hasattr(module, "restore"):
        raise ExportError(
            f"m3l exports RestorationModule and MultiTaskModule models; got {type(module).__name__}. "
            "Wrap a plain net in m3l.models.restoration.RestorationModule (a net config does this)."
        )
    window = getattr(net, "temporal_window", None)
    channels = getattr(module, "in_channels", None) or getattr(net, "in_channels", None) or 3
    return ExportSpec(
        model=name, net=type(net).__name__, kind="video" if window else "image",
        layout="NTCHW" if window else "NCHW", channels=int(channels),
        pad_multiple=int(getattr(net, "pad_multiple", 1) or 1),
        temporal_window=int(window) if window else None,
        conditions=list(getattr(net, "conditions", ()) or ()), tiling=tiling,
    )


# ---------------------------------------------------------------------------- inputs


def parity_inputs(
    spec: ExportSpec, sizes: Sequence[Sequence[int]], batch_size: int = 1
) -> list[tuple[torch.Tensor, ...]]:
    """Real inputs for the parity check: crops of the packaged sample photos at ``sizes``.

    Video inputs are windows of crops shifted by a few pixels per frame (a pan); a
    condition (``sigma``) gets 25/255. Sizes need not be multiples of ``pad_multiple``.
    """
    from PIL import Image

    from m3l.data.samples import sample_paths

    photos = [p for p in sample_paths("val")] or sample_paths("train")
    mode = "L" if spec.channels == 1 else "RGB"
    cases = []
    for index, size in enumerate(sizes):
        h, w = int(size[0]), int(size[1])
        frames = spec.temporal_window or 1
        batch = []
        for b in range(batch_size):
            image = Image.open(photos[(index + b) % len(photos)]).convert(mode)
            need_h, need_w = h + 2 * frames, w + 2 * frames
            if image.height < need_h or image.width < need_w:
                scale = max(need_h / image.height, need_w / image.width)
                image = image.resize((math.ceil(image.width * scale), math.ceil(image.height * scale)))
            array = np.asarray(image, dtype=np.float32) / 255.0
            array = array[..., None] if array.ndim == 2 else array
            crops = [array[2 * t : 2 * t + h, 2 * t : 2 * t + w].transpose(2, 0, 1) for t in range(frames)]
            batch.append(np.stack(crops) if spec.temporal_window else crops[0])
        x = torch.from_numpy(np.stack(batch)).contiguous()
        conditions = tuple(torch.full((batch_size,), 25.0 / 255.0) for _ in spec.conditions)
        cases.append((x, *conditions))
    return cases


def _reference(module: nn.Module, spec: ExportSpec, case: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """The eager outputs, computed the way ``correct`` computes them (pad, run, crop)."""
    x, *conditions = case
    h, w = x.shape[-2:]
    with torch.no_grad():
        if spec.kind == "multitask":
            outputs = module(pad_to_multiple(x, spec.pad_multiple))
            return [outputs[name][..., :h, :w] for name in spec.outputs]
        named = dict(zip(spec.conditions, conditions))
        # restore() without its final clamp: the graph returns unclamped values (the runtime clamps)
        return [module(pad_to_multiple(x, spec.pad_multiple), **named)[..., :h, :w]]


# ---------------------------------------------------------------------------- per format


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


def _input_names(spec: ExportSpec) -> list[str]:
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
                input_names=_input_names(spec), output_names=list(spec.outputs), verbose=False, **kwargs,
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


_SAVERS: dict[str, Callable[[ExportWrapper, ExportSpec, Path, int | None], None]] = {
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


def check_parity(
    module: nn.Module, spec: ExportSpec, run: Callable[..., list[np.ndarray]],
    sizes: Sequence[Sequence[int]], batch_sizes: Sequence[int] = (1, 2),
) -> float:
    """Largest absolute difference between ``run`` and the eager model over real inputs."""
    worst = 0.0
    for batch_size in batch_sizes:
        for case in parity_inputs(spec, sizes, batch_size):
            expected = _reference(module, spec, case)
            x, *conditions = case
            h, w = x.shape[-2:]
            padded = pad_to_multiple(x, spec.pad_multiple)
            got = run(padded.numpy(), *(c.numpy() for c in conditions))
            if len(got) != len(expected):
                raise ExportError(f"the export returns {len(got)} output(s), the model {len(expected)}")
            for name, g, e in zip(spec.outputs, got, expected):
                g = g[..., :h, :w]
                if g.shape != tuple(e.shape):
                    raise ExportError(
                        f"output {name!r} of the export has shape {g.shape} for input {tuple(x.shape)}; "
                        f"the eager model gives {tuple(e.shape)}."
                    )
                diff = float(np.max(np.abs(g - e.numpy()))) if g.size else 0.0
                if not math.isfinite(diff):
                    diff = math.inf
                log.info("parity %s batch %d size %dx%d: max |diff| %.3g", name, batch_size, h, w, diff)
                worst = max(worst, diff)
    return worst


# ---------------------------------------------------------------------------- entry points


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export_model(
    module: nn.Module,
    output: str | os.PathLike[str],
    fmt: str = "onnx",
    name: str = "model",
    tolerance: float = 1e-4,
    sizes: Sequence[Sequence[int]] = ((64, 64), (96, 80), (75, 123)),
    overwrite: bool = False,
    opset: int | None = None,
    tiling: dict[str, Any] | None = None,
    extra_metadata: dict[str, Any] | None = None,
) -> Path:
    """Export ``module`` to ``output`` in ``fmt``, check parity, write the metadata; the path.

    Raises :class:`ExportError` for an unknown format, an existing output (unless
    ``overwrite``), an export the exporter refuses, or a parity difference above ``tolerance``
    (the rejected artifact is not kept).
    """
    if fmt not in FORMATS:
        raise ExportError(f"format={fmt!r} is not an export format; use one of: {', '.join(FORMATS)}.")
    if not (isinstance(tolerance, (int, float)) and tolerance > 0):
        raise ExportError(f"parity.tolerance must be a positive number, got {tolerance!r}.")
    if not sizes:
        raise ExportError("parity.sizes is empty: give at least one [height, width] to check the export on.")
    output = Path(output).expanduser()
    meta_file = metadata_path(output)
    for target in (output, meta_file):
        if target.exists() and not overwrite:
            raise ExportError(
                f"{target} already exists; m3l does not replace an export. Pass output=NEW_PATH, or "
                "overwrite=true to replace it."
            )
    output.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval().cpu()
    spec = describe(module, name, tiling)
    wrapper = ExportWrapper(module, spec).eval()
    fd, tmp_name = temp_file_beside(output, FORMATS[fmt])
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        start = time.perf_counter()
        try:
            _SAVERS[fmt](wrapper, spec, tmp, opset)
        except ExportError:
            raise
        except Exception as exc:  # noqa: BLE001 - the exporter's own failure, reported with context
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(
                f"format={fmt}: the exporter failed on {spec.net}: {type(exc).__name__}: {first}\n"
                "Try another format (onnx, pt2, torchscript); HYDRA_FULL_ERROR=1 shows the traceback."
            ) from exc
        seconds = time.perf_counter() - start
        diff = check_parity(module, spec, load_artifact(tmp, fmt), sizes)
        if not diff <= tolerance:
            raise ExportError(
                f"format={fmt}: parity check failed: the export differs from the eager model by up to "
                f"{diff:.3g} (tolerance {tolerance:g}) on real inputs of sizes {list(map(list, sizes))}. "
                "The artifact was not kept. Raise parity.tolerance only if this difference is acceptable."
            )
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    from m3l import __version__

    metadata = {
        "format": fmt,
        **asdict(spec),
        "m3l_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
        "parity": {"max_abs_diff": diff, "tolerance": tolerance, "sizes": [list(map(int, s)) for s in sizes],
                   "batch_sizes": [1, 2]},
        "export_seconds": round(seconds, 3),
        "sha256": _sha256(output),
        **(extra_metadata or {}),
    }
    meta_file.write_text(json.dumps(metadata, indent=2) + "\n")
    log.info("Exported %s (%s) to %s; parity max |diff| %.3g (tolerance %g)", name, fmt, output, diff, tolerance)
    return output


def export_experiment(experiment: Any) -> Path:
    """The ``export`` verb: load ``checkpoint`` into the experiment's net and export it (in a
    run directory of its own, see :meth:`m3l.Experiment.running`)."""
    with experiment.running("export"):
        return _export_experiment(experiment)


def _export_experiment(experiment: Any) -> Path:
    from omegaconf import OmegaConf

    cfg = experiment.cfg
    fmt = str(cfg.get("format", "onnx")).lower()
    if fmt not in FORMATS:
        raise ExportError(f"format={cfg.get('format')!r} is not an export format; use one of: {', '.join(FORMATS)}.")
    output = cfg.get("output")
    output_path = Path(str(output)) if output else experiment.output_dir / f"{cfg.name}{FORMATS[fmt]}"
    if (output_path.exists() or metadata_path(output_path).exists()) and not cfg.get("overwrite", False):
        raise ExportError(
            f"output={output_path} already exists; m3l does not replace an export. Pass another "
            "output=PATH, or overwrite=true to replace it."
        )
    experiment.save_config()
    checkpoint = experiment.load_weights()
    parity = cfg.get("parity") or {}
    tiler = OmegaConf.select(cfg, "net.tiler")
    tiling = None
    if tiler is not None:
        tiler = OmegaConf.to_container(tiler, resolve=True)
        defaults = {"tile_size": 512, "overlap": 32, "batch_size": 4, "blend": "gaussian"}  # TiledPredictor's
        tiling = {k: tiler.get(k, v) for k, v in defaults.items()}
    try:
        tolerance = float(parity.get("tolerance", 1e-4))
        sizes = [[int(v) for v in s] for s in parity.get("sizes", [[64, 64], [96, 80], [75, 123]])]
    except (TypeError, ValueError) as exc:
        raise ExportError(
            f"parity.tolerance must be a number and parity.sizes a list of [height, width] pairs; got "
            f"tolerance={parity.get('tolerance')!r}, sizes={parity.get('sizes')!r}."
        ) from exc
    if any(len(s) != 2 or min(s) < 1 for s in sizes):
        raise ExportError(f"parity.sizes must be [height, width] pairs of positive sizes, got {sizes}.")
    return export_model(
        experiment.net, output_path, fmt=fmt, name=str(cfg.name),
        tolerance=tolerance, sizes=sizes,
        overwrite=bool(cfg.get("overwrite", False)), opset=cfg.get("opset"), tiling=tiling,
        extra_metadata={"checkpoint": str(checkpoint)},
    )
