"""Tiled vs untiled correction with DnCNN (17 layers, 64 features, RGB) on CPU.

Prints two tables:
1. peak RSS of correcting a large image (default 6000x4000) tiled and untiled, each in its
   own subprocess (``resource.getrusage(RUSAGE_SELF).ru_maxrss``);
2. throughput (megapixels/s, median of repeats) on an image that fits (default 1024x1024),
   tiled with several settings, as a ratio to untiled measured in the same run.

The untiled large run needs ~13 GB; it runs under an address-space limit (``--limit-gb``)
so that it fails cleanly instead of exhausting the machine. Usage:

    python benchmarks/tiling.py [--large 6000x4000] [--small 1024x1024] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from typing import Callable

import torch

from m3l.models.tiling import TiledPredictor
from m3l.models.nets.dncnn import DnCNN

log = logging.getLogger("benchmarks.tiling")

TILED_SETTINGS = [  # (tile_size, overlap, batch_size, blend)
    (512, 32, 4, "gaussian"),
    (256, 36, 4, "none"),
    # two tiles per side on a 1024 image: the overlap adds 6% pixels instead of 13%
    (576, 36, 2, "gaussian"),
]


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return DnCNN(3, depth=17, features=64).eval()


def _size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return h, w


def child(mode: str, height: int, width: int, setting: list) -> None:
    """Correct one random image and report peak RSS and time as JSON on stdout."""
    net = _net()
    x = torch.rand(1, 3, height, width)
    start = time.perf_counter()
    with torch.inference_mode():
        if mode == "tiled":
            tile, overlap, batch, blend = setting
            y = TiledPredictor(tile, overlap, batch, blend)(net, x)
        else:
            y = net(x)
    seconds = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    sys.stdout.write(json.dumps({"rss_mb": rss_mb, "seconds": seconds, "shape": list(y.shape)}) + "\n")


def _vm_hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_child(mode: str, size: tuple[int, int], setting: tuple, limit_gb: float, max_seconds: float | None) -> dict:
    """Run one correction in a fresh process; stop it after ``max_seconds`` if given.

    Peak RSS is read from the child's VmHWM (the kernel's high-water mark, the same figure
    as ru_maxrss). Memory of both modes is reached within the first tiles / layers and does
    not grow after, so a run cut short still gives the peak; the table says so.
    """

    def limit() -> None:
        cap = int(limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    cmd = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--size",
        f"{size[1]}x{size[0]}",
        "--setting",
        json.dumps(list(setting)),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limit)
    start, peak = time.perf_counter(), 0.0
    while proc.poll() is None:
        try:
            peak = max(peak, _vm_hwm_mb(proc.pid))
        except (FileNotFoundError, ProcessLookupError):
            break
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            proc.kill()
            proc.wait()
            return {"rss_mb": peak, "seconds": max_seconds, "complete": False}
        time.sleep(0.2)
    out, err = proc.communicate()
    if proc.returncode != 0:
        tail = err.strip().splitlines()[-1:] or ["?"]
        return {"error": f"failed under a {limit_gb:g} GB limit: {tail[0][:80]}"}
    result = json.loads(out.strip().splitlines()[-1])
    result["complete"] = True
    return result


def throughput(size: tuple[int, int], repeats: int) -> list[tuple[str, float, float]]:
    net = _net()
    x = torch.rand(1, 3, *size)
    mpix = size[0] * size[1] / 1e6
    runs: list[tuple[str, Callable[[], torch.Tensor]]] = [("untiled", lambda: net(x))]
    for tile, overlap, batch, blend in TILED_SETTINGS:
        tiler = TiledPredictor(tile, overlap, batch, blend)
        runs.append((f"tiled {tile}/{overlap}/b{batch}/{blend}", lambda t=tiler: t(net, x)))
    times: dict[str, list[float]] = {name: [] for name, _ in runs}
    with torch.inference_mode():
        for _, fn in runs:  # warm-up
            fn()
        for _ in range(repeats):  # interleaved, so that load changes hit all settings alike
            for name, fn in runs:
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["untiled"])
    return [(name, mpix / statistics.median(t), base / statistics.median(t)) for name, t in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", default="6000x4000")
    parser.add_argument("--small", default="1024x1024")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--limit-gb", type=float, default=18.0)
    parser.add_argument("--skip-untiled-large", action="store_true")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="stop each large run after this long (peak RSS is reached early)",
    )
    parser.add_argument("--only", choices=["rss", "throughput"], default=None)
    parser.add_argument("--child", choices=["tiled", "untiled"])
    parser.add_argument("--size")
    parser.add_argument("--setting", default='[512, 32, 4, "gaussian"]')
    args = parser.parse_args()
    if args.child:
        child(args.child, *_size(args.size), json.loads(args.setting))
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(
        f"# tiling benchmark, {date.today()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    large = _size(args.large)
    if args.only != "throughput":
        _rss_table(args, large)
    if args.only != "rss":
        _throughput_table(args)


def _rss_table(args: argparse.Namespace, large: tuple[int, int]) -> None:
    print(f"\n## peak RSS, DnCNN-17 RGB on {args.large} (each in its own process)\n")
    print("| mode | peak RSS (MB) | time (s) | ran to the end |\n|---|---:|---:|---|")
    rows = [
        ("tiled 512/32/b4/gaussian (default)", "tiled", (512, 32, 4, "gaussian")),
        ("tiled 512/36/b1/none", "tiled", (512, 36, 1, "none")),
    ]
    if not args.skip_untiled_large:
        rows.append(("untiled", "untiled", ()))
    for label, mode, setting in rows:
        r = run_child(mode, large, setting, args.limit_gb, args.max_seconds)
        if "error" in r:
            print(f"| {label} | {r['error']} | | |")
        else:
            done = "yes" if r["complete"] else f"no, stopped after {r['seconds']:.0f} s"
            print(f"| {label} | {r['rss_mb']:.0f} | {r['seconds']:.1f} | {done} |", flush=True)


def _throughput_table(args: argparse.Namespace) -> None:
    print(f"\n## throughput on {args.small}, median of {args.repeats} (ratio to untiled, same run)\n")
    print("| mode (tile/overlap/batch/blend) | Mpx/s | ratio |\n|---|---:|---:|")
    for name, mpx, ratio in throughput(_size(args.small), args.repeats):
        print(f"| {name} | {mpx:.3f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
