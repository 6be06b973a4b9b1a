"""The same multi-task training step in m3l and in LibMTL, side by side, on CPU.

Model: the ~1M-parameter LeNet trunk of ``mtl_aggregators.py`` shared by T tasks, each with
its own MultiMNIST dataset (LibMTL's ``multi_input``) and classification head, batch 32 per
task, Adam (lr 1e-3) on all parameters. A step is forward of every task, the method's
backward/aggregation and the optimizer step (data loading excluded on both sides). m3l runs
through Lightning (``MultiTaskModule`` + ``Joint``), LibMTL through its own ``HPS``
architecture mixed with its weighting class, as its ``Trainer`` does. Methods are those both
libraries have, with the same hyperparameters (CAGrad c=0.5, GradVac beta=0.5). GradDrop differs:
m3l drops on parameter gradients, LibMTL on representation gradients. LibMTL's ``IMTL`` is the hybrid IMTL (loss scaling + IMTL-G), m3l's is
IMTL-G alone: compare that row with care. Medians over ``--steps`` steps after 3 warm-up steps.

LibMTL 1.1.5 declares torchvision as a dependency but only its ResNet model uses it; install
it without dependencies (torchvision must not be installed next to m3l's torch):

    pip install --no-deps LibMTL==1.1.5
    python benchmarks/mtl_vs_libmtl.py [--steps 20] [--tasks 2 4 8]
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
import types
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from m3l.mtl import algorithms as A
from m3l.mtl.examples.multimnist import Classifier

sys.path.insert(0, str(Path(__file__).parent))
from mtl_aggregators import WIDTH, WideTrunk, measure, setup  # noqa: E402


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


# name -> (m3l factory, LibMTL weighting class name, LibMTL weight_args, LibMTL rep_grad)
METHODS = {
    "EW": (A.EqualWeighting, "EW", {}, False),
    "PCGrad": (A.PCGrad, "PCGrad", {}, False),
    "MGDA": (A.MGDA, "MGDA", {"mgda_gn": "none"}, False),
    "CAGrad": (lambda: A.CAGrad(c=0.5), "CAGrad", {"calpha": 0.5, "rescale": 1}, False),
    "IMTL (m3l: IMTL-G)": (A.IMTLG, "IMTL", {}, False),
    "GradVac": (lambda: A.GradVac(beta=0.5), "GradVac", {"beta": 0.5}, False),
    # m3l's GradDrop works on parameter gradients only, LibMTL's on the representation only
    "GradDrop (m3l: parameters, LibMTL: representation)": (A.GradDrop, "GradDrop", {"leak": 0.0}, True),
}


def libmtl_step_time(num_tasks: int, method: str, steps: int, data: dict) -> float:
    libmtl = import_libmtl()
    _, weighting_name, weight_args, rep_grad = METHODS[method]
    weighting = getattr(libmtl.weighting, weighting_name)
    names = [f"t{i}" for i in range(num_tasks)]

    class Model(libmtl.architecture.HPS, weighting):  # what LibMTL's Trainer builds
        def __init__(self) -> None:
            decoders = nn.ModuleDict({n: Classifier(in_features=WIDTH) for n in names})
            super().__init__(names, WideTrunk, decoders, rep_grad, True, torch.device("cpu"))
            self.init_param()

        def zero_grad_share_params(self) -> None:
            # LibMTL 1.1.5 was written for torch 1.x, whose zero_grad() zeroed the gradients;
            # torch 2 sets them to None and LibMTL's _reset_grad then fails on `None.data`
            self.encoder.zero_grad(set_to_none=False)

    torch.manual_seed(0)
    model = Model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    loaders = [iter(DataLoader(data[i % 2], batch_size=32, shuffle=True, drop_last=True)) for i in range(num_tasks)]
    times = []
    for _ in range(steps):
        batches = [next(it) for it in loaders]
        start = time.perf_counter()
        model.train()
        losses = torch.zeros(num_tasks)
        for tn, name in enumerate(names):
            x, y = batches[tn]
            losses[tn] = loss_fn(model(x, name)[name], y)
        optimizer.zero_grad()
        model.backward(losses, **weight_args)
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[3:])


def main() -> None:
    args, data, params = setup(__doc__)
    import_libmtl()
    print(f"backbone {params / 1e6:.2f}M parameters, batch 32/task, {args.steps} steps, CPU "
          f"{torch.get_num_threads()} threads; median ms/step; ratio = m3l / LibMTL (< 1: m3l faster)")
    print("| method | " + " | ".join(f"T={t} m3l | T={t} LibMTL | T={t} ratio" for t in args.tasks) + " |")
    print("|---|" + "---:|---:|---:|" * len(args.tasks))
    notes: list[str] = []
    for name, (make, *_rest) in METHODS.items():
        cells = []
        for t in args.tasks:
            ours = theirs = None
            # alternate which library runs first so neither always gets the warmer caches
            order = ("m3l", "libmtl") if t % 4 else ("libmtl", "m3l")
            for lib in order:
                try:
                    if lib == "m3l":
                        ours = measure(t, make, args.steps, data) * 1e3
                    else:
                        theirs = libmtl_step_time(t, name, args.steps, data) * 1e3
                except Exception as exc:  # noqa: BLE001 - reported under the table
                    notes.append(f"{name}, T={t}, {lib}: {type(exc).__name__}: {exc}".splitlines()[0])
            cells += [
                f"{ours:.1f}" if ours else "failed",
                f"{theirs:.1f}" if theirs else "failed",
                f"{ours / theirs:.2f}" if ours and theirs else "-",
            ]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    for note in notes:
        print(f"failed: {note}")


if __name__ == "__main__":
    main()
