"""Shared fixtures: real subprocesses of the real CLI, in a temporary working directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
OWN_CODE = REPO / "examples" / "own_code"


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment isolated from the developer's own configs and runs."""
    env = dict(os.environ)
    env.pop("M3L_CONFIG_PATH", None)
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
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
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
