"""Built-in sample photos (real, CC0 / public domain; see LICENSES.md) for the offline demo.

``train`` and ``val`` are disjoint. Configs reach them with ``${m3l.samples:train}``.
"""

from __future__ import annotations

from pathlib import Path

from m3l.errors import ConfigError, DataNotFoundError

SPLITS = ("train", "val")


def sample_dir(split: str) -> str:
    """Absolute path of the built-in ``train`` or ``val`` photos."""
    if split not in SPLITS:
        raise ConfigError(f"m3l.samples: split must be one of {SPLITS}, got {split!r}")
    path = Path(__file__).resolve().parent / split
    if not path.is_dir():
        raise DataNotFoundError(
            f"the built-in sample photos are missing from {path}; reinstall m3l (pip install --force-reinstall m3l)"
        )
    return str(path)


def sample_paths(split: str) -> list[Path]:
    """The sample photos of a split, sorted."""
    return sorted(Path(sample_dir(split)).glob("*.png"))
