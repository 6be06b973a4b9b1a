"""What a verb prints when it ends: the metrics table, the PSNR gain, the run directory.

Also the small conversions the report needs: metrics as plain floats, and the inputs a
``correct`` run could not write, gathered from the datamodule and the serializer.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch


def floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The scalar entries of ``metrics`` (tensors of one element, ints, floats) as floats."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1 or isinstance(value, (int, float)):
            out[key] = float(value)
    return out


def collect_failures(*sources: Any) -> list[tuple[str, str]]:
    """``(input, reason)`` of every failure the ``sources`` recorded (each listed once)."""
    failures: list[tuple[str, str]] = []
    for source in sources:
        for item in getattr(source, "failures", None) or []:
            entry = (str(item[0]), str(item[1])) if isinstance(item, (tuple, list)) else (str(item), "")
            if entry not in failures:
                failures.append(entry)
    return failures


def report_metrics(title: str, metrics: Mapping[str, Any], output_dir: Path) -> None:
    """Print a metrics table (rank zero), and the PSNR gain when the model reports one."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    paths = {k: v for k, v in metrics.items() if not isinstance(v, (int, float))}
    for key in sorted(metrics):
        if key not in paths:
            table.add_row(key, f"{metrics[key]:.4f}" if isinstance(metrics[key], float) else str(metrics[key]))
    Console().print(table)
    for prefix in ("val", "test"):
        out, inp = metrics.get(f"{prefix}/psnr"), metrics.get(f"{prefix}/psnr_input")
        if out is not None and inp is not None:
            print(
                f"{'Validation' if prefix == 'val' else 'Test'} PSNR: input {inp:.2f} dB -> "
                f"output {out:.2f} dB (gain {out - inp:+.2f} dB)"
            )
    # paths printed whole (Rich cuts lines at 80 columns when the output is not a terminal)
    for key, value in sorted(paths.items()):
        print(f"{key.replace('_', ' ').capitalize()}: {value}")
    print(f"Run directory: {output_dir}", flush=True)
