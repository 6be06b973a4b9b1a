"""Degradation operators of plug-and-play restoration, each with its exact data step.

An operator ``A`` maps the image to restore ``x`` to the observation ``y = A x + noise``. The
half-quadratic-splitting solver (:mod:`m3l.models.pnp.solver`) alternates a denoiser with the
*data step*: the solution of ``min_x ||y - A x||^2 + alpha ||x - z||^2``, in closed form here.

- :class:`Blur`: ``A x = k * x`` (a convolution); the data step is one division in the Fourier
  domain.
- :class:`Downsample`: ``A x = (k * x)`` sampled every ``scale`` pixels (super-resolution), with
  Pillow's antialiased bicubic kernel by default; the data step is the closed form of Zhao et
  al. (IEEE TIP 2016) for decimated convolutions.

Both are circular on their domain. Photos are not periodic: :meth:`Operator.problem` solves on
the observation reflect-padded by :attr:`Operator.margin` observation pixels (and tapered
towards the circular model at the outer edge), and the result is cropped back, so a photo
blurred with reflected borders comes back without ringing at its edges.

Every operator has ``forward`` and ``adjoint`` on the periodic domain (the tests check
``<A x, y> = <x, A^T y>``) and ``data_step`` (checked against an iterative solve).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from m3l.errors import ConfigError
from m3l.models.pnp.kernels import check_kernel, parse_kernel, pil_bicubic_weights

SCALES = (2, 3, 4)


def otf(kernel: torch.Tensor, shape: tuple[int, int], real: bool = True) -> torch.Tensor:
    """The Fourier transform of the circular convolution by ``kernel`` (odd ``(k, k)``, its centre
    at the origin) on a ``shape`` domain: ``rfft2`` (``real``) or ``fft2`` layout."""
    k = kernel.shape[-1]
    r = k // 2
    h, w = shape
    if k > h or k > w:
        raise ConfigError(
            f"the kernel ({k}x{k}) is larger than the image domain {h}x{w}; use a smaller kernel or a larger image."
        )
    full = torch.zeros(h, w, dtype=kernel.dtype, device=kernel.device)
    full[:k, :k] = kernel
    full = torch.roll(full, shifts=(-r, -r), dims=(0, 1))
    return torch.fft.rfft2(full) if real else torch.fft.fft2(full)


def _pad_reflect(y: torch.Tensor, margin: int) -> torch.Tensor:
    h, w = y.shape[-2:]
    if margin <= 0:
        return y
    # reflect needs margin < size; repeat reflections for images smaller than the margin
    while margin > 0:
        step = min(margin, h - 1, w - 1)
        if step <= 0:
            return F.pad(y, (margin,) * 4, mode="replicate")
        y = F.pad(y, (step,) * 4, mode="reflect")
        margin -= step
        h, w = y.shape[-2:]
    return y


def _fft_size(n: int, multiple: int = 1) -> int:
    """The smallest size >= ``n``, a multiple of ``multiple``, whose factors are 2, 3 and 5."""
    m = -(-n // multiple) * multiple
    while True:
        rest = m
        for p in (2, 3, 5):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return m
        m += multiple


class Operator:
    """What the solver needs from a degradation: see the module docstring."""

    #: how many times larger the restored image is than the observation
    scale: int = 1
    #: observation pixels of reflected border the solver works on (see :meth:`problem`)
    margin: int = 0

    def problem(self, y: torch.Tensor, meta: dict[str, Any] | None = None) -> Problem:
        raise NotImplementedError

    def min_sigma(self, noise: float) -> float:
        """The smallest denoiser level of the schedule for observation noise ``noise`` (DPIR: the noise)."""
        return noise


@dataclass
class Problem:
    """One observation, prepared: its padded domain, its Fourier terms and the crop back."""

    operator: Any
    y: torch.Tensor  # the (padded) observation
    crop: tuple[int, int, int, int]  # top, left, height, width of the restored image in the domain
    terms: dict[str, torch.Tensor]

    def init(self) -> torch.Tensor:
        return self.operator.init(self)

    def data_step(self, z: torch.Tensor, alpha: float) -> torch.Tensor:
        return self.operator.data_step(self, z, alpha)

    def finish(self, z: torch.Tensor, alpha: float | None = None) -> torch.Tensor:
        """The operator's last word on the solver's output (super-resolution: a last data step
        at the schedule's last weight ``alpha``; JPEG: the projection); identity by default."""
        finish = getattr(self.operator, "finish", None)
        return finish(self, z, alpha) if callable(finish) else z

    def cropped(self, x: torch.Tensor) -> torch.Tensor:
        top, left, h, w = self.crop
        return x[..., top : top + h, left : left + w]


def _taper(y: torch.Tensor, kernel: torch.Tensor, width: int) -> torch.Tensor:
    """Blend the outer ``width`` pixels of ``y`` with its circular blur, so that the padded
    observation fits the circular model at the wrap-around (an edge taper)."""
    h, w = y.shape[-2:]
    if width <= 0:
        return y
    blurred = torch.fft.irfft2(torch.fft.rfft2(y).mul_(otf(kernel.to(y.dtype), (h, w))), s=(h, w))

    def ramp(n: int) -> torch.Tensor:
        t = torch.ones(n, dtype=y.dtype, device=y.device)
        edge = torch.linspace(0, 1, width + 2, dtype=y.dtype, device=y.device)[1:-1]
        edge = 0.5 - 0.5 * torch.cos(math.pi * edge)
        t[:width] = edge
        t[n - width :] = edge.flip(0)
        return t

    weight = ramp(h)[:, None] * ramp(w)[None, :]
    return blurred.sub_(y).mul_(1 - weight).add_(y)  # weight * y + (1 - weight) * blurred


class Blur(Operator):
    """``A x = kernel * x`` (convolution; ``kernel`` from :func:`~m3l.models.pnp.kernels.parse_kernel`:
    ``gaussian:SIGMA``, ``motion:LENGTH:ANGLE`` or a file). A batch whose ``meta`` has a
    ``kernel`` (m3l's blur degradations record theirs) is solved with that kernel instead."""

    def __init__(self, kernel: Any = None, margin: int | None = None, taper: bool = True) -> None:
        self.kernel = None if kernel is None else parse_kernel(kernel)
        self._margin = margin
        self.taper = taper

    @property
    def margin(self) -> int:  # type: ignore[override]
        """Observation pixels of reflected border: twice the kernel's side unless given."""
        return self._margin_for(self.kernel) if self.kernel is not None else int(self._margin or 0)

    def _margin_for(self, kernel: torch.Tensor) -> int:
        return int(self._margin) if self._margin is not None else 2 * kernel.shape[-1]

    def _kernel(self, kernel: torch.Tensor | None = None) -> torch.Tensor:
        if kernel is not None:
            return check_kernel(torch.as_tensor(kernel, dtype=torch.float64).cpu(), "the input's kernel")
        if self.kernel is None:
            raise ConfigError(
                "pnp.kernel is not set and the input carries no blur kernel: pass the blur, e.g. "
                "pnp.kernel=gaussian:2.0, pnp.kernel=motion:15:30 or pnp.kernel=PATH (.npy or a gray PNG)."
            )
        return self.kernel

    def forward(self, x: torch.Tensor, kernel: torch.Tensor | None = None) -> torch.Tensor:
        k = self._kernel(kernel).to(x.dtype)
        return torch.fft.irfft2(torch.fft.rfft2(x) * otf(k, x.shape[-2:]), s=x.shape[-2:])

    def adjoint(self, y: torch.Tensor, kernel: torch.Tensor | None = None) -> torch.Tensor:
        k = self._kernel(kernel).to(y.dtype)
        return torch.fft.irfft2(torch.fft.rfft2(y) * otf(k, y.shape[-2:]).conj(), s=y.shape[-2:])

    def problem(self, y: torch.Tensor, meta: dict[str, Any] | None = None) -> Problem:
        kernel = self._kernel((meta or {}).get("kernel"))
        kernel = kernel.to(device=y.device, dtype=y.dtype)
        h, w = y.shape[-2:]
        margin = self._margin_for(kernel)  # the input's own kernel may be another size
        padded = _pad_reflect(y, margin)
        ph, pw = padded.shape[-2:]
        # pad on to FFT-friendly sizes (reflecting on the bottom/right)
        fh, fw = _fft_size(ph), _fft_size(pw)
        if (fh, fw) != (ph, pw):
            padded = F.pad(
                padded, (0, fw - pw, 0, fh - ph), mode="reflect" if min(ph, pw) > max(fh - ph, fw - pw) else "replicate"
            )
        if self.taper:
            padded = _taper(padded, kernel, min(margin, kernel.shape[-1]))
        fk = otf(kernel, (fh, fw))
        terms = {"fk2": fk.abs().square(), "fkty": torch.fft.rfft2(padded).mul_(fk.conj())}
        return Problem(self, padded, (margin, margin, h, w), terms)

    def init(self, problem: Problem) -> torch.Tensor:
        return problem.y  # never written in place

    def data_step(self, problem: Problem, z: torch.Tensor, alpha: float) -> torch.Tensor:
        t = problem.terms
        spectrum = torch.fft.rfft2(z).mul_(alpha).add_(t["fkty"]).div_(t["fk2"] + alpha)  # in place: large photos
        return torch.fft.irfft2(spectrum, s=z.shape[-2:])


def bicubic_kernel(scale: int) -> torch.Tensor:
    """The 2-D convolution kernel of Pillow's antialiased bicubic downscaling by ``scale``,
    as an odd ``(6 scale + 1)`` square (see :func:`~m3l.models.pnp.kernels.pil_bicubic_weights`)."""
    w = pil_bicubic_weights(scale).flip(0)  # correlation weights -> convolution kernel
    return w[:, None] * w[None, :]


def check_scale(scale: Any) -> int:
    try:
        value = int(scale)
    except (TypeError, ValueError):
        value = None
    if value is None or value != scale and str(value) != str(scale) or value not in SCALES:
        raise ConfigError(f"pnp.scale={scale!r}: super-resolution scales are {', '.join(map(str, SCALES))}.")
    return value


class Downsample(Operator):
    """``A x = (kernel * x)`` sampled every ``scale`` pixels (from the top-left pixel).

    ``downsampler``: ``bicubic`` (default: what Pillow's ``Image.resize(..., BICUBIC)`` does to
    ``1/scale`` of the size, antialiased) or ``gaussian:SIGMA`` (a Gaussian blur, then taking
    every ``scale``-th pixel, centred).
    """

    def __init__(self, scale: int = 2, downsampler: str = "bicubic", margin: int | None = None) -> None:
        self.scale = check_scale(scale)
        self.downsampler = str(downsampler)
        if self.downsampler == "bicubic":
            self.kernel = bicubic_kernel(self.scale)
        elif self.downsampler.startswith("gaussian:"):
            g = parse_kernel(self.downsampler)
            # sampling at i * scale + (scale - 1) / 2 is the centre of each block: shift the kernel
            shift = (self.scale - 1) / 2
            size = g.shape[-1] + 2 * math.ceil(shift)
            size += 1 - size % 2
            r = torch.arange(size, dtype=torch.float64) - size // 2
            sigma = float(self.downsampler.split(":")[1])
            w = torch.exp(-0.5 * ((r + shift) / sigma) ** 2)
            w = w / w.sum()
            self.kernel = w[:, None] * w[None, :]
        else:
            raise ConfigError(f"pnp.downsampler={downsampler!r}: expected bicubic or gaussian:SIGMA.")
        self._margin = margin

    @property
    def margin(self) -> int:  # type: ignore[override]
        return int(self._margin) if self._margin is not None else 8

    def min_sigma(self, noise: float) -> float:
        # DPIR: the schedule of super-resolution ends at max(noise, scale / 255)
        return max(noise, self.scale / 255)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel.to(x.dtype)
        blurred = torch.fft.ifft2(torch.fft.fft2(x) * otf(k, x.shape[-2:], real=False)).real
        return blurred[..., :: self.scale, :: self.scale]

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        s = self.scale
        up = torch.zeros(*y.shape[:-2], y.shape[-2] * s, y.shape[-1] * s, dtype=y.dtype, device=y.device)
        up[..., ::s, ::s] = y
        k = self.kernel.to(y.dtype)
        return torch.fft.ifft2(torch.fft.fft2(up) * otf(k, up.shape[-2:], real=False).conj()).real

    def _block_mean(self, spectrum: torch.Tensor) -> torch.Tensor:
        """The mean over the ``scale x scale`` aliases of a full spectrum (what sampling does)."""
        s = self.scale
        *lead, h, w = spectrum.shape
        blocks = spectrum.reshape(*lead, s, h // s, s, w // s)
        return blocks.mean(dim=(-4, -2))

    def problem(self, y: torch.Tensor, meta: dict[str, Any] | None = None) -> Problem:
        s = self.scale
        h, w = y.shape[-2:]
        margin = self.margin
        padded = _pad_reflect(y, margin)
        ph, pw = padded.shape[-2:]
        fh, fw = _fft_size(ph), _fft_size(pw)
        if (fh, fw) != (ph, pw):
            padded = F.pad(padded, (0, fw - pw, 0, fh - ph), mode="replicate")
        kernel = self.kernel.to(device=y.device, dtype=y.dtype)
        fk = otf(kernel, (fh * s, fw * s), real=False)
        # one channel at a time: the full spectra of a 24 MP output take 0.2 GB per channel
        fkty = torch.empty(*padded.shape[:-2], fh * s, fw * s, dtype=fk.dtype, device=y.device)
        for c in range(padded.shape[-3]):
            up = torch.zeros(*padded.shape[:-3], fh * s, fw * s, dtype=y.dtype, device=y.device)
            up[..., ::s, ::s] = padded[..., c, :, :]
            fkty[..., c, :, :] = torch.fft.fft2(up).mul_(fk.conj())
        terms = {"fk": fk, "fkty": fkty, "fk2_mean": self._block_mean(fk.abs().square())}
        return Problem(self, padded, (margin * s, margin * s, h * s, w * s), terms)

    def init(self, problem: Problem) -> torch.Tensor:
        return F.interpolate(problem.y, scale_factor=self.scale, mode="bicubic", align_corners=False).clamp(0, 1)

    def finish(self, problem: Problem, z: torch.Tensor, alpha: float | None) -> torch.Tensor:
        """A last data step: the prior's output made consistent with the low-resolution photo
        (measured on training photos: +0.7 dB at x2, and no more loss on nearly flat photos,
        where the prior's own error at its last level otherwise exceeds bicubic's)."""
        return self.data_step(problem, z, alpha) if alpha else z

    def data_step(self, problem: Problem, z: torch.Tensor, alpha: float) -> torch.Tensor:
        t = problem.terms
        out = torch.empty_like(z)
        for c in range(z.shape[-3]):  # one channel at a time (memory, see problem())
            fr = torch.fft.fft2(z[..., c, :, :]).mul_(alpha).add_(t["fkty"][..., c, :, :])
            ratio = self._block_mean(t["fk"] * fr).div_(t["fk2_mean"] + alpha)
            tiled = ratio.repeat(*([1] * (ratio.dim() - 2)), self.scale, self.scale).mul_(t["fk"].conj())
            out[..., c, :, :] = torch.fft.ifft2(fr.sub_(tiled).div_(alpha)).real
        return out
