"""Degradations: functions on tensors first, then small seeded callables for configs.

Every function takes images ``(..., C, H, W)`` in [0, 1] (one image, a batch or a clip).
Every class is called as ``degradation(x, generator) -> (degraded, meta)`` where ``meta`` is a
dict of fixed-shape float tensors (``sigma``, ``quality``, ``kernel``) that the default collate
can stack. Classes split sampling from applying (``sample`` then ``apply``) so a clip can share
one set of parameters across its frames.

Levels are on the [0, 1] scale; configs may write them on another scale with ``scale``
(``GaussianNoise(sigma=25, scale=255)`` is sigma 25/255).

This module is long on purpose: it is the catalogue of degradations (the functions and the
configurable classes over them), read top to bottom by whoever writes a data config.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from m3l.data.io import convert_channels, import_av, tensor_to_array
from m3l.errors import ConfigError, ShapeError

Meta = dict[str, torch.Tensor]

# Values a degradation reports when it did not apply a step, so that metadata from
# different branches of a RandomChoice has the same keys and shapes.
NO_NOISE = 0.0
NO_COMPRESSION = 100.0


def _check_image(x: torch.Tensor, name: str) -> None:
    if x.ndim < 3 or x.shape[-3] not in (1, 3):
        raise ShapeError(
            f"{name}: expected an image tensor (..., C, H, W) with C in (1, 3), got shape {tuple(x.shape)}"
        )


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """An int in [low, high] (both included)."""
    return int(torch.randint(low, high + 1, (), generator=generator))


# ---------------------------------------------------------------------------------- noise


def add_gaussian_noise(
    x: torch.Tensor, sigma: float, generator: torch.Generator | None = None, clip: bool = False
) -> torch.Tensor:
    """``x + N(0, sigma^2)``; ``clip`` keeps the result in [0, 1] (unclipped is the AWGN convention)."""
    _check_image(x, "add_gaussian_noise")
    noisy = x + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return noisy.clamp(0, 1) if clip else noisy


def add_poisson_gaussian_noise(
    x: torch.Tensor, peak: float, sigma: float, generator: torch.Generator | None = None, clip: bool = False
) -> torch.Tensor:
    """Shot noise ``Poisson(peak * x) / peak`` plus read noise ``N(0, sigma^2)``."""
    _check_image(x, "add_poisson_gaussian_noise")
    if peak <= 0:
        raise ConfigError(f"add_poisson_gaussian_noise: peak must be > 0, got {peak}")
    shot = torch.poisson(x.clamp(0, 1) * peak, generator=generator) / peak
    noisy = shot + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return noisy.clamp(0, 1) if clip else noisy


# ---------------------------------------------------------------------------------- blur


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None, angle: float = 0.0) -> torch.Tensor:
    """A ``(size, size)`` Gaussian kernel summing to 1; anisotropic with ``sigma_y`` and ``angle`` (radians)."""
    if size % 2 == 0 or size < 1:
        raise ConfigError(f"gaussian_kernel: size must be odd and positive, got {size}")
    sigma_y = sigma_x if sigma_y is None else sigma_y
    r = torch.arange(size, dtype=torch.float64) - size // 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * xx + s * yy, -s * xx + c * yy
    k = torch.exp(-0.5 * ((u / max(sigma_x, 1e-6)) ** 2 + (v / max(sigma_y, 1e-6)) ** 2))
    return (k / k.sum()).float()


def motion_kernel(
    size: int, generator: torch.Generator | None = None, steps: int = 64, jitter: float = 0.6
) -> torch.Tensor:
    """A random camera-shake trajectory rasterised into a ``(size, size)`` kernel summing to 1.

    The trajectory is a random walk with momentum (a velocity that turns a little each step),
    scaled to fit the kernel, and splatted bilinearly.
    """
    if size % 2 == 0 or size < 3:
        raise ConfigError(f"motion_kernel: size must be odd and >= 3, got {size}")
    angle = _uniform(0, 2 * math.pi, generator)
    turns = torch.randn(steps, generator=generator) * jitter
    headings = angle + torch.cumsum(turns * (1.0 / math.sqrt(steps)) * 4, dim=0)
    speed = 0.5 + torch.rand(steps, generator=generator)
    points = torch.cumsum(torch.stack([torch.cos(headings), torch.sin(headings)], dim=1) * speed[:, None], dim=0)
    points = points - points.mean(dim=0)
    extent = points.abs().max().clamp(min=1e-6)
    length = _uniform(0.4, 1.0, generator) * (size // 2 - 0.5)
    points = points / extent * length + size // 2
    # bilinear splatting of every trajectory point onto its four neighbouring pixels
    base = points.floor()
    frac = points - base
    kernel = torch.zeros(size * size, dtype=torch.float64)
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        weight = (frac[:, 0] if dx else 1 - frac[:, 0]) * (frac[:, 1] if dy else 1 - frac[:, 1])
        px, py = base[:, 0].long() + dx, base[:, 1].long() + dy
        inside = (px >= 0) & (px < size) & (py >= 0) & (py < size)
        kernel.index_add_(0, (py * size + px)[inside], weight[inside].double())
    kernel = kernel.view(size, size)
    return (kernel / kernel.sum()).float()


def apply_blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve each channel of ``(..., C, H, W)`` with a square odd-sized 2-D ``kernel``.

    Borders are reflected (replicated for images smaller than the kernel radius). The
    convolution runs through the FFT, which is several times faster than a direct convolution
    for the 15-25 pixel kernels of deblurring.
    """
    _check_image(x, "apply_blur")
    k = kernel.shape[-1]
    if kernel.ndim != 2 or kernel.shape[0] != k or k % 2 == 0:
        raise ShapeError(
            f"apply_blur: expected a square kernel with an odd size (k, k), got shape {tuple(kernel.shape)}"
        )
    r = k // 2
    lead, (h, w) = x.shape[:-3], x.shape[-2:]
    flat = x.reshape(-1, *x.shape[-3:])
    mode = "reflect" if min(h, w) > r else "replicate"
    padded = F.pad(flat, (r, r, r, r), mode=mode) if r else flat
    size = (padded.shape[-2] + k - 1, padded.shape[-1] + k - 1)
    spectrum = torch.fft.rfft2(padded, s=size) * torch.fft.rfft2(kernel.to(flat), s=size)
    out = torch.fft.irfft2(spectrum, s=size)[..., k - 1 : k - 1 + h, k - 1 : k - 1 + w]
    return out.reshape(*lead, *out.shape[-3:]).to(x.dtype).contiguous()


def pad_kernel(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """Centre-pad (or centre-crop) a square kernel to ``(size, size)`` so kernels collate."""
    k = kernel.shape[-1]
    if k == size:
        return kernel
    if k < size:
        p = (size - k) // 2
        return F.pad(kernel, (p, size - k - p, p, size - k - p))
    c = (k - size) // 2
    cropped = kernel[c : c + size, c : c + size]
    return cropped / cropped.sum()


def delta_kernel(size: int) -> torch.Tensor:
    """The identity kernel (no blur)."""
    k = torch.zeros(size, size)
    k[size // 2, size // 2] = 1.0
    return k


# ---------------------------------------------------------------------------------- codecs

_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def jpeg_compress(x: torch.Tensor, quality: int, chroma_subsampling: str = "4:2:0") -> torch.Tensor:
    """Encode and decode through Pillow's JPEG at ``quality`` (1..100); gray stays gray."""
    _check_image(x, "jpeg_compress")
    if not 1 <= int(quality) <= 100:
        raise ConfigError(f"jpeg_compress: quality must be in 1..100, got {quality}")
    if chroma_subsampling not in _SUBSAMPLING:
        raise ConfigError(
            f"jpeg_compress: chroma_subsampling must be one of {sorted(_SUBSAMPLING)}, got {chroma_subsampling!r}"
        )
    flat = x.reshape(-1, *x.shape[-3:])
    out = []
    for img in flat:
        buffer = io.BytesIO()
        Image.fromarray(tensor_to_array(img)).save(
            buffer, format="JPEG", quality=int(quality), subsampling=_SUBSAMPLING[chroma_subsampling]
        )
        buffer.seek(0)
        decoded = np.asarray(Image.open(buffer))
        decoded = decoded[:, :, None] if decoded.ndim == 2 else decoded
        out.append(torch.from_numpy(decoded.astype(np.float32) / 255.0).permute(2, 0, 1))
    return torch.stack(out).reshape(x.shape).to(x.dtype)


def h264_compress(frames: torch.Tensor, crf: int, preset: str = "veryfast") -> torch.Tensor:
    """Encode ``(T, C, H, W)`` with H.264 (libx264, 4:2:0) at ``crf`` in memory and decode it back."""
    _check_image(frames, "h264_compress")
    av = import_av()
    clip = frames if frames.ndim == 4 else frames[None]
    channels = clip.shape[1]
    t, _, h, w = clip.shape
    ph, pw = h % 2, w % 2  # 4:2:0 needs even sizes: pad, encode, crop
    padded = (
        F.pad(convert_channels(clip, 3), (0, pw, 0, ph), mode="replicate") if (ph or pw) else convert_channels(clip, 3)
    )
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w + pw, h + ph, "yuv420p"
        stream.options = {"crf": str(int(crf)), "preset": preset}
        for frame in padded:
            for packet in stream.encode(av.VideoFrame.from_ndarray(tensor_to_array(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buffer.seek(0)
    decoded = []
    with av.open(buffer, mode="r") as container:
        for frame in container.decode(video=0):
            decoded.append(
                torch.from_numpy(frame.to_ndarray(format="rgb24").astype(np.float32) / 255.0).permute(2, 0, 1)
            )
    out = torch.stack(decoded)[:, :, :h, :w]
    out = convert_channels(out, channels).to(frames.dtype)
    return out.reshape(frames.shape)


# ---------------------------------------------------------------------------------- classes


class Degradation:
    """Base: ``__call__(x, generator) -> (y, meta)`` = ``apply(x, sample(generator), generator)``.

    ``defaults`` are the meta values meaning "this step did nothing"; combinators use them to
    give every sample the same keys.
    """

    #: True when the degradation needs a whole clip ``(T, C, H, W)`` (e.g. a video codec).
    temporal: bool = False

    def sample(self, generator: torch.Generator | None) -> dict[str, Any]:
        return {}

    def apply(
        self, x: torch.Tensor, params: dict[str, Any], generator: torch.Generator | None
    ) -> tuple[torch.Tensor, Meta]:
        raise NotImplementedError

    def defaults(self) -> Meta:
        return {}

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, Meta]:
        return self.apply(x, self.sample(generator), generator)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def _scalar(value: float) -> torch.Tensor:
    return torch.tensor(float(value), dtype=torch.float32)


def _level(
    value: float | None, value_range: Sequence[float] | None, scale: float, name: str, generator: torch.Generator | None
) -> float:
    if value_range is not None:
        low, high = (float(v) / scale for v in value_range)
        return _uniform(low, high, generator)
    if value is None:
        raise ConfigError(f"{name}: give a fixed value or a range")
    return float(value) / scale


def _check_kernel_size(name: str, size: Any, minimum: int) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < minimum or size % 2 == 0:
        raise ConfigError(f"{name}: kernel_size must be an odd integer >= {minimum}, got {size!r}")


def _check_range(
    name: str, value: Any, value_range: Any, low: float | None = None, high: float | None = None, low_open: bool = False
) -> None:
    """A degradation's level: exactly one of a fixed value and a ``[low, high]`` range, inside
    the allowed interval (``low`` excluded when ``low_open``)."""
    if (value is None) == (value_range is None):
        raise ConfigError(f"{name}: give exactly one of a fixed value and a range, got {value!r} and {value_range!r}")
    try:
        values = [float(value)] if value is not None else [float(v) for v in value_range]
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected numbers, got {value if value is not None else value_range!r}") from None
    if value_range is not None and (len(values) != 2 or values[0] > values[1]):
        raise ConfigError(f"{name}: a range is [low, high] with low <= high, got {list(value_range)!r}")
    below = (lambda v: v <= low) if low_open else (lambda v: v < low)
    if any((low is not None and below(v)) or (high is not None and v > high) for v in values):
        interval = f"{'(' if low_open else '['}{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}]"
        raise ConfigError(
            f"{name}: every level must lie in {interval}, got {value if value is not None else list(value_range)!r}"
        )


class Identity(Degradation):
    """No degradation (clean input; useful for paired data and tests)."""

    def apply(self, x, params, generator):
        return x.clone(), {}


class GaussianNoise(Degradation):
    """Additive white Gaussian noise, fixed ``sigma`` or uniform in ``sigma_range`` (blind)."""

    def __init__(
        self,
        sigma: float | None = None,
        sigma_range: Sequence[float] | None = None,
        scale: float = 1.0,
        clip: bool = False,
    ) -> None:
        _check_range("GaussianNoise(sigma, sigma_range)", sigma, sigma_range, low=0.0)
        self.sigma, self.sigma_range, self.scale, self.clip = sigma, sigma_range, float(scale), clip

    def sample(self, generator):
        return {"sigma": _level(self.sigma, self.sigma_range, self.scale, "GaussianNoise", generator)}

    def apply(self, x, params, generator):
        return add_gaussian_noise(x, params["sigma"], generator, self.clip), {"sigma": _scalar(params["sigma"])}

    def defaults(self):
        return {"sigma": _scalar(NO_NOISE)}


class PoissonGaussianNoise(Degradation):
    """Shot noise at ``peak`` (photons at white; or a ``peak_range``) plus Gaussian read noise."""

    def __init__(
        self,
        peak: float | None = None,
        peak_range: Sequence[float] | None = None,
        sigma: float | None = 0.0,
        sigma_range: Sequence[float] | None = None,
        scale: float = 1.0,
        clip: bool = False,
    ) -> None:
        _check_range("PoissonGaussianNoise(peak, peak_range)", peak, peak_range, low=0.0, low_open=True)
        if sigma_range is not None:
            sigma = None
        _check_range("PoissonGaussianNoise(sigma, sigma_range)", sigma, sigma_range, low=0.0)
        self.peak, self.peak_range, self.sigma, self.sigma_range = peak, peak_range, sigma, sigma_range
        self.scale, self.clip = float(scale), clip

    def sample(self, generator):
        return {
            "peak": _level(self.peak, self.peak_range, 1.0, "PoissonGaussianNoise", generator),
            "sigma": _level(self.sigma, self.sigma_range, self.scale, "PoissonGaussianNoise", generator),
        }

    def apply(self, x, params, generator):
        y = add_poisson_gaussian_noise(x, params["peak"], params["sigma"], generator, self.clip)
        # Equivalent Gaussian level at mid-gray, for nets that take a noise map.
        sigma_eq = math.sqrt(0.5 / params["peak"] + params["sigma"] ** 2)
        return y, {"sigma": _scalar(sigma_eq), "peak": _scalar(params["peak"])}

    def defaults(self):
        return {"sigma": _scalar(NO_NOISE), "peak": _scalar(float("inf"))}


class GaussianBlur(Degradation):
    """Isotropic (``anisotropic=False``) or anisotropic Gaussian blur; the kernel is in the meta."""

    def __init__(
        self,
        kernel_size: int = 21,
        sigma: float | None = None,
        sigma_range: Sequence[float] | None = (0.2, 3.0),
        anisotropic: bool = False,
    ) -> None:
        if sigma is not None:
            sigma_range = None
        _check_range("GaussianBlur(sigma, sigma_range)", sigma, sigma_range, low=0.0, low_open=True)
        _check_kernel_size("GaussianBlur", kernel_size, minimum=1)
        self.kernel_size, self.sigma, self.sigma_range, self.anisotropic = (
            int(kernel_size),
            sigma,
            sigma_range,
            anisotropic,
        )

    def sample(self, generator):
        sx = _level(self.sigma, self.sigma_range, 1.0, "GaussianBlur", generator)
        if not self.anisotropic:
            return {"kernel": gaussian_kernel(self.kernel_size, sx)}
        sy = _level(self.sigma, self.sigma_range, 1.0, "GaussianBlur", generator)
        angle = _uniform(0, math.pi, generator)
        return {"kernel": gaussian_kernel(self.kernel_size, sx, sy, angle)}

    def apply(self, x, params, generator):
        return apply_blur(x, params["kernel"]), {"kernel": params["kernel"]}

    def defaults(self):
        return {"kernel": delta_kernel(self.kernel_size)}


class MotionBlur(Degradation):
    """Blur along a random camera-shake trajectory (:func:`motion_kernel`)."""

    def __init__(self, kernel_size: int = 21, jitter: float = 0.6) -> None:
        _check_kernel_size("MotionBlur", kernel_size, minimum=3)
        if float(jitter) < 0:
            raise ConfigError(f"MotionBlur: jitter must be >= 0, got {jitter!r}")
        self.kernel_size, self.jitter = int(kernel_size), float(jitter)

    def sample(self, generator):
        return {"kernel": motion_kernel(self.kernel_size, generator, jitter=self.jitter)}

    def apply(self, x, params, generator):
        return apply_blur(x, params["kernel"]), {"kernel": params["kernel"]}

    def defaults(self):
        return {"kernel": delta_kernel(self.kernel_size)}


class Downscale(Degradation):
    """Downscaling by an integer ``scale`` (super-resolution inputs): Pillow's antialiased bicubic
    (``Image.resize(..., BICUBIC)``, through ``F.interpolate(antialias=True)``); the image is first
    cropped to a multiple of ``scale``. The scale is in the meta."""

    def __init__(self, scale: int = 2) -> None:
        if int(scale) != scale or int(scale) < 1:
            raise ConfigError(f"Downscale: scale must be a whole number >= 1, got {scale!r}")
        self.scale = int(scale)

    def apply(self, x, params, generator):
        _check_image(x, "Downscale")
        s = self.scale
        h, w = x.shape[-2] // s * s, x.shape[-1] // s * s
        if h == 0 or w == 0:
            raise ShapeError(f"Downscale: an image of {x.shape[-2]}x{x.shape[-1]} is smaller than the scale {s}")
        flat = x[..., :h, :w].reshape(-1, x.shape[-3], h, w)
        y = F.interpolate(flat, scale_factor=1 / s, mode="bicubic", antialias=True, align_corners=False)
        return y.reshape(*x.shape[:-2], h // s, w // s).to(x.dtype), {"scale": _scalar(s)}

    def defaults(self):
        return {"scale": _scalar(1)}


class JPEG(Degradation):
    """JPEG through Pillow at ``quality`` or uniform in ``quality_range``; quality is in the meta."""

    def __init__(
        self, quality: int | None = None, quality_range: Sequence[int] | None = None, chroma_subsampling: str = "4:2:0"
    ) -> None:
        _check_range("JPEG(quality, quality_range)", quality, quality_range, low=1, high=100)
        if chroma_subsampling not in _SUBSAMPLING:
            raise ConfigError(
                f"JPEG: chroma_subsampling must be one of {sorted(_SUBSAMPLING)}, got {chroma_subsampling!r}"
            )
        self.quality, self.quality_range, self.chroma_subsampling = quality, quality_range, chroma_subsampling

    def sample(self, generator):
        if self.quality_range is not None:
            return {"quality": _randint(int(self.quality_range[0]), int(self.quality_range[1]), generator)}
        return {"quality": int(self.quality)}

    def apply(self, x, params, generator):
        return jpeg_compress(x, params["quality"], self.chroma_subsampling), {"quality": _scalar(params["quality"])}

    def defaults(self):
        return {"quality": _scalar(NO_COMPRESSION)}


class VideoH264(Degradation):
    """H.264 compression of a whole clip at ``crf`` (or uniform in ``crf_range``) via PyAV."""

    temporal = True

    def __init__(
        self, crf: int | None = None, crf_range: Sequence[int] | None = None, preset: str = "veryfast"
    ) -> None:
        _check_range("VideoH264(crf, crf_range)", crf, crf_range, low=0, high=51)
        self.crf, self.crf_range, self.preset = crf, crf_range, preset

    def sample(self, generator):
        if self.crf_range is not None:
            return {"crf": _randint(int(self.crf_range[0]), int(self.crf_range[1]), generator)}
        return {"crf": int(self.crf)}

    def apply(self, x, params, generator):
        return h264_compress(x, params["crf"], self.preset), {"crf": _scalar(params["crf"])}

    def defaults(self):
        return {"crf": _scalar(0)}


def _merge_kernels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The kernel of blurring with ``a`` then ``b`` (full convolution)."""
    flipped = torch.flip(b, dims=(0, 1))
    size = a.shape[-1] + b.shape[-1] - 1
    padded = pad_kernel(a, size)
    return F.conv2d(padded[None, None], flipped[None, None], padding=b.shape[-1] // 2)[0, 0]


def _merge_meta(into: Meta, meta: Meta) -> Meta:
    for key, value in meta.items():
        if key == "kernel" and key in into:
            into[key] = _merge_kernels(into[key], value)
        elif key == "sigma" and key in into:
            into[key] = value  # noise after blur: the last noise level is the one a net sees
        else:
            into[key] = value
    return into


def _align(meta: Meta, defaults: Meta) -> Meta:
    """Fill missing keys from ``defaults`` and bring kernels to the default size."""
    out = dict(defaults)
    out.update(meta)
    if "kernel" in out and "kernel" in defaults:
        out["kernel"] = pad_kernel(out["kernel"], defaults["kernel"].shape[-1])
    return out


class Chain(Degradation):
    """Apply steps in order, e.g. blur -> noise -> JPEG; metadata from all steps, kernels combined."""

    def __init__(self, steps: Sequence[Degradation]) -> None:
        if not steps:
            raise ConfigError("Chain: give at least one step")
        self.steps = list(steps)
        self.temporal = any(s.temporal for s in self.steps)

    def sample(self, generator):
        return {"steps": [s.sample(generator) for s in self.steps]}

    def apply(self, x, params, generator):
        meta: Meta = {}
        for step, p in zip(self.steps, params["steps"]):
            x, m = step.apply(x, p, generator)
            _merge_meta(meta, m)
        return x, _align(meta, self.defaults())

    def defaults(self):
        out: Meta = {}
        for s in self.steps:
            _merge_meta(out, s.defaults())
        return out


class RandomChoice(Degradation):
    """Pick one degradation per sample (weights optional), e.g. noise / JPEG / blur for DnCNN-3.

    The meta always has the union of the choices' keys, with "did nothing" values for the
    steps not taken, so batches collate.
    """

    def __init__(self, choices: Sequence[Degradation], weights: Sequence[float] | None = None) -> None:
        if not choices:
            raise ConfigError("RandomChoice: give at least one choice")
        if weights is not None and len(weights) != len(choices):
            raise ConfigError(f"RandomChoice: {len(choices)} choices but {len(weights)} weights")
        if weights is not None and (any(float(w) < 0 for w in weights) or sum(float(w) for w in weights) <= 0):
            raise ConfigError(f"RandomChoice: weights must be >= 0 with a positive sum, got {list(weights)!r}")
        self.choices = list(choices)
        self.weights = torch.tensor(list(weights) if weights is not None else [1.0] * len(choices), dtype=torch.float64)
        self.temporal = any(c.temporal for c in self.choices)

    def sample(self, generator):
        index = int(torch.multinomial(self.weights, 1, generator=generator))
        return {"index": index, "params": self.choices[index].sample(generator)}

    def apply(self, x, params, generator):
        y, meta = self.choices[params["index"]].apply(x, params["params"], generator)
        return y, _align(meta, self.defaults())

    def defaults(self):
        out: Meta = {}
        for c in self.choices:
            for key, value in c.defaults().items():
                if key == "kernel" and key in out:
                    value = delta_kernel(max(value.shape[-1], out[key].shape[-1]))
                out[key] = value
        return out
