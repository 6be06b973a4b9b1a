"""Metrics: PSNR, SSIM, PSNR-B and the Y channel against known values."""

from __future__ import annotations

import math

import pytest
import torch

from m3l.models.metrics import blocking_effect_factor, psnr, psnrb, rgb_to_y, ssim


def test_rgb_to_y_uses_the_studio_range() -> None:
    white, black = torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
    assert torch.allclose(rgb_to_y(white), torch.full((1, 1, 2, 2), 235 / 255))
    assert torch.allclose(rgb_to_y(black), torch.full((1, 1, 2, 2), 16 / 255))
    assert torch.allclose(rgb_to_y(white * 255, data_range=255), torch.full((1, 1, 2, 2), 235.0))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, H, W\)"):
        rgb_to_y(torch.rand(1, 4, 2, 2))


def test_psnr_of_a_known_mse() -> None:
    target = torch.zeros(2, 3, 8, 8)
    pred = torch.full_like(target, 0.1)  # MSE 0.01 -> 20 dB
    assert float(psnr(pred, target)) == pytest.approx(20.0, abs=1e-4)
    assert float(psnr(pred * 255, target, data_range=255)) == pytest.approx(20.0, abs=1e-4)
    pred[1] = 0.01  # 40 dB
    assert psnr(pred, target, reduction="none").tolist() == pytest.approx([20.0, 40.0], abs=1e-4)
    assert math.isinf(float(psnr(target, target)))
    assert float(psnr(pred[0], target[0])) == pytest.approx(20.0, abs=1e-4)  # (C, H, W) works


def test_crop_border_and_y_channel() -> None:
    target = torch.zeros(1, 3, 10, 10)
    pred = target.clone()
    pred[..., 0, :] = 1.0  # error only on the top row
    assert math.isinf(float(psnr(pred, target, crop_border=1)))
    # gray: y_channel is a no-op
    gray = torch.rand(1, 1, 12, 12)
    assert float(psnr(gray * 0.9, gray, y_channel=True)) == pytest.approx(float(psnr(gray * 0.9, gray)))
    # a pure-blue error is small in Y (weight 24.966/255)
    blue = target.clone()
    blue[:, 2] = 0.1
    expected = 10 * math.log10(1 / (0.1 * 24.966 / 255) ** 2)
    assert float(psnr(blue, target, y_channel=True)) == pytest.approx(expected, abs=1e-3)


def test_ssim_identical_is_one_and_drops_with_noise() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-6)
    noisy = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    values = ssim(noisy, x, reduction="none")
    assert values.shape == (2,) and (values < 0.9).all()
    assert float(ssim(noisy, x, y_channel=True, crop_border=4)) < 1.0
    with pytest.raises(ValueError, match="11x11"):
        ssim(x[..., :8, :8], x[..., :8, :8])


def _blocky(size: int = 64) -> torch.Tensor:
    """Piecewise-constant 8x8 blocks: all variation is across block edges."""
    torch.manual_seed(1)
    blocks = torch.rand(1, 1, size // 8, size // 8)
    return blocks.repeat_interleave(8, -2).repeat_interleave(8, -1)


def test_psnrb_penalizes_blocking() -> None:
    target = torch.rand(1, 1, 64, 64) * 0.1 + 0.5
    blocky = _blocky() * 0.1 + 0.45
    assert float(blocking_effect_factor(blocky)) > 0
    assert float(psnrb(blocky, target)) < float(psnr(blocky, target))


def test_psnrb_equals_psnr_without_block_edges() -> None:
    target = torch.zeros(1, 1, 64, 64)
    # variation only inside blocks, none across block edges -> BEF = 0
    pred = torch.zeros(1, 1, 64, 64)
    pred[..., 3::8, :] = 0.05
    assert float(blocking_effect_factor(pred)) == 0
    assert float(psnrb(pred, target)) == pytest.approx(float(psnr(pred, target)), abs=1e-5)
    # smaller than one block: no edges at all
    small = torch.rand(1, 3, 8, 8)
    assert float(psnrb(small, small * 0.5)) == pytest.approx(float(psnr(small, small * 0.5)), abs=1e-5)


def test_mismatched_shapes_are_reported() -> None:
    with pytest.raises(ValueError, match=r"\(1, 3, 8, 8\) and \(1, 3, 8, 9\)"):
        psnr(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError, match="reduction"):
        psnr(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), reduction="sum")  # type: ignore[arg-type]
