"""Quality of the multi-task methods: Delta_m% against single-task baselines, over seeds,
with the same runs through LibMTL 1.1.5 beside m3l's.

Two benchmarks on real data that installs offline:

* ``fashion``: Multi-Fashion, two Fashion-MNIST items overlaid (Sabour et al.'s construction,
  :class:`m3l.mtl.examples.multimnist.MultiMNIST` with ``source="fashion"``) from the full
  Debian ``dataset-fashion-mnist`` (pairs drawn from the 60k training images; test pairs from
  the 10k test images). Two heads (left, right item) on one LeNet trunk, one dataset
  (a :class:`MultiHeadTask`; LibMTL's ``multi_input=False``). Metric: accuracy.
* ``allinone``: all-in-one restoration, three tasks with their own data (Gaussian noise
  sigma 25/255, Gaussian blur sigma 0.5-2, JPEG quality 10-40) on m3l's built-in real photos,
  the DnCNN-style trunk and residual heads of ``model=mtl_allinone`` (narrowed to 16 channels,
  depth 4, for a CPU budget); LibMTL's ``multi_input=True``. Training patches are drawn once
  (fixed across methods, seeds and libraries); test: the 4 held-out photos, 128x128 centre
  crops. Metric: PSNR (dB).

Single-task baselines train the same trunk and one head with the same budget (epochs, batch,
optimizer). Delta_m% (Maninis et al.) is computed per seed against the single-task models of
the same seed, then averaged: mean +- std over seeds. The "− EW" columns give each method's
Delta_m minus EW's of the same library and seed: within one library and seed every method sees
the same data order, which the two libraries draw differently (Lightning's sampler, a seeded
generator), so these columns are the ones to compare across libraries. Every method uses Adam (lr 1e-3) on all
parameters, and the final model is evaluated (no model selection). The same seed gives the
same initial weights in m3l and LibMTL (one trunk and heads built, then copied into both).

Results go to a JSON-lines file, one line per finished run; a rerun skips what is there, so
an interrupted run resumes. ``--quick``: one seed, a few methods, a reduced budget, the same
table. LibMTL 1.1.5 is optional (``pip install --no-deps LibMTL==1.1.5``; its package
``__init__`` imports torchvision, which must not be installed, so only its weighting and
architecture modules are loaded); without it its column says so.

``--against`` picks what the second column holds, to explain a difference between the
libraries: ``libmtl-m3l-batches`` feeds LibMTL the batches m3l's loaders yield (the update
rules without the data order), ``m3l-perturbed`` trains m3l from initial weights perturbed by
1e-7 (relative): how far rounding-level differences alone move a result.

    python benchmarks/mtl_quality.py [--quick] [--bench fashion allinone] [--seeds 0 1 2]
        [--results mtl_quality.jsonl] [--scale 0.1] [--epochs 3] [--against m3l-perturbed]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import logging
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from m3l import mtl
from m3l.mtl import algorithms as A
from m3l.mtl.delta_m import delta_m

sys.path.insert(0, str(Path(__file__).parent))
from machine import cpu_line  # noqa: E402
from bare_fit import fit_bare  # noqa: E402

LR = 1e-3

# name -> (m3l weighting factory, LibMTL (weighting, kwargs) or None when LibMTL 1.1.5 lacks it)
METHODS: dict[str, tuple[Callable[[], Any], tuple[str, dict[str, Any]] | None]] = {
    "EW": (A.EqualWeighting, ("EW", {})),
    "UW": (A.UncertaintyWeighting, ("UW", {})),
    "DWA": (lambda: A.DynamicWeightAverage(temperature=2.0), ("DWA", {"T": 2.0})),
    "RLW": (A.RandomWeighting, ("RLW", {"dist": "Normal"})),
    "FAMO": (A.FAMO, None),
    "GradNorm": (lambda: A.GradNorm(alpha=1.5), ("GradNorm", {"alpha": 1.5})),
    "PCGrad": (A.PCGrad, ("PCGrad", {})),
    "MGDA": (A.MGDA, ("MGDA", {"mgda_gn": "none"})),
    "CAGrad": (lambda: A.CAGrad(c=0.5), ("CAGrad", {"calpha": 0.5, "rescale": 1})),
    "IMTL-G": (A.IMTLG, ("IMTL", {})),
    "Nash-MTL": (A.NashMTL, None),
    "Aligned-MTL": (A.AlignedMTL, None),
    "UPGrad": (A.UPGrad, None),
}
QUICK_METHODS = ["EW", "PCGrad", "UPGrad"]
#: what the second column can hold (``--against``): LibMTL with its own seeded loaders; LibMTL fed
#: the batches m3l's loaders yield (the update rule without the data order); m3l itself from
#: initial weights perturbed by 1e-7 (relative): how far float rounding alone moves a result
SAME_BATCHES, PERTURBED = "libmtl-m3l-batches", "m3l-perturbed"
AGAINST = {"libmtl": "LibMTL", SAME_BATCHES: "LibMTL (m3l's batches)", PERTURBED: "m3l, weights perturbed 1e-7"}
PERTURBATION = 1e-7


# ---------------------------------------------------------------------------- benchmarks
@dataclass
class Bench:
    """One benchmark: its data (built once), model factory, metric, budget."""

    name: str
    tasks: list[str]
    metric: str
    higher_is_better: bool
    multi_input: bool
    train: dict[str, Any]  # task -> dataset (multi_input) or {"all": dataset}
    test: dict[str, Any]
    make_trunk: Callable[[], nn.Module]
    make_head: Callable[[], nn.Module]
    criterion: Callable[[], nn.Module]
    epochs: int
    batch_size: int
    budget: str

    def evaluate(self, trunk: nn.Module, heads: dict[str, nn.Module]) -> dict[str, float]:
        trunk.eval()
        out = {}
        with torch.no_grad():
            for task in heads:
                x, y = self.test[task]
                if self.metric == "acc":
                    pred = heads[task](trunk(x)).argmax(1)
                    out[task] = float((pred == y).float().mean() * 100)
                else:  # PSNR per image, averaged
                    pred = heads[task](trunk(x)).clamp(0, 1)
                    mse = ((pred - y) ** 2).flatten(1).mean(1)
                    out[task] = float((10 * torch.log10(1 / mse)).mean())
        trunk.train()
        return out


def fashion_bench(scale: float, epochs: int = 3) -> Bench:
    from m3l.mtl.examples.multimnist import Classifier, LeNet, MultiMNIST

    size = max(512, int(60_000 * scale))
    train = MultiMNIST("train", size, target="both", source="fashion", seed=0)
    test = MultiMNIST("test", 10_000, target="both", source="fashion", seed=1)
    return Bench(
        name="fashion",
        tasks=["left", "right"],
        metric="acc",
        higher_is_better=True,
        multi_input=False,
        train={"all": train},
        test={"left": (test.images, test.left), "right": (test.images, test.right)},
        make_trunk=LeNet,
        make_head=Classifier,
        criterion=nn.CrossEntropyLoss,
        epochs=epochs,
        batch_size=64,
        budget=f"{size:,} training pairs (from the 60k images), {epochs} epochs, batch 64, Adam lr 1e-3; "
        f"test: 10,000 pairs from the 10k test images; LeNet trunk (50 features), 2-layer heads",
    )


def allinone_bench(scale: float, epochs: int = 3) -> Bench:
    from m3l.data import degradations as D
    from m3l.data.datasets import CleanImageDataset
    from m3l.data.samples import sample_dir
    from m3l.mtl.examples.allinone import RestorationHead, RestorationTrunk

    degradations = {
        "denoise": lambda: D.GaussianNoise(sigma=25 / 255),
        "deblur": lambda: D.GaussianBlur(kernel_size=11, sigma_range=(0.5, 2.0)),
        "jpeg": lambda: D.JPEG(quality_range=(10, 40)),
    }
    per_task = max(64, int(5120 * scale))
    train, test = {}, {}
    for i, (task, make) in enumerate(degradations.items()):
        torch.manual_seed(1000 + i)  # patches, flips and degradations are drawn once
        ds = CleanImageDataset(sample_dir("train"), make(), patch_size=32, patches_per_image=per_task // 9 + 1)
        samples = [ds[j] for j in range(per_task)]
        train[task] = TensorDataset(
            torch.stack([s["input"] for s in samples]), torch.stack([s["target"] for s in samples])
        )
        ev = CleanImageDataset(sample_dir("val"), make(), train=False, eval_patch_size=128, seed=7)
        items = [ev[j] for j in range(len(ev))]
        test[task] = (torch.stack([s["input"] for s in items]), torch.stack([s["target"] for s in items]))
    return Bench(
        name="allinone",
        tasks=list(degradations),
        metric="psnr",
        higher_is_better=True,
        multi_input=True,
        train=train,
        test=test,
        make_trunk=lambda: RestorationTrunk(channels=3, features=16, depth=4),
        make_head=lambda: RestorationHead(in_channels=19, channels=3, hidden=16),
        criterion=nn.L1Loss,
        epochs=epochs,
        batch_size=8,
        budget=f"{per_task:,} 32x32 training patches per task (9 photos), {epochs} epochs, batch 8 per task, "
        "Adam lr 1e-3; test: 4 held-out photos, 128x128 centre crops; the trunk and heads of "
        "model=mtl_allinone narrowed to 16 channels, depth 4 (CPU budget)",
    )


BENCHES = {"fashion": fashion_bench, "allinone": allinone_bench}


def initial_model(
    bench: Bench, seed: int, tasks: list[str], perturb: float = 0.0
) -> tuple[nn.Module, dict[str, nn.Module]]:
    """The seed's trunk and heads; ``perturb``: every weight times ``1 + perturb * N(0, 1)``."""
    torch.manual_seed(seed)
    trunk = bench.make_trunk()
    heads = {t: bench.make_head() for t in tasks}
    if perturb:
        noise = torch.Generator().manual_seed(10_000 + seed)
        with torch.no_grad():
            for p in [*trunk.parameters(), *(q for h in heads.values() for q in h.parameters())]:
                p.mul_(1 + perturb * torch.randn(p.shape, generator=noise))
    return trunk, heads


# ---------------------------------------------------------------------------- m3l
class RecordBatches(L.Callback):
    """The batches m3l's loaders yield, per epoch, as ``{task: (inputs, {objective: target})}``."""

    def __init__(self) -> None:
        self.epochs: list[list[dict[str, Any]]] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epochs.append([])

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        from m3l.mtl.data import merge_task_batches

        self.epochs[-1].append(
            {name: pl_module.task_by_name[name].split_batch(b) for name, b in merge_task_batches(batch).items()}
        )


def run_m3l(
    bench: Bench,
    method: str | None,
    seed: int,
    tasks: list[str],
    record: RecordBatches | None = None,
    perturb: float = 0.0,
) -> dict[str, float]:
    """Train with m3l (Lightning + MultiTaskModule); ``method=None``: one task alone (STL);
    ``record`` collects the batches m3l's loaders yield; ``perturb``: see :func:`initial_model`."""
    trunk, heads = initial_model(bench, seed, tasks, perturb)
    crit = bench.criterion
    if bench.multi_input:
        task_objs = [mtl.Task(t, heads[t], crit(), train=bench.train[t], batch_size=bench.batch_size) for t in tasks]
    elif len(tasks) == 1:
        t = tasks[0]
        ds = bench.train["all"]
        single = TensorDataset(ds.images, getattr(ds, t))
        task_objs = [mtl.Task(t, heads[t], crit(), train=single, batch_size=bench.batch_size)]
    else:
        task_objs = [
            mtl.MultiHeadTask(
                "pair", heads, {t: crit() for t in tasks}, train=bench.train["all"], batch_size=bench.batch_size
            )
        ]
    weighting = METHODS[method][0]() if method else A.EqualWeighting()
    optimizer = lambda params: torch.optim.Adam(params, lr=LR)  # noqa: E731
    L.seed_everything(seed, verbose=False)
    module = mtl.MultiTaskModule(trunk, task_objs, algorithm=mtl.Joint(weighting), optimizer=optimizer)
    fit_bare(
        module, mtl.MultiTaskDataModule.from_tasks(task_objs), epochs=bench.epochs, callbacks=[record] if record else ()
    )
    return bench.evaluate(module.backbone, {t: module.heads[t] for t in tasks})


# ---------------------------------------------------------------------------- LibMTL
def import_libmtl() -> Any:
    """LibMTL's weighting and architecture modules (its package ``__init__`` needs torchvision)."""
    from mtl_vs_libmtl import import_libmtl as _import

    return _import()


def libmtl_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("LibMTL") is not None


_M3L_BATCHES: dict[tuple[str, int], list[list[dict[str, Any]]]] = {}


def m3l_batches(bench: Bench, seed: int) -> list[list[dict[str, Any]]]:
    """The batches an m3l run of ``seed`` sees, per epoch (recorded from an EW fit; within a
    seed every m3l method sees the same order)."""
    key = (bench.name, seed)
    if key not in _M3L_BATCHES:
        record = RecordBatches()
        run_m3l(bench, "EW", seed, bench.tasks, record=record)
        _M3L_BATCHES[key] = record.epochs
    return _M3L_BATCHES[key]


def run_libmtl(
    bench: Bench, method: str, seed: int, tasks: list[str], batches: list[list[dict[str, Any]]] | None = None
) -> dict[str, float]:
    """The same model, data, optimizer and seed through LibMTL's HPS + weighting, trained the
    way its ``Trainer`` does (epoch counter and per-epoch mean losses for DWA/GradNorm).

    ``batches``: train on these (per epoch, as :class:`RecordBatches` gives them, e.g. m3l's
    order) instead of LibMTL's own seeded loaders."""
    libmtl = import_libmtl()
    name, kwargs = METHODS[method][1]  # type: ignore[misc]
    weighting = getattr(libmtl.weighting, name)
    trunk, heads = initial_model(bench, seed, tasks)

    class Model(libmtl.architecture.HPS, weighting):
        def __init__(self) -> None:
            super().__init__(
                tasks, lambda: copy.deepcopy(trunk), nn.ModuleDict(heads), False, bench.multi_input, torch.device("cpu")
            )
            self.init_param()

        def zero_grad_share_params(self) -> None:  # torch 2's zero_grad sets None (see mtl_vs_libmtl)
            self.encoder.zero_grad(set_to_none=False)

    L.seed_everything(seed, verbose=False)  # torch, and Python's random (LibMTL's PCGrad order)
    model = Model()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    crit = bench.criterion()
    generator = torch.Generator().manual_seed(seed)
    if bench.multi_input:
        loaders = {
            t: DataLoader(bench.train[t], batch_size=bench.batch_size, shuffle=True, generator=generator) for t in tasks
        }
        steps = min(len(dl) for dl in loaders.values())
    else:
        ds = bench.train["all"]
        pairs = TensorDataset(ds.images, *(getattr(ds, t) for t in tasks))
        loader = DataLoader(pairs, batch_size=bench.batch_size, shuffle=True, generator=generator)
        steps = len(loader)
    if batches is not None:
        steps = len(batches[0])
    model.train_loss_buffer = np.zeros([len(tasks), bench.epochs])
    for epoch in range(bench.epochs):
        model.epoch = epoch
        sums = torch.zeros(len(tasks))
        if batches is not None:
            recorded = iter(batches[epoch])
        else:
            iters = {t: iter(dl) for t, dl in loaders.items()} if bench.multi_input else iter(loader)
        for _ in range(steps):
            losses = torch.zeros(len(tasks))
            if bench.multi_input:
                step = next(recorded) if batches is not None else None
                for i, t in enumerate(tasks):
                    if step is not None:
                        x, y = step[t][0], step[t][1][t]
                    else:
                        x, y = next(iters[t])
                    losses[i] = crit(model(x, t)[t], y)
            else:
                if batches is not None:
                    x, targets = next(iter(next(recorded).values()))
                    ys = [targets[t] for t in tasks]
                else:
                    x, *ys = next(iters)
                preds = model(x)
                for i, t in enumerate(tasks):
                    losses[i] = crit(preds[t], ys[i])
            optimizer.zero_grad()
            model.backward(losses, **kwargs)
            optimizer.step()
            sums += losses.detach()
        model.train_loss_buffer[:, epoch] = (sums / steps).numpy()
    return bench.evaluate(model.encoder, {t: model.decoders[t] for t in tasks})


# ---------------------------------------------------------------------------- orchestration
def load_results(path: Path) -> dict[tuple, dict]:
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[(r["bench"], r["lib"], r["method"], r["seed"], r["scale"])] = r
    return done


def jobs_for(
    bench: Bench, methods: list[str], seeds: list[int], with_libmtl: bool, libmtl: str = "libmtl"
) -> list[tuple[str, str, int]]:
    jobs = []
    for seed in seeds:
        jobs += [("stl", t, seed) for t in bench.tasks]
        for m in methods:
            jobs.append(("m3l", m, seed))
            if libmtl == PERTURBED or with_libmtl and METHODS[m][1] is not None:
                jobs.append((libmtl, m, seed))
    return jobs


def run_job(bench: Bench, lib: str, method: str, seed: int) -> dict[str, float]:
    if lib == "stl":
        return run_m3l(bench, None, seed, [method])
    if lib == "m3l":
        return run_m3l(bench, method, seed, bench.tasks)
    if lib == SAME_BATCHES:
        return run_libmtl(bench, method, seed, bench.tasks, batches=m3l_batches(bench, seed))
    if lib == PERTURBED:
        return run_m3l(bench, method, seed, bench.tasks, perturb=PERTURBATION)
    return run_libmtl(bench, method, seed, bench.tasks)


def summarize(
    bench: Bench,
    results: dict[tuple, dict],
    methods: list[str],
    seeds: list[int],
    scale: float,
    with_libmtl: bool,
    libmtl: str = "libmtl",
) -> list[str]:
    """The Markdown table: per-task metric (mean over seeds) and Delta_m% mean +- std per library
    (``libmtl``: the second column, one of :data:`AGAINST`)."""

    def get(lib: str, method: str, seed: int) -> dict[str, float] | None:
        r = results.get((bench.name, lib, method, seed, scale))
        return r["metrics"] if r else None

    baselines = {s: {t: (get("stl", t, s) or {}).get(t) for t in bench.tasks} for s in seeds}

    def one(lib: str, method: str, s: int) -> float | None:
        m, base = get(lib, method, s), baselines[s]
        if not m or any(v is None for v in base.values()):
            return None
        return delta_m(
            {t: {bench.metric: m[t]} for t in bench.tasks},
            {t: {bench.metric: base[t]} for t in bench.tasks},
            lambda task, metric: bench.higher_is_better,
        )

    def dm(lib: str, method: str) -> tuple[list[float], dict[str, list[float]]]:
        deltas, per_task = [], {t: [] for t in bench.tasks}
        for s in seeds:
            if (d := one(lib, method, s)) is not None:
                deltas.append(d)
                for t in bench.tasks:
                    per_task[t].append(get(lib, method, s)[t])
        return deltas, per_task

    def over_ew(lib: str, method: str) -> list[float]:
        """Delta_m(method) - Delta_m(EW) of the same library and seed: the data order, which
        differs between the libraries (Lightning's sampler, a seeded generator), cancels."""
        pairs = [(one(lib, method, s), one(lib, "EW", s)) for s in seeds]
        return [a - b for a, b in pairs if a is not None and b is not None]

    def fmt(values: list[float], digits: int = 2) -> str:
        if not values:
            return "-"
        if len(values) == 1:
            return f"{values[0]:+.{digits}f}" if digits == 2 else f"{values[0]:.{digits}f}"
        mean, std = statistics.mean(values), statistics.stdev(values)
        return f"{mean:+.2f} ± {std:.2f}" if digits == 2 else f"{mean:.{digits}f} ± {std:.{digits}f}"

    unit = "acc %" if bench.metric == "acc" else "PSNR dB"
    head = "| method | " + " | ".join(f"{t} {unit} (m3l)" for t in bench.tasks)
    theirs_name = AGAINST[libmtl]
    head += f" | Delta_m% m3l | Delta_m% {theirs_name} | m3l − EW | {theirs_name} − EW | n seeds |"
    lines = [head, "|---|" + "---:|" * (len(bench.tasks) + 5)]
    stl = {t: [baselines[s][t] for s in seeds if baselines[s][t] is not None] for t in bench.tasks}
    lines.append(
        "| single-task | "
        + " | ".join(fmt(stl[t], 2 if False else 1) for t in bench.tasks)
        + f" | 0 | 0 | - | - | {min(len(v) for v in stl.values())} |"
    )
    for m in methods:
        deltas, per_task = dm("m3l", m)
        if METHODS[m][1] is None and libmtl != PERTURBED:
            theirs = theirs_ew = "not in LibMTL 1.1.5"
        elif not with_libmtl and libmtl != PERTURBED:
            theirs = theirs_ew = "not run"
        else:
            errors = {
                r["error"] for s in seeds if (r := results.get((bench.name, libmtl, m, s, scale))) and "error" in r
            }
            theirs = f"failed ({sorted(errors)[0][:60]})" if errors else fmt(dm(libmtl, m)[0])
            theirs_ew = "-" if errors or m == "EW" else fmt(over_ew(libmtl, m))
        ours_ew = "-" if m == "EW" else fmt(over_ew("m3l", m))
        label = "IMTL-G (LibMTL: IMTL hybrid)" if m == "IMTL-G" else m
        lines.append(
            f"| {label} | "
            + " | ".join(fmt(per_task[t], 1) for t in bench.tasks)
            + f" | {fmt(deltas)} | {theirs} | {ours_ew} | {theirs_ew} | {len(deltas)} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", nargs="+", default=list(BENCHES), choices=list(BENCHES))
    parser.add_argument("--methods", nargs="+", default=None, choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        help="training set size as a fraction of 60k pairs (Multi-Fashion) and of 5120 "
        "patches per task (all-in-one); default 0.1, --quick: 0.03",
    )
    parser.add_argument("--epochs", type=int, default=3, help="training epochs of every run (default 3)")
    parser.add_argument("--quick", action="store_true", help="one seed, EW/PCGrad/UPGrad, 3%% of the data")
    parser.add_argument("--no-libmtl", action="store_true", help="m3l only, even when LibMTL is installed")
    parser.add_argument(
        "--against",
        choices=list(AGAINST),
        default="libmtl",
        help="the second column: LibMTL with its own seeded loaders (default); "
        f"{SAME_BATCHES}: LibMTL fed the batches m3l's loaders yield (recorded from an EW "
        f"fit of the same seed), the update rule without the data order; {PERTURBED}: m3l "
        f"from initial weights perturbed by {PERTURBATION:g} (relative), the spread that "
        "float rounding alone causes",
    )
    parser.add_argument("--results", type=Path, default=None, help="JSON-lines file (resumed if present)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: these models are small, and on a busy machine "
        "more threads wait for each other; results change slightly with the count)",
    )
    parser.add_argument(
        "--table-only", action="store_true", help="print the tables from the results file(s) without training anything"
    )
    parser.add_argument(
        "--merge", type=Path, nargs="*", default=[], help="more results files to read (e.g. from runs of other seeds)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    methods = args.methods or (QUICK_METHODS if args.quick else list(METHODS))
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    scale = args.scale if args.scale is not None else (0.03 if args.quick else 0.1)
    with_libmtl = libmtl_available() and not args.no_libmtl
    libmtl = args.against
    results_path = args.results or Path(tempfile.gettempdir()) / f"mtl_quality_{scale:g}.jsonl"
    results = {}
    for path in args.merge:
        results.update(load_results(path))
    results.update(load_results(results_path))
    print(
        f"# multi-task quality, {datetime.date.today()}, {cpu_line()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads (busy shared machine); results: {results_path}",
        flush=True,
    )
    benches = [BENCHES[name](scale, args.epochs) for name in args.bench]
    for seed in (
        [] if args.table_only else seeds
    ):  # seed-major, so an interrupted run has whole seeds of every benchmark
        for bench in benches:
            for lib, method, _ in jobs_for(bench, methods, [seed], with_libmtl, libmtl):
                key = (bench.name, lib, method, seed, scale)
                if key in results:
                    continue
                start = time.perf_counter()
                error = None
                try:
                    metrics = run_job(bench, lib, method, seed)
                except Exception as exc:  # noqa: BLE001 - LibMTL's own limits are reported, not fatal
                    if not lib.startswith("libmtl"):
                        raise
                    metrics, error = {}, f"{type(exc).__name__}: {exc}".splitlines()[0]
                record = {
                    "bench": bench.name,
                    "lib": lib,
                    "method": method,
                    "seed": seed,
                    "scale": scale,
                    "metrics": metrics,
                    "seconds": round(time.perf_counter() - start, 1),
                    "date": str(datetime.date.today()),
                }
                if error:
                    record["error"] = error
                results[key] = record
                with results_path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                print(
                    f"  {bench.name} {lib:6s} {method:12s} seed {seed}: "
                    + (error or ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
                    + f" ({record['seconds']} s)",
                    flush=True,
                )
    for bench in benches:
        print(f"\n## {bench.name}: {bench.budget}; seeds {seeds}\n")
        print("\n".join(summarize(bench, results, methods, seeds, scale, with_libmtl, libmtl)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
