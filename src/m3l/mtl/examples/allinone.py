"""All-in-one restoration: denoising, deblurring and JPEG correction as three tasks.

One shared trunk (a DnCNN-style body from :mod:`m3l.models.nets`) and one small head per
degradation, each task with its own dataset of real photos (``m3l.data``), in the spirit of
Li et al., "All-In-One Image Restoration for Unknown Corruption", CVPR 2022,
https://arxiv.org/abs/2203.07049 (here the degradation is known per task).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from m3l.models.nets.dncnn import DnCNN
from m3l.mtl import contracts as contract


@contract.backbone
class RestorationTrunk(nn.Module):
    """``(B, C, H, W)`` -> ``(B, C + features, H, W)``: the input and shared features."""

    def __init__(self, channels: int = 3, features: int = 32, depth: int = 5) -> None:
        super().__init__()
        self.channels, self.out_channels = channels, channels + features
        self.body = DnCNN(in_channels=channels, out_channels=features, depth=depth, features=features)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, torch.relu(self.body(x))], dim=1)


@contract.head
class RestorationHead(nn.Module):
    """Predicts a residual from the shared features and adds it to the input channels."""

    def __init__(self, in_channels: int = 35, channels: int = 3, hidden: int = 32) -> None:
        super().__init__()
        self.in_channels, self.channels = in_channels, channels
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, channels, 3, padding=1)
        )

    def forward(self, features: Tensor) -> Tensor:
        return features[:, : self.channels] + self.net(features)
