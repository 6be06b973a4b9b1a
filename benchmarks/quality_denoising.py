"""Quality of a short CPU training: color blind denoising next to the noisy input and BM3D.

Trains the packaged ``dncnn_color_blind`` model (CDnCNN-B: 20 layers, sigma drawn from
[0, 55] per patch) with the real CLI for a fixed wall-clock budget on folders of real photos,
then reports PSNR (RGB, 0-255 data range, no border crop) at sigma 15/25/50 on held-out
photos for the noisy input, the trained net and BM3D (``bm3d.bm3d_rgb`` with the true sigma),
all on the same noisy images (noise seeded per image and sigma).

    python benchmarks/quality_denoising.py --train-dir DIR --test-dir DIR [--minutes 20]

Photos are not shipped (they are GPL-2+ Debian wallpapers); fetch them offline-installable:

    apt-get download mate-backgrounds plasma-workspace-wallpapers
    for d in *.deb; do dpkg-deb -x $d x; done
    # train: the 12 nature photos; test: plasma's 2560x1600 photos (one per wallpaper)
    python benchmarks/quality_denoising.py --train-dir x/usr/share/backgrounds/mate/nature \\
        --test-dir x/usr/share/wallpapers --test-glob '*/contents/images/2560x1600.jpg'

Every photo is downscaled (``--downscale``, default 2 for training, 4 for test) with a box
filter first: that removes most JPEG artifacts and sensor noise, so the downscaled photo is a
fair "clean" target. Test images are centre crops of ``--crop`` pixels (BM3D is slow on
CPU). The first ``--val`` test photos are used for validation (checkpoint selection) and are
left out of the test table. Needs ``pip install bm3d``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
MODEL = "dncnn_color_blind"


def _photos(root: Path, pattern: str) -> list[Path]:
    found = sorted(p for p in root.glob(pattern) if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    # one image per wallpaper folder: plasma ships the same photo at several names
    rgb = [p for p in found if Image.open(p).mode in ("RGB", "RGBA")]
    if not rgb:
        sys.exit(f"no RGB photos matching {pattern!r} under {root}")
    return rgb


def _prepare(src: Path, dst: Path, factor: int, crop: int | None) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    img = Image.open(src).convert("RGB")
    img = img.reduce(factor)
    if crop:
        w, h = img.size
        left, top = (w - crop) // 2, (h - crop) // 2
        img = img.crop((left, top, left + crop, top + crop))
    img.save(dst)
    return dst


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(1.0 / mse)


def train(out: Path, train_dir: Path, val_dir: Path, minutes: float, extra: list[str]) -> Path:
    runs = out / "runs"
    cmd = [
        sys.executable,
        "-m",
        "m3l.run.train",
        f"model={MODEL}",
        f"data.train_dir={train_dir}",
        f"data.val_dir={val_dir}",
        f"data.test_dir={val_dir}",
        "data.patches_per_image=128",
        "data.num_workers=1",
        "trainer.max_epochs=100000",
        f"+trainer.max_time={{minutes: {minutes}}}",
        f"paths.runs_dir={runs}",
        *extra,
    ]
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=out)
    print(f"training wall time: {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    best = sorted((runs / MODEL / "train").glob("*/checkpoints/best*.ckpt"), key=os.path.getmtime)
    if not best:
        sys.exit(f"no best checkpoint under {runs}")
    return best[-1]


def load_net(checkpoint: Path, runs: Path, overrides: list[str]):
    import torch

    from m3l import Experiment, compose
    from m3l.weights.checkpoints import load_weights_into

    cfg = compose(MODEL, [*overrides, f"paths.runs_dir={runs}", "logger=none"], verb="test")
    module = Experiment(cfg).net
    load_weights_into(module, checkpoint)
    module.eval()
    torch.set_grad_enabled(False)
    return module


def evaluate(module, tests: list[Path], sigmas: list[int], bm3d_too: bool) -> list[tuple]:
    import torch

    rows = []
    for sigma in sigmas:
        noisy_p, net_p, bm3d_p, bm3d_s = [], [], [], []
        for idx, path in enumerate(tests):
            clean = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
            rng = np.random.default_rng(1000 * sigma + idx)
            noisy = (clean + rng.normal(0, sigma / 255.0, clean.shape)).astype(np.float32)
            noisy_p.append(psnr(np.clip(noisy, 0, 1), clean))
            x = torch.from_numpy(noisy).permute(2, 0, 1)[None]
            out = module.restore(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()
            net_p.append(psnr(out, clean))
            if bm3d_too:
                import bm3d

                start = time.perf_counter()
                den = np.clip(bm3d.bm3d_rgb(noisy, sigma / 255.0), 0, 1)
                bm3d_s.append(time.perf_counter() - start)
                bm3d_p.append(psnr(den, clean))
        rows.append(
            (
                sigma,
                np.mean(noisy_p),
                np.mean(net_p),
                np.mean(bm3d_p) if bm3d_p else None,
                statistics.median(bm3d_s) if bm3d_s else None,
            )
        )
        print(f"sigma {sigma}: done", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-dir", type=Path, required=True)
    ap.add_argument("--train-glob", default="**/*")
    ap.add_argument("--test-dir", type=Path, required=True)
    ap.add_argument("--test-glob", default="**/*")
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--downscale", type=int, default=2, help="training photos")
    ap.add_argument("--test-downscale", type=int, default=4)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--val", type=int, default=2)
    ap.add_argument("--sigmas", type=int, nargs="+", default=[15, 25, 50])
    ap.add_argument("--out", type=Path, default=Path("quality-run"))
    ap.add_argument("--checkpoint", type=Path, help="skip training, evaluate this checkpoint")
    ap.add_argument("--no-bm3d", action="store_true")
    ap.add_argument("overrides", nargs="*", help="extra overrides for the training command")
    args = ap.parse_args()

    out = args.out.resolve()
    train_src = _photos(args.train_dir, args.train_glob)
    test_src = _photos(args.test_dir, args.test_glob)
    if len(test_src) <= args.val:
        sys.exit(f"need more than --val={args.val} test photos, found {len(test_src)}")
    overlap = {p.resolve() for p in train_src} & {p.resolve() for p in test_src}
    if overlap:
        sys.exit(f"train and test photos overlap: {sorted(overlap)[:3]}")
    train_dir, val_dir, test_dir = out / "data/train", out / "data/val", out / "data/test"
    for i, p in enumerate(train_src):
        _prepare(p, train_dir / f"{i:03d}.png", args.downscale, None)
    for i, p in enumerate(test_src[: args.val]):
        _prepare(p, val_dir / f"{i:03d}.png", args.test_downscale, None)
    tests = [
        _prepare(p, test_dir / f"{i:03d}.png", args.test_downscale, args.crop)
        for i, p in enumerate(test_src[args.val :])
    ]

    checkpoint = args.checkpoint or train(out, train_dir, val_dir, args.minutes, args.overrides)
    module = load_net(checkpoint, out / "runs", args.overrides)
    rows = evaluate(module, tests, args.sigmas, not args.no_bm3d)

    print()
    print(
        f"# {MODEL}: {args.minutes:g} min of CPU training ({os.cpu_count()} cores),"
        f" {len(train_src)} training photos (1/{args.downscale} size), "
        f"{len(tests)} test crops {args.crop}x{args.crop} (1/{args.test_downscale} size)"
    )
    print(f"# overrides: {' '.join(args.overrides) or '-'}; checkpoint: {checkpoint}")
    print("| sigma | noisy PSNR | m3l PSNR | BM3D PSNR | m3l - noisy | m3l - BM3D | BM3D s/img |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for sigma, noisy, net, bm, sec in rows:
        bm_txt = f"{bm:.2f}" if bm is not None else "-"
        diff = f"{net - bm:+.2f}" if bm is not None else "-"
        sec_txt = f"{sec:.1f}" if sec is not None else "-"
        print(f"| {sigma} | {noisy:.2f} | {net:.2f} | {bm_txt} | {net - noisy:+.2f} | {diff} | {sec_txt} |")


if __name__ == "__main__":
    main()
