"""NAFNet: a nonlinear-activation-free U-Net for image restoration.

L. Chen, X. Chu, X. Zhang and J. Sun, "Simple Baselines for Image Restoration", ECCV 2022.
https://arxiv.org/abs/2204.04676

Each block is LayerNorm -> 1x1 conv -> 3x3 depthwise conv -> SimpleGate (split channels,
multiply halves) -> simplified channel attention -> 1x1 conv, then a LayerNorm/SimpleGate
feed-forward; both branches are added with learned per-channel scales that start at 0.
Published configurations (:meth:`NAFNet.gopro`, :meth:`NAFNet.sidd`): width 32 or 64 with
encoder blocks (1, 1, 1, 28), 1 middle block, decoder (1, 1, 1, 1) for GoPro deblurring;
(2, 2, 4, 8), 12, (2, 2, 2, 2) for SIDD denoising. The released models add the input to the
output: train with ``residual: true``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from m3l.errors import ConfigError
from m3l.models.nets._checks import check_image


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of ``(B, C, H, W)``, per pixel."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = (x - mean).square().mean(dim=1, keepdim=True)
        x = (x - mean) * torch.rsqrt(var + self.eps)
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def simple_gate(x: torch.Tensor) -> torch.Tensor:
    """Split the channels in two halves and multiply them."""
    a, b = x.chunk(2, dim=1)
    return a * b


class NAFBlock(nn.Module):
    """One NAFNet block (see the module docstring)."""

    def __init__(self, channels: int, expand: int = 2, ffn_expand: int = 2) -> None:
        super().__init__()
        hidden = channels * expand
        self.norm1 = LayerNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, hidden, 1)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.attention = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(hidden // 2, hidden // 2, 1))
        self.conv2 = nn.Conv2d(hidden // 2, channels, 1)
        self.norm2 = LayerNorm2d(channels)
        ffn = channels * ffn_expand
        self.ffn_in = nn.Conv2d(channels, ffn, 1)
        self.ffn_out = nn.Conv2d(ffn // 2, channels, 1)
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = simple_gate(self.dwconv(self.conv1(self.norm1(x))))
        y = self.conv2(y * self.attention(y))
        x = x + self.beta * y
        y = self.ffn_out(simple_gate(self.ffn_in(self.norm2(x))))
        return x + self.gamma * y


class NAFNet(nn.Module):
    """NAFNet U-Net; ``pad_multiple`` is ``2 ** len(enc_blocks)``.

    Args:
        in_channels: image channels.
        out_channels: defaults to ``in_channels``.
        width: features at full resolution (doubled at every scale).
        enc_blocks: blocks per encoder scale, finest first.
        middle_blocks: blocks at the coarsest scale.
        dec_blocks: blocks per decoder scale, coarsest first (same length as enc_blocks).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int | None = None,
        width: int = 32,
        enc_blocks: Sequence[int] = (1, 1, 1, 28),
        middle_blocks: int = 1,
        dec_blocks: Sequence[int] = (1, 1, 1, 1),
    ) -> None:
        super().__init__()
        if len(enc_blocks) != len(dec_blocks):
            raise ConfigError(
                f"NAFNet needs as many decoder as encoder scales, got enc_blocks={list(enc_blocks)} "
                f"and dec_blocks={list(dec_blocks)}."
            )
        self.in_channels = in_channels
        self.out_channels = out_channels or in_channels
        self.pad_multiple = 2 ** len(enc_blocks)
        self.intro = nn.Conv2d(in_channels, width, 3, padding=1)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        c = width
        for n in enc_blocks:
            self.encoders.append(nn.Sequential(*(NAFBlock(c) for _ in range(n))))
            self.downs.append(nn.Conv2d(c, 2 * c, 2, stride=2))
            c *= 2
        self.middle = nn.Sequential(*(NAFBlock(c) for _ in range(middle_blocks)))
        for n in dec_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), nn.PixelShuffle(2)))
            c //= 2
            self.decoders.append(nn.Sequential(*(NAFBlock(c) for _ in range(n))))
        self.ending = nn.Conv2d(width, self.out_channels, 3, padding=1)

    @classmethod
    def gopro(cls, width: int = 32, in_channels: int = 3) -> NAFNet:
        """The GoPro deblurring configuration (width 32 or 64)."""
        return cls(in_channels, width=width, enc_blocks=(1, 1, 1, 28), middle_blocks=1, dec_blocks=(1, 1, 1, 1))

    @classmethod
    def sidd(cls, width: int = 32, in_channels: int = 3) -> NAFNet:
        """The SIDD denoising configuration (width 32 or 64)."""
        return cls(in_channels, width=width, enc_blocks=(2, 2, 4, 8), middle_blocks=12, dec_blocks=(2, 2, 2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, C, H, W)`` (H, W multiples of ``pad_multiple``) to the residual."""
        check_image("NAFNet", x, self.in_channels, self.pad_multiple)
        h = self.intro(x)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            h = encoder(h)
            skips.append(h)
            h = down(h)
        h = self.middle(h)
        for up, decoder in zip(self.ups, self.decoders):
            h = decoder(up(h) + skips.pop())
        return self.ending(h)
