"""Benchmark-layout configs on small fixtures laid out like the real data sets."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf.errors import MissingMandatoryValue
from PIL import Image

from m3l.data.samples import sample_paths

from .test_configs import compose_group

PHOTO = sample_paths("train")[0]  # astronaut


def _save(path: Path, box: tuple[int, int, int, int], mode: str = "RGB", shift: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.open(PHOTO).convert(mode).crop(box)
    (im.point(lambda v: min(v + shift, 255)) if shift else im).save(path)


def flat_set(names: list[str], mode: str):
    def build(root: Path) -> None:
        for i, name in enumerate(names):
            _save(root / name, (10 * i, 0, 10 * i + 60 + i, 50), mode)

    return build


def div2k(root: Path) -> None:
    for i, split in enumerate(("DIV2K_train_HR/0001.png", "DIV2K_train_HR/0002.png", "DIV2K_valid_HR/0801.png")):
        _save(root / split, (20 * i, 0, 20 * i + 150, 140))


def gopro(root: Path) -> None:
    for split in ("train", "test"):
        for frame in range(2):
            box = (30 * frame, 0, 30 * frame + 80, 72)
            _save(root / split / "GOPR0372_07_00" / "sharp" / f"{frame:06d}.png", box)
            _save(root / split / "GOPR0372_07_00" / "blur" / f"{frame:06d}.png", box, shift=5)


def sidd(root: Path) -> None:
    for i, scene in enumerate(("0001_001_S6_00100_00060_3200_L", "0002_001_S6_00100_00020_3200_N")):
        _save(root / "Data" / scene / "GT_SRGB_010.PNG", (40 * i, 0, 40 * i + 70, 70))
        _save(root / "Data" / scene / "NOISY_SRGB_010.PNG", (40 * i, 0, 40 * i + 70, 70), shift=3)


LAYOUTS = {
    "bsd68": (flat_set(["test001.png", "test002.png"], "L"), 1),
    "cbsd68": (flat_set(["0000.png", "0001.png"], "RGB"), 3),
    "set12": (flat_set(["01.png", "02.png", "12.png"], "L"), 1),
    "kodak24": (flat_set(["kodim01.png", "kodim24.png"], "RGB"), 3),
    "mcmaster": (flat_set(["1.tif", "18.tif"], "RGB"), 3),
    "live1": (flat_set(["bikes.bmp", "womanhat.bmp"], "RGB"), 3),
    "classic5": (flat_set(["baboon.bmp", "boats.bmp"], "L"), 1),
    "bsd400": (flat_set(["test_001.png", "test_400.png"], "L"), 1),
    "div2k": (div2k, 3),
    "gopro": (gopro, 3),
    "sidd": (sidd, 3),
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_layout_reads_a_local_copy(name: str, tmp_path: Path) -> None:
    build, channels = LAYOUTS[name]
    build(tmp_path)
    cfg = compose_group(
        "data", name, f"data.root_dir={tmp_path}", "data.batch_size=2", "data.patch_size=32", "data.patches_per_image=2"
    )
    assert cfg.data.correct_dir is None
    dm = instantiate(cfg.data)
    assert dm.channels == channels
    dm.setup("fit")
    if cfg.data.get("train_dir") is not None and str(tmp_path) in str(cfg.data.train_dir):
        assert next(iter(dm.train_dataloader()))["input"].shape == (2, channels, 32, 32)
    if cfg.data.get("test_dir") is not None:
        dm.setup("test")
        batch = next(iter(dm.test_dataloader()))
        assert batch["input"].shape[1] == channels and batch["input"].shape == batch["target"].shape
        assert dm.failures == []


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_root_dir_is_required(name: str) -> None:
    cfg = compose_group("data", name)
    with pytest.raises((MissingMandatoryValue, InstantiationException), match="Missing mandatory value: data"):
        instantiate(cfg.data)
