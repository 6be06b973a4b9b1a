"""AR-CNN: four convolutions for JPEG compression-artifact reduction.

C. Dong, Y. Deng, C. C. Loy and X. Tang, "Compression Artifacts Reduction by a Deep
Convolutional Network", ICCV 2015. https://arxiv.org/abs/1504.06993

Feature extraction (9x9, 64), feature enhancement (7x7, 32), mapping (1x1, 16) and
reconstruction (5x5): 106,448 weights (plus biases) for one channel, as counted in the
paper. It predicts the restored image directly.
"""

from __future__ import annotations

import torch
from torch import nn

from m3l.models.nets._checks import check_image


class ARCNN(nn.Module):
    """AR-CNN with the paper's 9-7-1-5 kernels and 64-32-16 features by default."""

    pad_multiple = 1

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int | None = None,
        features: tuple[int, int, int] = (64, 32, 16),
        kernels: tuple[int, int, int, int] = (9, 7, 1, 5),
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels or in_channels
        widths = [in_channels, *features, self.out_channels]
        layers: list[nn.Module] = []
        for k, (cin, cout, size) in enumerate(zip(widths[:-1], widths[1:], kernels)):
            layers.append(nn.Conv2d(cin, cout, size, padding=size // 2))
            if k < len(kernels) - 1:
                layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restore ``(B, C, H, W)``."""
        check_image("ARCNN", x, self.in_channels)
        return self.body(x)
