"""The parity check of an export: the artifact against the eager model on real photos (crops
of the packaged samples) of several sizes and batch sizes, computed the way ``correct``
computes them (pad to the net's multiple, run, crop)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from m3l.deploy.spec import ExportSpec
from m3l.errors import ExportError
from m3l.models.tiling import pad_to_multiple

log = logging.getLogger(__name__)


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


def check_parity(
    module: nn.Module,
    spec: ExportSpec,
    run: Callable[..., list[np.ndarray]],
    sizes: Sequence[Sequence[int]],
    batch_sizes: Sequence[int] = (1, 2),
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
                log.debug("parity %s batch %d size %dx%d: max |diff| %.3g", name, batch_size, h, w, diff)
                worst = max(worst, diff)
    return worst
