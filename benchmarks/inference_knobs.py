"""Which inference knobs pay on this CPU: tiles per forward, memory format, intra-op threads.

    python benchmarks/inference_knobs.py [--repeats 7] [--tile 128] [--tiles 8]

DnCNN-17 (RGB, 64 features, seeded random weights: speed does not depend on the values) on
``--tiles`` tiles of ``--tile`` px cut from a real photo (m3l's packaged sample), eager PyTorch
fp32 in inference mode:

- tiles per forward: 1, 2, 4 and 8 (m3l's ``tiler.batch_size``, default 4);
- memory format: NCHW against ``channels_last`` (what m3l's eager backend uses);
- intra-op threads: 1 against all cores (``torch.set_num_threads``).

Every variant is timed in turns, round after round (the load of a shared machine moves by the
minute), and the best round of each is kept: other work on the machine only ever adds time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_line  # noqa: E402


def tiles_of_a_photo(tile: int, count: int) -> torch.Tensor:
    from m3l.data.samples import sample_paths

    image = Image.open(sample_paths("val")[0]).convert("RGB")
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
    h, w = x.shape[-2:]
    out = []
    for k in range(count):
        top, left = (k * 37) % (h - tile), (k * 53) % (w - tile)
        out.append(x[:, top : top + tile, left : left + tile])
    return torch.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--tiles", type=int, default=8)
    args = parser.parse_args()
    from m3l.models.nets import DnCNN

    cores = os.cpu_count() or 1
    torch.manual_seed(0)
    net = DnCNN(in_channels=3, depth=17, features=64).eval()
    net_cl = DnCNN(in_channels=3, depth=17, features=64).eval().to(memory_format=torch.channels_last)
    net_cl.load_state_dict(net.state_dict())
    tiles = tiles_of_a_photo(args.tile, args.tiles)

    def run(model: torch.nn.Module, per_call: int, channels_last: bool, threads: int) -> None:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            for first in range(0, len(tiles), per_call):
                batch = tiles[first : first + per_call]
                model(batch.contiguous(memory_format=torch.channels_last) if channels_last else batch)

    variants = {}
    for per_call in (1, 2, 4, 8):
        variants[f"channels_last, {per_call} tile(s) per forward, {cores} threads"] = (net_cl, per_call, True, cores)
    variants[f"NCHW, 4 tiles per forward, {cores} threads"] = (net, 4, False, cores)
    variants["channels_last, 4 tiles per forward, 1 thread"] = (net_cl, 4, True, 1)
    best = {name: float("inf") for name in variants}
    load_before = os.getloadavg()[0]
    for name, variant in variants.items():  # warm-up: oneDNN primitives for each shape
        run(*variant)
    for _ in range(args.repeats):
        for name, variant in variants.items():
            start = time.perf_counter()
            run(*variant)
            best[name] = min(best[name], time.perf_counter() - start)
    load_after = os.getloadavg()[0]
    base_name = f"channels_last, 1 tile(s) per forward, {cores} threads"
    pixels = len(tiles) * args.tile**2
    print(
        f"# inference knobs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu_line()}, torch {torch.__version__}"
    )
    print(f"# busy shared machine: load average {load_before:.1f} before, {load_after:.1f} after ({cores} cores)")
    print(
        f"# DnCNN-17 RGB fp32 eager, {len(tiles)} tiles of {args.tile} px from a real photo; best of {args.repeats} rounds\n"
    )
    print("| variant | MP/s | ratio |\n|---|---:|---:|")
    for name, seconds in best.items():
        print(f"| {name} | {pixels / seconds / 1e6:.3f} | {best[base_name] / seconds:.2f} |")


if __name__ == "__main__":
    main()
