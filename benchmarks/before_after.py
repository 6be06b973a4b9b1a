"""One benchmark on two source trees, in one run: before and after a change.

Runs a benchmark script of this folder (the after tree's copy, so both sides are measured by
the same code) as a subprocess with ``PYTHONPATH=<tree>/src``, alternating before, after,
before, after... ``--repeats`` times, reads the Markdown table rows it prints
(``| name | value | ...``) and prints, per row and numeric column, the median over repeats of
each tree (or the minimum, ``--stat min``) and their ratio (after / before; for times, < 1 is faster). Columns that are
already ratios to a baseline measured in the same subprocess (``x EW``, ``ratio wall`` vs
LibMTL) are the ones to read on a busy machine.

    python benchmarks/before_after.py --before /tmp/old --after . --columns "x EW" -- \\
        mtl_aggregators.py --steps 20

Make the before tree with ``git worktree add --detach /tmp/old <commit>``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_line

HERE = Path(__file__).resolve().parent


def parse_tables(text: str) -> list[tuple[list[str], dict[str, list[str]]]]:
    """Every Markdown table in ``text``: its header cells (the row above its ``|---|`` line)
    and ``{row name: cells}``."""
    tables: list[tuple[list[str], dict[str, list[str]]]] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("|"):
            continue
        if set(line) <= set("|-: "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        below = lines[i + 1] if i + 1 < len(lines) else ""
        if below.startswith("|") and set(below) <= set("|-: "):
            tables.append((cells[1:], {}))
        elif tables:
            tables[-1][1][cells[0]] = cells[1:]
    return tables


def number(cell: str) -> float | None:
    match = re.match(r"^-?\d+(\.\d+)?", cell)
    return float(match.group(0)) if match else None


def run(tree: Path, script: list[str]) -> str:
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    done = subprocess.run(
        [sys.executable, str(HERE / script[0]), *script[1:]],
        env=env,
        cwd=HERE.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"{script[0]} failed on {tree} (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="source tree before the change")
    parser.add_argument("--after", type=Path, default=HERE.parent, help="source tree after (default: this one)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each tree, interleaved")
    parser.add_argument("--columns", default="", help="regex: only the columns whose header matches")
    parser.add_argument(
        "--stat",
        choices=("median", "min"),
        default="median",
        help="over the repeats of a tree; min (best of N) resists a busy machine's noise",
    )
    parser.add_argument("script", nargs=argparse.REMAINDER, help="-- SCRIPT [ARGS]: a script of benchmarks/")
    args = parser.parse_args()
    script = args.script[1:] if args.script[:1] == ["--"] else args.script
    if not script:
        parser.error("give the benchmark after --, e.g. -- mtl_aggregators.py --steps 20")
    results: dict[str, list[list[tuple[list[str], dict[str, list[str]]]]]] = {"before": [], "after": []}
    start = time.time()
    for _ in range(args.repeats):
        for side in ("before", "after"):
            tree = getattr(args, side).resolve()
            results[side].append(parse_tables(run(tree, script)))
    print(
        f"# {' '.join(script)}: before {args.before} vs after {args.after}, {args.repeats} interleaved runs "
        f"each, {args.stat} of each; {cpu_line()}; {time.time() - start:.0f} s"
    )
    print("| row | column | before | after | after / before |")
    print("|---|---|---:|---:|---:|")
    for t, (header, first_rows) in enumerate(results["after"][0]):
        wanted = [i for i, h in enumerate(header) if re.search(args.columns, h)]
        for name in first_rows:
            for i in wanted:
                values = {}
                for side, runs in results.items():
                    found = [
                        number(tables[t][1][name][i])
                        for tables in runs
                        if t < len(tables) and name in tables[t][1] and i < len(tables[t][1][name])
                    ]
                    found = [v for v in found if v is not None]
                    values[side] = (min(found) if args.stat == "min" else statistics.median(found)) if found else None
                b, a = values["before"], values["after"]
                ratio = f"{a / b:.2f}" if a is not None and b else "-"
                fmt = lambda v: "-" if v is None else f"{v:g}"  # noqa: E731
                print(f"| {name} | {header[i]} | {fmt(b)} | {fmt(a)} | {ratio} |")


if __name__ == "__main__":
    main()
