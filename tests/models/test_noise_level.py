"""Wavelet-MAD noise estimation: agrees with scikit-image and with the true level on real photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from m3l.data.samples import sample_paths
from m3l.models.noise_level import estimate_noise_sigma


def _photos() -> torch.Tensor:
    images = [np.asarray(Image.open(p).convert("RGB"), dtype=np.float64)[:128, :128] / 255 for p in sample_paths("val")]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)


@pytest.mark.parametrize("sigma", [5, 15, 25, 50])
def test_estimates_the_true_level_and_agrees_with_scikit_image(sigma: int) -> None:
    skimage_restoration = pytest.importorskip("skimage.restoration")
    clean = _photos()
    noisy = (
        clean
        + torch.randn(clean.shape, generator=torch.Generator().manual_seed(sigma), dtype=torch.float64) * sigma / 255
    )
    ours = estimate_noise_sigma(noisy) * 255
    assert ours.shape == (clean.shape[0],)
    for i in range(clean.shape[0]):
        theirs = (
            skimage_restoration.estimate_sigma(noisy[i].permute(1, 2, 0).numpy(), channel_axis=-1, average_sigmas=True)
            * 255
        )
        assert abs(float(ours[i]) - theirs) < 0.03 * theirs + 0.3  # same estimator; borders differ
        assert abs(float(ours[i]) - sigma) < 0.15 * sigma + 2.5  # and close to the truth on photos


def test_gray_and_flat_images_and_bad_shapes() -> None:
    gray = _photos()[:, :1]
    noisy = gray + torch.randn(gray.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.1
    assert torch.allclose(
        estimate_noise_sigma(noisy), torch.full((gray.shape[0],), 0.1, dtype=torch.float64), atol=0.015
    )
    assert float(estimate_noise_sigma(torch.full((1, 3, 16, 16), 0.5))[0]) < 1e-9
    with pytest.raises(ValueError, match=r"expects \(B, C, H, W\)"):
        estimate_noise_sigma(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match="at least 8x8"):
        estimate_noise_sigma(torch.rand(1, 3, 4, 16))
