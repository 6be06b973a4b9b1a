"""Blur and downsampling kernels for the plug-and-play operators, from their config specs.

``pnp.kernel`` is one of:

- ``gaussian:SIGMA`` (or ``gaussian:SIGMA:SIZE``): an isotropic Gaussian, ``SIZE`` odd, by
  default ``2 * ceil(4 SIGMA) + 1`` (the same kernel as :func:`m3l.data.degradations.gaussian_kernel`);
- ``motion:LENGTH:ANGLE``: a straight camera motion of ``LENGTH`` pixels at ``ANGLE`` degrees
  (counter-clockwise from the x axis), rasterised with bilinear weights;
- a path: a ``.npy`` array or an image file (a gray PNG: its pixel values, normalised to sum 1).

Every kernel comes back as a ``(k, k)`` float64 tensor with ``k`` odd, non-negative and summing
to 1 (a kernel that does not sum to 1 is normalised, with a log line).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch

from m3l.data.degradations import gaussian_kernel
from m3l.errors import ConfigError

log = logging.getLogger(__name__)

KERNEL_FORMS = "gaussian:SIGMA[:SIZE], motion:LENGTH:ANGLE, or the path of a .npy array or a gray PNG"


def _number(text: str, what: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"pnp.kernel={spec}: {what} must be a number, got {text!r}. Forms: {KERNEL_FORMS}.") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"pnp.kernel={spec}: {what} must be a positive number, got {text!r}.")
    return value


def motion_line_kernel(length: float, angle_degrees: float) -> torch.Tensor:
    """A straight motion blur of ``length`` pixels at ``angle_degrees``, summing to 1."""
    size = 2 * math.ceil(length / 2) + 1
    theta = math.radians(angle_degrees)
    steps = max(2, int(math.ceil(length * 8)))
    t = torch.linspace(-length / 2, length / 2, steps, dtype=torch.float64)
    xs = size // 2 + t * math.cos(theta)
    ys = size // 2 - t * math.sin(theta)  # image rows grow downwards
    kernel = torch.zeros(size, size, dtype=torch.float64)
    x0, y0 = xs.floor(), ys.floor()
    fx, fy = xs - x0, ys - y0
    for dx in (0, 1):
        for dy in (0, 1):
            weight = (fx if dx else 1 - fx) * (fy if dy else 1 - fy)
            px, py = (x0 + dx).long().clamp(0, size - 1), (y0 + dy).long().clamp(0, size - 1)
            kernel.index_put_((py, px), weight, accumulate=True)
    return kernel / kernel.sum()


def _from_file(path: Path, spec: str) -> torch.Tensor:
    if not path.is_file():
        raise ConfigError(
            f"pnp.kernel={spec}: no such file {path}. Pass a .npy array or a gray PNG, or one of {KERNEL_FORMS}."
        )
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise ConfigError(f"pnp.kernel: {path} is not a readable .npy array ({err}).") from None
    else:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                if image.mode not in ("L", "I;16", "I;16B", "I;16L", "I", "F", "1"):
                    raise ConfigError(
                        f"pnp.kernel: {path} is a {image.mode} image; a kernel image must be gray (mode L or 16-bit). "
                        "Save it as a gray PNG or as a .npy array."
                    )
                array = np.asarray(image, dtype=np.float64)
        except (UnidentifiedImageError, OSError) as err:
            raise ConfigError(
                f"pnp.kernel: {path} is neither a .npy array nor an image Pillow reads ({err})."
            ) from None
    return check_kernel(torch.as_tensor(np.asarray(array, dtype=np.float64)), str(path))


def check_kernel(kernel: torch.Tensor, name: str) -> torch.Tensor:
    """``kernel`` as a valid blur kernel: 2-D, finite, non-negative, not all zero; an even side
    is padded to odd (centred), and the sum normalised to 1 (with a log line)."""
    if kernel.ndim != 2:
        raise ConfigError(f"pnp.kernel: {name} has shape {tuple(kernel.shape)}; a blur kernel must be a 2-D array.")
    if kernel.numel() == 0:
        raise ConfigError(f"pnp.kernel: {name} is empty; a blur kernel needs at least one value.")
    if not torch.isfinite(kernel).all():
        raise ConfigError(f"pnp.kernel: {name} holds NaN or infinite values.")
    if (kernel < 0).any():
        raise ConfigError(
            f"pnp.kernel: {name} has negative values (smallest {float(kernel.min()):.3g}); a blur kernel is non-negative."
        )
    total = float(kernel.sum())
    if total <= 0:
        raise ConfigError(f"pnp.kernel: {name} is all zeros; a blur kernel must have a positive sum.")
    kernel = kernel.to(torch.float64)
    h, w = kernel.shape
    side = max(h, w) + (1 - max(h, w) % 2)  # odd, square
    if (h, w) != (side, side):
        top, left = (side - h) // 2, (side - w) // 2
        kernel = torch.nn.functional.pad(kernel, (left, side - w - left, top, side - h - top))
    if abs(total - 1) > 1e-6:
        log.info("pnp.kernel: %s sums to %.6g; normalised to 1", name, total)
    return kernel / total


def parse_kernel(spec: str | torch.Tensor | np.ndarray) -> torch.Tensor:
    """The blur kernel of ``spec`` (see the module docstring)."""
    if isinstance(spec, (torch.Tensor, np.ndarray)):
        return check_kernel(torch.as_tensor(spec, dtype=torch.float64), "the given kernel")
    text = str(spec).strip()
    kind, _, rest = text.partition(":")
    if kind == "gaussian" and rest:
        parts = rest.split(":")
        sigma = _number(parts[0], "SIGMA", text)
        size = 2 * math.ceil(4 * sigma) + 1
        if len(parts) > 1:
            value = _number(parts[1], "SIZE", text)
            size = int(value)
            if size != value or size % 2 == 0:
                raise ConfigError(f"pnp.kernel={text}: SIZE must be an odd whole number of pixels, got {parts[1]}.")
        if len(parts) > 2:
            raise ConfigError(f"pnp.kernel={text}: expected gaussian:SIGMA or gaussian:SIGMA:SIZE.")
        kernel = gaussian_kernel(size, sigma).to(torch.float64)
        return kernel / kernel.sum()
    if kind == "motion" and rest:
        parts = rest.split(":")
        if len(parts) != 2:
            raise ConfigError(f"pnp.kernel={text}: expected motion:LENGTH:ANGLE (pixels, degrees), e.g. motion:15:30.")
        length = _number(parts[0], "LENGTH", text)
        try:
            angle = float(parts[1])
        except ValueError:
            raise ConfigError(f"pnp.kernel={text}: ANGLE must be a number of degrees, got {parts[1]!r}.") from None
        return motion_line_kernel(length, angle)
    if kind in ("gaussian", "motion") and not rest:
        raise ConfigError(f"pnp.kernel={text}: missing parameters. Forms: {KERNEL_FORMS}.")
    return _from_file(Path(text).expanduser(), text)


def pil_bicubic_weights(scale: int) -> torch.Tensor:
    """The 1-D weights of Pillow's antialiased bicubic downscaling by an integer ``scale``.

    Pillow's ``Image.resize(..., BICUBIC)`` to ``1/scale`` of the size gives output pixel ``i``
    the input pixels ``j`` weighted by the cubic convolution kernel (``a = -0.5``) at
    ``(j + 0.5 - (i + 0.5) scale) / scale``, normalised to sum 1. Away from the borders the weights
    are the same for every output pixel: ``4 scale`` non-zero taps at offsets ``d = j - i scale``
    between ``-1.5 scale`` and ``2.5 scale``, returned in an odd-length array of the offsets
    ``-3 scale .. 3 scale`` (zeros outside the support).
    """

    def cubic(t: torch.Tensor, a: float = -0.5) -> torch.Tensor:
        t = t.abs()
        near = ((a + 2) * t - (a + 3)) * t * t + 1
        far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
        return torch.where(t <= 1, near, torch.where(t < 2, far, torch.zeros_like(t)))

    d = torch.arange(-3 * scale, 3 * scale + 1, dtype=torch.float64)
    weights = cubic((d + 0.5 - scale / 2) / scale)
    return weights / weights.sum()
