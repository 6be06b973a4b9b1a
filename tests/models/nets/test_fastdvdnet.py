"""FastDVDnet: window in, centre frame out; published parameter count."""

from __future__ import annotations

import pytest
import torch

from m3l.models.nets.fastdvdnet import FastDVDnet


@pytest.mark.parametrize("noise_map", [True, False])
def test_window_to_centre_frame(noise_map: bool) -> None:
    net = FastDVDnet(3, noise_map=noise_map).eval()
    assert net.temporal_window == 5 and net.pad_multiple == 4
    cond = {"sigma": torch.tensor([0.1, 0.2])} if noise_map else {}
    assert net.conditions == tuple(cond)
    x = torch.rand(2, 5, 3, 12, 20)
    with torch.inference_mode():
        y = net(x, **cond)
    assert y.shape == (2, 3, 12, 20) and y.dtype == x.dtype


def test_gray(check_forward) -> None:
    net = FastDVDnet(1, noise_map=False).eval()
    with torch.inference_mode():
        assert net(torch.rand(1, 5, 1, 8, 4)).shape == (1, 1, 8, 4)


def test_published_parameter_count(count_params) -> None:
    # Tassano et al. 2020: 2.48M parameters (RGB, noise map)
    assert count_params(FastDVDnet(3)) / 1e6 == pytest.approx(2.48, abs=0.005)


def test_clear_errors() -> None:
    net = FastDVDnet(1)
    with pytest.raises(ValueError, match=r"\(B, 5, 1, H, W\)"):
        net(torch.rand(1, 3, 1, 8, 8), sigma=torch.tensor([0.1]))
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.rand(1, 5, 1, 9, 8), sigma=torch.tensor([0.1]))
    with pytest.raises(ValueError, match="sigma"):
        net(torch.rand(1, 5, 1, 8, 8))
    with pytest.raises(ValueError, match="out_channels"):
        FastDVDnet(3, out_channels=1)
