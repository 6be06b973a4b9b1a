"""Per-step time of each gradient method relative to EW, for 2, 4 and 8 tasks, on CPU.

Backbone: the LeNet trunk of the MultiMNIST example widened to about 1M parameters; one
classification head per task on real MultiMNIST; batch 32 per task; Joint schedule. Every
method runs in the same process and the table gives medians and the ratio to Joint+EW of
the same task count. The issue's target is at most (T + 1) x EW for T tasks (gradient
methods need one backward pass per task). Peak RSS of the whole run is printed at the end
(per-method peak memory would need one process per method).

    python benchmarks/mtl_aggregators.py [--steps 20] [--tasks 2 4 8]
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from m3l import mtl
from m3l.mtl import algorithms as A
from m3l.mtl.examples.multimnist import Classifier, MultiMNIST

sys.path.insert(0, str(Path(__file__).parent))
from bare_fit import fit_bare  # noqa: E402
from mtl_step_time import StepTimer  # noqa: E402

WIDTH = 1400  # LeNet trunk with a 720 -> 1400 projection: about 1.0M parameters

METHODS: dict[str, Callable[[], object]] = {
    "EW": A.EqualWeighting,
    "PCGrad": A.PCGrad,
    "MGDA": A.MGDA,
    "MGDA-UB": A.MGDAUB,
    "CAGrad": A.CAGrad,
    "Nash-MTL": A.NashMTL,
    "Nash-MTL (update_every=10)": lambda: A.NashMTL(update_every=10),
    "IMTL-G": A.IMTLG,
    "Aligned-MTL": A.AlignedMTL,
    "GradVac": A.GradVac,
    "GradDrop": A.GradDrop,
    "ConFIG": A.ConFIG,
    "DualProj": A.DualProj,
    "UPGrad": A.UPGrad,
}


class WideTrunk(nn.Module):
    """The LeNet trunk of the MultiMNIST example with a wider projection (about 1.0M params)."""

    def __init__(self, out_features: int = WIDTH) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 10, 5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(10, 20, 5),
            nn.MaxPool2d(2),
            nn.ReLU(),
        )
        self.fc = nn.Linear(20 * 6 * 6, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(self.features(x).flatten(1)))


def measure(num_tasks: int, make: Callable[[], object], steps: int, data: dict) -> float:
    torch.manual_seed(0)
    tasks = [
        mtl.Task(f"t{i}", Classifier(in_features=WIDTH), nn.CrossEntropyLoss(), train=data[i % 2], batch_size=32)
        for i in range(num_tasks)
    ]
    module = mtl.MultiTaskModule(WideTrunk(), tasks, algorithm=mtl.Joint(make()), finite_check_every_n_steps=10_000)
    timer = StepTimer()
    fit_bare(module, mtl.MultiTaskDataModule.from_tasks(tasks), steps=steps, callbacks=[timer])
    return statistics.median(timer.times[3:])


def setup(description: str) -> tuple[argparse.Namespace, dict, int]:
    """Command-line arguments, the two MultiMNIST training sets, the backbone's size."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 4, 8])
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    params = sum(p.numel() for p in WideTrunk().parameters())
    data = {i: MultiMNIST("train", 32 * args.steps, target="left" if i % 2 else "right", seed=i) for i in range(2)}
    return args, data, params


def main() -> None:
    args, data, params = setup(__doc__)
    print(
        f"backbone {params / 1e6:.2f}M parameters, batch 32/task, {args.steps} steps, CPU "
        f"{torch.get_num_threads()} threads; median ms/step and ratio to EW; target <= T+1"
    )
    print("| method | " + " | ".join(f"T={t} ms | T={t} x EW" for t in args.tasks) + " |")
    print("|---|" + "---:|---:|" * len(args.tasks))
    results: dict[str, list[str]] = {name: [] for name in METHODS}
    for t in args.tasks:
        base = None
        for name, make in METHODS.items():
            try:
                ms = measure(t, make, args.steps, data) * 1e3
            except Exception as exc:  # noqa: BLE001 - a method that fails is reported, not fatal
                results[name] += [f"failed: {type(exc).__name__}", "-"]
                continue
            base = ms if name == "EW" else base
            flag = " (>T+1)" if base and ms / base > t + 1 else ""
            results[name] += [f"{ms:.1f}", f"{ms / base:.2f}{flag}"]
    for name, cells in results.items():
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"peak RSS of the run: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
