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
        elif is_restoration_module(module):
            self.net = module.net
        else:  # any module whose forward maps an image batch to an image batch: that forward
            self.net = module
        self.residual = bool(getattr(module, "residual", False)) and is_restoration_module(module)
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


def is_restoration_module(module: nn.Module) -> bool:
    """Whether ``module`` is m3l's RestorationModule (or one like it): a ``net`` and ``restore``."""
    return getattr(module, "net", None) is not None and hasattr(module, "restore")


def is_multitask_module(module: nn.Module) -> bool:
    return hasattr(module, "heads") and hasattr(module, "backbone")


#: what a module of the user's own must do to be exported, said when it does not
IMAGE_FORWARD = (
    "m3l exports a model whose forward maps an image batch to an image batch: forward(x) with x a float "
    "tensor (B, C, H, W) on [0, 1], C = 1 or 3, any H and W (or multiples of a `pad_multiple` attribute), "
    "returning one tensor of the same shape; m3l's RestorationModule and MultiTaskModule export too"
)


def _image_forward(module: nn.Module) -> tuple[int, int]:
    """(channels, pad multiple) of a module whose forward maps ``(B, C, H, W)`` to the same shape,
    found by running it on small random batches; :class:`ExportError` saying what it needs when
    it does not."""
    declared = getattr(module, "in_channels", None) or _first_conv_channels(module)
    tried: list[str] = []
    was_training = module.training
    module.eval()
    try:
        for channels in [int(declared)] if declared else [3, 1]:
            if channels not in (1, 3):
                tried.append(f"its first convolution takes {channels} channels, not 1 or 3")
                continue
            fixed = getattr(module, "pad_multiple", None)
            for multiple in [int(fixed)] if fixed else [1, 2, 4, 8, 16, 32, 64]:
                h, w = (61, 67) if multiple == 1 else (3 * multiple, 5 * multiple)  # odd multiples of it
                x = torch.rand(1, channels, h, w, generator=torch.Generator().manual_seed(0))
                try:
                    with torch.no_grad():
                        out = module(x)
                except Exception as err:  # noqa: BLE001 - the user's forward: any failure says it does not fit
                    text = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
                    got = f"raised {type(err).__name__}: {text}"
                else:
                    if isinstance(out, torch.Tensor) and tuple(out.shape) == tuple(x.shape):
                        return channels, multiple
                    got = (
                        f"returned shape {tuple(out.shape)}"
                        if isinstance(out, torch.Tensor)
                        else f"returned a {type(out).__name__}, not a tensor"
                    )
                tried.append(f"on a {tuple(x.shape)} batch it {got}")
    finally:
        module.train(was_training)
    raise ExportError(
        f"{IMAGE_FORWARD}. {type(module).__name__}.forward does not fit: {tried[0]}"
        f"{f' (and {len(tried) - 1} other shape(s) tried)' if len(tried) > 1 else ''}."
    )


def describe(module: nn.Module, name: str, tiling: dict[str, Any] | None = None) -> ExportSpec:
    """The :class:`ExportSpec` of a RestorationModule, a MultiTaskModule, or any module whose
    forward maps an image batch ``(B, C, H, W)`` to one of the same shape (the user's own
    LightningModule: its channels and pad multiple are found by running it on small batches)."""
    if is_multitask_module(module):
        heads = list(module.heads.keys())
        channels = getattr(module.backbone, "in_channels", None) or getattr(module.backbone, "channels", None)
        channels = channels or _first_conv_channels(module.backbone)
        multiple = int(getattr(module.backbone, "pad_multiple", 1) or 1)
        return ExportSpec(
            model=name,
            net=type(module.backbone).__name__,
            kind="multitask",
            layout="NCHW",
            channels=int(channels or 3),
            pad_multiple=multiple,
            outputs=heads,
            tiling=tiling,
        )
    if not is_restoration_module(module):
        channels, multiple = _image_forward(module)
        return ExportSpec(
            model=name,
            net=type(module).__name__,
            kind="image",
            layout="NCHW",
            channels=channels,
            pad_multiple=multiple,
            tiling=tiling,
        )
    net = module.net
    window = getattr(net, "temporal_window", None)
    channels = getattr(module, "in_channels", None) or getattr(net, "in_channels", None) or 3
    return ExportSpec(
        model=name,
        net=type(net).__name__,
        kind="video" if window else "image",
        layout="NTCHW" if window else "NCHW",
        channels=int(channels),
        pad_multiple=int(getattr(net, "pad_multiple", 1) or 1),
        temporal_window=int(window) if window else None,
        conditions=list(getattr(net, "conditions", ()) or ()),
        tiling=tiling,
    )
