"""Every packaged net config loads and its `net:` node instantiates (gray and RGB)."""

from __future__ import annotations

from pathlib import Path

import hydra.utils
import pytest
import torch
from omegaconf import OmegaConf

import m3l

NET_DIR = Path(m3l.__file__).parent / "configs" / "net"
# the restoration configs (the net group also holds multi-task modules, tested elsewhere)
CONFIGS = sorted(
    p.stem
    for p in NET_DIR.glob("*.yaml")
    if OmegaConf.load(p).get("_target_") == "m3l.models.restoration.RestorationModule"
)
# configs whose net is too large to build on every test run (parameter counts are tested
# in the per-net tests); the small ones are run on an odd-sized input too
LARGE = {"nafnet32", "nafnet64", "unet"}
# nets that read a JPEG's DCT coefficients, not pixels (their forward is tested in test_qgac.py)
DCT_DOMAIN = {
    p.stem for p in NET_DIR.glob("*.yaml") if "qgac" in str(OmegaConf.load(p).get("net", {}).get("_target_", ""))
}
# what the training config gives every net config (the scheduler's T_max follows max_steps)
TRAINER = {"trainer": {"max_steps": 100, "max_epochs": 10}}


def _net(name: str, channels: int) -> torch.nn.Module:
    cfg = OmegaConf.merge(OmegaConf.load(NET_DIR / f"{name}.yaml"), {"data": {"channels": channels}}, TRAINER)
    assert cfg._target_ == "m3l.models.restoration.RestorationModule"
    return hydra.utils.instantiate(cfg.net)


def test_all_expected_configs_exist() -> None:
    expected = {
        "dncnn",
        "dncnn3",
        "dncnn_small",
        "ffdnet",
        "unet",
        "nafnet32",
        "nafnet64",
        "nafnet_small",
        "arcnn",
        "fastdvdnet",
    }
    assert expected <= set(CONFIGS), f"missing: {expected - set(CONFIGS)}"


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("channels", [1, 3])
def test_net_config_instantiates(name: str, channels: int) -> None:
    if name in LARGE and channels == 1:
        pytest.skip("large net: built once, for RGB")
    net = _net(name, channels)
    assert net.in_channels == channels
    if name in LARGE or name in DCT_DOMAIN:
        return
    multiple = getattr(net, "pad_multiple", 1)
    window = getattr(net, "temporal_window", None)
    h, w = 3 * multiple, 5 * multiple
    x = torch.rand(1, *((window,) if window else ()), channels, h, w)
    conditions = {k: torch.full((1,), 0.1) for k in getattr(net, "conditions", ())}
    net.eval()
    with torch.inference_mode():
        y = net(x, **conditions)
    assert y.shape == (1, channels, h, w)


@pytest.mark.parametrize("name", CONFIGS)
def test_rest_of_the_config_instantiates(name: str) -> None:
    cfg = OmegaConf.merge(OmegaConf.load(NET_DIR / f"{name}.yaml"), TRAINER)
    for key in ("loss", "tiler"):
        if cfg.get(key) is not None:
            assert callable(hydra.utils.instantiate(cfg[key]))
    optimizer = hydra.utils.instantiate(cfg.optimizer)
    opt = optimizer([torch.nn.Parameter(torch.zeros(1))])
    if cfg.get("scheduler") is not None:
        hydra.utils.instantiate(cfg.scheduler)(opt)
