"""Plug-and-play restoration: a pretrained denoiser as the prior of a half-quadratic-splitting
solver, for degradations known in closed form (blur, downsampling, JPEG); see docs/models.md."""

from m3l.models.pnp.module import PlugAndPlay
from m3l.models.pnp.operators import Blur, Downsample, Operator

__all__ = ["Blur", "Downsample", "Operator", "PlugAndPlay"]
