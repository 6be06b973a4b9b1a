"""PlugAndPlay: a RestorationModule that restores by plug-and-play HQS with a zoo denoiser.

No training: the prior is a denoiser conditioned on ``sigma`` (the FFDNet authors' weights by
default, gray or colour to match each input), the degradation an operator of
:mod:`m3l.models.pnp.operators` (blur, downsampling) or :mod:`m3l.models.pnp.jpeg`. It does
what a restoration module does: ``restore()`` in Python, ``test``, ``correct``, ``torch.hub``;
the denoiser passes are tiled on large photos and run by ``correct``'s fast backends.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from m3l.data.io import GRAY_MODES
from m3l.errors import ConfigError
from m3l.models.noise_level import estimate_noise_sigma
from m3l.models.pnp import solver
from m3l.models.pnp.operators import Operator
from m3l.models.restoration import RestorationModule
from m3l.models.tiling import TiledPredictor, self_ensemble

log = logging.getLogger(__name__)

#: the smallest tile of the denoiser passes (twice the 64 px overlap, and even)
MIN_TILE = 130
#: the noise level of larger photos is estimated on a centre crop of this side
ESTIMATE_SIDE = 2048
#: zoo denoisers conditioned on sigma: name -> {channels: hub entry}
DENOISERS = {
    "ffdnet": {1: "ffdnet_gray", 3: "ffdnet_color"},
    "ffdnet_color": {3: "ffdnet_color"},
    "ffdnet_gray": {1: "ffdnet_gray"},
}


def _build_denoiser(entry: str, channels: int, tile_size: int) -> RestorationModule:
    from m3l.models.nets import FFDNet

    # the nets of the packaged ffdnet_* model configs (FFDNet with the paper's sizes; residual)
    # one tile at a time: a 1024 px tile of FFDNet colour holds ~0.3 GB of activations
    tiler = TiledPredictor(tile_size=tile_size, overlap=64, batch_size=1, blend="none")
    module = RestorationModule(FFDNet(in_channels=channels), residual=True, tiler=tiler)
    module.hub_entry = entry
    return module.eval()


def _own_denoiser(spec: str, tile_size: int) -> RestorationModule:
    """A sigma-conditioned net trained with m3l: ``spec`` is a checkpoint inside its run
    directory (``RUN/checkpoints/best.ckpt``), whose ``RUN/config.yaml`` builds the net."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from m3l.weights.checkpoints import load_weights_into

    path = Path(spec).expanduser()
    config = path.parent.parent / "config.yaml"
    if not path.is_file() or not config.is_file():
        raise ConfigError(
            f"pnp.denoiser={spec}: expected a zoo denoiser ({', '.join(DENOISERS)}) or a checkpoint of a run m3l "
            "trained (RUN/checkpoints/NAME.ckpt, with RUN/config.yaml beside the checkpoints folder)"
            + ("" if path.is_file() else "; no such file")
            + "."
        )
    module = instantiate(OmegaConf.load(config).net)
    if not isinstance(module, RestorationModule) or "sigma" not in tuple(getattr(module.net, "conditions", ()) or ()):
        raise ConfigError(
            f"pnp.denoiser={spec}: the net of {config} is not conditioned on sigma (a prior must denoise at a given "
            "level, e.g. FFDNet with its noise map: model=ffdnet_color or ffdnet_gray)."
        )
    load_weights_into(module, path)
    module.tiler = TiledPredictor(tile_size=tile_size, overlap=64, batch_size=1, blend="none")
    module.hub_entry = None  # its weights are loaded: checkpoint=pretrained leaves them
    return module.eval()


class PlugAndPlay(RestorationModule):
    """Plug-and-play restoration (HQS, DPIR's schedule; see :mod:`m3l.models.pnp.solver`).

    Args:
        operator: the degradation (:class:`~m3l.models.pnp.operators.Blur`,
            :class:`~m3l.models.pnp.operators.Downsample`, :class:`~m3l.models.pnp.jpeg.JPEGConstraint`).
        denoiser: the prior, a denoiser conditioned on sigma: from the zoo, ``ffdnet`` (gray or
            colour to match each input), ``ffdnet_color`` or ``ffdnet_gray``; or the checkpoint
            of one you trained with m3l (``RUN/checkpoints/best.ckpt``: ``RUN/config.yaml``
            builds its net), for the channels it was trained on.
        iterations, lam, sigma_max: HQS's iterations, lambda and first denoiser level (on the
            0-255 scale), DPIR's 8, 0.23 and 49 by default.
        noise: the observation's noise level on the 0-255 scale; None estimates it per image
            (:func:`m3l.models.noise_level.estimate_noise_sigma`) and logs it.
        tile_size: the denoiser passes run tile by tile on images larger than this (pixels).
        ensemble_last: the last denoiser pass averages the x8 flips and rotations (8 passes).
    """

    def __init__(
        self,
        operator: Operator,
        denoiser: str = "ffdnet",
        iterations: int = solver.ITERATIONS,
        lam: float = solver.LAMBDA,
        sigma_max: float = solver.SIGMA_MAX * 255,
        noise: float | None = None,
        tile_size: int = 1024,
        ensemble_last: bool = False,
        metric_y_channel: bool = False,
        metric_crop_border: int = 0,
    ) -> None:
        if int(tile_size) < MIN_TILE:
            raise ConfigError(
                f"pnp tile_size={tile_size}: the denoiser tiles overlap by 64 px, so a tile needs at least {MIN_TILE} px."
            )
        if str(denoiser) in DENOISERS:
            entries = DENOISERS[str(denoiser)]
            nets = nn.ModuleDict({str(c): _build_denoiser(name, c, int(tile_size)) for c, name in entries.items()})
        elif str(denoiser).endswith((".ckpt", ".safetensors")) or "/" in str(denoiser):
            own = _own_denoiser(str(denoiser), int(tile_size))
            nets = nn.ModuleDict({str(own.in_channels): own})
        else:
            raise ConfigError(
                f"pnp.denoiser={denoiser!r}: plug-and-play needs a denoiser conditioned on sigma: the zoo's "
                f"{', '.join(DENOISERS)} (ffdnet: gray or colour to match each input), or the checkpoint of a "
                "sigma-conditioned net you trained with m3l (pnp.denoiser=RUN/checkpoints/best.ckpt)."
            )
        super().__init__(nets, residual=False, metric_y_channel=metric_y_channel, metric_crop_border=metric_crop_border)
        if not isinstance(operator, Operator):
            raise ConfigError(
                f"PlugAndPlay needs a degradation operator (m3l.models.pnp.operators), got {type(operator).__name__}."
            )
        self.operator = operator
        self.denoiser_name = str(denoiser)
        self.iterations, self.lam, self.sigma_max = int(iterations), float(lam), float(sigma_max) / 255
        self.noise = None if noise is None else float(noise) / 255
        if self.noise is not None and self.noise < 0:
            raise ConfigError(f"pnp.noise must be >= 0 (the 0-255 scale), got {noise}.")
        solver.schedule(self.iterations, self.sigma_max, self.sigma_max, 0.0, self.lam)  # checks the settings
        self.tile_size = int(tile_size)
        self.ensemble_last = bool(ensemble_last)

    # ------------------------------------------------------------------ weights

    @property
    def denoisers(self) -> nn.ModuleDict:
        return self.net  # type: ignore[return-value]

    def load_pretrained(self) -> Path:
        """Load the zoo weights of every denoiser (the FFDNet authors', converted on first use);
        returns the last weights file."""
        from safetensors.torch import load_file

        from m3l.weights import hub

        path = Path()
        for module in self.denoisers.values():
            if module.hub_entry is None:  # your own checkpoint, loaded when the model was built
                path = Path(getattr(module, "weights_file", path))
                continue
            path = hub.weights_path(module.hub_entry)
            module.net.load_state_dict(load_file(str(path)))
            module.weights_file = path  # the fast backends key their ONNX export by it
            log.info("plug-and-play prior %s: %s", module.hub_entry, path)
        return path

    def inference_targets(self) -> list[RestorationModule]:
        """The modules whose forward ``correct``'s fast backends run (the denoisers)."""
        return list(self.denoisers.values())

    # ------------------------------------------------------------------ solving

    def denoiser_for(self, channels: int) -> RestorationModule:
        if str(channels) not in self.denoisers:
            have = {"1": "gray", "3": "colour"}
            raise ConfigError(
                f"pnp.denoiser={self.denoiser_name} denoises {' and '.join(have[c] for c in self.denoisers)} "
                f"images only, the input has {channels} channel(s); use pnp.denoiser=ffdnet (gray or colour to match)."
            )
        return self.denoisers[str(channels)]

    def _denoise(self, module: RestorationModule, ensemble: bool = False) -> Any:
        def one(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            return self_ensemble(module.restore, x, sigma=sigma) if ensemble else module.restore(x, sigma=sigma)

        def denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:
            level = torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)
            if max(x.shape[-2:]) > self.tile_size:  # tile by tile (the ensemble too: memory of one tile)
                return module.tiler(one, x, pad_multiple=module.pad_multiple, sigma=level)
            return one(x, level)

        return denoise

    def noise_level(
        self, y: torch.Tensor, meta: Mapping[str, Any] | None = None, given: float | None = None
    ) -> tuple[float, str]:
        """The observation's noise level on [0, 1] and how it was found: ``given`` (a
        ``sigma`` of the data), ``pnp.noise``, the operator's own (JPEG: the file's tables), or
        estimated on the image."""
        if given is not None:
            return float(given), "given"
        if self.noise is not None:
            return self.noise, "given"
        own = getattr(self.operator, "observation_noise", None)
        if callable(own):
            return float(own(dict(meta or {}), y.shape[1])), "from the quantization tables"
        h, w = y.shape[-2:]
        if min(h, w) < 8:
            return solver.NOISE_FLOOR, "too small to estimate"
        # a median over millions of wavelet coefficients: a centre crop of at most 4 MP reads the
        # same level without the estimator's float64 copy of a whole large photo
        top, left = max(0, (h - ESTIMATE_SIDE) // 2), max(0, (w - ESTIMATE_SIDE) // 2)
        crop = y[:1, :, top : top + ESTIMATE_SIDE, left : left + ESTIMATE_SIDE]
        return float(estimate_noise_sigma(crop.float())[0]), "estimated"

    @torch.no_grad()
    def solve(self, y: torch.Tensor, meta: Mapping[str, Any] | None = None, noise: float | None = None) -> torch.Tensor:
        """Restore one observation ``(1, C, H, W)`` on [0, 1] (C = 1 or 3)."""
        module = self.denoiser_for(y.shape[1])
        level, _ = self.noise_level(y, meta, noise)
        problem = self.operator.problem(y.float(), dict(meta or {}))
        steps = solver.schedule(self.iterations, self.sigma_max, self.operator.min_sigma(level), level, self.lam)
        needs_prior = getattr(self.operator, "needs_prior", None)
        if callable(needs_prior) and not needs_prior(level, y.shape[1]):
            steps = []
        last = self._denoise(module, ensemble=True) if self.ensemble_last else None
        out = solver.hqs(problem, self._denoise(module), steps, last)
        return problem.cropped(out).clamp(0, 1)

    def _conditions(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        meta = batch.get("meta") or {}
        return {k: meta[k] for k in ("kernel", "sigma") if k in meta}

    def restore(self, x: torch.Tensor, **conditions: Any) -> torch.Tensor:
        """Restore ``(B, C, H, W)`` on [0, 1]; ``sigma`` ``(B,)`` (the noise level on [0, 1]) and
        the operator's own metadata (e.g. ``kernel`` ``(B, k, k)``) per image are optional."""
        outs = []
        for i in range(x.shape[0]):
            meta = {k: (v[i] if isinstance(v, (torch.Tensor, list, tuple)) else v) for k, v in conditions.items()}
            sigma = meta.pop("sigma", None)
            noise = float(sigma) if sigma is not None else None
            outs.append(self.solve(x[i : i + 1], meta, noise))
        return torch.cat(outs)

    def _metrics(self, pred: torch.Tensor, target: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.shape[-2:] != target.shape[-2:]:  # super-resolution: the input's PSNR is its bicubic upscaling's
            x = torch.nn.functional.interpolate(x, size=target.shape[-2:], mode="bicubic", align_corners=False).clamp(
                0, 1
            )
        return super()._metrics(pred, target, x)

    def forward(self, x: torch.Tensor, **conditions: Any) -> torch.Tensor:
        return self.restore(x, **conditions)

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> Any:
        x = batch["input"]
        if x.dim() != 4:
            raise ConfigError("plug-and-play restores images (B, C, H, W); correct video frames with a trained model.")
        meta = batch.get("meta") or {}
        modes = batch.get("mode") or [None] * x.shape[0]
        files = batch.get("relpath") or [f"input {i}" for i in range(x.shape[0])]
        outs = []
        for i in range(x.shape[0]):
            item = x[i : i + 1]
            gray = modes[i] in GRAY_MODES and item.shape[1] == 3 and "1" in self.denoisers
            if gray:  # a gray file read as RGB: restore its one plane with the gray prior
                item = item[:, :1]
            item_meta = {k: v[i] for k, v in meta.items()}
            level, how = self.noise_level(item, item_meta)
            log.info("%s: noise %.2f/255 (%s)", files[i], level * 255, how)
            out = self.solve(item, item_meta, level)
            outs.append(out.expand(-1, x.shape[1], -1, -1) if gray else out)
        output = torch.cat(outs)
        s = self.operator.scale
        if s == 1:
            return output
        result: dict[str, Any] = {"output": output}
        for key in ("height", "width"):
            if batch.get(key) is not None:
                result[key] = [int(v) * s for v in batch[key]]
        if batch.get("alpha") is not None:
            result["alpha"] = [
                None
                if a is None
                else torch.nn.functional.interpolate(a[None].float(), scale_factor=s, mode="bicubic").clamp(0, 1)[0]
                for a in batch["alpha"]
            ]
        return result

    # ------------------------------------------------------------------ no training

    NOT_TRAINED = (
        "plug-and-play models are not trained: their prior is a pretrained denoiser. Use test or correct "
        "with checkpoint=pretrained (or train the denoiser itself, e.g. model=ffdnet_color)."
    )

    def preflight(self, data: Any) -> None:
        """``train`` runs this before anything else: refuse at once (m3l.Experiment.fit)."""
        raise ConfigError(self.NOT_TRAINED)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        raise ConfigError(self.NOT_TRAINED)
