"""`python -m m3l.run.export` as a user runs it: real subprocesses, real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow  # trains or exports for real: CI runs it, the fast loop does not


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Weights of the demo model (DnCNN-small) as a safetensors file."""
    from safetensors.torch import save_file

    from m3l import compose
    from m3l.engine.experiment import Experiment

    root = tmp_path_factory.mktemp("weights")
    net = Experiment(compose("demo", [f"paths.runs_dir={root}/runs"])).net
    path = root / "demo.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def test_export_onnx_then_refuse_to_overwrite(weights: Path, workdir: Path, env: dict[str, str]) -> None:
    out = workdir / "exports" / "demo.onnx"
    args = ("model=demo", f"checkpoint={weights}", "format=onnx", f"output={out}", "parity.sizes=[[40,48],[33,29]]")
    done = run_cli("export", *args, cwd=workdir, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads(out.with_name("demo.onnx.json").read_text())
    assert meta["model"] == "demo" and meta["parity"]["max_abs_diff"] <= 1e-4
    assert meta["parity"]["sizes"] == [[40, 48], [33, 29]] and meta["checkpoint"] == str(weights)
    before = out.read_bytes()
    again = run_cli("export", *args, cwd=workdir, env=env)
    assert again.returncode == 2 and "already exists" in again.stderr and "overwrite=true" in again.stderr
    assert out.read_bytes() == before


def test_export_errors_are_clear(weights: Path, workdir: Path, env: dict[str, str]) -> None:
    bad_format = run_cli("export", "model=demo", f"checkpoint={weights}", "format=tflite", cwd=workdir, env=env)
    assert bad_format.returncode == 2 and "format='tflite' is not an export format" in bad_format.stderr
    no_file = run_cli("export", "model=demo", f"checkpoint={workdir}/nope.ckpt", cwd=workdir, env=env)
    assert no_file.returncode == 2 and "nope.ckpt: no such file" in no_file.stderr
    bad_tol = run_cli("export", "model=demo", f"checkpoint={weights}", "parity.tolerance=abc", cwd=workdir, env=env)
    assert bad_tol.returncode == 2 and "parity.tolerance must be a number" in bad_tol.stderr
