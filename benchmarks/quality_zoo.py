"""The model zoo on held-out real photos: every model with `checkpoint=pretrained`, through the
real `correct` command, next to the degraded input and a classical baseline.

    python benchmarks/zoo_photos.py --out ~/m3l-photos          # once: the photos (offline)
    python benchmarks/quality_zoo.py --photos ~/m3l-photos [--crop 384] [--json out.json]
    python benchmarks/quality_zoo.py --markdown out.json      # the table of docs/models.md

Test photos: ``PHOTOS/test`` (12 photos of ``plasma-workspace-wallpapers``, a source no model
was trained on), centre crops of ``--crop`` pixels, gray versions for the gray models.
Degradations (seeded per photo, saved as 8-bit PNG files as a camera or codec would leave
them, so noise is clipped and quantized):

- noise: Gaussian, sigma 15 / 25 / 50; baseline BM3D with the true sigma (``bm3d`` package);
  FFDNet (the authors' weights) with the true sigma and with the level m3l estimates per file;
- JPEG: Pillow quality 10 / 20 / 30 / 40 (4:2:0 for color); baseline: the JPEG input;
- blur: Gaussian kernels (sigma 1 and 2, 21x21) and one fixed motion-blur kernel (21 px, saved
  as ``kernel.npy`` beside the input folder), reflected borders, noise sigma 1; baselines: the blurred
  input, and Wiener and Richardson-Lucy deconvolution (scikit-image) with the true kernel;
- super-resolution: Pillow's bicubic downscaling by 2 / 3 / 4; baseline (and "degraded input"):
  Pillow's bicubic upscaling back to the size;
- JPEG files for ``pnp_jpeg`` (which reads each file's coefficients and tables): the same Pillow
  JPEG saved as ``.jpg``, qualities 10-90.

Plug-and-play rows (``pnp_deblur``, ``pnp_sr``, ``pnp_jpeg``) run with their default settings
and the known degradation (``pnp.kernel``, ``pnp.scale``); the noise level is estimated per file.

PSNR: RGB (or gray), 0-255, no border crop, mean over photos. ``s/MP``: the correction loop's
own rate from the `correct` log (start-up excluded), 2 CPU threads. Machine, CPU flags and date
are printed with the table.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from m3l.data import degradations as D
from machine import cpu_line

TASKS = {
    # task -> (channels, levels, degradation(level) -> Degradation, baseline name)
    "noise": (None, [15, 25, 50], lambda s: D.GaussianNoise(sigma=s, scale=255), "BM3D (true sigma)"),
    "jpeg": (None, [10, 20, 30, 40, 50, 70, 90], None, "JPEG input"),
    "blur": (3, ["gaussian1", "gaussian2", "motion21"], None, "blurred input"),
    "sr": (3, [2, 3, 4], None, "bicubic (Pillow)"),
}
# task, channels -> models with `checkpoint=pretrained`: (model, variant, levels or None for all)
MODELS = {
    ("noise", 3): [
        ("ffdnet_color", "true sigma", None),
        ("ffdnet_color", "estimated sigma", None),
        ("ffdnet_color_blind", "blind", None),
    ],
    ("noise", 1): [("ffdnet_gray", "true sigma", None), ("ffdnet_gray", "estimated sigma", None)],
    ("jpeg", 1): [("ffdnet_jpeg_gray", "blind", [10, 20, 30, 40]), ("pnp_jpeg", "file tables", None)],
    ("jpeg", 3): [("ffdnet_jpeg_color", "blind", [10, 20, 30, 40]), ("pnp_jpeg", "file tables", None)],
    ("blur", 3): [("nafnet_small_deblur", "blind", None), ("pnp_deblur", "known kernel", None)],
    ("sr", 3): [("pnp_sr", "known scale", None)],
}
#: classical baselines run in-process on every level of a task: name -> function(task, level, degraded, kernel)
CLASSICAL = {("blur", 3): ["Wiener (skimage, true kernel)", "Richardson-Lucy (skimage, true kernel, 30 it.)"]}
MOTION_SEED = 21


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def load(path: Path, channels: int, crop: int) -> np.ndarray:
    image = Image.open(path).convert("RGB" if channels == 3 else "L")
    w, h = image.size
    size = min(crop, w, h) // 8 * 8
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)))


def to_tensor(image: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(image.astype(np.float32) / 255)
    return x.permute(2, 0, 1) if x.dim() == 3 else x[None]


def to_uint8(x: torch.Tensor) -> np.ndarray:
    array = (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return array.transpose(1, 2, 0) if array.shape[0] == 3 else array[0]


def blur_kernel(name: str) -> torch.Tensor:
    if name.startswith("gaussian"):
        return D.gaussian_kernel(21, float(name[len("gaussian") :]))
    return D.motion_kernel(21, torch.Generator().manual_seed(MOTION_SEED))


def degrade(task: str, level, image: np.ndarray, generator: torch.Generator, folder: Path, stem: str) -> None:
    """Write the degraded ``image`` as ``folder/stem.png`` (and ``.jpg`` for JPEG)."""
    if task == "jpeg":  # a real JPEG file, and its Pillow decoding as the PNG input of pixel models
        (folder / "jpg").mkdir(exist_ok=True)
        Image.fromarray(image).save(folder / "jpg" / f"{stem}.jpg", quality=int(level), subsampling=2)
        Image.open(folder / "jpg" / f"{stem}.jpg").save(folder / f"{stem}.png")
        return
    if task == "sr":
        h, w = image.shape[:2]
        Image.fromarray(image).resize((w // level, h // level), Image.BICUBIC).save(folder / f"{stem}.png")
        return
    if task == "blur":
        x = D.apply_blur(to_tensor(image), blur_kernel(level))
        degraded, _ = D.GaussianNoise(sigma=1, scale=255)(x, generator)
    else:
        degraded, _ = TASKS[task][2](level)(to_tensor(image), generator)
    Image.fromarray(to_uint8(degraded)).save(folder / f"{stem}.png")


def degrade_folder(
    photos: list[Path], folder: Path, channels: int, crop: int, task: str, level
) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    if task == "blur":
        np.save(folder.parent / "kernel.npy", blur_kernel(level).double().numpy())
    clean = {}
    for i, path in enumerate(photos):
        image = load(path, channels, crop // 24 * 24 if task == "sr" else crop)
        generator = torch.Generator().manual_seed(1000 * i + zlib.crc32(str(level).encode()) % 997)
        degrade(task, level, image, generator, folder, path.stem)
        clean[f"{path.stem}.png"] = image
    return clean


def upscaled(task: str, level, degraded: np.ndarray, like: np.ndarray) -> np.ndarray:
    """What the "degraded input" PSNR compares: the input itself, or for super-resolution its
    Pillow bicubic upscaling to the clean size."""
    if task != "sr":
        return degraded
    return np.asarray(Image.fromarray(degraded).resize(like.shape[:2][::-1], Image.BICUBIC))


def overrides(model: str, variant: str, task: str, level, inputs: Path) -> tuple[list[str], Path]:
    """The extra command-line overrides of a row, and the folder it corrects."""
    if variant == "true sigma":
        return [f"net.predict_conditions.sigma={level / 255}"], inputs
    if model == "pnp_deblur":
        kernel = (
            f"gaussian:{level[len('gaussian') :]}:21"
            if level.startswith("gaussian")
            else str(inputs.parent / "kernel.npy")
        )
        return [f"pnp.kernel={kernel}"], inputs
    if model == "pnp_sr":
        return [f"pnp.scale={level}"], inputs
    if model in ("pnp_jpeg", "qgac"):
        return [], inputs / "jpg"
    return [], inputs


def classical(name: str, degraded: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    from skimage import restoration

    image = degraded.astype(np.float64) / 255
    # both assume what lies beyond the borders (Wiener: periodic, Richardson-Lucy: zeros): give
    # them the photo reflected, as it was blurred, and crop back
    pad = 2 * kernel.shape[0]
    planes = [
        np.pad(image[..., c] if image.ndim == 3 else image, pad, mode="reflect")
        for c in range(image.shape[-1] if image.ndim == 3 else 1)
    ]
    if name.startswith("Wiener"):
        # balance 0.005: about the noise-to-signal power ratio of noise 1/255 on photos (not tuned)
        out = [restoration.wiener(p, kernel, balance=0.005) for p in planes]
    else:
        out = [restoration.richardson_lucy(p, kernel, num_iter=30, clip=True) for p in planes]
    out = [o[pad:-pad, pad:-pad] for o in out]
    result = np.stack(out, axis=-1) if image.ndim == 3 else out[0]
    return (np.clip(result, 0, 1) * 255).round().astype(np.uint8)


def correct(model: str, inputs: Path, out: Path, runs: Path, extra: list[str]) -> float:
    """Run the real command; return seconds per megapixel (of the output) of its correction loop."""
    shutil.rmtree(out, ignore_errors=True)  # the benchmark's own scratch output of an earlier run
    cmd = [
        sys.executable,
        "-m",
        "m3l.run.correct",
        f"model={model}",
        "checkpoint=pretrained",
        f"data.correct_dir={inputs}",
        f"serializer.root_dir={out}",
        f"paths.runs_dir={runs}",
        "logger=none",
        *extra,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    rates = re.findall(r"correct done (\d+)/\S* \S+ ([\d.]+) \S+/s", done.stdout + done.stderr)
    pixels = sum(np.prod(Image.open(p).size) for p in out.glob("*.png"))
    if not rates or not pixels:
        return float("nan")
    count, rate = rates[-1]
    return int(count) / float(rate) / (pixels / 1e6)  # the loop's seconds over all output pixels


def baseline(task: str, level, clean: dict[str, np.ndarray], inputs: Path) -> float:
    values = []
    for name, image in clean.items():
        degraded = np.asarray(Image.open(inputs / name))
        if task != "noise":
            values.append(psnr(degraded, image))
            continue
        import bm3d

        noisy = degraded.astype(np.float64) / 255
        sigma = level / 255
        den = bm3d.bm3d_rgb(noisy, sigma) if noisy.ndim == 3 else bm3d.bm3d(noisy, sigma)
        values.append(psnr(np.clip(den * 255, 0, 255).round(), image))
    return float(np.mean(values))


def markdown(results: dict) -> str:
    """The zoo table of a ``--json`` file, as docs/models.md shows it."""
    lines = [
        f"{results['date']}, {results['machine']}, torch {torch.__version__}: {results['photos']} held-out photos "
        f"(`plasma-workspace-wallpapers`), centre crops {results['crop']}x{results['crop']}, degraded and saved as "
        "8-bit PNG, corrected by the real `correct` command with `checkpoint=pretrained`; PSNR in dB (0-255, no "
        "border crop), mean over photos; s/MP: the correction loop's own time per megapixel (start-up excluded).",
        "",
        "| task | level | model | variant | degraded input | model | baseline | baseline | model - baseline | s/MP |",
        "|---|---|---|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['task']} | {r['level']} | `{r['model']}` | {r['variant']} | {r['input']:.2f} | "
            f"**{r['output']:.2f}** | {r['baseline']} | {r['baseline_psnr']:.2f} | "
            f"{r['output'] - r['baseline_psnr']:+.2f} | {r['s_per_mp']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    if len(sys.argv) == 3 and sys.argv[1] == "--markdown":
        print(markdown(json.loads(Path(sys.argv[2]).read_text())))
        return
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--crop", type=int, default=384)
    parser.add_argument("--work", type=Path, default=Path("zoo_benchmark"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--only", nargs="*", help="model configs to run (default: all)")
    parser.add_argument("--tasks", nargs="*", choices=sorted(TASKS), help="tasks to run (default: all)")
    args = parser.parse_args()
    photos = sorted((args.photos / "test").glob("*.png"))
    if not photos:
        sys.exit(f"no photos in {args.photos / 'test'}: run benchmarks/zoo_photos.py --out {args.photos}")
    print(
        f"# m3l model zoo, {time.strftime('%Y-%m-%d')}, {platform.machine()}, {cpu_line()}, torch {torch.__version__}"
    )
    print(f"# {len(photos)} held-out photos ({args.photos / 'test'}), centre crops {args.crop}x{args.crop}")
    rows = []
    cache_file = args.work / "baselines.json"
    args.work.mkdir(parents=True, exist_ok=True)
    cached = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    header = "| task | level | model | variant | degraded input | model | baseline | baseline PSNR | model - baseline | s/MP |"
    print(header + "\n|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for (task, channels), models in MODELS.items():
        models = [m for m in models if not args.only or m[0] in args.only]
        if args.tasks:
            models = [m for m in models if task in args.tasks]
        if not models:
            continue
        for level in TASKS[task][1]:
            level_models = [(m, v) for m, v, levels in models if levels is None or level in levels]
            if not level_models:
                continue
            inputs = args.work / f"{task}{channels}" / str(level) / "input"
            clean = degrade_folder(photos, inputs, channels, args.crop, task, level)
            degraded = {n: upscaled(task, level, np.asarray(Image.open(inputs / n)), im) for n, im in clean.items()}
            degraded_psnr = float(np.mean([psnr(degraded[n], im) for n, im in clean.items()]))
            key = f"{task}{channels}/{level}/{args.crop}/v2"
            if key not in cached:  # BM3D is slow: reuse a baseline measured on identical inputs
                cached[key] = degraded_psnr if task != "noise" else baseline(task, level, clean, inputs)
                cache_file.write_text(json.dumps(cached, indent=1))
            base = cached[key]

            def emit(model: str, variant: str, got: float, s_per_mp: float) -> None:
                row = {
                    "task": f"{task} ({'color' if channels == 3 else 'gray'})",
                    "level": level,
                    "model": model,
                    "variant": variant,
                    "input": degraded_psnr,
                    "output": got,
                    "baseline": TASKS[task][3],
                    "baseline_psnr": base,
                    "s_per_mp": s_per_mp,
                }
                rows.append(row)
                print(
                    f"| {row['task']} | {level} | {model} | {variant} | {degraded_psnr:.2f} | {got:.2f} | {row['baseline']} "
                    f"| {base:.2f} | {got - base:+.2f} | {s_per_mp:.2f} |",
                    flush=True,
                )

            for name in CLASSICAL.get((task, channels), []) if not args.only else []:
                kernel = np.load(inputs.parent / "kernel.npy")
                start = time.perf_counter()
                outs = {n: classical(name, np.asarray(Image.open(inputs / n)), kernel) for n in clean}
                seconds = time.perf_counter() - start
                pixels = sum(im.shape[0] * im.shape[1] for im in clean.values()) / 1e6
                emit(
                    "classical", name, float(np.mean([psnr(outs[n], im) for n, im in clean.items()])), seconds / pixels
                )
            for model, variant in level_models:
                out = args.work / f"{task}{channels}" / str(level) / f"{model}-{variant.replace(' ', '_')}"
                extra, folder = overrides(model, variant, task, level, inputs)
                s_per_mp = correct(model, folder, out, args.work / "runs", extra)
                got = float(np.mean([psnr(np.asarray(Image.open(out / n)), im) for n, im in clean.items()]))
                emit(model, variant, got, s_per_mp)
    if args.json:  # merged with an earlier run's rows (e.g. with --only), newest wins
        old = json.loads(args.json.read_text())["rows"] if args.json.is_file() else []
        ident = lambda r: (r["task"], str(r["level"]), r["model"], r["variant"])  # noqa: E731
        mine = {ident(r) for r in rows}
        rows = [r for r in old if ident(r) not in mine] + rows
        args.json.write_text(
            json.dumps(
                {
                    "date": time.strftime("%Y-%m-%d"),
                    "machine": cpu_line(),
                    "photos": len(photos),
                    "crop": args.crop,
                    "rows": rows,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
