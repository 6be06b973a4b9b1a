"""The model zoo: restoration nets as plain ``nn.Module`` (no Lightning), one per file.

Each net maps ``(B, C, H, W)`` to ``(B, C_out, H, W)`` and may declare ``pad_multiple``,
``conditions`` and ``temporal_window`` (see docs/contracts.md); a wrong size raises a
ValueError naming the expected shape or multiple. Their configs, with the papers' losses
and optimizers, are in ``m3l/configs/net/``; docs/models.md lists them.

>>> import torch
>>> from m3l.models.nets import DnCNN
>>> DnCNN(3, depth=5, features=16)(torch.rand(1, 3, 13, 9)).shape
torch.Size([1, 3, 13, 9])
"""

from m3l.models.nets.arcnn import ARCNN
from m3l.models.nets.dncnn import DnCNN
from m3l.models.nets.fastdvdnet import FastDVDnet
from m3l.models.nets.ffdnet import FFDNet
from m3l.models.nets.nafnet import NAFNet
from m3l.models.nets.unet import UNet

__all__ = ["ARCNN", "DnCNN", "FFDNet", "FastDVDnet", "NAFNet", "UNet"]
