"""Restoration examples (input | output | target) logged as images to every logger that can
show them (TensorBoard, W&B, MLflow)."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback


def log_image(trainer: pl.Trainer, tag: str, image: torch.Tensor) -> int:
    """Send one ``(C, H, W)`` float image in [0, 1] to every logger that can show images.

    Returns how many loggers took it. TensorBoard, W&B and MLflow are supported; other
    loggers are skipped.
    """
    image = image.detach().float().clamp(0, 1).cpu()
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    step = trainer.global_step
    taken = 0
    for logger in trainer.loggers:
        kind = type(logger).__name__
        if kind == "TensorBoardLogger":
            logger.experiment.add_image(tag, image, global_step=step)
        elif kind == "WandbLogger":
            logger.log_image(key=tag, images=[image.permute(1, 2, 0).numpy()], step=step)
        elif kind == "MLFlowLogger":
            array = (image.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
            logger.experiment.log_image(logger.run_id, array, f"{tag}/step_{step:07d}.png")
        else:
            continue
        taken += 1
    return taken


def side_by_side(images: list[torch.Tensor], gap: int = 2) -> torch.Tensor:
    """Concatenate ``(C, H, W)`` images left to right (gray ones made RGB), padding heights."""
    images = [im.expand(3, -1, -1) if im.shape[0] == 1 else im[:3] for im in images]
    height = max(im.shape[1] for im in images)
    parts = []
    for i, im in enumerate(images):
        if im.shape[1] < height:
            im = torch.nn.functional.pad(im, (0, 0, 0, height - im.shape[1]), value=1.0)
        parts.append(im)
        if i < len(images) - 1:
            parts.append(torch.ones(3, height, gap, dtype=im.dtype))
    return torch.cat(parts, dim=2)


class ImageExamples(Callback):
    """Logs input | output | target of the first validation batch as images each epoch.

    Reads ``outputs["examples"]`` returned by ``validation_step`` (a dict of ``(N, C, H, W)``
    tensors named ``input``, ``output``, ``target``); modules that return nothing are ignored.
    """

    def __init__(self, max_images: int = 4) -> None:
        self.max_images = max_images

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx != 0 or dataloader_idx != 0 or trainer.sanity_checking or not trainer.is_global_zero:
            return
        if not isinstance(outputs, dict) or "examples" not in outputs:
            return
        examples = outputs["examples"]
        count = min(self.max_images, examples["output"].shape[0])
        for i in range(count):
            row = [examples[k][i] for k in ("input", "output", "target") if k in examples]
            log_image(trainer, f"examples/{i}", side_by_side(row))
