"""RestorationModule: the LightningModule every built-in restoration net is trained with.

It wraps a plain ``nn.Module`` (see :mod:`m3l.models.nets`) and adds what restoration
training needs: residual or direct prediction, a configurable loss, PSNR/SSIM (and PSNR-B)
with the literature's options, padding to the net's multiple, tiled and self-ensembled
prediction, and degradation metadata passed to nets that take it (``net.conditions``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from m3l._compat.lightning import trainer_of
from m3l.training.distributed import log_mean
from m3l.errors import ConfigError, TrainingDivergedError
from m3l.models import metrics as M
from m3l.models.noise_level import estimate_noise_sigma
from m3l.models.tiling import pad_to_multiple, self_ensemble
from m3l.training.optim import OptimizerFactory, SchedulerFactory

log = logging.getLogger(__name__)


def _centre_frame(x: torch.Tensor) -> torch.Tensor:
    return x[:, x.shape[1] // 2] if x.dim() == 5 else x


class RestorationModule(pl.LightningModule):
    """Train, evaluate and apply a restoration net.

    Args:
        net: the restoration network (plain ``nn.Module``).
        residual: the net predicts the residual (``output = input + net(input)``; the centre
            frame of the input for video nets), as DnCNN does, instead of the clean image.
        loss: ``(pred, target) -> scalar`` module; L1 by default.
        optimizer: a partial optimizer (``_partial_: true`` in config); Adam(lr=1e-3) by default.
        scheduler: a partial LR scheduler taking the optimizer, or None.
        scheduler_interval: ``epoch`` or ``step``.
        metric_y_channel: compute PSNR/SSIM on the Y channel (BT.601), as papers on color
            JPEG/SR do; RGB otherwise.
        metric_crop_border: pixels cropped from each border before metrics.
        metric_psnrb: also report PSNR-B (for JPEG artifact removal).
        tiler: a :class:`m3l.models.tiling.TiledPredictor` used by ``predict_step``.
        self_ensemble: average the x8 flip/rotation ensemble at prediction.
        num_logged_examples: validation examples returned for the image-logging callback.
        predict_conditions: values for the net's ``conditions`` when the batch has none
            (correcting real files), e.g. ``{"sigma": 0.098}`` for FFDNet at sigma 25. A
            ``sigma`` that is not given (or null) is estimated per image with
            :func:`m3l.models.noise_level.estimate_noise_sigma` (wavelet MAD).
    """

    def __init__(
        self,
        net: nn.Module,
        residual: bool = False,
        loss: nn.Module | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        metric_y_channel: bool = False,
        metric_crop_border: int = 0,
        metric_psnrb: bool = False,
        tiler: Any | None = None,
        self_ensemble: bool = False,
        num_logged_examples: int = 4,
        predict_conditions: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise ConfigError(f"RestorationModule needs an nn.Module as `net`, got {type(net).__name__}.")
        self.net = net
        self.residual = residual
        self.loss_fn = loss if loss is not None else nn.L1Loss()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.metric_y_channel = metric_y_channel
        self.metric_crop_border = metric_crop_border
        self.metric_psnrb = metric_psnrb
        self.tiler = tiler
        self.self_ensemble = self_ensemble
        self.num_logged_examples = num_logged_examples
        self.predict_conditions = dict(predict_conditions or {})
        # what runs the forward in restore() when set: an m3l.deploy.backends.InferenceBackend
        # (installed for correct/test by m3l.callbacks.FastInference); None: this module
        self.inference_forward: Callable[..., torch.Tensor] | None = None

    # ------------------------------------------------------------------ net plumbing

    @property
    def pad_multiple(self) -> int:
        return int(getattr(self.net, "pad_multiple", 1) or 1)

    @property
    def in_channels(self) -> int | None:
        value = getattr(self.net, "in_channels", None)
        if value is None:
            first = next((m for m in self.net.modules() if isinstance(m, nn.Conv2d)), None)
            value = first.in_channels if first is not None else None
        return int(value) if value is not None else None

    def _conditions(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        names = tuple(getattr(self.net, "conditions", ()) or ())
        if not names:
            return {}
        meta = dict(batch.get("meta") or {})
        x = batch["input"]
        size = x.shape[0]
        for name in names:
            if name in meta:
                continue
            if self.predict_conditions.get(name) is not None:
                value = float(self.predict_conditions[name])
                meta[name] = torch.full((size,), value, device=x.device)
                self._log_condition(batch, name, meta[name], "given")
            elif name == "sigma":
                meta[name] = estimate_noise_sigma(_centre_frame(x)).to(x.device)
                self._log_condition(batch, name, meta[name], "estimated")
        missing = [n for n in names if n not in meta]
        if missing:
            raise ConfigError(
                f"The net {type(self.net).__name__} takes {', '.join(missing)} as input, but the data "
                f"does not provide it (batch['meta'] has: {', '.join(meta) or 'nothing'}). Use a data "
                "config whose degradation reports it, or give a fixed value for correction, e.g. "
                f"net.predict_conditions.{missing[0]}=0.098 (on the [0, 1] scale: 25/255)."
            )
        return {n: meta[n] for n in names}

    def _log_condition(self, batch: Mapping[str, Any], name: str, values: torch.Tensor, how: str) -> None:
        """Say which level each file was corrected at (prediction only: training data has its own)."""
        if trainer_of(self) is None or not self.trainer.predicting:
            return
        files = batch.get("relpath") or [f"input {i}" for i in range(len(values))]
        frames = batch.get("frame_index") or [None] * len(values)
        scale = 255 if name == "sigma" else 1
        for file, frame, value in zip(files, frames, values.tolist()):
            unit = "/255" if scale == 255 else ""
            if frame is None:
                log.info("%s: %s %.2f%s (%s)", file, name, value * scale, unit, how)
            else:  # videos: the first frame at INFO, every frame at DEBUG
                level = logging.INFO if int(frame) == 0 else logging.DEBUG
                log.log(level, "%s frame %d: %s %.2f%s (%s)", file, int(frame), name, value * scale, unit, how)

    def _check_channels(self, x: torch.Tensor, batch: Mapping[str, Any]) -> None:
        expected = self.in_channels
        got = x.shape[-3]
        if expected is not None and got != expected and not getattr(self.net, "temporal_window", None):
            where = batch.get("relpath", ["the input"])
            where = where[0] if isinstance(where, (list, tuple)) and where else where
            kind = {1: "gray", 3: "RGB"}
            raise ConfigError(
                f"The net expects {expected} channel(s) ({kind.get(expected, '?')}) but {where} has "
                f"{got} ({kind.get(got, '?')}). Set data.channels={expected} to convert the inputs."
            )

    def forward(self, x: torch.Tensor, **conditions: torch.Tensor) -> torch.Tensor:
        out = self.net(x, **conditions)
        if self.residual:
            out = _centre_frame(x) + out
        return out

    def restore(self, x: torch.Tensor, **conditions: torch.Tensor) -> torch.Tensor:
        """Forward on any size: pad to the net's multiple, run, crop back, clamp to [0, 1].

        A net conditioned on ``sigma`` gets the estimated level of each image when none is given.
        """
        if "sigma" in tuple(getattr(self.net, "conditions", ()) or ()) and "sigma" not in conditions:
            conditions["sigma"] = estimate_noise_sigma(_centre_frame(x))
        h, w = x.shape[-2:]
        forward = self.inference_forward if self.inference_forward is not None and not self.training else self
        return forward(pad_to_multiple(x, self.pad_multiple), **conditions)[..., :h, :w].clamp(0, 1)

    # ------------------------------------------------------------------ steps

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        x, target = batch["input"], batch["target"]
        pred = self(x, **self._conditions(batch))
        loss = self.loss_fn(pred, target)
        if not torch.isfinite(loss):
            raise TrainingDivergedError(
                f"training loss is {float(loss)} at step {self.global_step}: lower optimizer.lr, add "
                "trainer.gradient_clip_val=1.0, or check the data for NaNs."
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        return loss

    def _metrics(self, pred: torch.Tensor, target: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        opts = dict(crop_border=self.metric_crop_border, y_channel=self.metric_y_channel)
        pred = pred.clamp(0, 1)
        source = _centre_frame(x)
        values = {
            "psnr": M.psnr(pred, target, **opts),
            "ssim": M.ssim(pred, target, **opts),
            "psnr_input": M.psnr(source.clamp(0, 1), target, **opts),
        }
        values["psnr_gain"] = values["psnr"] - values["psnr_input"]
        if self.metric_psnrb:
            values["psnrb"] = M.psnrb(pred, target, **opts)
        return values

    def _eval_step(self, stage: str, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int) -> dict[str, Any]:
        x, target = batch["input"], batch["target"]
        pred = self.restore(x, **self._conditions(batch))
        names = getattr(self.trainer.datamodule, f"{stage}_set_names", None) if trainer_of(self) else None
        prefix = stage
        if names and len(names) > 1:
            prefix = f"{stage}/{names[dataloader_idx]}"
        elif dataloader_idx > 0:
            prefix = f"{stage}/set{dataloader_idx}"
        for name, value in self._metrics(pred, target, x).items():
            # exact over processes with unequal shards (sync_dist's mean of means is not)
            log_mean(self, f"{prefix}/{name}", value, x.shape[0], add_dataloader_idx=False, prog_bar=name == "psnr")
        out: dict[str, Any] = {}
        if stage == "val" and batch_idx == 0 and self.num_logged_examples:
            k = self.num_logged_examples
            out["examples"] = {
                "input": _centre_frame(x)[:k].detach(),
                "output": pred[:k].detach().clamp(0, 1),
                "target": target[:k].detach(),
            }
        return out

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        return self._eval_step("val", batch, batch_idx, dataloader_idx)

    def test_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        self._eval_step("test", batch, batch_idx, dataloader_idx)
        return {}

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        x = batch["input"]
        self._check_channels(x, batch)
        conditions = self._conditions(batch)

        def run(inp: torch.Tensor, **cond: torch.Tensor) -> torch.Tensor:
            if self.tiler is not None:
                return self.tiler(self.restore, inp, pad_multiple=self.pad_multiple, **cond)
            return self.restore(inp, **cond)

        out = self_ensemble(run, x, **conditions) if self.self_ensemble else run(x, **conditions)
        return out.clamp(0, 1)

    # ------------------------------------------------------------------ optimization

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params) if self.optimizer_factory else torch.optim.Adam(params, lr=1e-3)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval},
        }
