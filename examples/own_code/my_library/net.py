"""MyRestorationNetwork: a small residual conv denoiser as a plain LightningModule."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn


class MyRestorationNetwork(pl.LightningModule):
    def __init__(self, n_layers: int = 5, width: int = 32, epsilon: float = 1e-3, lr: float = 1e-3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.ReLU()]
        for _ in range(n_layers - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(width, 3, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.epsilon = epsilon
        self.lr = lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.body(x)

    def _loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((pred - target) ** 2 + self.epsilon**2).mean()  # Charbonnier

    def training_step(self, batch, batch_idx):
        noisy, clean = batch
        loss = self._loss(self(noisy), clean)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        noisy, clean = batch
        mse = torch.mean((self(noisy).clamp(0, 1) - clean) ** 2)
        self.log("val_psnr", -10 * torch.log10(mse))

    def test_step(self, batch, batch_idx):
        noisy, clean = batch
        mse = torch.mean((self(noisy).clamp(0, 1) - clean) ** 2)
        self.log("test_psnr", -10 * torch.log10(mse))

    def predict_step(self, batch, batch_idx):
        return self(batch["input"]).clamp(0, 1)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)
