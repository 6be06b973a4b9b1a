"""The block DCT on tensors: layout, orthonormality, round trips and libjpeg's integer IDCT."""

from __future__ import annotations

import pytest
import torch

from m3l.data.dct import (
    block_dct,
    block_idct,
    block_idct_islow,
    blocks_to_plane,
    double_chroma_coefficients,
    plane_to_blocks,
    rgb_to_ycbcr,
    upsample_chroma,
    ycbcr_to_rgb,
)


def test_plane_and_blocks_are_inverse_and_keep_each_block_together():
    x = torch.arange(2 * 16 * 24, dtype=torch.float32).reshape(2, 16, 24)
    blocks = plane_to_blocks(x)
    assert blocks.shape == (2, 2, 3, 8, 8)
    assert torch.equal(blocks[1, 1, 2], x[1, 8:16, 16:24])
    assert torch.equal(blocks_to_plane(blocks), x)


def test_dct_is_jpegs_orthonormal_dct():
    flat = torch.full((8, 8), 10.0, dtype=torch.float64)
    c = block_dct(flat)
    assert c[0, 0].item() == pytest.approx(80.0)  # 8 * a for a flat block of value a
    assert c.flatten()[1:].abs().max() < 1e-9
    x = torch.randn(3, 2, 16, 32, dtype=torch.float64)  # batched, any leading dims
    assert torch.allclose((block_dct(x) ** 2).sum(), (x**2).sum())
    assert torch.allclose(block_idct(block_dct(x)), x, atol=1e-12)


def test_one_coefficient_is_one_cosine():
    c = torch.zeros(8, 8, dtype=torch.float64)
    c[0, 1] = 1.0  # vertical frequency 0, horizontal 1: varies along columns only
    x = block_idct(c)
    assert torch.allclose(x[0], x[5])
    assert x[0, 0] > 0 > x[0, 7]


def test_integer_idct_is_within_one_unit_of_the_exact_idct():
    g = torch.Generator().manual_seed(0)
    coefficients = (
        (torch.randn(4, 64, 64, generator=g) * torch.linspace(400, 5, 64).repeat(8)[:64]).round().to(torch.int64)
    )
    exact = (block_idct(coefficients.double()) + 128).round().clamp(0, 255)
    islow = block_idct_islow(coefficients)
    assert islow.dtype == torch.uint8
    assert (islow.double() - exact).abs().max() <= 1


def test_chroma_doubling_matches_upsampling_pixels():
    c = torch.randn(1, 16, 24, dtype=torch.float64)
    doubled = double_chroma_coefficients(c, (2, 2))
    assert doubled.shape == (1, 32, 48)
    assert torch.allclose(block_idct(doubled), upsample_chroma(block_idct(c), (2, 2)))
    assert double_chroma_coefficients(c, (1, 1)) is c


def test_float_colour_conversions_are_inverse():
    rgb = torch.rand(2, 3, 5, 7, dtype=torch.float64)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-5)


def test_shapes_that_are_not_whole_blocks_are_refused():
    with pytest.raises(ValueError, match=r"multiples of 8, got shape \(1, 12, 16\)"):
        block_dct(torch.zeros(1, 12, 16))
