"""Per-step training time of each schedule and weighting relative to EW, for 2, 4 and 8 tasks.

Same small setup for all (LeNet trunk on real MultiMNIST, batch 32 per task, CPU or the
first GPU), measured in one run; the table shows median step times and the ratio to Joint+EW
of the same task count. A "step" is one optimizer step; for Sequential and Alternating a step
holds one task's batch, for Joint one batch of every task.

    python benchmarks/mtl_step_time.py [--steps 30] [--tasks 2 4 8]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable

import lightning as L
import torch
from torch import nn

from m3l import mtl
from m3l.mtl.examples.multimnist import Classifier, LeNet, MultiMNIST

from bare_fit import fit_bare

log = logging.getLogger("mtl_step_time")

ALGORITHMS: dict[str, Callable[[], mtl.Schedule]] = {
    "Joint+EW": lambda: mtl.Joint(mtl.EqualWeighting()),
    "Joint+Fixed": lambda: mtl.Joint(mtl.FixedWeighting({})),
    "Joint+RLW": lambda: mtl.Joint(mtl.RandomWeighting()),
    "Joint+DWA": lambda: mtl.Joint(mtl.DynamicWeightAverage()),
    "Joint+Uncertainty": lambda: mtl.Joint(mtl.UncertaintyWeighting()),
    "Joint+FAMO": lambda: mtl.Joint(mtl.FAMO()),
    "Joint+GradNorm": lambda: mtl.Joint(mtl.GradNorm()),
    "Alternating": mtl.Alternating,
    "Sequential": lambda: mtl.Sequential(epochs_per_task=1),
}


class StepTimer(L.Callback):
    """Wall time of each training step (synchronized on CUDA at the step boundaries only)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def _sync(self, module: L.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._sync(pl_module)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync(pl_module)
        self.times.append(time.perf_counter() - self._start)


def measure(num_tasks: int, make: Callable[[], mtl.Schedule], steps: int, data: dict) -> float:
    torch.manual_seed(0)
    tasks = [
        mtl.Task(f"t{i}", Classifier(), nn.CrossEntropyLoss(), train=data[i % len(data)], batch_size=32)
        for i in range(num_tasks)
    ]
    module = mtl.MultiTaskModule(LeNet(), tasks, algorithm=make(), finite_check_every_n_steps=10_000)
    timer = StepTimer()
    fit_bare(module, mtl.MultiTaskDataModule.from_tasks(tasks), steps=steps, callbacks=[timer], accelerator="auto")
    return statistics.median(timer.times[3:])  # drop warm-up steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 4, 8])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data = {i: MultiMNIST("train", 32 * args.steps, target="left" if i % 2 else "right", seed=i) for i in range(2)}
    rows = []
    for n in args.tasks:
        base = None
        for name, make in ALGORITHMS.items():
            t = measure(n, make, args.steps, data)
            base = t if name == "Joint+EW" else base
            rows.append((n, name, t * 1e3, t / base))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lines = [
        f"median step time, {args.steps} steps, batch 32/task, device {device}",
        f"{'tasks':>5}  {'algorithm':<18} {'ms/step':>9} {'x EW':>6}",
    ]
    lines += [f"{n:>5}  {name:<18} {ms:>9.2f} {ratio:>6.2f}" for n, name, ms, ratio in rows]
    print("\n".join(lines))  # noqa: T201 - a benchmark prints its table


if __name__ == "__main__":
    main()
