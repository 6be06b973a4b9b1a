"""The zoo does no harm: every shipped `checkpoint=pretrained` entry (read from
``weights/shipped/manifest.json``, so a new entry is covered or fails here) corrects two small real
crops, degraded at a level its card claims, through the real `correct` command, and each output
beats its degraded input. A regression guard for every weight file and recipe, not a benchmark:
the cards' numbers come from held-out photos (``benchmarks/quality_zoo.py``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from m3l.data import degradations as D
from m3l.weights.hub import WEIGHTS_DIR
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

CROP = 128
# (photo of skimage.data, top, left): textured 128x128 crops, bundled with scikit-image (offline)
COLOR_CROPS = (("astronaut", 64, 64), ("coffee", 136, 232))
GRAY_CROPS = (("camera", 64, 64), ("camera", 192, 192))


def _noise(sigma: float) -> D.Degradation:
    return D.GaussianNoise(sigma=sigma, scale=255)


def _gaussian_blur(sigma: float) -> D.Degradation:
    return D.Chain([D.GaussianBlur(kernel_size=21, sigma=sigma), D.GaussianNoise(sigma=1, scale=255)])


@dataclass(frozen=True)
class Recipe:
    """How the guard degrades its crops for one zoo entry, at a level the entry's card claims."""

    level: str
    channels: int
    degradation: Callable[[], D.Degradation]  # pixels -> PNG input
    # the output must beat the input by this much on each crop; measured on these crops
    # (2026-12-07): the smallest gain of any entry is +0.61 dB (ffdnet_jpeg_color)
    min_gain_db: float = 0.1


RECIPES = {
    # measured gains on the two crops: +8.7 / +6.7 dB
    "ffdnet_color_blind": Recipe("Gaussian noise, sigma 25", 3, lambda: _noise(25)),
    # +0.82 / +0.61 dB
    "ffdnet_jpeg_color": Recipe("JPEG quality 10, 4:2:0", 3, lambda: D.JPEG(quality=10)),
    # +1.19 / +0.92 dB
    "ffdnet_jpeg_gray": Recipe("JPEG quality 10", 1, lambda: D.JPEG(quality=10)),
    # +2.14 / +2.45 dB
    "nafnet_small_deblur": Recipe("Gaussian blur sigma 2, noise sigma 1", 3, lambda: _gaussian_blur(2.0)),
}

# the entries offered as checkpoint=pretrained (a withdrawn one is refused: tests/weights/test_hub.py)
SHIPPED = sorted(
    name for name, item in json.loads((WEIGHTS_DIR / "manifest.json").read_text()).items() if not item.get("withdrawn")
)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def _crops(channels: int) -> dict[str, np.ndarray]:
    out = {}
    for photo, top, left in COLOR_CROPS if channels == 3 else GRAY_CROPS:
        image = Image.fromarray(getattr(skimage.data, photo)()).convert("RGB" if channels == 3 else "L")
        out[f"{photo}_{top}_{left}"] = np.asarray(image)[top : top + CROP, left : left + CROP]
    return out


def _degrade(recipe: Recipe, crops: dict[str, np.ndarray], folder: Path) -> dict[str, Path]:
    """Write each crop degraded into ``folder``; the file of each crop."""
    folder.mkdir()
    files = {}
    for i, (name, image) in enumerate(crops.items()):
        x = torch.from_numpy(image.astype(np.float32) / 255)
        x = x.permute(2, 0, 1) if x.dim() == 3 else x[None]
        degraded, _ = recipe.degradation()(x, torch.Generator().manual_seed(i))
        array = (degraded.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        files[name] = folder / f"{name}.png"
        Image.fromarray(array.transpose(1, 2, 0) if recipe.channels == 3 else array[0]).save(files[name])
    return files


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_beat_their_degraded_input(
    name: str, workdir: Path, env: dict[str, str], tmp_path: Path
) -> None:
    if name not in RECIPES:
        pytest.fail(
            f"weights/shipped/manifest.json ships {name!r}, but tests/e2e/test_zoo_guard.py has no degradation "
            f"recipe for it: add one to RECIPES, at a level its card (weights/shipped/{name}.md) claims"
        )
    recipe = RECIPES[name]
    crops = _crops(recipe.channels)
    inputs = tmp_path / "degraded"
    files = _degrade(recipe, crops, inputs)
    out = workdir / "corrected"
    done = run_cli(
        "correct",
        f"model={name}",
        "checkpoint=pretrained",
        f"data.correct_dir={inputs}",
        f"serializer.root_dir={out}",
        "logger=none",
        cwd=workdir,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    mode = "RGB" if recipe.channels == 3 else "L"
    for crop, clean in crops.items():
        before = _psnr(np.asarray(Image.open(files[crop]).convert(mode)), clean)
        after = _psnr(np.asarray(Image.open(out / f"{crop}.png").convert(mode)), clean)
        assert after > before + recipe.min_gain_db, (
            f"{name} ({recipe.level}) on {crop}: {after:.2f} dB after correction, {before:.2f} dB before "
            f"(required gain {recipe.min_gain_db:+.2f} dB): the shipped weights or their recipe regressed"
        )
