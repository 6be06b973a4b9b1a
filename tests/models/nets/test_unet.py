"""DRUNet-style UNet: shapes, noise map, published parameter count."""

from __future__ import annotations

import pytest
import torch

from m3l.models.nets.unet import UNet


@pytest.mark.parametrize("noise_map", [False, True])
def test_forward_on_odd_padded_sizes(noise_map: bool, check_forward) -> None:
    net = UNet(3, features=(8, 16, 32), blocks=1, noise_map=noise_map)
    assert net.pad_multiple == 4
    cond = {"sigma": torch.tensor([0.1])} if noise_map else {}
    assert net.conditions == tuple(cond)
    check_forward(net, torch.rand(1, 3, 12, 28), 3, **cond)


def test_drunet_parameter_count(count_params) -> None:
    # Zhang et al. 2022: DRUNet has 32,640,960 parameters (color, with the noise map)
    assert count_params(UNet(3, noise_map=True)) == 32_640_960


def test_clear_errors() -> None:
    net = UNet(1, features=(8, 16), blocks=1, noise_map=True)
    with pytest.raises(ValueError, match="multiples of 2"):
        net(torch.rand(1, 1, 7, 8), sigma=torch.tensor([0.1]))
    with pytest.raises(ValueError, match="sigma"):
        net(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="2 scales"):
        UNet(1, features=(8,))
