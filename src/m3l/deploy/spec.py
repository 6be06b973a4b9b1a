"""What an export holds: the :class:`ExportSpec` written beside the artifact (what the graph
takes and returns) and the :class:`ExportWrapper` whose forward is the exported graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from m3l.errors import ExportError


@dataclass
class ExportSpec:
    """What the exported graph takes and returns; written as the artifact's metadata."""

    model: str
    net: str
    kind: str  # "image", "video" or "multitask"
    layout: str  # "NCHW" or "NTCHW"
    channels: int
    pad_multiple: int
    temporal_window: int | None = None
    conditions: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=lambda: ["output"])
    input_range: list[float] = field(default_factory=lambda: [0.0, 1.0])
    dtype: str = "float32"
    tiling: dict[str, Any] | None = None


class ExportWrapper(nn.Module):
    """The forward that is exported: plain modules (no Lightning), tensors in, tensors out.

    A restoration model becomes ``net(x, **conditions)`` plus the input (its centre frame
    for video nets) when the net predicts a residual; a multi-task model becomes the
    backbone and one output per head, in ``spec.outputs`` order.
    """

    def __init__(self, module: nn.Module, spec: ExportSpec) -> None:
        super().__init__()
        self.spec = spec
        self.multitask = spec.kind == "multitask"
        if self.multitask:
            self.backbone = module.backbone
            self.heads = nn.ModuleList([module.heads[name] for name in spec.outputs])
        else:
            self.net = module.net
        self.residual = bool(getattr(module, "residual", False))
        self.conditions = tuple(spec.conditions)
        self.video = spec.temporal_window is not None

    def forward(self, x: torch.Tensor, *conditions: torch.Tensor) -> Any:
        if self.multitask:
            features = self.backbone(x)
            return tuple(head(features) for head in self.heads)
        out = self.net(x, **dict(zip(self.conditions, conditions)))
        if self.residual:
            out = (x[:, x.shape[1] // 2] if self.video else x) + out
        return out


def _first_conv_channels(module: nn.Module) -> int | None:
    first = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    return int(first.in_channels) if first is not None else None


def describe(module: nn.Module, name: str, tiling: dict[str, Any] | None = None) -> ExportSpec:
    """The :class:`ExportSpec` of a RestorationModule or a MultiTaskModule."""
    if hasattr(module, "heads") and hasattr(module, "backbone"):
        heads = list(module.heads.keys())
        channels = getattr(module.backbone, "in_channels", None) or getattr(module.backbone, "channels", None)
        channels = channels or _first_conv_channels(module.backbone)
        multiple = int(getattr(module.backbone, "pad_multiple", 1) or 1)
        return ExportSpec(
            model=name, net=type(module.backbone).__name__, kind="multitask", layout="NCHW",
            channels=int(channels or 3), pad_multiple=multiple, outputs=heads, tiling=tiling,
        )
    net = getattr(module, "net", None)
    if net is None or not hasattr(module, "restore"):
        raise ExportError(
            f"m3l exports RestorationModule and MultiTaskModule models; got {type(module).__name__}. "
            "Wrap a plain net in m3l.models.restoration.RestorationModule (a net config does this)."
        )
    window = getattr(net, "temporal_window", None)
    channels = getattr(module, "in_channels", None) or getattr(net, "in_channels", None) or 3
    return ExportSpec(
        model=name, net=type(net).__name__, kind="video" if window else "image",
        layout="NTCHW" if window else "NCHW", channels=int(channels),
        pad_multiple=int(getattr(net, "pad_multiple", 1) or 1),
        temporal_window=int(window) if window else None,
        conditions=list(getattr(net, "conditions", ()) or ()), tiling=tiling,
    )
