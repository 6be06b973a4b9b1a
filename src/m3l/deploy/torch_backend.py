"""The PyTorch backends of ``correct`` and ``test`` (:mod:`m3l.deploy.backends`): the net copied
in ``channels_last`` memory format (oneDNN's fastest convolution layout on CPU), in fp32 or
bf16, eager or through ``torch.compile``, and run outside any autocast a training setting
left on."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

Forward = Callable[..., torch.Tensor]


def no_autocast() -> Any:
    """Lightning's ``trainer.precision=bf16-mixed`` (a training setting) runs predict under
    autocast; the backends run the precision they were picked for."""
    return torch.autocast("cpu", enabled=False)


def centre_frame(x: torch.Tensor) -> torch.Tensor:
    return x[:, x.shape[1] // 2] if x.dim() == 5 else x


def channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def torch_forward(module: nn.Module, dtype: torch.dtype, compile: bool = False) -> Forward:
    """The net of ``module`` copied in ``channels_last`` (and ``dtype``); the residual is
    added in fp32, so a bf16 net only rounds what it predicts, not the image."""
    net = copy.deepcopy(module.net).eval().to(dtype=dtype, memory_format=torch.channels_last)
    residual = bool(getattr(module, "residual", False))
    if compile:
        net = torch.compile(net)

    def forward(x: torch.Tensor, **conditions: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), no_autocast():
            cond = {k: v.to(dtype) for k, v in conditions.items()}
            out = net(channels_last(x.to(dtype)), **cond).float().contiguous()
            return centre_frame(x) + out if residual else out

    return forward
