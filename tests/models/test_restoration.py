"""RestorationModule: clamped outputs, the noise level of sigma-conditioned nets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from m3l.errors import ConfigError, TrainingDivergedError
from m3l.models.nets import FFDNet
from m3l.models.noise_level import estimate_noise_sigma
from m3l.models.restoration import RestorationModule


class _Echo(nn.Module):
    """Returns the sigma it is given as an image, so the level used can be read back."""

    conditions = ("sigma",)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return sigma.view(-1, 1, 1, 1).expand_as(x).clone()


def test_restore_clamps_to_the_valid_range() -> None:
    module = RestorationModule(FFDNet(3, depth=3, features=8, noise_map=False), residual=True).eval()
    with torch.no_grad():
        module.net.body[-1].weight.fill_(1.0)  # a wildly wrong residual
        out = module.restore(torch.rand(2, 3, 17, 18))
    assert out.shape == (2, 3, 17, 18) and out.min() >= 0 and out.max() <= 1 and (out == 1).any()


def test_sigma_is_estimated_per_image_when_not_given() -> None:
    module = RestorationModule(_Echo()).eval()
    generator = torch.Generator().manual_seed(0)
    clean = torch.full((2, 1, 64, 64), 0.5)
    noisy = clean + torch.randn(clean.shape, generator=generator) * torch.tensor([0.02, 0.1]).view(2, 1, 1, 1)
    used = module.restore(noisy)[:, 0, 0, 0]
    assert torch.allclose(used, estimate_noise_sigma(noisy)) and abs(float(used[1]) - 0.1) < 0.01
    given = module.restore(noisy, sigma=torch.tensor([0.3, 0.3]))[:, 0, 0, 0]
    assert torch.equal(given, torch.tensor([0.3, 0.3]))
    # a fixed level in predict_conditions wins over the estimate; batch metadata over both
    fixed = RestorationModule(_Echo(), predict_conditions={"sigma": 0.2})
    assert torch.allclose(fixed._conditions({"input": noisy})["sigma"], torch.tensor([0.2, 0.2]))
    meta = {"input": noisy, "meta": {"sigma": torch.tensor([0.05, 0.06])}}
    assert torch.equal(fixed._conditions(meta)["sigma"], torch.tensor([0.05, 0.06]))
    assert torch.allclose(module._conditions({"input": noisy})["sigma"], estimate_noise_sigma(noisy))


def test_other_missing_conditions_still_say_what_to_give() -> None:
    class NeedsQuality(nn.Module):
        conditions = ("quality",)

        def forward(self, x, quality):  # pragma: no cover - never reached
            return x

    with pytest.raises(ConfigError, match="net.predict_conditions.quality"):
        RestorationModule(NeedsQuality())._conditions({"input": torch.rand(1, 3, 8, 8)})


def test_a_non_finite_training_loss_says_what_to_lower() -> None:
    from m3l.models.nets import DnCNN

    module = RestorationModule(DnCNN(in_channels=1, depth=3, features=8))
    x = torch.rand(2, 1, 16, 16)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(
        TrainingDivergedError, match="training loss is nan at step 0: lower optimizer.lr.*check the data for NaNs"
    ):
        module.training_step({"input": x, "target": torch.rand(2, 1, 16, 16)}, 0)
