"""The machine line every benchmark table is printed with: CPU model, cores, the flags that
change CPU throughput (AVX2, AVX-512, AVX512-BF16, AMX). Import as ``from machine import
cpu_line`` (scripts here run as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_line() -> str:
    model, flags = platform.processor() or "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    present = [f for f in FLAGS if f in flags]
    return f"{model}, {os.cpu_count()} cores, flags: {' '.join(present) or 'none of avx2/avx512/amx'}"


def median_seconds(fn, repeats: int = 5) -> float:
    """The median wall time of ``repeats`` calls of ``fn``, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
