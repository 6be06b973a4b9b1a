"""QGAC as a user runs it: a folder of real JPEG files (written by libjpeg through Pillow from
the sample photos) corrected by the real `correct` command from each file's own DCT
coefficients and quantization tables with m3l's shipped weights; a PNG in the folder is listed
in failures.tsv with the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from m3l.data.samples import sample_paths
from m3l.weights.hub import WEIGHTS_DIR
from tests.conftest import run_cli

pytestmark = pytest.mark.slow
pytest.importorskip("jpeglib", reason="the jpeg extra (pip install 'm3l[jpeg]')")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def test_correct_a_jpeg_folder_from_its_coefficients(workdir: Path, env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "jpegs"
    (folder / "nested").mkdir(parents=True)
    clean = {}
    paths = sample_paths("val")
    for path, quality, rel in ((paths[0], 10, "q10.jpg"), (paths[1], 30, "nested/q30.jpeg")):
        image = Image.open(path).convert("RGB").crop((0, 0, 203, 157))  # partial blocks and MCUs
        image.save(folder / rel, quality=quality, subsampling=2)
        clean[rel] = np.asarray(image)
    Image.open(paths[2]).convert("RGB").crop((0, 0, 64, 64)).save(folder / "not_a_jpeg.png")
    out = workdir / "corrected"
    # the shipped weights by path: they are withdrawn from checkpoint=pretrained (test_hub)
    done = run_cli(
        "correct",
        "model=qgac",
        f"checkpoint={WEIGHTS_DIR / 'qgac.safetensors'}",
        f"data.correct_dir={folder}",
        f"serializer.root_dir={out}",
        cwd=workdir,
        env=env,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 1, log[-3000:]  # one input could not be corrected
    assert "q10.jpg: JPEG 203x157 4:2:0, luma table closest to libjpeg quality 10" in log
    assert "q30.jpeg: JPEG 203x157 4:2:0, luma table closest to libjpeg quality 30" in log
    failures = (out / "failures.tsv").read_text().splitlines()
    assert len(failures) == 2 and failures[1].startswith(str(folder / "not_a_jpeg.png"))
    assert "not a JPEG file (a PNG image)" in failures[1]
    for rel, image in clean.items():
        restored = np.asarray(Image.open(out / Path(rel).with_suffix(".png")).convert("RGB"))
        assert restored.shape == image.shape
        decoded = np.asarray(Image.open(folder / rel).convert("RGB"))
        # the output is this file corrected (close to its decode), and no worse than it by more
        # than a trace: the shipped CPU weights are weak (see their card); quality is measured
        # by benchmarks/quality_qgac.py, not here
        assert _psnr(restored, decoded) > 33, rel
        assert _psnr(restored, image) > _psnr(decoded, image) - 0.3, rel
