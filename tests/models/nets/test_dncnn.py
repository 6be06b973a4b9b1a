"""DnCNN: shapes, published parameter counts, clear errors."""

from __future__ import annotations

import pytest
import torch

from m3l.models.nets.dncnn import DnCNN


@pytest.mark.parametrize("channels", [1, 3])
def test_forward_on_odd_sizes(channels: int, check_forward) -> None:
    check_forward(DnCNN(channels, depth=5, features=16), torch.rand(2, channels, 13, 9), channels)


def test_out_channels(check_forward) -> None:
    check_forward(DnCNN(3, out_channels=1, depth=3, features=8), torch.rand(1, 3, 7, 11), 1)


def test_published_parameter_counts(count_params) -> None:
    # Zhang et al. 2017: DnCNN (17 layers, gray) 0.557M; DnCNN-3 (20 layers) 0.667M
    assert count_params(DnCNN.dncnn_s()) == 556_032
    assert count_params(DnCNN(1, depth=17, features=64)) == 556_032
    assert count_params(DnCNN.dncnn_3()) == 667_008
    assert count_params(DnCNN.dncnn_3()) / 1e6 == pytest.approx(0.666, abs=0.0011)


def test_wrong_channels_raise_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\).*\(1, 1, 8, 8\)"):
        DnCNN(3, depth=3)(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="depth"):
        DnCNN(1, depth=1)
