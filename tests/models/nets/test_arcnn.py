"""AR-CNN: shapes and the paper's parameter count."""

from __future__ import annotations

import pytest
import torch

from m3l.models.nets.arcnn import ARCNN


@pytest.mark.parametrize("channels", [1, 3])
def test_forward_on_odd_sizes(channels: int, check_forward) -> None:
    check_forward(ARCNN(channels), torch.rand(1, channels, 11, 7), channels)


def test_published_parameter_count(count_weights, count_params) -> None:
    # Dong et al. 2015 count 106,448 weights (biases excluded) for one channel
    assert count_weights(ARCNN(1)) == 106_448
    assert count_params(ARCNN(1)) == 106_448 + 64 + 32 + 16 + 1


def test_wrong_channels() -> None:
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        ARCNN(1)(torch.rand(1, 3, 8, 8))
