"""How quickly the command line answers, and how much it prints.

1. Wall time of ``python -m m3l.run.train --help`` and of a failing command (``test`` with a
   checkpoint that does not exist) against ``python -c "import lightning"`` (the baseline,
   ratio 1.00), run alternately, medians.
2. Lines each of those commands prints, and the lines ``train model=demo`` prints before its
   first progress line (output piped into a file, as in a Slurm log).

Run it on another source tree (e.g. a snapshot of main before a change) with ``--src DIR``::

    python benchmarks/cli_startup.py [--src src] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import re
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


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int, str]:
    start = time.perf_counter()
    # one stream, unbuffered: the lines in the order a log file gets them
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          stdin=subprocess.DEVNULL)
    return time.perf_counter() - start, proc.returncode, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    src = args.src.resolve()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = _env(src, work / "runs")
        commands = {
            '`python -c "import lightning"`': [py, "-c", "import lightning"],
            "`python -m m3l.run.train --help`": [py, "-m", "m3l.run.train", "--help"],
            "`python -m m3l.run.test model=demo checkpoint=missing.ckpt` (fails)": [
                py, "-m", "m3l.run.test", "model=demo", "checkpoint=missing.ckpt"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        lines: dict[str, int] = {}
        codes: dict[str, int] = {}
        for _ in range(args.repeats):
            for name, cmd in commands.items():
                seconds, code, out = _run(cmd, env, work)
                times[name].append(seconds)
                lines[name], codes[name] = len(out.splitlines()), code
        base = statistics.median(times[next(iter(commands))])
        print(f"source: {src}\nmachine: {cpu_line()} (busy shared machine), {date.today()}\n")
        print("| command | exit | lines printed | median s | ratio |")
        print("|---|---:|---:|---:|---:|")
        for name in commands:
            med = statistics.median(times[name])
            print(f"| {name} | {codes[name]} | {lines[name]} | {med:.2f} | {med / base:.2f} |")

        demo = [py, "-m", "m3l.run.train", "model=demo", "trainer.max_epochs=1",
                "++trainer.limit_train_batches=2", "++trainer.limit_val_batches=1",
                "callbacks.progress_bar.log_interval_s=0"]
        _, code, out = _run(demo, env, work)
        text = out.splitlines()
        first = next((i for i, line in enumerate(text) if PROGRESS.search(line)), None)
        before = len(text) if first is None else first
        print(f"\n`train model=demo` (1 epoch of 2 batches, piped): exit {code}, {len(text)} lines in all, "
              f"{before} before the first progress line")
        if os.environ.get("CLI_STARTUP_SHOW"):
            print("\n".join(text))


if __name__ == "__main__":
    main()
