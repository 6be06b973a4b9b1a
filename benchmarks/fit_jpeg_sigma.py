"""Fit the quantization-table-to-level curve of plug-and-play JPEG correction on TRAINING photos.

    python benchmarks/zoo_photos.py --out ~/m3l-photos      # once: the photos (offline)
    python benchmarks/fit_jpeg_sigma.py --photos ~/m3l-photos [--count 8] [--crop 256]

For each libjpeg quality (color 4:2:0 and gray), ``pnp_jpeg``'s solver with its default
settings (one pass of the FFDNet prior, the authors' weights, then the projection onto the
file's quantization constraint set) runs at a grid of prior levels; the best level per quality
(mean PSNR over the photos, refined by a parabola) is printed against ``rms(q) / sqrt(12)``
(``q``: the luma table, 0-255): those points are :data:`m3l.models.pnp.jpeg.SIGMA_TABLES`.
A power fit ``sigma = a * (rms(q) / sqrt(12)) ** b`` is printed too (``pnp.curve=[a,b]``).
Photos: ``PHOTOS/train`` only (the
held-out ``test`` photos measure the result in ``quality_zoo.py``).
"""

from __future__ import annotations

import argparse
import io
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from m3l.data.dct_domain import jpeg_net_inputs
from m3l.data.jpeg import read_jpeg_coefficients
from m3l.models.pnp import PlugAndPlay
from m3l.models.pnp.jpeg import JPEGConstraint
from machine import cpu_line

QUALITIES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
LEVELS = tuple(float(v) for v in np.geomspace(0.25, 48.0, 20))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a - b).square().mean()))


def photos(root: Path, count: int, crop: int, gray: bool) -> list[np.ndarray]:
    out = []
    for path in sorted((root / "train").glob("*.png"))[:count]:
        image = Image.open(path).convert("L" if gray else "RGB")
        w, h = image.size
        s = min(crop, w, h) // 16 * 16
        out.append(np.asarray(image.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = PlugAndPlay(JPEGConstraint(project=True), iterations=1)
    model.load_pretrained()
    print(f"# fit_jpeg_sigma, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu_line()}")
    print(f"# {args.count} training photos, centre crops {args.crop}px; levels on the 0-255 scale\n")
    points: dict[str, list[tuple[float, float]]] = {"color": [], "gray": []}
    print("| kind | quality | rms(q)/sqrt(12) | best level | PSNR input (Pillow) | PSNR at best | gain |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for gray in (False, True):
        kind = "gray" if gray else "color"
        images = photos(args.photos, args.count, args.crop, gray)
        for quality in QUALITIES:
            scores = np.zeros(len(LEVELS))
            base = 0.0
            for image in images:
                buffer = io.BytesIO()
                Image.fromarray(image).save(buffer, "JPEG", quality=quality, subsampling=2)
                jpeg = read_jpeg_coefficients(buffer.getvalue())
                pixels, meta = jpeg_net_inputs(jpeg, 1 if gray else 3)
                clean = torch.from_numpy(image.astype(np.float32) / 255)
                clean = clean[None] if gray else clean.permute(2, 0, 1)
                decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L" if gray else "RGB"))
                decoded = torch.from_numpy(decoded.astype(np.float32) / 255)
                base += psnr(decoded[None] if gray else decoded.permute(2, 0, 1), clean) / len(images)
                for k, level in enumerate(LEVELS):
                    out = model.solve(pixels[None], meta, noise=level / 255)[0]
                    scores[k] += psnr(out, clean) / len(images)
            best = int(np.argmax(scores))
            # refine: a parabola through the best grid point and its neighbours (in log level)
            level = LEVELS[best]
            if 0 < best < len(LEVELS) - 1:
                x = np.log(LEVELS[best - 1 : best + 2])
                c = np.polyfit(x, scores[best - 1 : best + 2], 2)
                if c[0] < 0:
                    level = float(np.exp(-c[1] / (2 * c[0])))
            q = float(read_jpeg_coefficients(buffer.getvalue()).tables[0].double().square().mean().sqrt()) / math.sqrt(
                12
            )
            points[kind].append((q, level))
            print(
                f"| {kind} | {quality} | {q:.2f} | {level:.2f} | {base:.2f} | {scores[best]:.2f} | {scores[best] - base:+.2f} |",
                flush=True,
            )
    print()
    for kind, values in points.items():
        q, level = np.log([p[0] for p in values]), np.log([p[1] for p in values])
        b, log_a = np.polyfit(q, level, 1)
        print(f"fit {kind}: sigma = {math.exp(log_a):.4f} * (rms(q)/sqrt(12)) ** {b:.4f}")


if __name__ == "__main__":
    main()
