"""Training-step throughput (patches/s) of DnCNN, FFDNet (the zoo's layout) and NAFNet-small
on CPU, fp32 vs bf16.

One step = forward, loss, backward, Adam update, on random patches. bf16 runs the forward
and loss under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (weights and optimizer stay
fp32). Prints the median over ``--steps`` timed steps after ``--warmup`` steps, the
bf16/fp32 ratio, and each net's bf16 rate over the fp32 rate of the full-resolution DnCNN-17
on the same RGB patches (the baseline the zoo's half-resolution FFDNets replace), all
measured in the same run. Usage:

    python benchmarks/train_step.py [--batch 16] [--steps 5] [--warmup 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from contextlib import nullcontext
from datetime import date

import torch
from torch import nn

from m3l.models.losses import PSNRLoss
from m3l.models.nets.dncnn import DnCNN
from m3l.models.nets.ffdnet import FFDNet
from m3l.models.nets.nafnet import NAFNet
from machine import cpu_line

# (name, net factory, patch size, loss): the papers' patch sizes are 40 (DnCNN) and 256
# (NAFNet); NAFNet-small uses 64 here to keep CPU steps short
NETS = [
    ("DnCNN-17 (gray, 40x40)", lambda: DnCNN(1, depth=17, features=64), 1, 40, nn.MSELoss()),
    ("DnCNN-17 (RGB, 64x64)", lambda: DnCNN(3, depth=17, features=64), 3, 64, nn.MSELoss()),
    (
        "FFDNet blind 12x96, no BN (RGB, 64x64; zoo)",
        lambda: FFDNet(3, noise_map=False, batch_norm=False),
        3,
        64,
        nn.MSELoss(),
    ),
    (
        "FFDNet blind 15x64, no BN (gray, 64x64; zoo)",
        lambda: FFDNet(1, noise_map=False, batch_norm=False),
        1,
        64,
        nn.MSELoss(),
    ),
    (
        "NAFNet-small (RGB, 64x64)",
        lambda: NAFNet(3, width=16, enc_blocks=(1, 1, 2), middle_blocks=2, dec_blocks=(1, 1, 1)),
        3,
        64,
        PSNRLoss(),
    ),
]


def step_times(
    factory, channels: int, patch: int, loss_fn: nn.Module, batch: int, steps: int, warmup: int, bf16: bool
) -> list[float]:
    torch.manual_seed(0)
    net = factory().train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    x = torch.rand(batch, channels, patch, patch)
    target = torch.rand(batch, channels, patch, patch)
    times = []
    for k in range(warmup + steps):
        start = time.perf_counter()
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
        with ctx:
            loss = loss_fn((x + net(x)).float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if k >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    print(
        f"# train-step benchmark, {date.today()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}"
    )
    print(f"# CPU: {cpu_line()}")
    print(
        "\n| net | fp32 patches/s | bf16 patches/s | bf16 / fp32 | bf16 / DnCNN-17 RGB fp32 |"
        "\n|---|---:|---:|---:|---:|"
    )
    baseline = None
    for name, factory, channels, patch, loss_fn in NETS:
        rates = {}
        for bf16 in (False, True):
            t = step_times(factory, channels, patch, loss_fn, args.batch, args.steps, args.warmup, bf16)
            rates[bf16] = args.batch / statistics.median(t)
        if name.startswith("DnCNN-17 (RGB"):
            baseline = rates[False]
        versus = f"{rates[True] / baseline:.1f}" if baseline else "-"
        print(
            f"| {name} | {rates[False]:.1f} | {rates[True]:.1f} | {rates[True] / rates[False]:.2f} | {versus} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
