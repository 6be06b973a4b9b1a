"""How quickly the command line answers, and how much it prints.

1. Wall time of ``python -m m3l.run.train --help`` and of a failing command (``test`` with a
   checkpoint that does not exist) against ``python -c "import lightning"`` (the baseline,
   ratio 1.00), run alternately, medians.
2. Lines each of those commands prints, and the lines ``train model=demo`` prints before its
   first progress line (output piped into a file, as in a Slurm log; one stream, unbuffered).

Compare source trees in one run (e.g. a snapshot of main before a change, and this one), the
commands of all trees alternating::

    python benchmarks/cli_startup.py [--src before=/tmp/before/src --src after=src] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from machine import cpu_line

PROGRESS = re.compile(r"train epoch \d+|Epoch \d+:")


def _env(src: Path, runs: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(src), M3L_RUNS_DIR=str(runs), PYTHONUNBUFFERED="1")
    env.pop("COLUMNS", None)
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, int, str]:
    """(wall s, CPU s of the command, exit code, output): CPU time is what the command costs
    on a machine shared with other work; wall time is what its user waits."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # one stream, unbuffered: the lines in the order a log file gets them
    proc = subprocess.run(
        cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.returncode, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--src",
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="a source tree to run (repeatable); default: this checkout's src",
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    here = Path(__file__).resolve().parents[1] / "src"
    trees = dict(item.split("=", 1) for item in args.src) if args.src else {"this": str(here)}
    trees = {label: Path(path).resolve() for label, path in trees.items()}
    py = sys.executable
    commands = {
        '`python -c "import lightning"`': [py, "-c", "import lightning"],
        "`python -m m3l.run.train --help`": [py, "-m", "m3l.run.train", "--help"],
        "`python -m m3l.run.test model=demo checkpoint=missing.ckpt` (fails)": [
            py,
            "-m",
            "m3l.run.test",
            "model=demo",
            "checkpoint=missing.ckpt",
        ],
    }
    demo = [
        py,
        "-m",
        "m3l.run.train",
        "model=demo",
        "trainer.max_epochs=1",
        "++trainer.limit_train_batches=2",
        "++trainer.limit_val_batches=1",
        "callbacks.progress_bar.log_interval_s=0",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        times = {(label, name): [] for label in trees for name in commands}
        cpus = {(label, name): [] for label in trees for name in commands}
        lines: dict[tuple[str, str], int] = {}
        codes: dict[tuple[str, str], int] = {}
        for _ in range(args.repeats):
            for name, cmd in commands.items():
                for label, src in trees.items():
                    seconds, cpu, code, out = _run(cmd, _env(src, work / "runs"), work)
                    times[label, name].append(seconds)
                    cpus[label, name].append(cpu)
                    lines[label, name], codes[label, name] = len(out.splitlines()), code
        demo_lines = {}
        for label, src in trees.items():
            _, _, code, out = _run(demo, _env(src, work / "runs"), work)
            text = out.splitlines()
            first = next((i for i, line in enumerate(text) if PROGRESS.search(line)), len(text))
            demo_lines[label] = (code, len(text), first, text)
    print(f"machine: {cpu_line()} (busy shared machine), {date.today()}, medians of {args.repeats}")
    for label, src in trees.items():
        print(f"{label}: {src}")
    print("\n| tree | command | exit | lines printed | wall s | ratio | CPU s | ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for label in trees:
        first = next(iter(commands))
        base, base_cpu = statistics.median(times[label, first]), statistics.median(cpus[label, first])
        for name in commands:
            med, cpu = statistics.median(times[label, name]), statistics.median(cpus[label, name])
            print(
                f"| {label} | {name} | {codes[label, name]} | {lines[label, name]} | {med:.2f} | {med / base:.2f} "
                f"| {cpu:.2f} | {cpu / base_cpu:.2f} |"
            )
    print(
        "\n| tree | `train model=demo` (1 epoch of 2 batches, piped): exit | lines in all | lines before the first progress line |"
    )
    print("|---|---:|---:|---:|")
    for label, (code, total, first, _) in demo_lines.items():
        print(f"| {label} | {code} | {total} | {first} |")
    if os.environ.get("CLI_STARTUP_SHOW"):
        for label, (_, _, first, text) in demo_lines.items():
            print(f"\n--- {label}: the lines before the first progress line\n" + "\n".join(text[: first + 1]))


if __name__ == "__main__":
    main()
