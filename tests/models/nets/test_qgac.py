"""QGAC: shapes for gray and colour at every chroma subsampling, the quantization table
steering the output through the filter manifolds, and the parameter counts in the docs."""

from __future__ import annotations

import pytest
import torch

from m3l.data.dct import block_idct, upsample_chroma, ycbcr_to_rgb
from m3l.models.nets.qgac import LEVEL, QGAC, count_parameters, from_frequencies, to_frequencies

SMALL = dict(block_features=8, manifold_channels=4, plane_channels=4, color_features=4)


def _inputs(b: int, h: int, w: int, factor: tuple[int, int]):
    g = torch.Generator().manual_seed(0)
    hc, wc = -(-h // (8 * factor[0])) * 8, -(-w // (8 * factor[1])) * 8
    dct_y = torch.randn(b, 1, -(-h // 8) * 8, -(-w // 8) * 8, generator=g) * 0.1
    dct_c = torch.randn(b, 2, hc, wc, generator=g) * 0.1
    qt = torch.randint(1, 100, (b, 2, 8, 8), generator=g).float()
    return torch.rand(b, 3, h, w), dct_y, qt, dct_c, torch.tensor([factor] * b, dtype=torch.float32)


@pytest.mark.parametrize("factor", [(2, 2), (1, 2), (1, 1)])
def test_colour_output_has_the_image_size(factor):
    x, dct_y, qt, dct_c, f = _inputs(2, 37, 50, factor)
    out = QGAC(3, **SMALL)(x, dct_y, qt, dct_c, f)
    assert out.shape == (2, 3, 37, 50)


def test_gray_net_reads_y_only():
    x, dct_y, qt, _, _ = _inputs(1, 24, 16, (1, 1))
    net = QGAC(1, **SMALL)
    assert net.conditions == ("dct_y", "qt")
    assert net(x[:, :1], dct_y, qt).shape == (1, 1, 24, 16)


@pytest.mark.parametrize("frequency_net", [pytest.param(True, marks=pytest.mark.slow), False])
def test_a_fresh_net_is_the_decoder_with_live_gradients(frequency_net):
    x, dct_y, qt, dct_c, f = _inputs(2, 32, 32, (2, 2))
    net = QGAC(3, **SMALL, frequency_net=frequency_net)
    out = net(x, dct_y, qt, dct_c, f)
    y = block_idct(dct_y.double()) + LEVEL
    c = upsample_chroma(block_idct(dct_c.double()), (2, 2)) + LEVEL
    assert torch.allclose(out.double(), ycbcr_to_rgb(torch.cat([y, c], 1)), atol=1e-5)
    # one step later the first filter manifold learns (a small init everywhere starves it)
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(2):
        optimizer.zero_grad()
        (net(x, dct_y, qt, dct_c, f) - x).abs().mean().backward()
        optimizer.step()
    assert net.blocks_in.encode.to_weight.weight.grad.norm() > 1e-9  # 1e-12 with a 0.1-scaled init


def test_the_quantization_table_changes_the_correction():
    x, dct_y, qt, dct_c, f = _inputs(1, 16, 16, (2, 2))
    net = QGAC(3, **SMALL)
    for head in (net.fusion.body[-1].conv, net.color_net.decode.to_weight):  # as after training
        torch.nn.init.normal_(head.weight, std=0.1)
    with torch.no_grad():
        a, b = net(x, dct_y, qt, dct_c, f), net(x, dct_y, qt * 2, dct_c, f)
    assert (a - b).abs().max() > 1e-4
    loss = net(x, dct_y, qt, dct_c, f).mean()
    loss.backward()
    assert net.blocks_in.encode.manifold[0].weight.grad.abs().sum() > 0


def test_frequency_layout_round_trip_and_grouping():
    x = torch.randn(2, 3, 16, 24)
    f = to_frequencies(x)
    assert f.shape == (2, 3 * 64, 2, 3)
    # the first 3 channels are frequency (0, 0) of channels 0, 1, 2 at every block
    assert torch.equal(f[:, :3, 1, 2], x[:, :, 8, 16])
    assert torch.equal(from_frequencies(f), x)


def test_bad_shapes_are_named():
    x, dct_y, qt, dct_c, f = _inputs(1, 16, 16, (2, 2))
    net = QGAC(3, **SMALL)
    with pytest.raises(ValueError, match=r"dct_y of shape \(B, 1, H, W\)"):
        net(x, dct_y[..., :12], qt, dct_c, f)
    with pytest.raises(ValueError, match="needs the chroma coefficients"):
        net(x, dct_y, qt, None, f)
    with pytest.raises(ValueError, match="in_channels must be 1"):
        QGAC(2)


def test_parameter_counts_quoted_in_the_docs():
    with torch.device("meta"):
        paper = QGAC()
        crab = QGAC(manifold_channels=16, rrdbs=3, frequency_net=False, joint_color=True)
    assert count_parameters(paper) == 259_401_574
    assert count_parameters(crab) == 82_488_590
