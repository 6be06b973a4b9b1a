"""Logged images are seen in TensorBoard's web page: a real `tensorboard --logdir` on finished
runs (the demo's validation examples, a multi-task run's diagnostic plots), opened in headless
Chromium, its Images tab rendered and screenshotted (issue 16)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import cli_env, run_cli
from tests.conftest import free_port

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(*args: str, url: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1400,1400",
            "--virtual-time-budget=20000",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (Debian package chromium: apt-get install -y chromium)")
def test_images_tab_shows_examples_and_multitask_plots(tmp_path: Path, workdir: Path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed")
    env = cli_env(tmp_path)
    runs = Path(env["M3L_RUNS_DIR"])
    demo = run_cli(
        "train",
        "model=demo",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        cwd=workdir,
        env=env,
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    mtl = run_cli(
        "train",
        "model=mtl_multimnist",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=6",
        "trainer.limit_val_batches=1",
        "+callbacks.diagnostics={_target_: m3l.mtl.diagnostics.Diagnostics, every_n_steps: 1, plot_every_n_steps: 3}",
        cwd=workdir,
        env=env,
    )
    assert mtl.returncode == 0, mtl.stderr[-3000:]

    empty = tmp_path / "no_runs"
    empty.mkdir()
    shots = {
        "runs": _screenshot(runs, tmp_path / "tensorboard_images.png", tmp_path, {"examples/0", "diag/weights"}),
        "empty": _screenshot(empty, tmp_path / "tensorboard_empty.png", tmp_path, set()),
    }
    keep = os.environ.get("M3L_KEEP_SCREENSHOTS")  # a folder to look at them
    if keep:
        for path in shots.values():
            shutil.copy(path, keep)
    colours = {name: _colours(path) for name, path in shots.items()}
    # TensorBoard's page alone has a few hundred colours (flat UI, anti-aliased text); the
    # photos of the examples (noisy input, output, target) bring tens of thousands
    assert colours["empty"] < 2000 and colours["runs"] > 10 * colours["empty"], colours
    # the diagnostic plots: the lines in matplotlib's first colour, which TensorBoard's UI never uses
    blue = (31, 119, 180)
    assert _count(shots["runs"], blue) > 50 and _count(shots["empty"], blue) == 0


def _screenshot(logdir: Path, shot: Path, tmp_path: Path, tags: set[str]) -> Path:
    """A real `tensorboard --logdir` and its Images tab in headless Chromium (the page loads
    the images by script: Chromium runs it for up to 20 s of virtual time)."""
    port = free_port()
    log = (tmp_path / f"{shot.stem}.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        found: set[str] = set()
        while time.monotonic() < deadline:  # until TensorBoard answers and has read the runs
            try:
                with urllib.request.urlopen(f"{url}/data/plugin/images/tags", timeout=5) as answer:
                    found = {tag for run in json.loads(answer.read()).values() for tag in run}
                    if tags <= found:
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / f"{shot.stem}.log").read_text()
            time.sleep(1)
        assert tags <= found, found
        result = _chromium(f"--screenshot={shot}", url=f"{url}/?darkMode=false#images")
        assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    return shot


def _count(path: Path, colour: tuple[int, int, int]) -> int:
    from PIL import Image

    data = Image.open(path).convert("RGB").tobytes()
    return sum(1 for i in range(0, len(data), 3) if all(abs(a - b) <= 6 for a, b in zip(data[i : i + 3], colour)))


def _colours(path: Path) -> int:
    from PIL import Image

    data = Image.open(path).convert("RGB").tobytes()
    return len({data[i : i + 3] for i in range(0, len(data), 3)})
