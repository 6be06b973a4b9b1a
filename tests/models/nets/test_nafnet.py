"""NAFNet: shapes, pad multiple, published configurations' parameter counts."""

from __future__ import annotations

import pytest
import torch

from m3l.models.nets.nafnet import NAFNet


def test_forward_on_odd_padded_sizes(check_forward) -> None:
    net = NAFNet(3, width=8, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1))
    assert net.pad_multiple == 4
    check_forward(net, torch.rand(2, 3, 12, 20), 3)
    check_forward(NAFNet(1, width=8, enc_blocks=(1,), middle_blocks=1, dec_blocks=(1,)), torch.rand(1, 1, 6, 10), 1)


def test_blocks_start_as_identity() -> None:
    # beta = gamma = 0 at init: every block passes its input through
    net = NAFNet(3, width=8, enc_blocks=(1,), middle_blocks=1, dec_blocks=(1,))
    block = net.middle[0]
    x = torch.rand(1, 16, 4, 4)
    assert torch.equal(block(x), x)


@pytest.mark.parametrize(
    ("layout", "width", "millions"),
    # parameter counts of the released GoPro / SIDD models (Chen et al. 2022)
    [("gopro", 32, 17.11), ("gopro", 64, 67.89), ("sidd", 32, 29.16), ("sidd", 64, 115.98)],
)
def test_published_parameter_counts(layout: str, width: int, millions: float, count_params) -> None:
    net = getattr(NAFNet, layout)(width)
    assert count_params(net) / 1e6 == pytest.approx(millions, abs=0.01)


def test_clear_errors() -> None:
    net = NAFNet(3, width=8, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1))
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.rand(1, 3, 10, 12))
    with pytest.raises(ValueError, match="decoder"):
        NAFNet(3, enc_blocks=(1, 1), dec_blocks=(1,))
