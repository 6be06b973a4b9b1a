"""Deprecated: the old home of tiled inference, kept so that configs and code written for m3l 0.1
(``_target_: m3l.deploy.tiling.TiledPredictor``) keep working. Everything here is
:mod:`m3l.models.tiling` (models use tiling, so it lives beside them; the dependency-free runtime
keeps its own numpy copy, parity-tested); importing this module warns (``FutureWarning``)."""

import warnings

from m3l.models.tiling import TiledPredictor, pad_to_multiple, pad_to_size, self_ensemble, sliding_windows

__all__ = ["TiledPredictor", "pad_to_multiple", "pad_to_size", "self_ensemble", "sliding_windows"]

warnings.warn(
    "m3l.deploy.tiling is deprecated and will be removed in a later release: write m3l.models.tiling.TiledPredictor "
    "(and m3l.models.tiling for its other names) in configs and imports.",
    FutureWarning,
    stacklevel=2,
)
