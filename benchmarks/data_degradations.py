"""Degradation and data-loader throughput next to a DnCNN training step on CPU.

Run: ``python benchmarks/data_degradations.py [--workers 0 1 2] [--seconds 2]``.

Table 1: patches/s on one core (``torch.set_num_threads(1)``) for 128x128 colour patches, as a
ratio to the bare patch extraction (read from cache, crop, flip) measured in the same run.
Table 2: training samples/s delivered by the data loader (samples_gaussian, 128x128, batch 16)
with N workers, next to the samples/s a DnCNN training step consumes (forward + backward +
Adam), so "ratio > 1" means the loader keeps up.
"""

from __future__ import annotations

import argparse
import time

import torch

from m3l.data import JPEG, Chain, GaussianBlur, GaussianNoise, MotionBlur, RestorationDataModule, sample_dir
from m3l.data.datasets import CleanImageDataset


def rate(fn, seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (after one warm-up call)."""
    fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start)


def degradation_table(seconds: float) -> None:
    torch.set_num_threads(1)
    base = CleanImageDataset(sample_dir("train"), None, patch_size=128, cache=True, patches_per_image=1000)
    gen = torch.Generator().manual_seed(0)
    patch = base[0]["target"]
    clean_rate = rate(lambda: base[int(torch.randint(0, len(base), ()))], seconds)
    cases = {
        "gaussian noise (sigma 25)": GaussianNoise(sigma=25, scale=255),
        "gaussian blur 21x21": GaussianBlur(kernel_size=21),
        "motion blur 21x21": MotionBlur(kernel_size=21),
        "JPEG q in [10, 40]": JPEG(quality_range=[10, 40]),
        "chain blur->noise->JPEG": Chain(
            [GaussianBlur(kernel_size=21), GaussianNoise(sigma=5, scale=255), JPEG(quality=30)]
        ),
    }
    print("\nTable 1: degradation throughput, 128x128 RGB patches, 1 core")
    print(f"{'operation':28s} {'patches/s':>10s} {'ratio to patch extraction':>26s}")
    print(f"{'patch extraction (baseline)':28s} {clean_rate:10.0f} {1.0:26.2f}")
    for name, deg in cases.items():
        r = rate(lambda d=deg: d(patch, gen), seconds)
        print(f"{name:28s} {r:10.0f} {r / clean_rate:26.2f}")


def loader_table(workers: list[int], seconds: float) -> None:
    from m3l.models.nets.dncnn import DnCNN

    torch.set_num_threads(torch.get_num_threads() if torch.get_num_threads() > 1 else 1)
    batch_size = 16
    net = DnCNN(in_channels=3)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.rand(batch_size, 3, 128, 128)

    def step() -> None:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(x), x)
        loss.backward()
        opt.step()

    step_rate = rate(step, seconds) * batch_size
    print("\nTable 2: data loader vs DnCNN training step (samples/s, 128x128 RGB, batch 16)")
    print(f"{'workers':>7s} {'loader samples/s':>17s} {'DnCNN step samples/s':>21s} {'loader/step':>12s}")
    for n in workers:
        dm = RestorationDataModule(
            train_dir=sample_dir("train"),
            degradation=GaussianNoise(sigma=25, scale=255),
            patch_size=128,
            batch_size=batch_size,
            patches_per_image=10_000,
            num_workers=n,
            cache_images=True,
        )
        dm.setup("fit")
        it = iter(dm.train_dataloader())
        next(it)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            next(it)
            count += batch_size
        loader_rate = count / (time.perf_counter() - start)
        print(f"{n:7d} {loader_rate:17.0f} {step_rate:21.1f} {loader_rate / step_rate:12.1f}")
        del it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    threads = torch.get_num_threads()
    degradation_table(args.seconds)
    torch.set_num_threads(threads)
    loader_table(args.workers, args.seconds)


if __name__ == "__main__":
    main()
