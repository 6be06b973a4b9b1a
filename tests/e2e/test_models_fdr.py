"""Every packaged model trains with fast_dev_run through the real command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from m3l.config import PACKAGED_CONFIG_DIR
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

# GPU-scale widths of a class whose CPU config (`qgac`) trains here: composed and instantiated
# by tests/test_packaged_configs.py (a fast_dev_run of the 259M-weight one takes minutes and 5 GB)
GPU_SCALE = {"original_qgac_paper", "qgac_crab"}
# plug-and-play models are not trained: `train` refuses them (tests/e2e/test_pnp.py)
MODELS = sorted(
    p.stem
    for p in (PACKAGED_CONFIG_DIR / "model").glob("*.yaml")
    if p.stem not in GPU_SCALE and not p.stem.startswith("pnp_")
)
FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.parametrize("model", MODELS)
def test_model_fast_dev_run(model: str, workdir: Path, env: dict[str, str]):
    if model in ("mtl_multifashion", "mtl_fmnist_mnist") and not FASHION.is_dir():
        pytest.skip(f"{FASHION} is missing (Debian package dataset-fashion-mnist; .ci/run installs it)")
    result = run_cli("train", f"model={model}", "debug=fdr", "logger=none", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Traceback" not in result.stderr
    assert "Run directory:" in result.stdout
