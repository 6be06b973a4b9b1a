"""Shared fixtures: real subprocesses of the real CLI, in a temporary working directory."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# under M3L_CI=1 (.ci/run) a skipped test fails: CI installs everything the tests use
from tests.ci_skips import (  # noqa: F401 - pytest finds its hooks here
    pytest_make_collect_report,
    pytest_runtest_makereport,
    pytest_sessionfinish,
    pytest_terminal_summary,
)

REPO = Path(__file__).resolve().parents[1]
OWN_CODE = REPO / "examples" / "own_code"


# Variables of the user's environment that change where m3l (or torch, MLflow, W&B) reads and
# writes: none of them may reach a test. Names ending in "_" are prefixes.
USER_ENVIRONMENT = (
    "M3L_",
    "MLFLOW_",
    "WANDB_",
    "TORCH_HOME",
    "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD",
    "TORCH_FORCE_WEIGHTS_ONLY_LOAD",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "HYDRA_FULL_ERROR",
)


def without_user_environment(environ: dict[str, str]) -> dict[str, str]:
    """``environ`` less every variable of :data:`USER_ENVIRONMENT`."""

    def owned_by_user(name: str) -> bool:
        return any(name.startswith(v) if v.endswith("_") else name == v for v in USER_ENVIRONMENT)

    return {name: value for name, value in environ.items() if not owned_by_user(name)}


def pytest_configure(config: pytest.Config) -> None:
    """Isolate the whole test run from the user's caches, configs, runs and trackers.

    Tests in this process (and the subprocesses they start) see a fresh home, torch hub dir,
    m3l cache and runs folder of their own, removed when the run ends; the user's are never
    read or written whatever ``TORCH_HOME``, ``M3L_CACHE_DIR``, ``M3L_CONFIG_PATH``,
    ``MLFLOW_TRACKING_URI``... say.
    """
    root = Path(tempfile.mkdtemp(prefix="m3l-tests-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    isolated = without_user_environment(dict(os.environ))
    isolated.update(
        HOME=str(root / "home"),
        XDG_CONFIG_HOME=str(root / "home" / ".config"),
        XDG_CACHE_HOME=str(root / "home" / ".cache"),
        M3L_RUNS_DIR=str(root / "runs"),
        WANDB_MODE="offline",
    )
    os.environ.clear()
    os.environ.update(isolated)


@pytest.fixture(autouse=True)
def _environment_restored_after_each_test():
    """What a test (or the library code it runs: MLflow exports its tracking URI) puts in the
    environment does not reach the next test."""
    saved = dict(os.environ)
    mlflow_saved = _mlflow_globals()
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)
    _restore_mlflow_globals(mlflow_saved)


def _mlflow_globals() -> tuple[object, object]:
    """MLflow's process-wide tracking URI and active experiment (Lightning's MLFlowLogger and
    ``mlflow.set_tracking_uri`` set them): (None, None) before MLflow is imported."""
    if "mlflow" not in sys.modules:
        return None, None
    from mlflow.tracking import fluent
    from mlflow.tracking._tracking_service import utils

    return utils._tracking_uri, fluent._active_experiment_id


def _restore_mlflow_globals(saved: tuple[object, object]) -> None:
    if "mlflow" not in sys.modules:
        return
    from mlflow.tracking import fluent
    from mlflow.tracking._tracking_service import utils

    utils._tracking_uri, fluent._active_experiment_id = saved


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a process group's rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_ranks(args: list[str], cwd: Path, world: int, timeout: float = 400) -> None:
    """``args`` run as ``world`` processes of one torch.distributed group on this machine
    (``MASTER_ADDR``/``PORT``, ``WORLD_SIZE``, ``RANK``...; one process and none of those when
    ``world`` is 1), one thread each; fails with a rank's stderr when one fails."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    group = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(world), "NODE_RANK": "0"}
    ranks = [{**group, "LOCAL_RANK": str(rank), "RANK": str(rank)} if world > 1 else {} for rank in range(world)]
    procs = [
        subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**env, **rank})
        for rank in ranks
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err[-4000:]


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment isolated from the developer's own configs, caches and runs."""
    env = without_user_environment(dict(os.environ))
    env.update(
        HOME=str(tmp_path / "home"),
        XDG_CONFIG_HOME=str(tmp_path / "home" / ".config"),
        M3L_RUNS_DIR=str(tmp_path / "runs"),
        WANDB_MODE="offline",
        PYTHONUNBUFFERED="1",
        HYDRA_FULL_ERROR="0",
    )
    env.update(extra)
    return env


def run_cli(verb: str, *args: str, cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m m3l.run.<verb> args...`` and return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", f"m3l.run.{verb}", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_photo_folders(root: Path, size: tuple[int, int] = (96, 72)) -> Path:
    """train/ and val/ folders of real photos (scikit-image's bundled, public domain)."""
    import skimage.data as samples

    for split, names in {"train": ["astronaut", "coffee", "chelsea"], "val": ["rocket"]}.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        for name in names:
            Image.fromarray(getattr(samples, name)()).resize(size).save(root / split / f"{name}.png")
    return root


@pytest.fixture
def photo_dirs(tmp_path: Path) -> Path:
    return write_photo_folders(tmp_path / "photos")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path)


def random_image(path: Path, size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
    array = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.squeeze(-1) if channels == 1 else array, mode).save(path)
    return path


def write_huge_png(
    path: Path, width: int = 14000, height: int = 14000, bit_depth: int = 16, color_type: int = 2
) -> Path:
    """A real, valid PNG of ``width`` x ``height`` black pixels that is small on disk (about
    1.1 MB for 14000 x 14000 16-bit RGB): a decompression bomb, written row by row through a
    streaming zlib compressor so that the test never holds the decoded image."""
    import struct
    import zlib

    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    row = b"\x00" * (1 + width * channels * bit_depth // 8)  # filter byte + zero samples
    compressor = zlib.compressobj(9)
    data = b"".join([*(compressor.compress(row) for _ in range(height)), compressor.flush()])

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="session")
def huge_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 14000 x 14000 16-bit RGB PNG (196 M pixels, 1.2 GB decoded) of about 1.1 MB."""
    return write_huge_png(tmp_path_factory.mktemp("bomb") / "bomb.png")
