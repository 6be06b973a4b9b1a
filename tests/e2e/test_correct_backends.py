"""`correct` on ONNX Runtime writes what eager PyTorch writes (the zoo's blind FFDNet, real photos),
from an export made once beside the checkpoint and reused by the next run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import cli_env, run_cli

pytestmark = pytest.mark.slow
pytest.importorskip("onnxruntime", reason="the export extra is not installed")


def test_onnx_backend_writes_what_eager_writes(tmp_path: Path, workdir: Path) -> None:
    import skimage.data

    inputs = tmp_path / "noisy"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for name in ("astronaut", "coffee"):
        clean = np.asarray(Image.fromarray(getattr(skimage.data, name)()).resize((96, 64)), dtype=np.float32)
        noisy = np.clip(clean + rng.normal(0, 25, clean.shape), 0, 255).round().astype(np.uint8)
        Image.fromarray(noisy).save(inputs / f"{name}.png")
    env = cli_env(tmp_path)
    outputs = {}
    for backend in ("onnx", "eager"):
        out = tmp_path / backend
        result = run_cli(
            "correct",
            "model=ffdnet_color_blind",
            "checkpoint=pretrained",
            f"data.correct_dir={inputs}",
            f"serializer.root_dir={out}",
            f"backend={backend}",
            cwd=workdir,
            env=env,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        log = result.stdout + result.stderr
        engine = {"onnx": "ONNX Runtime", "eager": "eager PyTorch"}[backend]
        assert f"backend={backend} precision=auto: {engine} " in log and " runs the net" in log, log[-2000:]
        outputs[backend] = {p.name: np.asarray(Image.open(p), dtype=np.int16) for p in sorted(out.glob("*.png"))}
    assert sorted(outputs["onnx"]) == ["astronaut.png", "coffee.png"]
    for name, image in outputs["onnx"].items():  # 1e-4 on [0, 1] may flip a rounding, no more
        assert np.abs(image - outputs["eager"][name]).max() <= 1
    # the export of weights shipped in the package goes to the user's m3l cache (never into
    # the package; a user's checkpoint keeps it beside itself: tests/deploy/test_backends.py) ...
    (export,) = Path(tmp_path / "home").rglob("onnx/ffdnet_color_blind-*.onnx")
    stamp = export.stat().st_mtime_ns
    # ... and a second run reuses it: no export, the same file
    again = run_cli(
        "correct",
        "model=ffdnet_color_blind",
        "checkpoint=pretrained",
        f"data.correct_dir={inputs}",
        f"serializer.root_dir={tmp_path / 'again'}",
        "backend=onnx",
        cwd=workdir,
        env=env,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stdout + again.stderr
    assert "backend=onnx precision=auto: ONNX Runtime " in log and str(export) in log and "to ONNX in" not in log, log[
        -2000:
    ]
    assert export.stat().st_mtime_ns == stamp
