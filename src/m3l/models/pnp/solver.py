"""Half-quadratic splitting with a denoiser as the prior (plug-and-play restoration).

    K. Zhang, W. Zuo, S. Gu, L. Zhang, "Learning Deep CNN Denoiser Prior for Image
    Restoration" (IRCNN), CVPR 2017. https://arxiv.org/abs/1704.03264
    K. Zhang, Y. Li, W. Zuo, L. Zhang, L. Van Gool, R. Timofte, "Plug-and-Play Image
    Restoration with Deep Denoiser Prior" (DPIR), IEEE TPAMI 2021. https://arxiv.org/abs/2008.13751

To restore ``x`` from ``y = A x + n`` (noise level ``s``), HQS alternates, for ``k = 1..K``:

1. the data step ``x = argmin ||y - A x||^2 + alpha_k ||x - z||^2`` (closed form, see
   :mod:`m3l.models.pnp.operators`);
2. the prior step ``z = D(x, sigma_k)``: a Gaussian denoiser at level ``sigma_k``.

DPIR's schedule: ``sigma_k`` falls geometrically from ``sigma_max`` (49/255) to the operator's
smallest level (the noise ``s``; for super-resolution at least ``scale / 255``) over the
``K`` iterations, and ``alpha_k = lambda * s^2 / sigma_k^2`` with ``lambda = 0.23`` (``s``
floored at 0.255/255 so that a noiseless observation still has a finite weight).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from m3l.errors import ConfigError

#: DPIR's published defaults
ITERATIONS = 8
LAMBDA = 0.23
SIGMA_MAX = 49 / 255
NOISE_FLOOR = 0.255 / 255


def schedule(
    iterations: int, sigma_max: float, sigma_min: float, noise: float, lam: float
) -> list[tuple[float, float]]:
    """``(alpha_k, sigma_k)`` for each iteration (see the module docstring)."""
    if iterations < 1:
        raise ConfigError(f"pnp.iterations must be >= 1, got {iterations}.")
    sigma_min = max(sigma_min, NOISE_FLOOR)  # a noiseless observation: the smallest level DPIR uses
    if not sigma_min > 0 or not sigma_max > 0:
        raise ConfigError(
            f"pnp: the denoiser levels must be positive, got sigma_min {sigma_min * 255:.3g}/255 and sigma_max "
            f"{sigma_max * 255:.3g}/255; set pnp.sigma_max > 0 (the 0-255 scale)."
        )
    sigma_max = max(sigma_max, sigma_min)  # an observation noisier than sigma_max: start at its level
    if lam <= 0:
        raise ConfigError(f"pnp.lam must be > 0, got {lam}.")
    if iterations == 1:
        sigmas = torch.tensor([sigma_min], dtype=torch.float64)
    else:
        sigmas = torch.logspace(math.log10(sigma_max), math.log10(sigma_min), iterations, dtype=torch.float64)
        sigmas[0], sigmas[-1] = sigma_max, sigma_min  # exact ends
    s2 = max(noise, NOISE_FLOOR) ** 2
    return [(lam * s2 / float(sigma) ** 2, float(sigma)) for sigma in sigmas]


def hqs(
    problem,
    denoise: Callable[[torch.Tensor, float], torch.Tensor],
    steps: list[tuple[float, float]],
    last_denoise: Callable[[torch.Tensor, float], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Run HQS on a prepared :class:`~m3l.models.pnp.operators.Problem`; returns the restored
    image on the problem's domain (crop it with ``problem.cropped``). ``last_denoise``, when
    given, replaces ``denoise`` at the last iteration (e.g. a self-ensembled prior)."""
    z = problem.init()
    for k, (alpha, sigma) in enumerate(steps):
        x = problem.data_step(z, alpha)
        del z  # one image less held at a time (large photos)
        z = (last_denoise if last_denoise is not None and k == len(steps) - 1 else denoise)(x, sigma)
        del x
    return problem.finish(z, steps[-1][0] if steps else None)
