"""The model zoo: restoration nets as plain ``nn.Module`` (no Lightning), one per file.

Each net maps ``(B, C, H, W)`` to ``(B, C_out, H, W)`` and may declare ``pad_multiple``,
``conditions`` and ``temporal_window`` (see docs/contracts.md). Their configs, with the
papers' losses and optimizers, are in ``m3l/configs/net/``.
"""

from m3l.models.nets.dncnn import DnCNN

__all__ = ["DnCNN"]
