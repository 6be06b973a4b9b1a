"""Gather the real photos the model zoo is trained and measured on (offline, from Debian).

    python benchmarks/zoo_photos.py --out ~/m3l-photos [--debs DIR]

Downloads (``apt-get download``, no install, no root needed) and unpacks Debian's wallpaper
and sample-photo packages, keeps the files listed below (photos only: illustrations and
renders are left out), and writes three folders of PNGs:

- ``train/``: photos from the ``lomiri-wallpapers-*`` (Ubuntu) backgrounds, ``mate-backgrounds``,
  ``forensics-samples-files`` (phone photos) and ``opencv-doc``;
- ``val/``: three more ``opencv-doc`` photos (checkpoint selection only);
- ``test/``: the held-out set, photos from another source, ``plasma-workspace-wallpapers``.

Large photos are box-downscaled (``Image.reduce``) so that JPEG artifacts and sensor noise
of the originals fall below the degradations the nets learn to remove: the downscaled photo
is a fair clean target. Test photos are reduced 4x (2560x1600 -> 640x400). A ``SOURCES.tsv``
lists every file with its package, original size and size used.

The photos are GPL-2+ / CC-BY-SA material of their packages: use them for training and
measuring; m3l does not redistribute them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from PIL import Image

Image.MAX_IMAGE_PIXELS = None  # trusted system packages

PACKAGES = (
    "mate-backgrounds",
    "plasma-workspace-wallpapers",
    "lomiri-wallpapers-16.04",
    "lomiri-wallpapers-20.04",
    "forensics-samples-files",
    "opencv-doc",
)

BG = "usr/share/backgrounds"
CV = "usr/share/doc/opencv-doc/examples"
PIC = "usr/share/forensics-samples/original-files"
TRAIN = [
    *(
        f"{BG}/{n}.jpg"
        for n in (
            "Bridge_by_Sander_Klootwijk",
            "Dragonfly_by_Bolly",
            "Kleiber_by_Lukas_Baubkus",
            "Picture_0B_by_freespace",
            "Picture_1A_by_freespace",
            "Wine_by_Jakkub_Mede",
            "aitzgorri_by_Aitzol_Berasategi",
            "friends_by_Aitzol_Berasategi",
            "life_by_Aitzol_Berasategi",
            "picosdeeuropa_by_Aitzol_Berasategi",
            "seeding_by_Clements_Engelhardt",
            "sunset_by_Aitzol_Berasategi",
            "free_by_Peter_Nerlich",
            "greentock_by_Peter_Nerlich",
            "analogpattern_by_Peter_Nerlich",
        )
    ),
    *(
        f"{BG}/mate/nature/{n}.jpg"
        for n in (
            "Aqua",
            "Blinds",
            "Dune",
            "FreshFlower",
            "Garden",
            "GreenMeadow",
            "LadyBird",
            "RainDrops",
            "Storm",
            "TwoWings",
            "Wood",
            "YellowFlower",
        )
    ),
    f"{PIC}/pic1/IMG_20200827_231612.jpg",
    f"{PIC}/pic1/IMG_1054.JPG",
    f"{PIC}/pic1/IMG-20191006-WA0002.jpg",
    f"{PIC}/pic2/IMG_20191224_234846.jpg",
    f"{PIC}/pic2/IMG_20200124_231153.jpg",
    f"{PIC}/pic2/IMG_20200608_111614.jpg",
    *(
        f"{CV}/data/{n}"
        for n in (
            "aero1.jpg",
            "building.jpg",
            "board.jpg",
            "stuff.jpg",
            "leuvenA.jpg",
            "graf1.png",
            "aloeL.jpg",
            "ela_original.jpg",
            "pca_test1.jpg",
        )
    ),
    *(f"{CV}/text/scenetext0{i}.jpg" for i in (1, 4, 5, 6)),
]
VAL = [f"{CV}/data/aero3.jpg", f"{CV}/data/leuvenB.jpg", f"{CV}/text/scenetext02.jpg"]
TEST = [
    f"usr/share/wallpapers/{n}/contents/images/{size}.jpg"
    for n, size in (
        ("BytheWater", "2560x1600"),
        ("ColdRipple", "2560x1600"),
        ("ColorfulCups", "2560x1600"),
        ("DarkestHour", "2560x1600"),
        ("EveningGlow", "2560x1600"),
        ("FallenLeaf", "2560x1600"),
        ("Grey", "2560x1600"),
        ("Kite", "2560x1600"),
        ("OneStandsOut", "2560x1600"),
        ("Path", "2560x1600"),
        ("summer_1am", "2560x1600"),
        ("Volna", "5120x2880"),
    )
]


def fetch(debs: Path, root: Path) -> None:
    debs.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    for pkg in PACKAGES:
        if not list(debs.glob(f"{pkg}_*.deb")):
            subprocess.run(["apt-get", "download", pkg], cwd=debs, check=True)
        for deb in debs.glob(f"{pkg}_*.deb"):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)


def train_factor(pixels: int) -> int:
    """Box-downscale factor: originals above ~6 MP (phone photos, 4K wallpapers) by 2 or 3."""
    return 3 if pixels > 16e6 else 2 if pixels > 5e6 else 1


def prepare(root: Path, out: Path) -> None:
    rows = ["split\tfile\toriginal\tused"]
    for split, files in (("train", TRAIN), ("val", VAL), ("test", TEST)):
        target = out / split
        target.mkdir(parents=True, exist_ok=True)
        total = 0
        for rel in files:
            src = root / rel
            if not src.is_file():
                sys.exit(f"{src} is missing: did the package layout change? (rerun with a fresh --debs)")
            img = Image.open(src).convert("RGB")
            w, h = img.size
            factor = 4 if split == "test" and w <= 2560 else 8 if split == "test" else train_factor(w * h)
            if factor > 1:
                img = img.reduce(factor)
            parts = Path(rel).parts
            name = parts[-4] if split == "test" else Path(rel).stem
            img.save(target / f"{name}.png")
            total += w * h
            rows.append(f"{split}\t{rel}\t{w}x{h}\t{img.size[0]}x{img.size[1]}")
        print(f"{split}: {len(files)} photos, {total / 1e6:.1f} MP before downscaling -> {target}")
    (out / "SOURCES.tsv").write_text("\n".join(rows) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--debs", type=Path, help="folder for the .deb files (default OUT/debs)")
    args = parser.parse_args()
    debs = args.debs or args.out / "debs"
    root = args.out / "extracted"
    fetch(debs, root)
    prepare(root, args.out)


if __name__ == "__main__":
    main()
