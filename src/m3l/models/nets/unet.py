"""A DRUNet-style residual U-Net.

K. Zhang, Y. Li, W. Zuo, L. Zhang, L. Van Gool and R. Timofte, "Plug-and-Play Image
Restoration with Deep Denoiser Prior", IEEE TPAMI 44(10), 2022.
https://arxiv.org/abs/2008.13751

Four scales (64-128-256-512 features) of bias-free residual blocks (conv-ReLU-conv plus
identity), strided 2x2 convolutions down, transposed 2x2 convolutions up, additive skip
connections, no normalization. With ``noise_map=True`` it takes the noise level like
DRUNet (``forward(x, sigma)``; 32.64M parameters for color); without it, any restoration.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from m3l.errors import ConfigError
from m3l.models.nets._checks import check_image, sigma_map


class ResBlock(nn.Module):
    """``x + conv(relu(conv(x)))``, 3x3, bias-free."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UNet(nn.Module):
    """Residual U-Net; ``pad_multiple`` is ``2 ** (len(features) - 1)``.

    Args:
        in_channels: image channels (the noise map, if any, is added on top).
        out_channels: defaults to ``in_channels``.
        features: widths of the scales, finest first.
        blocks: residual blocks per scale (and in the bottleneck).
        noise_map: take ``sigma`` (shape ``(B,)``, [0, 1] scale) as a constant extra input
            channel, as DRUNet does.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int | None = None,
        features: Sequence[int] = (64, 128, 256, 512),
        blocks: int = 4,
        noise_map: bool = False,
    ) -> None:
        super().__init__()
        features = list(features)
        if len(features) < 2:
            raise ConfigError(f"UNet needs at least 2 scales, got features={features}.")
        self.in_channels = in_channels
        self.out_channels = out_channels or in_channels
        self.noise_map = noise_map
        self.conditions: tuple[str, ...] = ("sigma",) if noise_map else ()
        self.pad_multiple = 2 ** (len(features) - 1)
        self.head = nn.Conv2d(in_channels + int(noise_map), features[0], 3, padding=1, bias=False)
        self.encoders = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for fine, coarse in zip(features[:-1], features[1:]):
            self.encoders.append(
                nn.Sequential(
                    *(ResBlock(fine) for _ in range(blocks)),
                    nn.Conv2d(fine, coarse, 2, stride=2, bias=False),
                )
            )
            self.decoders.insert(
                0,
                nn.Sequential(
                    nn.ConvTranspose2d(coarse, fine, 2, stride=2, bias=False),
                    *(ResBlock(fine) for _ in range(blocks)),
                ),
            )
        self.body = nn.Sequential(*(ResBlock(features[-1]) for _ in range(blocks)))
        self.tail = nn.Conv2d(features[0], self.out_channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """Restore ``(B, C, H, W)``; H, W multiples of ``pad_multiple``."""
        check_image("UNet", x, self.in_channels, self.pad_multiple)
        if self.noise_map:
            if sigma is None:
                raise ConfigError(
                    "UNet was built with noise_map=True: call it as net(x, sigma=...), or set net.noise_map=false."
                )
            x = torch.cat([x, sigma_map("UNet", sigma, x)], dim=1)
        h = self.head(x)
        skips = [h]
        for encoder in self.encoders:
            h = encoder(h)
            skips.append(h)
        h = self.body(h)
        for decoder in self.decoders:
            h = decoder(h + skips.pop())
        return self.tail(h + skips.pop())
