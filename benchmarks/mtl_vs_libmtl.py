"""The same multi-task training step in m3l and in LibMTL, side by side, on CPU.

Model: the ~1M-parameter LeNet trunk of ``mtl_aggregators.py`` shared by T tasks, each with
its own MultiMNIST dataset (LibMTL's ``multi_input``) and classification head, batch 32 per
task, Adam (lr 1e-3) on all parameters: by default each library's own (m3l's default
optimizer is torch's fused Adam, LibMTL's Trainer builds the loop one);
``--optimizer same-loop`` / ``same-fused`` gives both the same kind, like for like. A step is forward of every task, the method's
backward/aggregation and the optimizer step (data loading excluded on both sides). m3l runs
through Lightning (``MultiTaskModule`` + ``Joint``), LibMTL through its own ``HPS``
architecture mixed with its weighting class, as its ``Trainer`` does. Methods are those both
libraries have, with the same hyperparameters (CAGrad c=0.5, GradVac beta=0.5). LibMTL's
``IMTL`` is the hybrid IMTL (loss scaling + IMTL-G), m3l's is IMTL-G alone: compare that row
with care. GradDrop rows use one input and T heads (m3l: a ``MultiHeadTask``; LibMTL:
``multi_input=False``), since GradDrop on the representation needs one shared pass: once
like for like (both on the representation), once m3l's parameter variant beside LibMTL's.

Timing on a busy shared machine: m3l and LibMTL run interleaved, ``--rounds`` times each
(alternating which goes first), ``--steps`` steps per run after 3 warm-up steps; each round
gives the ratio of the two medians, and the table quotes the median of those ratios, for
wall time and for the step's own CPU time (``time.thread_time``; with ``--threads 1``, the
default, all the step's work runs on that thread, so CPU time does not count the time spent
waiting for a core). ``--rss``: peak resident memory at T=8, each library and method in a
fresh process.

LibMTL 1.1.5 declares torchvision as a dependency but only its ResNet model uses it; install
it without dependencies (torchvision must not be installed next to m3l's torch):

    pip install --no-deps LibMTL==1.1.5
    python benchmarks/mtl_vs_libmtl.py [--steps 12] [--rounds 3] [--tasks 4 8] [--rss | --rss-only]
    python benchmarks/mtl_vs_libmtl.py --breakdown --methods EW --tasks 4   # where the time goes
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.util
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from m3l import mtl
from m3l.mtl import algorithms as A
from m3l.mtl.examples.multimnist import Classifier, MultiMNIST

sys.path.insert(0, str(Path(__file__).parent))
from machine import cpu_line  # noqa: E402
import mtl_aggregators  # noqa: E402
from bare_fit import fit_bare  # noqa: E402

WARMUP = 3
OPTIMIZER = "defaults"  # --optimizer: defaults | same-loop | same-fused


class TinyTrunk(nn.Module):
    """``--tiny``: 4 pixels into 8 features (40 parameters), so a step is the libraries' own
    per-step work (loops, hooks, bookkeeping) and almost no arithmetic."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x.flatten(1)[:, :4]))


TRUNK: tuple[Any, int] = (mtl_aggregators.WideTrunk, mtl_aggregators.WIDTH)  # --tiny: (TinyTrunk, 8)


def import_libmtl() -> types.ModuleType:
    """``LibMTL.weighting`` and ``LibMTL.architecture`` without the package ``__init__``
    (which imports its ResNet, hence torchvision)."""
    if "LibMTL" not in sys.modules:
        spec = importlib.util.find_spec("LibMTL")
        if spec is None or not spec.submodule_search_locations:
            sys.exit("LibMTL is not installed: pip install --no-deps LibMTL==1.1.5")
        pkg = types.ModuleType("LibMTL")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["LibMTL"] = pkg
    import LibMTL.architecture  # noqa: F401
    import LibMTL.weighting  # noqa: F401

    return sys.modules["LibMTL"]


# name -> (m3l factory, LibMTL weighting class, LibMTL weight_args, LibMTL rep_grad, one input)
METHODS: dict[str, tuple[Any, str, dict, bool, bool]] = {
    "EW": (A.EqualWeighting, "EW", {}, False, False),
    "PCGrad": (A.PCGrad, "PCGrad", {}, False, False),
    "MGDA": (A.MGDA, "MGDA", {"mgda_gn": "none"}, False, False),
    "CAGrad": (lambda: A.CAGrad(c=0.5), "CAGrad", {"calpha": 0.5, "rescale": 1}, False, False),
    "IMTL (m3l: IMTL-G)": (A.IMTLG, "IMTL", {}, False, False),
    "GradVac": (lambda: A.GradVac(beta=0.5), "GradVac", {"beta": 0.5}, False, False),
    "GradDrop, both on the representation (one input)": (
        lambda: A.GradDrop(wrt="representation"),
        "GradDrop",
        {"leak": 0.0},
        True,
        True,
    ),
    "GradDrop, m3l parameters / LibMTL representation (one input)": (A.GradDrop, "GradDrop", {"leak": 0.0}, True, True),
}


class TimeBoth(L.Callback):
    """Wall and thread-CPU time of each training step."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def on_train_batch_start(self, *args: Any) -> None:
        self._wall, self._cpu = time.perf_counter(), time.thread_time()

    def on_train_batch_end(self, *args: Any) -> None:
        self.cpu.append(time.thread_time() - self._cpu)
        self.wall.append(time.perf_counter() - self._wall)


class ManyHeads(Dataset):
    """One overlaid image, T targets (alternately the left and the right digit)."""

    def __init__(self, base: MultiMNIST, num_tasks: int) -> None:
        self.base, self.names = base, [f"t{i}" for i in range(num_tasks)]

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        labels = (self.base.right[i], self.base.left[i])
        return self.base.images[i], {n: labels[k % 2] for k, n in enumerate(self.names)}


def load_data(steps: int) -> dict:
    size = 32 * (steps + WARMUP)
    data = {i: MultiMNIST("train", size, target="left" if i % 2 else "right", seed=i) for i in range(2)}
    data["both"] = MultiMNIST("train", size, target="both", seed=5)
    return data


def m3l_times(num_tasks: int, method: str, steps: int, data: dict) -> tuple[float, float]:
    make, *_, one_input = METHODS[method]
    torch.manual_seed(0)
    if one_input:
        heads = {f"t{i}": Classifier(in_features=TRUNK[1]) for i in range(num_tasks)}
        tasks = [
            mtl.MultiHeadTask(
                "all",
                heads,
                {n: nn.CrossEntropyLoss() for n in heads},
                train=ManyHeads(data["both"], num_tasks),
                batch_size=32,
            )
        ]
    else:
        tasks = [
            mtl.Task(f"t{i}", Classifier(in_features=TRUNK[1]), nn.CrossEntropyLoss(), train=data[i % 2], batch_size=32)
            for i in range(num_tasks)
        ]
    optimizer = (
        None
        if OPTIMIZER == "defaults"
        else functools.partial(torch.optim.Adam, lr=1e-3, fused=OPTIMIZER == "same-fused")
    )
    module = mtl.MultiTaskModule(
        TRUNK[0](), tasks, algorithm=mtl.Joint(make()), optimizer=optimizer, finite_check_every_n_steps=10_000
    )
    timer = TimeBoth()
    fit_bare(module, mtl.MultiTaskDataModule.from_tasks(tasks), steps=steps + WARMUP, callbacks=[timer])
    return statistics.median(timer.wall[WARMUP:]), statistics.median(timer.cpu[WARMUP:])


def libmtl_times(num_tasks: int, method: str, steps: int, data: dict) -> tuple[float, float]:
    libmtl = import_libmtl()
    _, weighting_name, weight_args, rep_grad, one_input = METHODS[method]
    weighting = getattr(libmtl.weighting, weighting_name)
    names = [f"t{i}" for i in range(num_tasks)]

    class Model(libmtl.architecture.HPS, weighting):  # what LibMTL's Trainer builds
        def __init__(self) -> None:
            decoders = nn.ModuleDict({n: Classifier(in_features=TRUNK[1]) for n in names})
            super().__init__(names, TRUNK[0], decoders, rep_grad, not one_input, torch.device("cpu"))
            self.init_param()

        def zero_grad_share_params(self) -> None:
            # LibMTL 1.1.5 was written for torch 1.x, whose zero_grad() zeroed the gradients;
            # torch 2 sets them to None and LibMTL's _reset_grad then fails on `None.data`
            self.encoder.zero_grad(set_to_none=False)

    torch.manual_seed(0)
    model = Model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=OPTIMIZER == "same-fused")
    loss_fn = nn.CrossEntropyLoss()
    if one_input:
        loader = iter(DataLoader(data["both"], batch_size=32, shuffle=True, drop_last=True))
    else:
        loaders = [iter(DataLoader(data[i % 2], batch_size=32, shuffle=True, drop_last=True)) for i in range(num_tasks)]
    wall, cpu = [], []
    for _ in range(steps + WARMUP):
        batches = next(loader) if one_input else [next(it) for it in loaders]
        start_wall, start_cpu = time.perf_counter(), time.thread_time()
        model.train()
        losses = torch.zeros(num_tasks)
        if one_input:
            x, y = batches
            preds = model(x)
            for tn, name in enumerate(names):
                losses[tn] = loss_fn(preds[name], (y["right"], y["left"])[tn % 2])
        else:
            for tn, name in enumerate(names):
                x, y = batches[tn]
                losses[tn] = loss_fn(model(x, name)[name], y)
        optimizer.zero_grad()
        model.backward(losses, **weight_args)
        optimizer.step()
        cpu.append(time.thread_time() - start_cpu)
        wall.append(time.perf_counter() - start_wall)
    return statistics.median(wall[WARMUP:]), statistics.median(cpu[WARMUP:])


def compare(num_tasks: int, method: str, steps: int, rounds: int, data: dict) -> dict[str, Any]:
    """Interleaved rounds; medians of per-round ratios (m3l / LibMTL) for wall and CPU time."""
    ours, theirs, errors = [], [], []
    for r in range(rounds):
        for lib in ("m3l", "libmtl") if r % 2 == 0 else ("libmtl", "m3l"):
            try:
                (ours if lib == "m3l" else theirs).append(
                    (m3l_times if lib == "m3l" else libmtl_times)(num_tasks, method, steps, data)
                )
            except Exception as exc:  # noqa: BLE001 - reported under the table
                errors.append(f"{lib}: {type(exc).__name__}: {exc}".splitlines()[0])
                break
    out: dict[str, Any] = {"errors": sorted(set(errors))}
    for i, kind in enumerate(("wall", "cpu")):
        if ours:
            out[f"m3l_{kind}"] = statistics.median(t[i] for t in ours)
        if theirs:
            out[f"libmtl_{kind}"] = statistics.median(t[i] for t in theirs)
        pairs = list(zip(ours, theirs))
        if pairs:
            out[f"ratio_{kind}"] = statistics.median(a[i] / b[i] for a, b in pairs)
    return out


def breakdown(num_tasks: int, method: str, steps: int, rounds: int, data: dict) -> list[str]:
    """Where a step's CPU time goes in each library: thread time inside the parts both have
    (forward with the losses, backward, optimizer step, zero_grad) and m3l's own (the step
    context, logging), per step, median over interleaved rounds."""
    import lightning.pytorch.core.optimizer as lightning_optimizer

    from m3l.mtl import module as m3l_module

    libmtl = import_libmtl()
    totals: dict[str, float] = {}
    originals = []

    def spy(owner: Any, name: str, part: str) -> None:
        original = getattr(owner, name)
        originals.append((owner, name, original))

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                totals[part] = totals.get(part, 0.0) + time.thread_time() - start

        setattr(owner, name, timed)

    module_cls = m3l_module.MultiTaskModule
    parts = {
        (module_cls, "training_step"): "m3l: whole training_step",
        (module_cls, "_task_losses"): "forward (backbone, heads; m3l: with the losses)",
        (module_cls, "manual_backward"): "backward",
        (sys.modules[f"LibMTL.weighting.{METHODS[method][1]}"].__dict__[METHODS[method][1]], "backward"): "backward",
        (
            libmtl.architecture.abstract_arch.AbsArchitecture,
            "forward",
        ): "forward (backbone, heads; m3l: with the losses)",
        (lightning_optimizer.LightningOptimizer, "step"): "m3l: Lightning's optimizer step (Adam inside)",
        (torch.optim.Adam, "step"): "Adam.step",
        (torch.optim.Optimizer, "zero_grad"): "zero_grad",
        (module_cls, "step_context"): "m3l: step context",
        (module_cls, "log"): "m3l: self.log / log_dict",
        (module_cls, "log_dict"): "m3l: self.log / log_dict",
    }
    for (owner, name), part in parts.items():
        spy(owner, name, part)
    per_lib: dict[str, list[dict[str, float]]] = {"m3l": [], "libmtl": []}
    try:
        for r in range(rounds):
            for lib in ("m3l", "libmtl") if r % 2 == 0 else ("libmtl", "m3l"):
                totals.clear()
                _, cpu = (m3l_times if lib == "m3l" else libmtl_times)(num_tasks, method, steps, data)
                n = steps + WARMUP
                per_lib[lib].append({"step (median)": cpu * 1e3} | {k: v / n * 1e3 for k, v in totals.items()})
    finally:
        for owner, name, original in reversed(originals):
            setattr(owner, name, original)
    names = ["step (median)", *dict.fromkeys(parts.values())]
    lines = [
        f"where {method}'s step time goes at T={num_tasks}, CPU ms per step (thread time; median over "
        f"{rounds} interleaved rounds of {steps} steps; parts: mean over a round's steps; "
        f"optimizer: {OPTIMIZER})",
        "| part | m3l | LibMTL |",
        "|---|---:|---:|",
    ]
    for part in names:
        cells = []
        for lib in ("m3l", "libmtl"):
            values = [r[part] for r in per_lib[lib] if part in r]
            cells.append(f"{statistics.median(values):.2f}" if values else "-")
        lines.append(f"| {part} | " + " | ".join(cells) + " |")
    return lines


def rss_child(lib: str, method: str, num_tasks: int, steps: int) -> None:
    """Run one library's method in this (fresh) process; print RSS before and peak, in MB."""
    data = load_data(steps)
    import_libmtl()  # imported on both sides, before the peak is reset
    before = _status_mb("VmRSS")
    try:  # reset the peak (VmHWM) to the current RSS, so the peak is the training's
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    (m3l_times if lib == "m3l" else libmtl_times)(num_tasks, method, steps, data)
    peak = _status_mb("VmHWM")
    if peak != peak:  # no /proc: the whole process's peak
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"before": before, "peak": peak}))


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_table(num_tasks: int, steps: int) -> list[str]:
    lines = [
        f"peak RSS at T={num_tasks}, MB (a fresh process each; both import torch, Lightning, m3l and "
        "LibMTL and load the data; then the peak is reset; 'training' = peak minus the RSS before the "
        "first step)",
        "| method | m3l peak | m3l training | LibMTL peak | LibMTL training |",
        "|---|---:|---:|---:|---:|",
    ]
    for method in METHODS:
        cells = []
        for lib in ("m3l", "libmtl"):
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--rss-child",
                    lib,
                    method,
                    str(num_tasks),
                    str(steps),
                    "--optimizer",
                    OPTIMIZER,
                    *(["--tiny"] if TRUNK[0] is TinyTrunk else []),
                ],
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
            try:
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                cells += [f"{r['peak']:.0f}", f"{r['peak'] - r['before']:.0f}"]
            except (IndexError, ValueError):
                cells += ["failed", "-"]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), metavar="METHOD")
    parser.add_argument("--rss", action="store_true", help="also the peak-RSS table at the largest T")
    parser.add_argument("--rss-only", action="store_true", help="only the peak-RSS table")
    parser.add_argument("--rss-child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument(
        "--breakdown", action="store_true", help="only where each library's step time goes (first method, smallest T)"
    )
    parser.add_argument(
        "--optimizer",
        choices=["defaults", "same-loop", "same-fused"],
        default="defaults",
        help="defaults: each library's default Adam (m3l fused, LibMTL loop); same-*: both "
        "the loop or both the fused implementation",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a 40-parameter trunk: the step time is each library's per-step framework work",
    )
    args = parser.parse_args()
    global OPTIMIZER, TRUNK
    OPTIMIZER = args.optimizer
    if args.tiny:
        TRUNK = (TinyTrunk, 8)
    logging.basicConfig(level=logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    if args.rss_child:
        lib, method, tasks, steps = args.rss_child
        rss_child(lib, method, int(tasks), int(steps))
        return
    import_libmtl()
    if args.rss_only:
        print("\n".join(rss_table(max(args.tasks), args.steps)))
        return
    data = load_data(args.steps)
    if args.breakdown:
        print("\n".join(breakdown(min(args.tasks), args.methods[0], args.steps, args.rounds, data)))
        return
    params = sum(p.numel() for p in TRUNK[0]().parameters())
    print(
        f"# m3l / LibMTL 1.1.5, {datetime.date.today()}, {cpu_line()}, torch {torch.__version__}, "
        f"{args.threads} thread(s), busy shared machine, optimizer: {args.optimizer}"
    )
    print(
        f"backbone {params / 1e6:.2f}M parameters ({TRUNK[0].__name__}), batch 32/task, {args.rounds} interleaved rounds x "
        f"{args.steps} steps; ms = median step time; ratio = median over rounds of m3l/LibMTL (< 1: m3l faster)"
    )
    head = (
        "| method | "
        + " | ".join(f"T={t} m3l ms | T={t} LibMTL ms | T={t} ratio wall | T={t} ratio CPU" for t in args.tasks)
        + " |"
    )
    print(head)
    print("|---|" + "---:|---:|---:|---:|" * len(args.tasks))
    notes: list[str] = []
    for method in args.methods:
        cells = []
        for t in args.tasks:
            r = compare(t, method, args.steps, args.rounds, data)
            notes += [f"{method}, T={t}, {e}" for e in r["errors"]]
            cells += [
                f"{r['m3l_wall'] * 1e3:.1f}" if "m3l_wall" in r else "failed",
                f"{r['libmtl_wall'] * 1e3:.1f}" if "libmtl_wall" in r else "failed",
                f"{r['ratio_wall']:.2f}" if "ratio_wall" in r else "-",
                f"{r['ratio_cpu']:.2f}" if "ratio_cpu" in r else "-",
            ]
        print(f"| {method} | " + " | ".join(cells) + " |", flush=True)
    for note in notes:
        print(f"failed: {note}")
    if args.rss:
        print()
        print("\n".join(rss_table(max(args.tasks), args.steps)))


if __name__ == "__main__":
    main()
