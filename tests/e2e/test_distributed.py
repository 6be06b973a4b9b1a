"""Distributed test and correct give exactly the single-device result: two CPU processes
(DDP, gloo) on a test set of 7 samples (unequal shards of 4 and 3, batches of 2)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli
from tests.e2e.conftest import toy_env
from tests.e2e.toy import CrashingNet

pytestmark = pytest.mark.slow

TWO_PROCESSES = ["trainer=ddp_cpu", "trainer.devices=2"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "toy.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in CrashingNet().state_dict().items()}}, path)
    return path


def _test_metrics(env: dict[str, str]) -> dict[str, float]:
    (metrics_csv,) = Path(env["M3L_RUNS_DIR"]).glob("toy/test/*/csv/metrics.csv")
    (row,) = [r for r in csv.DictReader(metrics_csv.open()) if r.get("test/psnr")]
    return {k: float(v) for k, v in row.items() if k.startswith("test/") and v}


def test_two_process_test_metrics_equal_single_process(weights: Path, tmp_path: Path, workdir: Path):
    results = {}
    for label, extra in {"single": [], "ddp": TWO_PROCESSES}.items():
        env = toy_env(tmp_path / label)
        result = run_cli("test", "model=toy", f"checkpoint={weights}", "logger=csv", *extra, cwd=workdir, env=env)
        assert result.returncode == 0, result.stderr[-4000:]
        results[label] = _test_metrics(env)
        if label == "ddp":
            (run_dir,) = Path(env["M3L_RUNS_DIR"]).glob("toy/test/*")
            assert list(run_dir.glob("*_ddp_process_1.log")), "the second process did not run"
            assert "Using `DistributedSampler`" not in result.stderr  # no padded duplicates
    assert results["single"].keys() == results["ddp"].keys() >= {"test/psnr", "test/ssim", "test/psnr_input"}
    for key, value in results["single"].items():
        assert results["ddp"][key] == pytest.approx(value, rel=1e-6, abs=1e-6), key


def test_two_process_correct_writes_every_output_once(weights: Path, tmp_path: Path, workdir: Path):
    outputs = {}
    for label, extra in {"single": [], "ddp": TWO_PROCESSES}.items():
        env = toy_env(tmp_path / label)
        out = tmp_path / f"out_{label}"
        result = run_cli(
            "correct",
            "model=toy",
            f"checkpoint={weights}",
            "serializer=toy",
            f"serializer.root_dir={out}",
            f"data.correct_dir={tmp_path}",
            *extra,
            cwd=workdir,
            env=env,
        )
        assert result.returncode == 0, result.stderr[-4000:]
        outputs[label] = {p.name: torch.load(p, weights_only=True) for p in sorted(out.iterdir())}
    assert sorted(outputs["ddp"]) == [f"item_{i:03d}.pt" for i in range(5)] == sorted(outputs["single"])
    for name, tensor in outputs["single"].items():
        assert torch.allclose(outputs["ddp"][name], tensor, atol=1e-6), name
