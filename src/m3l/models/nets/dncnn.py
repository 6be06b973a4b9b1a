"""DnCNN: a plain stack of 3x3 convolutions with batch normalization.

K. Zhang, W. Zuo, Y. Chen, D. Meng and L. Zhang, "Beyond a Gaussian Denoiser: Residual
Learning of Deep CNN for Image Denoising", IEEE Transactions on Image Processing 26(7),
2017. https://arxiv.org/abs/1608.03981

The net predicts the residual (the noise); train it with ``residual: true`` in
:class:`m3l.models.restoration.RestorationModule`. Published configurations:
DnCNN-S/-B (17 layers, 0.557M parameters for gray) and DnCNN-3 (20 layers, the blind
multi-task model for Gaussian denoising, super-resolution and JPEG deblocking; 0.667M).
"""

from __future__ import annotations

import torch
from torch import nn

from m3l.errors import ConfigError
from m3l.models.nets._checks import check_image


class DnCNN(nn.Module):
    """``depth`` convolutions: Conv+ReLU, (depth-2) x Conv+BN+ReLU, Conv (no biases, as published).

    Args:
        in_channels: 1 for gray, 3 for color.
        out_channels: defaults to ``in_channels``.
        depth: number of convolution layers (17 for DnCNN-S/B, 20 for DnCNN-3).
        features: feature maps per hidden layer (64 in the paper).
        batch_norm: batch normalization in the hidden layers (the paper's choice).
    """

    pad_multiple = 1

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int | None = None,
        depth: int = 17,
        features: int = 64,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        if depth < 2:
            raise ConfigError(f"DnCNN needs depth >= 2 (first and last conv), got {depth}.")
        self.in_channels = in_channels
        self.out_channels = out_channels or in_channels
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, features, 3, padding=1, bias=False),
            nn.ReLU(inplace=True),
        ]
        for _ in range(depth - 2):
            layers.append(nn.Conv2d(features, features, 3, padding=1, bias=False))
            if batch_norm:
                layers.append(nn.BatchNorm2d(features))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Conv2d(features, self.out_channels, 3, padding=1, bias=False))
        self.body = nn.Sequential(*layers)
        self.receptive_field = 2 * depth + 1

    @classmethod
    def dncnn_s(cls, in_channels: int = 1) -> DnCNN:
        """DnCNN-S / DnCNN-B: 17 layers, 64 features."""
        return cls(in_channels, depth=17, features=64)

    @classmethod
    def dncnn_3(cls, in_channels: int = 1) -> DnCNN:
        """DnCNN-3: 20 layers, 64 features."""
        return cls(in_channels, depth=20, features=64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, C, H, W)`` to the predicted residual ``(B, C_out, H, W)``."""
        check_image("DnCNN", x, self.in_channels)
        return self.body(x)
