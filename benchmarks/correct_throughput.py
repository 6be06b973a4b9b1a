"""Megapixels/s of `correct`'s inference path on CPU: eager PyTorch, torch.compile and ONNX
Runtime (through m3l.deploy.runtime), for DnCNN-small and NAFNet-small, measured in one run
and printed as ratios to eager; plus the startup time of the runtime CLI.

    python benchmarks/correct_throughput.py [--size 512] [--repeats 5] [--threads 2]

All three paths use the same tiling (the model config's TiledPredictor settings) on the same
real photo (a packaged sample, resized); medians over ``--repeats`` runs after one warm-up.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from m3l import compose
from m3l.data.samples import sample_paths
from m3l.deploy import runtime as R
from m3l.deploy.export import export_model
from m3l.experiment import Experiment

MODELS = {"DnCNN-small": [], "NAFNet-small": ["net=nafnet_small"]}


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (and compilation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    photo = Image.open(sample_paths("val")[0]).convert("RGB").resize((args.size, args.size))
    x = torch.from_numpy(np.asarray(photo, dtype=np.float32) / 255).permute(2, 0, 1)[None].contiguous()
    mp = args.size * args.size / 1e6
    work = Path(tempfile.mkdtemp(prefix="m3l_bench_"))
    rows = []
    onnx_file = None
    for name, overrides in MODELS.items():
        exp = Experiment(compose("demo", [*overrides, f"paths.runs_dir={work}/runs"]))
        module = exp.net.eval()
        tiler = exp._instantiate("net.tiler") if exp.cfg.net.get("tiler") else None
        tiling = {k: getattr(tiler, k) for k in ("tile_size", "overlap", "batch_size", "blend")}

        def eager() -> None:
            with torch.inference_mode():
                tiler(module.restore, x, pad_multiple=module.pad_multiple).clamp(0, 1)

        compiled_net = torch.compile(module.net, dynamic=False)

        def compiled() -> None:
            def restore(t: torch.Tensor) -> torch.Tensor:
                h, w = t.shape[-2:]
                from m3l.models.tiling import pad_to_multiple

                out = compiled_net(pad_to_multiple(t, module.pad_multiple))[..., :h, :w]
                return t + out if module.residual else out

            with torch.inference_mode():
                tiler(restore, x, pad_multiple=module.pad_multiple).clamp(0, 1)

        path = export_model(module, work / f"{name}.onnx", fmt="onnx", name=name, sizes=[(64, 64)], tiling=tiling)
        onnx_file = onnx_file or path
        model = R.ExportedModel(path, threads=args.threads)
        array = x[0].numpy()

        def ort() -> None:
            model.restore(array)

        t_eager = median_seconds(eager, args.repeats)
        t_compiled = median_seconds(compiled, args.repeats)
        t_ort = median_seconds(ort, args.repeats)
        for label, t in (("eager PyTorch", t_eager), ("torch.compile", t_compiled), ("ONNX Runtime", t_ort)):
            rows.append((name, label, t, mp / t, t_eager / t))

    # startup: the runtime CLI on one small image, next to a bare interpreter
    tiny = work / "tiny"
    tiny.mkdir()
    photo.resize((32, 32)).save(tiny / "a.png")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}

    def cli(k: list[int] = [0]) -> None:
        k[0] += 1
        subprocess.run([sys.executable, "-m", "m3l.deploy.runtime", str(onnx_file), str(tiny), str(work / f"out{k[0]}")],
                       check=True, capture_output=True, env=env)

    def bare() -> None:
        subprocess.run([sys.executable, "-c", "pass"], check=True)

    t_cli, t_bare = median_seconds(cli, 3), median_seconds(bare, 3)

    print(f"\ncorrect throughput, {args.size}x{args.size} RGB photo, tiled as `correct`, {args.threads} threads, "
          f"median of {args.repeats}")
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {datetime.date.today()}")
    print(f"{'model':<14} {'path':<15} {'s/image':>9} {'MP/s':>8} {'x eager':>8}")
    for name, label, t, mps, ratio in rows:
        print(f"{name:<14} {label:<15} {t:>9.3f} {mps:>8.3f} {ratio:>8.2f}")
    print(f"\nruntime CLI startup (ONNX, 1 tiny image, end to end): {t_cli:.2f} s "
          f"(bare `python -c pass`: {t_bare:.2f} s)")


if __name__ == "__main__":
    main()
