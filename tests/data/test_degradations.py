"""Every degradation does what it promises, on real photo patches."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch
from PIL import Image

from m3l.data.degradations import (
    JPEG,
    Chain,
    GaussianBlur,
    GaussianNoise,
    MotionBlur,
    PoissonGaussianNoise,
    RandomChoice,
    VideoH264,
    add_gaussian_noise,
    apply_blur,
    gaussian_kernel,
    jpeg_compress,
    motion_kernel,
)
import m3l.data.degradations as deg
from m3l.data.io import read_image
from m3l.data.samples import sample_paths
from torch.utils.data import default_collate


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    x, _ = read_image(sample_paths("train")[0])  # astronaut, RGB
    return x[:, 100:228, 200:328].contiguous()


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_gaussian_noise_std_and_meta(photo: torch.Tensor) -> None:
    y, meta = GaussianNoise(sigma=25, scale=255)(photo, gen())
    assert abs(float((y - photo).std()) - 25 / 255) < 0.003
    assert float(meta["sigma"]) == pytest.approx(25 / 255)
    assert meta["sigma"].shape == ()


def test_blind_noise_range(photo: torch.Tensor) -> None:
    noise = GaussianNoise(sigma_range=[0, 55], scale=255)
    sigmas = [float(noise(photo, gen(s))[1]["sigma"]) for s in range(20)]
    assert all(0 <= s <= 55 / 255 for s in sigmas) and len(set(sigmas)) == 20
    y, meta = noise(photo, gen(3))
    assert abs(float((y - photo).std()) - float(meta["sigma"])) < 0.004


def test_noise_clip_keeps_range(photo: torch.Tensor) -> None:
    y = add_gaussian_noise(photo, 0.3, gen(), clip=True)
    assert float(y.min()) >= 0 and float(y.max()) <= 1


def test_poisson_gaussian_variance_follows_signal() -> None:
    flat = torch.full((1, 128, 128), 0.5)
    y, meta = PoissonGaussianNoise(peak=50, sigma=0.02)(flat, gen())
    expected = (0.5 / 50 + 0.02**2) ** 0.5
    assert abs(float((y - flat).std()) - expected) < 0.1 * expected
    assert float(meta["peak"]) == 50


def test_gaussian_kernels_sum_to_one_and_are_symmetric() -> None:
    iso = gaussian_kernel(21, 2.0)
    aniso = gaussian_kernel(21, 3.0, 0.7, angle=0.5)
    for k in (iso, aniso):
        assert float(k.sum()) == pytest.approx(1.0, abs=1e-5)
        assert torch.allclose(k, torch.flip(k, dims=(0, 1)), atol=1e-7)  # point symmetric
    assert torch.allclose(iso, iso.T)
    assert not torch.allclose(aniso, aniso.T, atol=1e-4)


def test_motion_kernel_is_a_trajectory() -> None:
    for seed in range(5):
        k = motion_kernel(21, gen(seed))
        assert k.shape == (21, 21) and float(k.sum()) == pytest.approx(1.0, abs=1e-5)
        assert float(k.min()) >= 0 and 3 <= int((k > 0).sum()) < 21 * 21 // 2
    assert not torch.equal(motion_kernel(21, gen(0)), motion_kernel(21, gen(1)))


@pytest.mark.parametrize("blur", [GaussianBlur(sigma=2.0), GaussianBlur(anisotropic=True), MotionBlur()])
def test_blur_returns_its_kernel(photo: torch.Tensor, blur) -> None:
    y, meta = blur(photo, gen())
    assert float(meta["kernel"].sum()) == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(y, apply_blur(photo, meta["kernel"]))

    # blur removes detail: the high-frequency energy drops
    def detail(z: torch.Tensor) -> float:
        return float((z[..., 1:, :] - z[..., :-1, :]).abs().mean())

    assert detail(y) < 0.8 * detail(photo)
    flat = torch.full((3, 40, 40), 0.3)
    torch.testing.assert_close(blur(flat, gen())[0], flat)  # a kernel summing to 1 keeps flat areas


def test_jpeg_decodes_differs_and_reports_quality(photo: torch.Tensor) -> None:
    y, meta = JPEG(quality=10)(photo, gen())
    assert y.shape == photo.shape and float(meta["quality"]) == 10
    assert float((y - photo).abs().mean()) > 0.01
    # the same bytes Pillow would produce
    buf = io.BytesIO()
    Image.fromarray((photo.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(buf, "JPEG", quality=10)
    ref = torch.from_numpy(np.asarray(Image.open(buf)).astype(np.float32) / 255).permute(2, 0, 1)
    torch.testing.assert_close(y, ref)
    # higher quality is closer
    assert float((jpeg_compress(photo, 90) - photo).abs().mean()) < float((y - photo).abs().mean())


def test_jpeg_gray_and_chroma_subsampling(photo: torch.Tensor) -> None:
    gray = photo[:1]
    y, _ = JPEG(quality=30)(gray, gen())
    assert y.shape == gray.shape and not torch.equal(y, gray)
    a = jpeg_compress(photo, 50, "4:4:4")
    b = jpeg_compress(photo, 50, "4:2:0")
    assert not torch.equal(a, b)
    assert float((a - photo).abs().mean()) < float((b - photo).abs().mean())
    q = [float(JPEG(quality_range=[10, 40])(photo, gen(s))[1]["quality"]) for s in range(10)]
    assert all(10 <= v <= 40 and v == int(v) for v in q)


def test_h264_clip(photo: torch.Tensor) -> None:
    clip = torch.stack([photo[:, :, i : i + 97] for i in range(0, 15, 3)])  # odd width
    y, meta = VideoH264(crf=35)(clip, gen())
    assert y.shape == clip.shape and float(meta["crf"]) == 35
    assert 0.002 < float((y - clip).abs().mean()) < 0.1


def test_chain_blur_noise_jpeg(photo: torch.Tensor) -> None:
    chain = Chain([GaussianBlur(sigma=1.5, kernel_size=11), GaussianNoise(sigma=5, scale=255), JPEG(quality=50)])
    y, meta = chain(photo, gen())
    assert set(meta) == {"kernel", "sigma", "quality"}
    assert meta["kernel"].shape == (11, 11) and float(meta["quality"]) == 50
    two_blurs = Chain([GaussianBlur(sigma=1.0, kernel_size=5), MotionBlur(kernel_size=7)])
    _, meta = two_blurs(photo, gen())
    assert meta["kernel"].shape == (11, 11) and float(meta["kernel"].sum()) == pytest.approx(1, abs=1e-5)


def test_random_choice_metadata_collates(photo: torch.Tensor) -> None:
    choice = RandomChoice(
        [GaussianNoise(sigma_range=[0, 55], scale=255), JPEG(quality_range=[5, 99]), GaussianBlur(kernel_size=15)]
    )
    metas = [choice(photo, gen(s))[1] for s in range(12)]
    batch = default_collate(metas)
    assert batch["sigma"].shape == (12,) and batch["quality"].shape == (12,) and batch["kernel"].shape == (12, 15, 15)
    picked = {(float(m["sigma"]) > 0, float(m["quality"]) < 100, float(m["kernel"].max()) < 1) for m in metas}
    assert picked == {(True, False, False), (False, True, False), (False, False, True)}


def test_seeded_is_deterministic(photo: torch.Tensor) -> None:
    chain = Chain([MotionBlur(), GaussianNoise(sigma_range=[0, 50], scale=255), JPEG(quality_range=[10, 90])])
    a, ma = chain(photo, gen(7))
    b, mb = chain(photo, gen(7))
    c, _ = chain(photo, gen(8))
    assert torch.equal(a, b) and all(torch.equal(ma[k], mb[k]) for k in ma)
    assert not torch.equal(a, c)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: GaussianNoise(), "exactly one"),
        (lambda: GaussianNoise(sigma=1, sigma_range=[0, 1]), "exactly one"),
        (lambda: GaussianNoise(sigma_range=[5, 1]), "low <= high"),
        (lambda: JPEG(quality=50, chroma_subsampling="4:1:1"), "chroma_subsampling"),
        (lambda: RandomChoice([]), "at least one"),
    ],
)
def test_bad_arguments_say_what_is_expected(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_shape_message() -> None:
    with pytest.raises(ValueError, match=r"\(\.\.\., C, H, W\).*got shape \(5, 8, 8\)"):
        add_gaussian_noise(torch.rand(5, 8, 8), 0.1)


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: deg.GaussianNoise(sigma=-1), "[0, inf]"),
        (lambda: deg.GaussianNoise(sigma_range=[-5, 10]), "[0, inf]"),
        (lambda: deg.GaussianNoise(sigma="abc"), "expected numbers"),
        (lambda: deg.PoissonGaussianNoise(peak=0), "(0, inf]"),
        (lambda: deg.GaussianBlur(sigma=0), "(0, inf]"),
        (lambda: deg.GaussianBlur(kernel_size=20, sigma=1.0), "odd integer"),
        (lambda: deg.MotionBlur(kernel_size=1), "odd integer >= 3"),
        (lambda: deg.JPEG(quality=0), "[1, 100]"),
        (lambda: deg.JPEG(quality_range=[5, 101]), "[1, 100]"),
        (lambda: deg.VideoH264(crf=60), "[0, 51]"),
        (lambda: deg.RandomChoice([deg.Identity()], weights=[-1]), "weights must be >= 0"),
    ],
)
def test_out_of_range_levels_are_config_errors(build, expected):
    from m3l.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(expected)):
        build()
