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

The graph and its spec are :mod:`m3l.deploy.spec`, the writers and readers of each format
:mod:`m3l.deploy.formats`, the parity check :mod:`m3l.deploy.parity`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from m3l.deploy.formats import FORMATS, SAVERS, export_extra_hint, load_artifact
from m3l.deploy.parity import check_parity
from m3l.deploy.runtime import sha256_of, temp_file_beside
from m3l.deploy.spec import ExportWrapper, describe
from m3l.errors import ExportError

log = logging.getLogger(__name__)

METADATA_SUFFIX = ".json"


def metadata_path(artifact: str | os.PathLike[str]) -> Path:
    """The metadata file of ``artifact`` (``model.onnx`` -> ``model.onnx.json``)."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + METADATA_SUFFIX)


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
            SAVERS[fmt](wrapper, spec, tmp, opset)
        except ExportError:
            raise
        except ImportError as exc:  # a module of the export extra that is missing or broken
            if fmt != "onnx":
                raise
            raise ExportError(export_extra_hint([exc.name or str(exc)])) from exc
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
        "parity": {
            "max_abs_diff": diff,
            "tolerance": tolerance,
            "sizes": [list(map(int, s)) for s in sizes],
            "batch_sizes": [1, 2],
        },
        "export_seconds": round(seconds, 3),
        "sha256": sha256_of(output),
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
        experiment.net,
        output_path,
        fmt=fmt,
        name=str(cfg.name),
        tolerance=tolerance,
        sizes=sizes,
        overwrite=bool(cfg.get("overwrite", False)),
        opset=cfg.get("opset"),
        tiling=tiling,
        extra_metadata={"checkpoint": str(checkpoint)},
    )
