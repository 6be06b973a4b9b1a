"""QGAC on held-out real photos saved as real JPEG files, next to the JPEG input and m3l's
pixel-domain JPEG models, all through the real `correct` command with `checkpoint=pretrained`.

    python benchmarks/zoo_photos.py --out ~/m3l-photos           # once: the photos (offline)
    python benchmarks/quality_qgac.py --photos ~/m3l-photos [--crop 384] [--json out.json]

Test photos: ``PHOTOS/test`` (12 photos of ``plasma-workspace-wallpapers``, a source no model
was trained on), centre crops of ``--crop`` pixels (multiples of 8), written by libjpeg
through Pillow at quality 10 / 20 / 30 / 40 (colour 4:2:0, and gray versions).

- ``JPEG input``: the file as libjpeg decodes it (Pillow, fancy upsampling), what a viewer shows;
- ``ffdnet_jpeg_gray`` / ``ffdnet_jpeg_color``: m3l's blind pixel-domain JPEG models;
- ``qgac``: m3l's QGAC from each file's coefficients and tables. Gray files go through the same
  colour weights (neutral chroma; its Y network does the work), measured on the gray output.
  ARCNN and DnCNN-3 have configs but no shipped weights, so they are not in the table.

PSNR and PSNR-B (Yim & Bovik 2011, ``m3l.models.metrics.psnrb``; torchmetrics' ``PeakSignal
NoiseRatioWithBlockedEffect`` is the same measure) on RGB (colour) or gray, 0-255, no border
crop, mean over photos. ``s/MP``: the correction loop's own time per megapixel from the
`correct` log (start-up excluded). The paper's LIVE-1 figures are printed beside the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from machine import cpu_line
from quality_zoo import load
from m3l.models.metrics import psnrb as psnrb_metric

QUALITIES = [10, 20, 30, 40]
MODELS = {1: ["ffdnet_jpeg_gray", "qgac"], 3: ["ffdnet_jpeg_color", "qgac"]}
# QGAC paper (Ehrlich et al., ECCV 2020), colour LIVE-1, PSNR / PSNR-B of JPEG and QGAC, as
# tabulated again by FBCNN (Jiang et al., ICCV 2021, Table 3): the anchor for our numbers.
PAPER_LIVE1_COLOR = {
    10: (25.69, 24.20, 27.62, 27.43),
    20: (28.06, 26.49, 29.88, 29.56),
    30: (29.37, 27.84, 31.17, 30.77),
    40: (30.28, 28.84, 32.05, 31.61),
}


def tensor(image: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(image.astype(np.float64))
    return (x.permute(2, 0, 1) if x.dim() == 3 else x[None])[None]


def measure(out: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    a, b = tensor(out), tensor(clean)
    mse = float(((a - b) ** 2).mean())
    return 10 * np.log10(255.0**2 / mse), float(psnrb_metric(a, b, data_range=255.0))


def write_jpegs(photos: list[Path], folder: Path, channels: int, crop: int, quality: int) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    clean = {}
    for path in photos:
        image = load(path, channels, crop)
        Image.fromarray(image).save(folder / f"{path.stem}.jpg", quality=quality, subsampling=2)
        clean[path.stem] = image
    return clean


def weights_of(model: str) -> str:
    """``pretrained``, or the shipped file of an entry withdrawn from pretrained use (qgac)."""
    from m3l.weights import hub

    entry = hub.entry_of(model)
    return str(hub.WEIGHTS_DIR / str(entry.filename)) if entry.withdrawn else "pretrained"


def correct(model: str, inputs: Path, out: Path, runs: Path) -> float:
    """Run the real command; seconds per megapixel of its correction loop."""
    shutil.rmtree(out, ignore_errors=True)  # this benchmark's own scratch output
    cmd = [
        sys.executable,
        "-m",
        "m3l.run.correct",
        f"model={model}",
        f"checkpoint={weights_of(model)}",
        f"data.correct_dir={inputs}",
        f"serializer.root_dir={out}",
        f"paths.runs_dir={runs}",
        "logger=none",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    rates = re.findall(r"correct done \d+/\S* ([\d.]+) (?:it|file|batch)/s", done.stdout + done.stderr)
    files = list(inputs.glob("*.jpg"))
    pixels = sum(np.prod(Image.open(p).size) for p in files) / len(files)
    return 1 / float(rates[-1]) / (pixels / 1e6) if rates else float("nan")


def seconds_per_mp(photo: Path, crop: int, repeats: int = 3) -> list[tuple[str, float]]:
    """In-process medians of ``restore`` per megapixel on one real JPEG file (colour), model
    loading and file reading excluded, with the ratio to the pixel-domain model."""
    import io
    import statistics

    from m3l.weights import hub
    from m3l.data.dct_domain import jpeg_net_inputs
    from m3l.data.jpeg import read_jpeg_coefficients

    buffer = io.BytesIO()
    Image.fromarray(load(photo, 3, crop)).save(buffer, format="JPEG", quality=20, subsampling=2)
    jpeg = read_jpeg_coefficients(buffer.getvalue())
    pixels, meta = jpeg_net_inputs(jpeg, 3)
    megapixels = jpeg.width * jpeg.height / 1e6
    out = []
    for name in ("ffdnet_jpeg_color", "qgac"):
        weights = weights_of(name)
        module = hub.load(
            name, pretrained=weights == "pretrained", weights=None if weights == "pretrained" else weights
        ).eval()
        conditions = {k: meta[k][None] for k in getattr(module.net, "conditions", ())}
        times = []
        with torch.no_grad():
            for _ in range(repeats):
                start = time.perf_counter()
                module.restore(pixels[None], **conditions)
                times.append(time.perf_counter() - start)
        out.append((name, statistics.median(times) / megapixels))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--crop", type=int, default=384)
    parser.add_argument("--work", type=Path, default=Path("qgac_benchmark"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--channels", type=int, nargs="*", default=[3, 1], choices=[1, 3])
    parser.add_argument("--timing-only", action="store_true", help="only the in-process s/MP table")
    args = parser.parse_args()
    photos = sorted((args.photos / "test").glob("*.png"))
    if not photos:
        sys.exit(f"no photos in {args.photos / 'test'}: run benchmarks/zoo_photos.py --out {args.photos}")
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    if args.timing_only:
        print(
            f"# s/MP in process, {time.strftime('%Y-%m-%d')}, {cpu_line()}, OMP_NUM_THREADS={threads}, torch "
            f"{torch.__version__}, busy shared machine; one {args.crop}x{args.crop} JPEG (quality 20), median of 3"
        )
        timings = seconds_per_mp(photos[0], args.crop)
        print("| model | s/MP | / ffdnet_jpeg_color |\n|---|---:|---:|")
        for name, value in timings:
            print(f"| {name} | {value:.2f} | {value / timings[0][1]:.2f} |")
        return
    print(
        f"# QGAC vs pixel-domain JPEG models, {time.strftime('%Y-%m-%d')}, {platform.machine()}, {cpu_line()}, "
        f"OMP_NUM_THREADS={threads}, torch {torch.__version__} (busy shared machine: s/MP are indicative)"
    )
    print(
        f"# {len(photos)} held-out photos ({args.photos / 'test'}), centre crops {args.crop}x{args.crop}, real JPEG files"
    )
    print(
        "| image | quality | method | PSNR | PSNR-B | PSNR - JPEG | s/MP |\n|---|---:|---|---:|---:|---:|---:|",
        flush=True,
    )
    rows = []
    for channels in args.channels:
        kind = "color" if channels == 3 else "gray"
        for quality in QUALITIES:
            inputs = args.work / kind / str(quality) / "input"
            clean = write_jpegs(photos, inputs, channels, args.crop, quality)
            mode = "RGB" if channels == 3 else "L"
            scores = [measure(np.asarray(Image.open(inputs / f"{n}.jpg").convert(mode)), im) for n, im in clean.items()]
            base = tuple(float(v) for v in np.mean(scores, axis=0))
            results = [("JPEG input", base, float("nan"))]
            for model in MODELS[channels]:
                out = args.work / kind / str(quality) / model
                s_per_mp = correct(model, inputs, out, args.work / "runs")
                scores = [
                    measure(np.asarray(Image.open(out / f"{n}.png").convert(mode)), im) for n, im in clean.items()
                ]
                results.append((model, tuple(float(v) for v in np.mean(scores, axis=0)), s_per_mp))
            for method, (p, pb), s_per_mp in results:
                row = {
                    "image": kind,
                    "quality": quality,
                    "method": method,
                    "psnr": p,
                    "psnrb": pb,
                    "gain": p - base[0],
                    "s_per_mp": s_per_mp,
                }
                rows.append(row)
                rate = "-" if np.isnan(s_per_mp) else f"{s_per_mp:.2f}"  # short runs print no rate
                print(
                    f"| {kind} | {quality} | {method} | {p:.2f} | {pb:.2f} | {p - base[0]:+.2f} | {rate} |", flush=True
                )
    print(
        "\n# the paper, colour LIVE-1 (29 images, not these photos): quality | JPEG PSNR / PSNR-B | QGAC PSNR / PSNR-B | gain"
    )
    for q, (jp, jb, qp, qb) in PAPER_LIVE1_COLOR.items():
        print(f"# {q} | {jp:.2f} / {jb:.2f} | {qp:.2f} / {qb:.2f} | {qp - jp:+.2f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": time.strftime("%Y-%m-%d"),
                    "machine": cpu_line(),
                    "threads": threads,
                    "photos": len(photos),
                    "crop": args.crop,
                    "rows": rows,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
