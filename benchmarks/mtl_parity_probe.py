"""Where m3l's and LibMTL 1.1.5's MGDA and PCGrad updates differ, on the Gramians of real training.

``mtl_quality.py`` trains the same model, data and seeds through both libraries; for MGDA and
PCGrad the two columns differed by more than the seed spread. This probe trains m3l (the
quality benchmark's setup: ``--scale`` of Multi-Fashion, all-in-one restoration), records the
task Gramian ``G = J J^T`` of every step, and feeds each one to both libraries' solvers: m3l's
(torchjd 0.18's ``MGDAWeighting`` / ``PCGradWeighting``) and LibMTL's own code
(``MGDA._find_min_norm_element``, which reads ``J`` only through ``J J^T``; PCGrad's
projection loop, re-expressed on ``G``: it is a sum of the task gradients with weights that
depend on ``G`` alone). The difference of two updates ``d = w^T J`` is measured exactly from
the Gramian: ``|d_a - d_b| / |d_a| = sqrt(dw^T G dw / w_a^T G w_a)``.

    python benchmarks/mtl_parity_probe.py [--scale 0.05] [--seed 0]

LibMTL must be installed (``pip install --no-deps LibMTL==1.1.5``).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import logging
import statistics
import sys
import warnings
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).parent))
from machine import cpu_line  # noqa: E402
from mtl_quality import BENCHES, import_libmtl, run_m3l  # noqa: E402


def record_gramians(bench_name: str, method: str, scale: float, seed: int) -> list[Tensor]:
    """The Gramian of every step of an m3l fit (as torchjd's weighting receives it)."""
    from torchjd.aggregation._mgda import MGDAWeighting
    from torchjd.aggregation._pcgrad import PCGradWeighting

    cls = {"MGDA": MGDAWeighting, "PCGrad": PCGradWeighting}[method]
    seen: list[Tensor] = []
    original = cls.forward

    def spy(self, gramian: Tensor, /) -> Tensor:
        seen.append(gramian.detach().double().clone())
        return original(self, gramian)

    cls.forward = spy
    try:
        bench = BENCHES[bench_name](scale)
        run_m3l(bench, method, seed, bench.tasks)
    finally:
        cls.forward = original
    return seen


def root(gramian: Tensor) -> Tensor:
    """``M`` with ``M M^T = gramian``: what LibMTL's solver gets as the Jacobian."""
    values, vectors = torch.linalg.eigh(gramian)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def relative(gramian: Tensor, a: Tensor, b: Tensor) -> float:
    """``|a^T J - b^T J| / |a^T J|`` from the Gramian."""
    d = (a - b).double()
    return float((d @ gramian @ d).clamp_min(0).sqrt() / (a.double() @ gramian @ a.double()).clamp_min(1e-30).sqrt())


def min_norm_weights(gramian: Tensor) -> Tensor:
    """The exact min-norm point of the simplex under ``gramian`` (every support tried: T <= 4)."""
    n = gramian.shape[0]
    best, best_value = None, float("inf")
    for size in range(1, n + 1):
        for support in itertools.combinations(range(n), size):
            idx = list(support)
            kkt = torch.zeros(size + 1, size + 1, dtype=torch.float64)
            kkt[:size, :size] = gramian[idx][:, idx]
            kkt[:size, size] = kkt[size, :size] = 1.0
            rhs = torch.zeros(size + 1, dtype=torch.float64)
            rhs[size] = 1.0
            sol = torch.linalg.lstsq(kkt, rhs.unsqueeze(1)).solution.squeeze(1)[:size]
            if (sol < -1e-12).any() or abs(float(sol.sum()) - 1) > 1e-9:
                continue
            w = torch.zeros(n, dtype=torch.float64)
            w[idx] = sol
            value = float(w @ gramian @ w)
            if value < best_value:
                best, best_value = w, value
    assert best is not None
    return best


def mgda_rows(gramians: list[Tensor]) -> dict[str, float]:
    from torchjd.aggregation._mgda import MGDAWeighting

    libmtl = import_libmtl().weighting.MGDA()
    libmtl.device = torch.device("cpu")
    ours = MGDAWeighting()  # m3l's MGDA: torchjd's defaults (epsilon 1e-3, max_iters 100)
    diffs, clipped = [], 0
    for g in gramians:
        w_ours = ours(g.float()).double()
        w_lib = libmtl._find_min_norm_element(root(g).float()).double()  # noqa: SLF001
        exact = min_norm_weights(g)
        diffs.append((relative(g, exact, w_ours), relative(g, exact, w_lib)))
        if g.shape[0] == 2:  # LibMTL's 2-task rule stops at gamma = 0.999 / 0.001 where the optimum is a vertex
            clipped += int(bool(g[0, 1] >= g[0, 0] or g[0, 1] >= g[1, 1]))
    return {
        "steps": len(gramians),
        "m3l median": statistics.median(d[0] for d in diffs),
        "m3l max": max(d[0] for d in diffs),
        "LibMTL median": statistics.median(d[1] for d in diffs),
        "LibMTL max": max(d[1] for d in diffs),
        "vertex steps": clipped,
    }


def pcgrad_weights(gramian: Tensor, orders: list[list[int]], libmtl_rule: bool) -> Tensor:
    """PCGrad's weights for given projection orders (one per task), on the Gramian. With
    ``libmtl_rule``, task ``i`` is also projected off its own gradient when its projected
    gradient turned against it (LibMTL loops over every task, ``i`` included)."""
    n = gramian.shape[0]
    total = torch.zeros(n, dtype=gramian.dtype)
    for i in range(n):
        w = torch.zeros(n, dtype=gramian.dtype)
        w[i] = 1.0
        for j in orders[i]:
            if j == i and not libmtl_rule:
                continue
            inner = gramian[j] @ w
            if inner < 0:
                w[j] -= inner / gramian[j, j]
        total += w
    return total


def pcgrad_rows(gramians: list[Tensor]) -> dict[str, float]:
    n = gramians[0].shape[0]
    order_diffs, self_steps, rule_diffs = [], 0, []
    perms = list(itertools.permutations(range(n)))
    for g in gramians:
        base = pcgrad_weights(g, [list(range(n))] * n, libmtl_rule=False)
        worst = max(
            relative(g, base, pcgrad_weights(g, list(orders), libmtl_rule=False))
            for orders in itertools.product(perms, repeat=n)
        )
        order_diffs.append(worst)
        lib = pcgrad_weights(g, [list(range(n))] * n, libmtl_rule=True)
        rule_diffs.append(relative(g, base, lib))
        self_steps += int(rule_diffs[-1] > 1e-12)
    return {
        "steps": len(gramians),
        "order median": statistics.median(order_diffs),
        "order max": max(order_diffs),
        "self-projection steps": self_steps,
        "self-projection max": max(rule_diffs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    print(
        f"# MGDA / PCGrad parity probe, {datetime.date.today()}, {cpu_line()}, torch {torch.__version__} "
        f"(busy shared machine); Gramians of m3l fits at --scale {args.scale}, seed {args.seed}\n"
    )
    print(
        "MGDA: distance of each library's update from the exact min-norm point (every support solved), |d - d*| / |d*|"
    )
    print(
        "| benchmark | T | steps | m3l median | m3l max | LibMTL median | LibMTL max | steps with the optimum at a vertex (T=2) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for bench in ("fashion", "allinone"):
        grams = record_gramians(bench, "MGDA", args.scale, args.seed)
        r = mgda_rows(grams)
        print(
            f"| {bench} | {grams[0].shape[0]} | {r['steps']} | {r['m3l median']:.1e} | {r['m3l max']:.1e} | "
            f"{r['LibMTL median']:.1e} | {r['LibMTL max']:.1e} | "
            + (f"{r['vertex steps']}" if grams[0].shape[0] == 2 else "-")
            + " |",
            flush=True,
        )
    print(
        "\nPCGrad: how much the random projection order moves the update (worst order against a fixed "
        "one), and LibMTL's projection of a task off its own gradient (the paper skips j = i)"
    )
    print(
        "| benchmark | T | steps | order: median | order: max | steps where LibMTL's self-projection acts | its max effect |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for bench in ("fashion", "allinone"):
        grams = record_gramians(bench, "PCGrad", args.scale, args.seed)
        r = pcgrad_rows(grams)
        print(
            f"| {bench} | {grams[0].shape[0]} | {r['steps']} | {r['order median']:.1e} | {r['order max']:.1e} | "
            f"{r['self-projection steps']} | {r['self-projection max']:.1e} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
