"""The old home of tiled inference, kept so that configs and code written against it keep
working: everything here is :mod:`m3l.models.tiling` (models use tiling, so it lives beside
them; the dependency-free runtime keeps its own numpy copy, parity-tested)."""

from m3l.models.tiling import TiledPredictor, pad_to_multiple, pad_to_size, self_ensemble, sliding_windows

__all__ = ["TiledPredictor", "pad_to_multiple", "pad_to_size", "self_ensemble", "sliding_windows"]
