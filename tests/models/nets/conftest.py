"""Shared checks for the net tests, as fixtures (conftest modules are not importable)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn


def _count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _count_weights(net: nn.Module) -> int:
    """Parameters without biases and normalization (how some papers count)."""
    return sum(p.numel() for p in net.parameters() if p.dim() > 1)


def _check_forward(net: nn.Module, x: torch.Tensor, out_channels: int, **conditions: torch.Tensor) -> torch.Tensor:
    """Forward in eval mode: same dtype, ``(B, out_channels, H, W)``, finite."""
    net.eval()
    with torch.inference_mode():
        y = net(x, **conditions)
    assert y.dtype == x.dtype
    assert y.shape == (x.shape[0], out_channels, *x.shape[-2:])
    assert torch.isfinite(y).all()
    return y


@pytest.fixture
def count_params() -> Callable[[nn.Module], int]:
    return _count_params


@pytest.fixture
def count_weights() -> Callable[[nn.Module], int]:
    return _count_weights


@pytest.fixture
def check_forward() -> Callable[..., torch.Tensor]:
    return _check_forward
