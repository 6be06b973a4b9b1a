"""JPEG as a plug-and-play degradation: the quantization constraint set of each file.

A JPEG file says exactly what is known of the photo: every DCT coefficient ``d`` of its level-
shifted Y (and subsampled Cb, Cr) blocks was rounded to ``c = round(d / q)``, so the original
lies in the interval ``[(c - 1/2) q, (c + 1/2) q]`` (the quantization constraint set, QCS).
:class:`JPEGConstraint`'s data step is the projection onto that set, computed with m3l's DCT
(:mod:`m3l.data.dct`) from the coefficients and tables :mod:`m3l.data.jpeg` reads (gray, 4:2:0,
4:2:2, 4:4:4): in YCbCr, each plane's block DCT is clamped into its intervals (chroma after
the encoder's box downsampling; the correction is spread back over the pixels each chroma
sample covers, which makes it the least-squares projection in YCbCr).

The prior's level comes from the tables, not from the pixels: compression error is not white
noise, and the wavelet estimator reads it badly. The luma table's root-mean-square step ``q``
(0-255 scale) gives the level through :data:`SIGMA_TABLES`, the best levels measured per kind
(gray, colour) on m3l's training photos by ``benchmarks/fit_jpeg_sigma.py`` (never on the
held-out ones), read between the measured qualities in log-log (``q / sqrt(12)``: the error of
a uniform quantizer, which orders tables of any quality or origin). The solver runs the prior once
at that level and projects the result (more HQS iterations measured worse: the prior smooths
what the projection cannot restore), starting from the file decoded in floating point with
smooth chroma upsampling; nearly lossless files (level below :data:`MIN_LEVEL`) skip the prior.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from m3l.data.dct import block_dct, block_idct, quantization_plane, rgb_to_ycbcr, ycbcr_to_rgb
from m3l.errors import ConfigError
from m3l.models.pnp.operators import Operator, Problem

#: the prior's best level (0-255 scale) against ``rms(q) / sqrt(12)`` of the luma table, per input
#: channels (the gray and colour priors differ): measured at libjpeg qualities 90, 80, ..., 10 on
#: 8 training photos by benchmarks/fit_jpeg_sigma.py (2026-12-07); read between the points by
#: linear interpolation in log-log, held constant beyond them
SIGMA_TABLES = {
    3: (
        (3.87, 0.25),
        (7.75, 5.49),
        (11.62, 7.11),
        (15.49, 9.06),
        (19.37, 10.83),
        (24.22, 12.90),
        (32.16, 14.56),
        (47.16, 21.37),
        (60.99, 34.72),
    ),
    1: (
        (3.87, 0.25),
        (7.75, 0.71),
        (11.62, 2.12),
        (15.49, 2.23),
        (19.37, 2.35),
        (24.22, 5.57),
        (32.16, 13.83),
        (47.16, 14.19),
        (60.99, 16.38),
    ),
}
#: below this level (0-255 scale) the prior's own error exceeds what it removes (measured on
#: training photos at quality 90: -0.3 dB colour, -1.8 dB gray at the best level): the file is
#: only decoded (in floating point, smooth chroma) and projected
MIN_LEVEL = {3: 1.0, 1: 0.5}


def table_sigma(table: torch.Tensor, channels: int = 3, curve: tuple[float, float] | None = None) -> float:
    """The prior's level (on [0, 1]) for a luma quantization table ``(8, 8)`` (0-255 steps):
    :data:`SIGMA_TABLES`, or ``a * (rms(q) / sqrt(12)) ** b`` for a given ``curve = (a, b)``."""
    r = float(table.double().square().mean().sqrt()) / math.sqrt(12)
    if curve is not None:
        return curve[0] * r ** curve[1] / 255
    points = SIGMA_TABLES[1 if channels == 1 else 3]
    if r <= points[0][0]:
        return points[0][1] / 255
    for (r0, l0), (r1, l1) in zip(points, points[1:]):
        if r <= r1:
            t = (math.log(r) - math.log(r0)) / (math.log(r1) - math.log(r0))
            return math.exp(math.log(l0) + t * (math.log(l1) - math.log(l0))) / 255
    return points[-1][1] / 255


def project_plane(
    plane: torch.Tensor, dequantized: torch.Tensor, table: torch.Tensor, factor: tuple[int, int]
) -> torch.Tensor:
    """The correction that puts ``plane`` (``(1, 1, H, W)``, level-shifted 0-255, at least the
    size the coefficients cover) inside the constraint set of ``dequantized`` coefficients
    (``(Hc, Wc)``, ``c q``) subsampled by ``factor``."""
    fy, fx = factor
    hc, wc = dequantized.shape[-2:]
    h, w = plane.shape[-2:]
    full = plane[..., : hc * fy, : wc * fx]
    sub = F.avg_pool2d(full, (fy, fx)) if (fy, fx) != (1, 1) else full
    coefficients = block_dct(sub[0, 0].double())
    q = quantization_plane(table.double(), hc, wc)
    low, high = dequantized.double() - q / 2, dequantized.double() + q / 2
    delta = block_idct(torch.minimum(torch.maximum(coefficients, low), high) - coefficients).to(plane.dtype)
    if (fy, fx) != (1, 1):
        delta = delta.repeat_interleave(fy, dim=-2).repeat_interleave(fx, dim=-1)
    return F.pad(delta, (0, w - delta.shape[-1], 0, h - delta.shape[-2]))[None, None]


class JPEGConstraint(Operator):
    """The QCS of each JPEG file (see the module docstring). ``project``: False skips the
    projection (the prior alone, at the level of the file's tables); ``curve``: the
    ``(a, b)`` of a power curve ``a * (rms(q) / sqrt(12)) ** b`` instead of :data:`SIGMA_TABLES`."""

    def __init__(self, project: bool = True, curve: tuple[float, float] | list[float] | None = None) -> None:
        self.project = bool(project)
        if curve is not None and (len(curve) != 2 or not all(float(v) > 0 for v in curve)):
            raise ConfigError(
                f"pnp.curve={list(curve)}: expected [a, b], two positive numbers (sigma = a * (rms(q)/sqrt(12)) ** b)."
            )
        self.curve = None if curve is None else (float(curve[0]), float(curve[1]))

    def observation_noise(self, meta: dict[str, Any], channels: int = 3) -> float:
        if meta.get("qt") is None:
            raise ConfigError(
                "pnp_jpeg needs each JPEG file's quantization tables: read the inputs as JPEG files "
                "(data=samples_jpeg_dct, m3l.data.dct_domain); other images are listed as failures."
            )
        return table_sigma(torch.as_tensor(meta["qt"])[0], channels, self.curve)

    def needs_prior(self, level: float, channels: int) -> bool:
        """Whether the prior runs at ``level``: not below :data:`MIN_LEVEL` (nearly lossless files)."""
        return level * 255 >= MIN_LEVEL[1 if channels == 1 else 3]

    def min_sigma(self, noise: float) -> float:
        return noise

    def problem(self, y: torch.Tensor, meta: dict[str, Any] | None = None) -> Problem:
        meta = dict(meta or {})
        self.observation_noise(meta)  # checks the tables are there
        terms = {k: torch.as_tensor(v) for k, v in meta.items() if isinstance(v, torch.Tensor)}
        # solve on the whole blocks the coefficients cover (edge-replicated, as the encoder
        # padded them), so that the projection is exact on partial blocks too
        h, w = y.shape[-2:]
        hp, wp = terms["dct_y"].shape[-2:]
        if "dct_c" in terms and y.shape[1] == 3:
            fy, fx = (int(v) for v in terms.get("chroma_factor", torch.tensor([1, 1])).tolist())
            hp, wp = max(hp, terms["dct_c"].shape[-2] * fy), max(wp, terms["dct_c"].shape[-1] * fx)
        padded = F.pad(y, (0, wp - w, 0, hp - h), mode="replicate") if (hp, wp) != (h, w) else y
        return Problem(self, padded, (0, 0, h, w), terms)

    def init(self, problem: Problem) -> torch.Tensor:
        """The file decoded in floating point with smooth chroma upsampling (bilinear between
        chroma sample centres, as libjpeg's "fancy" upsampling), not the rounded, replicated
        decoding: the solver starts from the best decoding the coefficients allow."""
        t = problem.terms
        hp, wp = problem.y.shape[-2:]

        def fit(plane: torch.Tensor) -> torch.Tensor:  # (1, 1, h, w) -> the domain's size
            plane = F.pad(plane, (0, max(0, wp - plane.shape[-1]), 0, max(0, hp - plane.shape[-2])), mode="replicate")
            return plane[..., :hp, :wp]

        luma = fit(block_idct(t["dct_y"].reshape(t["dct_y"].shape[-2:]).double() * 255)[None, None] + 128)
        if problem.y.shape[1] == 1:
            return (luma / 255).to(problem.y.dtype).clamp(0, 1)
        fy, fx = (int(v) for v in t.get("chroma_factor", torch.tensor([1, 1])).tolist())
        dct_c = t.get("dct_c")
        planes = [luma]
        for i in range(2):
            chroma = (
                block_idct(dct_c[i].double() * 255)[None, None] + 128
                if dct_c is not None
                else torch.full_like(luma, 128)
            )
            if (fy, fx) != (1, 1):
                chroma = F.interpolate(chroma, scale_factor=(fy, fx), mode="bilinear", align_corners=False)
            planes.append(fit(chroma))
        return ycbcr_to_rgb(torch.cat(planes, dim=1) / 255).to(problem.y.dtype).clamp(0, 1)

    def finish(self, problem: Problem, z: torch.Tensor, alpha: float | None = None) -> torch.Tensor:
        """The denoised image projected back into the constraint set (with ``project``)."""
        return self.data_step(problem, z, 0.0)

    def data_step(self, problem: Problem, z: torch.Tensor, alpha: float) -> torch.Tensor:
        if not self.project:
            return z
        t = problem.terms
        luma, chroma = t["qt"][0], t["qt"][1]
        dct_y = t["dct_y"].reshape(t["dct_y"].shape[-2:]) * 255
        if z.shape[1] == 1:
            plane = z * 255 - 128
            return (plane + project_plane(plane, dct_y, luma, (1, 1)) + 128) / 255
        ycc = rgb_to_ycbcr(z) * 255 - 128
        factor = tuple(int(v) for v in t.get("chroma_factor", torch.tensor([1, 1])).tolist())
        planes = [ycc[:, :1] + project_plane(ycc[:, :1], dct_y, luma, (1, 1))]
        dct_c = t.get("dct_c")
        for i in (1, 2):
            plane = ycc[:, i : i + 1]
            dequantized = dct_c[i - 1] * 255 if dct_c is not None else torch.zeros_like(dct_y)
            planes.append(plane + project_plane(plane, dequantized, chroma, factor))  # type: ignore[arg-type]
        return ycbcr_to_rgb((torch.cat(planes, dim=1) + 128) / 255)
