"""Fixtures of the tracking, sweep, cluster and resume tests: the toy task's environment, and
one real ``mlflow server`` per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.conftest import OWN_CODE, REPO, cli_env, free_port

TOY_CONFIGS = Path(__file__).resolve().parent / "toy_configs"


def toy_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """:func:`tests.conftest.cli_env` with the toy task's configs and code importable."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return cli_env(tmp_path, PYTHONPATH=path, M3L_CONFIG_PATH=str(TOY_CONFIGS), **extra)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 (sqlite store, proxied artifacts); its URL."""
    pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'm3l[mlflow]')")
    root = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root / 'store.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"mlflow server did not start:\n{(root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def wandb_records(run_file: Path) -> Iterator[object]:
    """The protobuf records of a W&B ``run-*.wandb`` file (a LevelDB-style log of 32 KiB
    blocks, 7-byte chunk headers), so tests read what an offline run really wrote."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    assert data[:4] == b":W&B", f"{run_file} is not a W&B run file"
    pos, block, buffer = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        buffer = chunk if kind in (1, 2) else buffer + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(buffer)
            yield record


@pytest.fixture
def demo_checkpoint(tmp_path: Path) -> Path:
    """The demo model's (untrained) weights as a checkpoint, without a training run."""
    from m3l import compose
    from m3l.engine.experiment import Experiment

    net = Experiment(compose("demo", [f"paths.runs_dir={tmp_path / 'api_runs'}"])).net
    path = tmp_path / "demo.ckpt"
    torch.save({"state_dict": net.state_dict()}, path)
    return path


@pytest.fixture
def user(tmp_path: Path, photo_dirs: Path):
    """The example user package and configs (examples/own_code), installed as a user would:
    the m3l under test first on PYTHONPATH (a checkout's src/), then the user's package."""
    path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH", ""), str(OWN_CODE)) if p)
    env = cli_env(tmp_path, PYTHONPATH=path)
    configs = Path(env["XDG_CONFIG_HOME"]) / "m3l"
    shutil.copytree(OWN_CODE / "configs", configs)
    return env, configs, ["model=my_model", f"data.root_dir={photo_dirs}"]
