"""Degradation operators of plug-and-play restoration: adjoints, closed-form data steps against
conjugate gradients, Pillow's bicubic downscaling, scale checks, and borders without ringing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from m3l.data.degradations import apply_blur, gaussian_kernel
from m3l.errors import ConfigError
from m3l.models.pnp.operators import Blur, Downsample, check_scale

DOWNSAMPLERS = ["bicubic", "gaussian:1.2"]


@pytest.fixture
def skewed_kernel(tmp_path: Path) -> str:
    """A random 7x7 kernel with no symmetry, saved as .npy (its path is the spec)."""
    array = np.random.default_rng(7).random((7, 7))
    array[0] *= 4  # heavier on top: no flip of it is the same kernel
    path = tmp_path / "skewed.npy"
    np.save(path, array / array.sum())
    return str(path)


def _blur_spec(spec: str, skewed_kernel: str) -> str:
    return skewed_kernel if spec == "skewed" else spec


def _random(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _assert_adjoint(forward: Callable, adjoint: Callable, x: torch.Tensor, y: torch.Tensor) -> None:
    ax = forward(x)
    assert ax.shape == y.shape and ax.dtype == torch.float64
    lhs, rhs = float((ax * y).sum()), float((x * adjoint(y)).sum())
    # relative to the sizes of the two products (the inner product itself may be near 0)
    assert abs(lhs - rhs) <= 1e-10 * float(ax.norm() * y.norm()), (lhs, rhs)


def _conjugate_gradients(apply: Callable, b: torch.Tensor, tol: float = 1e-12, max_iter: int = 2000) -> torch.Tensor:
    """Solve ``apply(x) = b`` for a symmetric positive definite ``apply``."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = float((r * r).sum())
    stop = tol**2 * rr
    for _ in range(max_iter):
        ap = apply(p)
        step = rr / float((p * ap).sum())
        x += step * p
        r -= step * ap
        rr_new = float((r * r).sum())
        if rr_new < stop:
            return x
        p = r + (rr_new / rr) * p
        rr = rr_new
    raise AssertionError("conjugate gradients did not converge")


def _assert_data_step(op: Blur | Downsample, y: torch.Tensor, z: torch.Tensor, alpha: float) -> None:
    """The data step solves (A^T A + alpha I) x = A^T y + alpha z."""
    problem = op.problem(y)
    assert problem.y.shape == y.shape  # periodic: no margin, no padding to FFT sizes
    assert problem.crop == (0, 0, *z.shape[-2:])
    ours = op.data_step(problem, z, alpha)
    reference = _conjugate_gradients(lambda v: op.adjoint(op.forward(v)) + alpha * v, op.adjoint(y) + alpha * z)
    assert ours.shape == z.shape
    assert float((ours - reference).norm() / reference.norm()) < 1e-8


# adjoints


@pytest.mark.parametrize("spec", ["gaussian:1.5", "motion:7:30", "skewed"])
def test_blur_adjoint(spec: str, skewed_kernel: str) -> None:
    """<A x, y> = <x, A^T y> for the circular blur."""
    op = Blur(_blur_spec(spec, skewed_kernel))
    _assert_adjoint(op.forward, op.adjoint, _random(2, 3, 24, 30, seed=1), _random(2, 3, 24, 30, seed=2))


@pytest.mark.parametrize("downsampler", DOWNSAMPLERS)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_downsample_adjoint(scale: int, downsampler: str) -> None:
    """<A x, y> = <x, A^T y> for blur-then-decimate."""
    op = Downsample(scale, downsampler)
    h, w = 36, 48
    _assert_adjoint(op.forward, op.adjoint, _random(2, 3, h, w, seed=3), _random(2, 3, h // scale, w // scale, seed=4))


def test_blur_forward_is_the_degradations_convolution(skewed_kernel: str) -> None:
    """Blur convolves as m3l's blur degradation does (not a correlation, which would flip a
    motion kernel): the two agree away from the borders, where only the padding differs."""
    op = Blur(skewed_kernel)
    x = _random(1, 3, 32, 32, seed=5)
    r = op.kernel.shape[-1] // 2
    ours = op.forward(x)[..., r:-r, r:-r]
    assert torch.allclose(ours, apply_blur(x, op.kernel)[..., r:-r, r:-r], rtol=0, atol=1e-12)
    assert not torch.allclose(ours, apply_blur(x, op.kernel.flip(0, 1))[..., r:-r, r:-r], rtol=0, atol=1e-3)


def test_blur_solves_with_the_kernel_of_the_batch(skewed_kernel: str) -> None:
    """A kernel in the batch's meta (m3l's blur degradations record theirs) replaces the
    configured one, and is all a Blur without a kernel needs."""
    y, z = _random(1, 3, 24, 32, seed=10), _random(1, 3, 24, 32, seed=11)
    expected = Blur(skewed_kernel, margin=0, taper=False)
    reference = expected.data_step(expected.problem(y), z, 0.1)
    for op in (Blur(margin=0, taper=False), Blur("gaussian:1.0", margin=0, taper=False)):
        problem = op.problem(y, {"kernel": expected.kernel.float()})
        assert torch.allclose(op.data_step(problem, z, 0.1), reference, rtol=0, atol=1e-6)  # a float32 kernel


def test_blur_without_a_kernel_says_how_to_give_one() -> None:
    with pytest.raises(ConfigError, match="pnp.kernel"):
        Blur().problem(_random(1, 1, 16, 16, seed=12))


# data steps


@pytest.mark.parametrize("alpha", [1e-3, 0.5])
@pytest.mark.parametrize("spec", ["gaussian:1.6", "skewed"])
@pytest.mark.slow
def test_blur_data_step_solves_the_normal_equations(spec: str, alpha: float, skewed_kernel: str) -> None:
    """The Fourier-domain data step equals an iterative solve on the periodic domain."""
    op = Blur(_blur_spec(spec, skewed_kernel), margin=0, taper=False)
    _assert_data_step(op, _random(2, 3, 24, 32, seed=6), _random(2, 3, 24, 32, seed=7), alpha)


@pytest.mark.parametrize("alpha", [1e-3, 0.5])
@pytest.mark.parametrize("downsampler", DOWNSAMPLERS)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_downsample_data_step_solves_the_normal_equations(scale: int, downsampler: str, alpha: float) -> None:
    """The closed form of Zhao et al. equals an iterative solve on the periodic domain."""
    op = Downsample(scale, downsampler, margin=0)
    y = _random(2, 3, 8, 10, seed=8)
    _assert_data_step(op, y, _random(2, 3, 8 * scale, 10 * scale, seed=9), alpha)


# downsampling


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_downsample_matches_pillow(scale: int) -> None:
    """Downsample(s) is Pillow's antialiased Image.resize(..., BICUBIC) to 1/s (away from the
    borders, where Pillow renormalises its clipped weights and the operator wraps around)."""
    h, w = 24 * scale, 20 * scale
    image = np.random.default_rng(scale).random((h, w)).astype(np.float32)
    pillow = np.asarray(Image.fromarray(image, mode="F").resize((w // scale, h // scale), Image.BICUBIC))
    ours = Downsample(scale).forward(torch.from_numpy(image)[None, None])[0, 0].numpy()
    assert ours.shape == pillow.shape
    assert np.abs(ours - pillow)[4:-4, 4:-4].max() < 1e-5


@pytest.mark.parametrize("downsampler", DOWNSAMPLERS)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_downsample_samples_block_centres(scale: int, downsampler: str) -> None:
    """Both downsamplers map low-resolution pixel i to the centre of its block, i s + (s - 1) / 2:
    a vertical ramp comes out as that ramp (away from the wrap-around)."""
    n = 16 * scale
    ramp = torch.arange(n, dtype=torch.float64)[:, None].expand(n, n)[None, None]
    out = Downsample(scale, downsampler).forward(ramp)[0, 0, 3:-3]
    centres = torch.arange(3, 16 - 3, dtype=torch.float64) * scale + (scale - 1) / 2
    assert torch.allclose(out, centres[:, None].expand_as(out), rtol=0, atol=1e-4)


@pytest.mark.parametrize("scale", [2, 3, 4, "2", 2.0])
def test_check_scale_accepts_2_3_4(scale: object) -> None:
    assert check_scale(scale) == int(scale)


@pytest.mark.parametrize("scale", [5, 1, 0, "x", 2.5, "2.0", None])
def test_check_scale_refuses_other_scales_listing_the_valid_ones(scale: object) -> None:
    with pytest.raises(ConfigError, match="2, 3, 4"):
        check_scale(scale)


def test_downsample_refuses_an_unknown_downsampler() -> None:
    with pytest.raises(ConfigError, match="bilinear"):
        Downsample(2, "bilinear")


# borders


def _border(x: torch.Tensor, width: int = 8) -> torch.Tensor:
    inner = torch.zeros(x.shape[-2:], dtype=torch.bool)
    inner[width:-width, width:-width] = True
    return x[..., ~inner]


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10((a - b).square().mean()))


def _photo() -> torch.Tensor:
    """A textured 128x128 gray crop of a real photo (the astronaut's shoulder and the flag), in [0, 1]."""
    skimage_data = pytest.importorskip("skimage.data")
    photo = skimage_data.astronaut()[100:228, 150:278].astype(np.float64).mean(axis=-1) / 255
    return torch.from_numpy(photo)[None, None]


def _border_psnr(op: Blur, observed: torch.Tensor, clean: torch.Tensor, alpha: float = 1e-3) -> float:
    """PSNR on the 8-pixel border strip of one data step from z = the observation, cropped back."""
    problem = op.problem(observed)
    restored = problem.cropped(problem.data_step(problem.init(), alpha))
    assert restored.shape == clean.shape
    return _psnr(_border(restored), _border(clean))


def test_reflect_padding_stops_ringing_at_the_borders() -> None:
    """A photo blurred with reflected borders is not periodic: the circular data step rings at
    the edges (measured: 4.9 dB PSNR on the 8-pixel border strip), the default reflect-padded and
    tapered problem does not (27.3 dB, better than the blurred observation's 22.9 dB)."""
    clean = _photo()
    observed = apply_blur(clean, gaussian_kernel(21, 2.0))
    periodic = Blur("gaussian:2.0:21", margin=0, taper=False)
    assert periodic.problem(observed).y.shape == observed.shape  # really unpadded
    padded = _border_psnr(Blur("gaussian:2.0:21"), observed, clean)
    assert padded > _border_psnr(periodic, observed, clean) + 15
    assert padded > _psnr(_border(observed), _border(clean)) + 2


def test_taper_helps_at_the_borders_for_a_motion_kernel() -> None:
    """With a motion kernel the reflect-padded observation does not fit the circular model at
    the wrap-around; the edge taper makes it fit (measured: 16.0 dB on the border strip with the
    taper, 12.8 dB without; a Gaussian blur shows no difference)."""
    clean = _photo()
    observed = apply_blur(clean, Blur("motion:15:30").kernel)
    tapered = _border_psnr(Blur("motion:15:30"), observed, clean)
    assert tapered > _border_psnr(Blur("motion:15:30", taper=False), observed, clean) + 1.5
