"""FastDVDnet-style video denoiser: two cascaded U-Nets over a 5-frame window, no flow.

M. Tassano, J. Delon and T. Veit, "FastDVDnet: Towards Real-Time Deep Video Denoising
Without Flow Estimation", CVPR 2020. https://arxiv.org/abs/1907.01361

Stage 1 denoises the three overlapping triplets of the window with one shared small U-Net;
stage 2 fuses the three results into the centre frame with a second U-Net. Each U-Net has
two scales (32-64-128 features), strided-conv downsampling, pixel-shuffle upsampling and
additive skips, and predicts the noise of its middle input frame. With the paper's settings
(RGB, noise map) it has 2.48M parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from m3l.errors import ConfigError, ShapeError
from m3l.models.nets._checks import check_multiple, sigma_map


def _conv_bn_relu(cin: int, cout: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class DenoisingBlock(nn.Module):
    """U-Net denoising the middle of ``frames`` frames (each with its noise map)."""

    def __init__(self, channels: int, frames: int = 3, noise_map: bool = True, per_frame: int = 30) -> None:
        super().__init__()
        per_input = channels + int(noise_map)
        self.noise_map = noise_map
        self.channels = channels
        self.inc = nn.Sequential(
            # each frame gets its own filters first (grouped conv), then they are mixed
            *_conv_bn_relu(frames * per_input, frames * per_frame, groups=frames),
            *_conv_bn_relu(frames * per_frame, 32),
        )
        self.down1 = nn.Sequential(*_conv_bn_relu(32, 64, stride=2), *_conv_bn_relu(64, 64), *_conv_bn_relu(64, 64))
        self.down2 = nn.Sequential(
            *_conv_bn_relu(64, 128, stride=2), *_conv_bn_relu(128, 128), *_conv_bn_relu(128, 128)
        )
        self.up2 = nn.Sequential(
            *_conv_bn_relu(128, 128),
            *_conv_bn_relu(128, 128),
            nn.Conv2d(128, 64 * 4, 3, padding=1, bias=False),
            nn.PixelShuffle(2),
        )
        self.up1 = nn.Sequential(
            *_conv_bn_relu(64, 64),
            *_conv_bn_relu(64, 64),
            nn.Conv2d(64, 32 * 4, 3, padding=1, bias=False),
            nn.PixelShuffle(2),
        )
        self.out = nn.Sequential(*_conv_bn_relu(32, 32), nn.Conv2d(32, channels, 3, padding=1, bias=False))

    def forward(self, frames: list[torch.Tensor], noise: torch.Tensor | None) -> torch.Tensor:
        parts = [torch.cat([f, noise], dim=1) if self.noise_map else f for f in frames]
        x0 = self.inc(torch.cat(parts, dim=1))
        x1 = self.down1(x0)
        x2 = self.up2(self.down2(x1))
        x1 = self.up1(x1 + x2)
        return frames[len(frames) // 2] - self.out(x0 + x1)


class FastDVDnet(nn.Module):
    """Video denoiser; ``forward(x, sigma)`` with ``x`` ``(B, 5, C, H, W)`` -> centre ``(B, C, H, W)``.

    Args:
        in_channels: frame channels.
        out_channels: must equal ``in_channels`` (the blocks denoise frames in place).
        noise_map: take ``sigma`` (shape ``(B,)``, [0, 1] scale) as in the paper; without it
            the net is blind and ``conditions`` is empty.
    """

    temporal_window = 5
    pad_multiple = 4

    def __init__(self, in_channels: int = 3, out_channels: int | None = None, noise_map: bool = True) -> None:
        super().__init__()
        if out_channels not in (None, in_channels):
            raise ConfigError(
                f"FastDVDnet restores frames in place: out_channels must equal in_channels "
                f"({in_channels}), got {out_channels}."
            )
        self.in_channels = in_channels
        self.out_channels = in_channels
        self.noise_map = noise_map
        self.conditions: tuple[str, ...] = ("sigma",) if noise_map else ()
        self.stage1 = DenoisingBlock(in_channels, 3, noise_map)
        self.stage2 = DenoisingBlock(in_channels, 3, noise_map)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """Denoise the centre frame of a 5-frame window (H, W multiples of 4)."""
        t = self.temporal_window
        if x.dim() != 5 or x.shape[1] != t or x.shape[2] != self.in_channels:
            raise ShapeError(
                f"FastDVDnet expects a window of shape (B, {t}, {self.in_channels}, H, W), "
                f"got {tuple(x.shape)}; feed it windows of {t} frames (m3l.models.tiling.sliding_windows)."
            )
        check_multiple("FastDVDnet", x, self.pad_multiple)
        noise = None
        if self.noise_map:
            if sigma is None:
                raise ConfigError(
                    "FastDVDnet was built with noise_map=True: call it as net(x, sigma=...), or set net.noise_map=false."
                )
            noise = sigma_map("FastDVDnet", sigma, x[:, 0])
        frames = list(x.unbind(dim=1))
        first = [self.stage1(frames[i : i + 3], noise) for i in range(3)]
        return self.stage2(first, noise)
