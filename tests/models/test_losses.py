"""Losses: known values and WeightedSum."""

from __future__ import annotations

import math

import pytest
import torch

from m3l.models.losses import CharbonnierLoss, L1Loss, MSELoss, PSNRLoss, WeightedSum


def test_charbonnier_is_close_to_l1_and_smooth_at_zero() -> None:
    pred, target = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    assert CharbonnierLoss(eps=1e-6)(pred, target) == pytest.approx(float(L1Loss()(pred, target)), abs=1e-5)
    assert float(CharbonnierLoss(eps=1e-3)(target, target)) == pytest.approx(1e-3)
    p = target.clone().requires_grad_()
    CharbonnierLoss()(p, target).backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().max() == 0


def test_psnr_loss_is_negative_psnr_per_image() -> None:
    target = torch.zeros(2, 1, 4, 4)
    pred = torch.stack([torch.full((1, 4, 4), 0.1), torch.full((1, 4, 4), 0.01)])
    # per-image PSNRs are 20 and 40 dB -> loss -30
    assert float(PSNRLoss()(pred, target)) == pytest.approx(-30.0, abs=1e-3)
    assert float(PSNRLoss(data_range=255.0)(pred * 255, target)) == pytest.approx(-30.0, abs=1e-3)


def test_weighted_sum_from_dict_and_list() -> None:
    pred, target = torch.rand(1, 3, 5, 5), torch.rand(1, 3, 5, 5)
    l1, l2 = float(L1Loss()(pred, target)), float(MSELoss()(pred, target))
    total = WeightedSum({"l1": L1Loss(), "l2": MSELoss()}, {"l2": 0.5})
    assert float(total(pred, target)) == pytest.approx(l1 + 0.5 * l2)
    assert set(total.last_terms) == {"l1", "l2"}
    assert float(WeightedSum([L1Loss(), MSELoss()], [2, 3])(pred, target)) == pytest.approx(2 * l1 + 3 * l2)
    assert float(WeightedSum([L1Loss()])(pred, target)) == pytest.approx(l1)


def test_weighted_sum_errors() -> None:
    with pytest.raises(ValueError, match="2 weights"):
        WeightedSum([L1Loss(), MSELoss()], [1.0])
    with pytest.raises(ValueError, match="ssim"):
        WeightedSum({"l1": L1Loss()}, {"ssim": 1.0})
    with pytest.raises(ValueError, match="at least one"):
        WeightedSum([])


def test_shape_mismatch_is_reported() -> None:
    with pytest.raises(ValueError, match=r"\(1, 3, 4, 4\) and \(1, 3, 4, 5\)"):
        CharbonnierLoss()(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 5))
    assert math.isfinite(float(PSNRLoss()(torch.rand(1, 1, 2, 2), torch.rand(1, 1, 2, 2))))
