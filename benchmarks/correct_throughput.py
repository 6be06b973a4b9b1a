"""Megapixels/s of `correct` end to end (read + predict + write) on a folder of real photos,
per model and backend, next to a KAIR-style eager loop and against this machine's measured
GEMM/convolution limit; plus what bf16 does to PSNR on real photos.

    python benchmarks/correct_throughput.py [--count 50] [--max-side 384] [--threads 2]
        [--models DnCNN-17,FFDNet,NAFNet-small,demo] [--photos DIR]

- Photos: ``--photos`` (default: the zoo photos under /work/photos/zoo made by
  ``benchmarks/zoo_photos.py``, else m3l's packaged samples), the first ``--count`` of them,
  box-downscaled to at most ``--max-side`` pixels, with Gaussian noise (sigma 25), as PNG.
- Baseline: a KAIR-style loop written here (PIL read, ``module.restore`` in eager fp32 on the
  whole image, PNG write: what KAIR's ``main_test_*.py`` scripts do), on the same folder.
- Rows: ``python -m m3l.run.correct``'s path (``Experiment.correct``: the datamodule, Lightning's
  predict loop, the serializer) with ``backend=eager|compile|onnx|auto`` and ``precision=``.
  Each row runs in its own process, after a warm-up correction of one other photo in that
  process (which also fills the ONNX export cache, as a previous run would); its peak RSS is
  the process's.
- Limit: a 2048^3 matmul and a 64->64 3x3 convolution (batch 4, 128x128, best of NCHW and
  channels_last) in fp32 and bf16, measured in the same run; each net's FLOPs per pixel come
  from ``torch.utils.flop_counter``; "of limit" = achieved GFLOP/s / the convolution limit of
  the row's precision (int8 rows: of the fp32 limit, since torch has no int8 convolution to
  measure it with).
- bf16 and int8 quality: m3l's zoo weights (blind FFDNet on sigma-25 noise, NAFNet-small on
  Gaussian blur) on the photos with ground truth, fp32 vs bf16 (PyTorch) and int8 (ONNX Runtime).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_line, median_seconds  # noqa: E402

MODELS = {  # name: (model config, checkpoint: None = the config's net with seeded random weights)
    "DnCNN-17": ("dncnn_color_gaussian", None),
    "FFDNet": ("ffdnet_color_blind", "pretrained"),
    "NAFNet-small": ("nafnet_small_deblur", "pretrained"),
    "demo": ("demo", None),
}
ROWS = [  # (label, backend, precision); backend None: the KAIR-style loop
    ("KAIR-style eager loop", None, "fp32"),
    ("correct backend=eager", "eager", "fp32"),
    ("correct backend=compile", "compile", "fp32"),
    ("correct backend=onnx", "onnx", "fp32"),
    ("correct backend=eager precision=bf16", "eager", "bf16"),
    ("correct backend=onnx precision=int8", "onnx", "int8"),
    ("correct backend=auto (default)", "auto", "auto"),
    ("correct backend=auto precision=fp32", "auto", "fp32"),
    ("python -m m3l.deploy.runtime (ONNX)", "runtime", "fp32"),
]
ZOO = Path("/work/photos/zoo")


# ---------------------------------------------------------------------------- one row (child)


def _experiment(model: str, work: Path, overrides: list[str]):
    from m3l import Experiment, compose

    return Experiment(compose(model, [f"paths.runs_dir={work / 'runs'}", "logger=none", *overrides], verb="correct"))


def _checkpoint(model: str, checkpoint: str | None, work: Path) -> str:
    """The checkpoint of a row: the zoo's, or the net's seeded random weights as safetensors."""
    if checkpoint:
        return checkpoint
    path = work / f"{model}.safetensors"
    if not path.exists():
        from safetensors.torch import save_file

        torch.manual_seed(0)
        net = _experiment(model, work, []).net.net
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return str(path)


def _kair_loop(module, src: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.glob("*.png")):
        image = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
        x = torch.from_numpy(image).permute(2, 0, 1)[None]
        with torch.inference_mode():
            y = module.restore(x)[0]
        array = (y.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(array).save(out / path.name)


def run_row(args: argparse.Namespace) -> None:
    """One row in this process: warm up on ``warm/``, then time the folder ``in/``."""
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("backend="):
                lines.append(record.getMessage())

    for name in ("m3l.deploy.backends", "m3l.callbacks"):
        logging.getLogger(name).addHandler(Keep())
        logging.getLogger(name).setLevel(logging.INFO)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    work, model = Path(args.work), MODELS[args.row_model][0]
    checkpoint = _checkpoint(model, MODELS[args.row_model][1], work)
    src = work / "in"
    tag = f"{args.row_model}-{args.row_backend}-{args.row_precision}".replace(" ", "_")
    if args.row_backend == "kair":
        exp = _experiment(model, work, [])
        exp.load_weights(checkpoint)
        module = exp.net.eval()
        _kair_loop(module, work / "warm", work / f"out-warm-{tag}")
        start = time.perf_counter()
        _kair_loop(module, src, work / f"out-{tag}")
        seconds = time.perf_counter() - start
    elif args.row_backend == "runtime":
        from m3l.deploy import runtime
        from m3l.deploy.export import export_model

        exp = _experiment(model, work, [])
        exp.load_weights(checkpoint)
        tiler = exp.cfg.net.get("tiler") or {}
        tiling = {k: tiler[k] for k in ("tile_size", "overlap", "batch_size", "blend") if k in tiler}
        artifact = work / f"{tag}.onnx"
        if not artifact.exists():
            export_model(exp.net, artifact, fmt="onnx", name=model, sizes=((64, 64),), tiling=tiling or None)
        exported = runtime.ExportedModel(artifact, threads=args.threads)
        runtime.correct_path(exported, work / "warm", work / f"out-warm-{tag}")
        start = time.perf_counter()
        runtime.correct_path(exported, src, work / f"out-{tag}")
        seconds = time.perf_counter() - start
    else:

        def correct(folder: Path, out: Path, backend: str) -> float:
            exp = _experiment(
                model,
                work,
                [
                    f"data.correct_dir={folder}",
                    f"serializer.root_dir={out}",
                    f"backend={backend}",
                    f"precision={args.row_precision}",
                ],
            )
            start = time.perf_counter()
            exp.correct(checkpoint=checkpoint)
            return time.perf_counter() - start

        # the warm-up fills the ONNX cache for onnx and auto, as an earlier run would have
        correct(work / "warm", work / f"out-warm-{tag}", "onnx" if args.row_backend == "auto" else args.row_backend)
        lines.clear()
        seconds = correct(src, work / f"out-{tag}", args.row_backend)
    pixels = sum(Image.open(p).size[0] * Image.open(p).size[1] for p in src.glob("*.png"))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = lines[-1] if lines else ""
    picked = summary.split(": ", 1)[1].split(" (")[0] if ": " in summary else ""
    print(json.dumps({"seconds": seconds, "mp": pixels / 1e6, "rss_mb": rss, "summary": summary, "picked": picked}))


# ---------------------------------------------------------------------------- the machine's limit


def machine_limits() -> dict[str, float]:
    """Sustained GFLOP/s: a 2048^3 matmul and a 64->64 3x3 convolution, fp32 and bf16."""
    limits = {}
    n = 2048
    with torch.inference_mode():
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
            limits[f"matmul {name}"] = 2 * n**3 / median_seconds(lambda: a @ b) / 1e9
            conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(dtype)
            x = torch.randn(4, 64, 128, 128, dtype=dtype)
            flops = 2 * 64 * 64 * 9 * 4 * 128 * 128
            best = median_seconds(lambda: conv(x))
            conv_cl, x_cl = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
            best = min(best, median_seconds(lambda: conv_cl(x_cl)))
            limits[f"conv {name}"] = flops / best / 1e9
    return limits


def flops_per_pixel(model: str, work: Path) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    module = _experiment(model, work, []).net.eval()
    x = torch.rand(1, 3, 128, 128)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops() / (128 * 128)


# ---------------------------------------------------------------------------- photos


def build_folders(work: Path, photos: Path | None, count: int, max_side: int) -> tuple[list[Path], Path]:
    from m3l.data.samples import sample_paths

    if photos is None:
        photos = ZOO if ZOO.is_dir() else None
    if photos is not None:
        files = sorted(p for split in ("test", "val", "train") for p in (photos / split).glob("*.png")) or sorted(
            photos.glob("*.png")
        )
    else:
        files = sample_paths("val") + sample_paths("train")
    files = files[:count]
    rng = np.random.default_rng(0)
    clean_dir, src, warm = work / "clean", work / "in", work / "warm"
    for folder in (clean_dir, src, warm):
        folder.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(files):
        image = Image.open(path).convert("RGB")
        factor = max(1, -(-max(image.size) // max_side))
        image = image.reduce(factor) if factor > 1 else image
        image.save(clean_dir / f"{i:03d}.png")
        noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 25, (image.height, image.width, 3))
        Image.fromarray(np.clip(noisy, 0, 255).round().astype(np.uint8)).save(src / f"{i:03d}.png")
    Image.open(sample_paths("val")[0]).convert("RGB").reduce(2).save(warm / "warm.png")
    return files, clean_dir


# ---------------------------------------------------------------------------- bf16 quality


def bf16_quality(clean_dir: Path, work: Path, count: int = 12) -> list[tuple[str, str, float, float, float, float]]:
    """(model, precision, PSNR fp32, PSNR of that precision, its - fp32, worst PSNR of its output
    against fp32's) on real photos, for bf16 (eager PyTorch) and int8 (ONNX Runtime, calibrated on
    each photo's first 128 px crop, as ``correct`` does on a run's first input)."""
    from m3l.data.degradations import add_gaussian_noise, apply_blur, gaussian_kernel
    from m3l.deploy.backends import InferenceBackend, psnr_db

    rows = []
    logging.getLogger("m3l.deploy.backends").setLevel(logging.ERROR)  # precision=bf16 is forced here on purpose
    photos = sorted(clean_dir.glob("*.png"))[:count]
    for label, model, degrade in (
        ("FFDNet (blind, sigma 25)", "ffdnet_color_blind", lambda x, g: add_gaussian_noise(x, 25 / 255, g, clip=True)),
        ("NAFNet-small (blur 1.6)", "nafnet_small_deblur", lambda x, g: apply_blur(x, gaussian_kernel(21, 1.6))),
    ):
        exp = _experiment(model, work, [])
        exp.load_weights("pretrained")
        module = exp.net.eval()
        scores = {"fp32": [], "bf16": [], "int8": [], "gap bf16": [], "gap int8": []}
        for i, path in enumerate(photos):
            clean = torch.from_numpy(np.asarray(Image.open(path), dtype=np.float32) / 255).permute(2, 0, 1)[None]
            x = degrade(clean, torch.Generator().manual_seed(i)).clamp(0, 1)
            outs = {}
            for precision, backend in (("fp32", "eager"), ("bf16", "eager"), ("int8", "onnx")):
                module.inference_forward = InferenceBackend(
                    module, backend, precision, name=model, cache_dir=work / "quality-onnx"
                )
                with torch.inference_mode():
                    outs[precision] = module.restore(x)
                scores[precision].append(psnr_db(outs[precision], clean))
            for precision in ("bf16", "int8"):
                scores[f"gap {precision}"].append(psnr_db(outs[precision], outs["fp32"]))
            module.inference_forward = None
        fp32 = statistics.mean(scores["fp32"])
        for precision in ("bf16", "int8"):
            mean = statistics.mean(scores[precision])
            rows.append((label, precision, fp32, mean, mean - fp32, min(scores[f"gap {precision}"])))
    return rows


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--max-side", type=int, default=384)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument(
        "--rows", default="", help=f"comma-separated row numbers (0-{len(ROWS) - 1}) to run; default all"
    )
    parser.add_argument("--photos", type=Path)
    parser.add_argument("--work", type=Path, help="work folder (default: a new temporary one)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--row-model", help=argparse.SUPPRESS)
    parser.add_argument("--row-backend", help=argparse.SUPPRESS)
    parser.add_argument("--row-precision", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row_model:
        run_row(args)
        return
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    work = args.work or Path(tempfile.mkdtemp(prefix="m3l_correct_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "M3L_CACHE_DIR": str(work / "cache"),
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = os.getloadavg()
    limits = machine_limits()
    files, clean_dir = build_folders(work, args.photos, args.count, args.max_side)
    megapixels = sum(Image.open(p).size[0] * Image.open(p).size[1] for p in (work / "in").glob("*.png")) / 1e6
    rows_wanted = [int(r) for r in args.rows.split(",") if r.strip()] or list(range(len(ROWS)))
    results = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        model = MODELS[name][0]
        per_pixel = flops_per_pixel(model, work)
        for index in rows_wanted:
            label, backend, precision = ROWS[index]
            command = [
                sys.executable,
                __file__,
                "--row-model",
                name,
                "--row-backend",
                backend or "kair",
                "--row-precision",
                precision,
                "--work",
                str(work),
                "--threads",
                str(args.threads),
            ]
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                print(f"{name} {label}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row.update(model=name, row=label, precision=precision, flops_per_pixel=per_pixel)
            results.append(row)
            print(
                f"  {name:<13} {label:<38} {row['mp'] / row['seconds']:.3f} MP/s  {row['summary'][:150]}",
                file=sys.stderr,
            )
    quality = bf16_quality(clean_dir, work)
    load_after = os.getloadavg()

    print(f"\n# correct throughput, {started}, {cpu_line()}, torch {torch.__version__}, {args.threads} threads")
    print(f"# busy shared machine: load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (2 cores)")
    print(
        f"# data: {len(files)} real photos ({'zoo: ' + str(ZOO) if ZOO.is_dir() and not args.photos else args.photos or 'packaged samples'}),"
        f" downscaled to <= {args.max_side} px, sigma-25 noise, PNG: {megapixels:.2f} MP in all"
    )
    print("\n## The machine's limit (sustained GFLOP/s, median of 5)\n")
    print("| | fp32 | bf16 | bf16 / fp32 |\n|---|---:|---:|---:|")
    for kind in ("matmul", "conv"):
        print(
            f"| {kind} | {limits[f'{kind} fp32']:.0f} | {limits[f'{kind} bf16']:.0f} | {limits[f'{kind} bf16'] / limits[f'{kind} fp32']:.2f} |"
        )
    print("\n## End to end: read + predict + write, MP/s\n")
    print("| model | MFLOP/px | path | MP/s | x KAIR loop | GFLOP/s | of conv limit | peak RSS MB | picked (auto) |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---|")
    for name in dict.fromkeys(r["model"] for r in results):
        rows = [r for r in results if r["model"] == name]
        base = next((r for r in rows if r["row"].startswith("KAIR")), None)
        for r in rows:
            mps = r["mp"] / r["seconds"]
            gflops = mps * r["flops_per_pixel"] / 1e3
            limit = limits["conv bf16"] if r["precision"] == "bf16" or "/bf16" in r["picked"] else limits["conv fp32"]
            ratio = f"{mps / (base['mp'] / base['seconds']):.2f}" if base else "-"
            picked = r["picked"] if "auto" in r["row"] else ""
            print(
                f"| {name} | {r['flops_per_pixel'] / 1e6:.3f} | {r['row']} | {mps:.3f} | {ratio} | {gflops:.0f} | "
                f"{100 * gflops / limit:.0f}% | {r['rss_mb']:.0f} | {picked} |"
            )
    untrained = [n for n in dict.fromkeys(r["model"] for r in results) if MODELS[n][1] is None]
    if untrained:
        print(
            f"\n{', '.join(untrained)}: seeded random weights (m3l ships no trained weights for them), so their "
            "output is close to their input and the bf16/int8 checks of auto pass trivially: their auto picks show "
            "speed, not what auto would pick for trained weights (see the trained nets' rows and the table below)."
        )
    print("\n## bf16 and int8 against fp32 on real photos (m3l's zoo weights, 12 photos, mean PSNR dB)\n")
    print(
        "| model | precision | fp32 | it | it - fp32 | worst PSNR of its output vs fp32's |\n|---|---|---:|---:|---:|---:|"
    )
    for label, precision, fp32, value, gap, worst in quality:
        print(f"| {label} | {precision} | {fp32:.3f} | {value:.3f} | {gap:+.3f} | {worst:.1f} |")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": started,
                    "machine": cpu_line(),
                    "limits": limits,
                    "rows": results,
                    "bf16": quality,
                    "load": [load_before, load_after],
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
