"""FFDNet: noise-map input, pad multiple, parameter counts."""

from __future__ import annotations

import pytest
import torch

from m3l.models.nets.ffdnet import FFDNet


@pytest.mark.parametrize("channels", [1, 3])
def test_forward_on_odd_padded_sizes(channels: int, check_forward) -> None:
    net = FFDNet(channels, depth=4, features=16)
    assert net.conditions == ("sigma",) and net.pad_multiple == 2
    check_forward(net, torch.rand(2, channels, 14, 22), channels, sigma=torch.tensor([0.05, 0.2]))


def test_sigma_changes_the_output() -> None:
    net = FFDNet(1, depth=3, features=8).eval()
    x = torch.rand(1, 1, 8, 8)
    assert not torch.allclose(net(x, sigma=torch.tensor([0.0])), net(x, sigma=torch.tensor([0.5])))


def test_paper_configurations(count_params) -> None:
    # 15 x 64 for gray, 12 x 96 for color (the paper's settings; biases off like DnCNN)
    assert count_params(FFDNet(1)) == 486_080
    assert count_params(FFDNet(3)) == 852_960


def test_clear_errors() -> None:
    net = FFDNet(1, depth=3, features=8)
    with pytest.raises(ValueError, match="multiples of 2"):
        net(torch.rand(1, 1, 9, 8), sigma=torch.tensor([0.1]))
    with pytest.raises(ValueError, match=r"sigma of shape \(B,\)"):
        net(torch.rand(2, 1, 8, 8), sigma=torch.tensor([0.1, 0.2, 0.3]))


def test_blind_variant_takes_no_sigma(check_forward) -> None:
    net = FFDNet(3, depth=4, features=16, noise_map=False)
    assert net.conditions == () and net.body[0].in_channels == 12
    check_forward(net, torch.rand(2, 3, 14, 22), 3)
    with pytest.raises(ValueError, match="blind: it takes no sigma"):
        net(torch.rand(1, 3, 8, 8), sigma=torch.tensor([0.1]))
    with pytest.raises(ValueError, match="needs sigma"):
        FFDNet(1, depth=3, features=8)(torch.rand(1, 1, 8, 8))


def test_without_batch_norm_has_biases_he_init_and_a_small_last_layer() -> None:
    torch.manual_seed(0)
    net = FFDNet(3, noise_map=False, batch_norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    convs = [m for m in net.body if isinstance(m, torch.nn.Conv2d)]
    assert all(c.bias is not None and not c.bias.any() for c in convs)
    hidden = convs[1].weight
    assert abs(float(hidden.std()) - (2 / (96 * 9)) ** 0.5) < 0.003  # He (fan-in, ReLU)
    assert float(convs[-1].weight.std()) < 0.1 * (1 / (96 * 9)) ** 0.5 * 1.2
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = net(x)
    assert out.shape == x.shape and 0 < float(out.std()) < 0.5  # starts near "output = input"
