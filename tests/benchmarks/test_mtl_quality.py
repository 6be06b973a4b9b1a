"""The multi-task quality benchmark's quick mode, run for real as a user runs it: both
benchmarks, single-task baselines, Delta_m per method (and LibMTL's where it is installed), the
table and the resumable results."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env

SCRIPT = REPO / "benchmarks" / "mtl_quality.py"
pytestmark = pytest.mark.slow

if not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists():
    pytest.skip("Multi-Fashion needs the Debian package dataset-fashion-mnist", allow_module_level=True)
pytest.importorskip("torchjd")


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=cli_env(tmp_path),
        timeout=900,
    )


def table(out: str, bench: str) -> dict[str, list[str]]:
    """``{method: cells}`` of one benchmark's Markdown table."""
    section = out.split(f"## {bench}:", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in r.strip("|").split("|")] for r in rows)}


def test_quick_mode_prints_both_tables_and_resumes(tmp_path):
    """``--quick`` exactly as a user runs it (one seed of EW, PCGrad and UPGrad at 3% of the
    data, with LibMTL's columns where LibMTL is installed), then again from its results file."""
    results = tmp_path / "quality.jsonl"
    args = ["--quick", "--results", str(results)]
    first = run(tmp_path, *args)
    assert first.returncode == 0, first.stderr[-3000:]
    with_libmtl = "LibMTL" in sys.modules or importlib.util.find_spec("LibMTL") is not None
    for bench, tasks in (("fashion", ["left", "right"]), ("allinone", ["denoise", "deblur", "jpeg"])):
        rows = table(first.stdout, bench)
        assert list(rows) == ["single-task", "EW", "PCGrad", "UPGrad"], first.stdout
        for method in ("EW", "PCGrad", "UPGrad"):
            cells = rows[method]
            per_task = [float(c) for c in cells[: len(tasks)]]
            assert all(0 < v < 100 for v in per_task), cells  # accuracy in %, PSNR in dB
            assert re.fullmatch(r"[+-]\d+\.\d\d", cells[len(tasks)]), cells  # Delta_m% of one seed
            theirs, theirs_ew = cells[len(tasks) + 1], cells[len(tasks) + 3]
            if method == "UPGrad":
                assert theirs == theirs_ew == "not in LibMTL 1.1.5"
            elif with_libmtl:
                assert re.fullmatch(r"[+-]\d+\.\d\d", theirs), cells
                assert theirs_ew == "-" if method == "EW" else re.fullmatch(r"[+-]\d+\.\d\d", theirs_ew), cells
            else:
                assert theirs == theirs_ew == "not run"
            assert cells[-1] == "1"
            if method == "EW":
                assert cells[len(tasks) + 2] == "-"
            else:  # the gain over EW of the same seed
                gain = float(cells[len(tasks)]) - float(rows["EW"][len(tasks)])
                assert float(cells[len(tasks) + 2]) == pytest.approx(gain, abs=0.011)
    records = [json.loads(line) for line in results.read_text().splitlines()]
    libs = {"stl", "m3l"} | ({"libmtl"} if with_libmtl else set())
    assert {(r["bench"], r["lib"]) for r in records} == {(b, lib) for b in ("fashion", "allinone") for lib in libs}
    assert len(records) == 2 + 3 + 3 + 3 + (2 * 2 if with_libmtl else 0)
    assert {r["scale"] for r in records} == {0.03}

    again = run(tmp_path, *args)  # everything is in the results file: no training, same table
    assert again.returncode == 0, again.stderr[-3000:]
    assert "seed 0:" not in again.stdout
    assert table(again.stdout, "fashion") == table(first.stdout, "fashion")
    assert len(results.read_text().splitlines()) == len(records)


def test_unknown_method_is_refused(tmp_path):
    proc = run(tmp_path, "--methods", "NoSuchMethod")
    assert proc.returncode == 2
    assert "NoSuchMethod" in proc.stderr and "choose from" in proc.stderr
