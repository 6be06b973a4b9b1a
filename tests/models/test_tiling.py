"""TiledPredictor, self_ensemble and sliding_windows."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from m3l.models.tiling import TiledPredictor, pad_to_multiple, self_ensemble, sliding_windows


def conv_net(layers: int, channels: int = 3, seed: int = 0) -> nn.Module:
    """Random conv net with receptive-field radius ``layers`` (3x3 convs, zero padding)."""
    torch.manual_seed(seed)
    mods: list[nn.Module] = []
    width = 8
    for k in range(layers):
        cin = channels if k == 0 else width
        cout = channels if k == layers - 1 else width
        mods.append(nn.Conv2d(cin, cout, 3, padding=1))
        if k < layers - 1:
            mods.append(nn.Tanh())
    return nn.Sequential(*mods).eval()


@pytest.mark.parametrize(("blend", "radius"), [("none", 16), ("linear", 8), ("gaussian", 8)])
@pytest.mark.parametrize("size", [(97, 131), (64, 200)])
def test_tiled_equals_whole_when_receptive_field_fits(blend: str, radius: int, size: tuple[int, int]) -> None:
    net = conv_net(radius)
    x = torch.rand(2, 3, *size)
    tiler = TiledPredictor(tile_size=72, overlap=32, batch_size=3, blend=blend)
    with torch.inference_mode():
        whole = net(x)
        tiled = tiler(net, x)
    assert tiled.shape == whole.shape
    assert torch.allclose(tiled, whole, atol=1e-4)


def test_smooth_blend_is_close_even_when_receptive_field_is_larger() -> None:
    net = conv_net(12)
    x = torch.rand(1, 3, 90, 90)
    with torch.inference_mode():
        err = (TiledPredictor(48, 16, blend="gaussian")(net, x) - net(x)).abs().max()
    assert err < 0.1


def test_batching_gives_the_same_result_as_batch_one() -> None:
    net = conv_net(4)
    x = torch.rand(1, 3, 77, 101)
    with torch.inference_mode():
        one = TiledPredictor(40, 8, batch_size=1)(net, x)
        many = TiledPredictor(40, 8, batch_size=5)(net, x)
    assert torch.allclose(one, many, atol=1e-6)


@pytest.mark.parametrize("size", [(5, 7), (1, 1), (31, 17)])
def test_images_smaller_than_a_tile_are_padded_and_run_once(size: tuple[int, int]) -> None:
    calls: list[tuple[int, ...]] = []

    def fn(t: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(t.shape))
        assert t.shape[-1] % 8 == 0 and t.shape[-2] % 8 == 0
        return t * 2

    x = torch.rand(1, 3, *size)
    out = TiledPredictor(64, 8)(fn, x, pad_multiple=8)
    assert len(calls) == 1
    assert torch.allclose(out, x * 2)


def test_pad_multiple_is_read_from_the_net_and_tiles_are_multiples() -> None:
    class Net(nn.Module):
        pad_multiple = 16

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            if t.shape[-1] % 16 or t.shape[-2] % 16:
                raise ValueError("bad size")
            return t + 1

    x = torch.rand(1, 1, 150, 101)
    out = TiledPredictor(70, 16)(Net(), x)
    assert torch.allclose(out, x + 1)


def test_conditions_follow_their_image() -> None:
    def fn(t: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return t * 0 + sigma.view(-1, 1, 1, 1)

    x = torch.rand(3, 1, 50, 60)
    sigma = torch.tensor([0.1, 0.2, 0.3])
    out = TiledPredictor(32, 8, batch_size=4)(fn, x, sigma=sigma)
    assert torch.allclose(out, sigma.view(3, 1, 1, 1).expand_as(x))


def test_video_window_returns_fn_output_shape() -> None:
    def centre(t: torch.Tensor) -> torch.Tensor:
        return t[:, t.shape[1] // 2] * 3

    x = torch.rand(1, 5, 3, 70, 45)
    out = TiledPredictor(32, 8)(centre, x)
    assert out.shape == (1, 3, 70, 45)
    assert torch.allclose(out, x[:, 2] * 3, atol=1e-6)


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="overlap"):
        TiledPredictor(tile_size=32, overlap=16)
    with pytest.raises(ValueError, match="blend"):
        TiledPredictor(blend="cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        TiledPredictor()(lambda t: t, torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="fn must return"):
        TiledPredictor(32, 4)(lambda t: t[..., :-1, :], torch.rand(1, 1, 64, 64))


def test_pad_to_multiple() -> None:
    x = torch.rand(2, 3, 10, 13)
    y = pad_to_multiple(x, 8)
    assert y.shape == (2, 3, 16, 16) and torch.equal(y[..., :10, :13], x)
    assert pad_to_multiple(torch.rand(1, 1, 3, 3), 8).shape == (1, 1, 8, 8)  # replicate fallback
    assert pad_to_multiple(torch.rand(1, 4, 1, 3, 10, 13), 8).shape == (1, 4, 1, 3, 16, 16)


@pytest.mark.parametrize("size", [(6, 6), (5, 9)])
def test_self_ensemble_of_identity_is_identity(size: tuple[int, int]) -> None:
    x = torch.rand(2, 3, *size)
    assert torch.allclose(self_ensemble(lambda t: t, x), x)


def test_self_ensemble_undoes_each_transform() -> None:
    x = torch.rand(1, 1, 4, 7)

    # a function that is not equivariant: adds a horizontal ramp; the ensemble averages the
    # ramp over the 8 orientations, which is symmetric
    def fn(t: torch.Tensor) -> torch.Tensor:
        return t + torch.linspace(0, 1, t.shape[-1])

    out = self_ensemble(fn, x)
    assert out.shape == x.shape
    assert torch.allclose(out - x, (out - x).flip(-1), atol=1e-6)
    assert torch.allclose(out - x, (out - x).flip(-2), atol=1e-6)


@pytest.mark.parametrize("n", [1, 2, 4, 9])
def test_sliding_windows_centre_each_frame(n: int) -> None:
    frames = (torch.full((1, 2, 2), float(i)) for i in range(n))
    windows = list(sliding_windows(frames, 5))
    assert len(windows) == n
    for i, w in enumerate(windows):
        assert w.shape == (5, 1, 2, 2)
        expected = [min(max(i + d, 0), n - 1) for d in range(-2, 3)]
        assert w[:, 0, 0, 0].tolist() == expected
    with pytest.raises(ValueError, match="odd"):
        list(sliding_windows([], 4))


class ShuffleNet(nn.Module):
    """Pixel-unshuffle -> convs -> pixel-shuffle (like FFDNet): needs aligned tiles."""

    pad_multiple = 2

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.PixelUnshuffle(2),
            nn.Conv2d(4, 8, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(8, 4, 3, padding=1),
            nn.PixelShuffle(2),
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.body(t)


@pytest.mark.parametrize("size", [(75, 101), (64, 64)])
def test_tiles_stay_on_the_pad_multiple_grid(size: tuple[int, int]) -> None:
    net = ShuffleNet().eval()
    x = torch.rand(1, 1, *size)
    with torch.inference_mode():
        whole = net(pad_to_multiple(x, 2))[..., : size[0], : size[1]]
        tiled = TiledPredictor(40, 16, blend="linear")(net, x)
    assert torch.allclose(tiled, whole, atol=1e-5)


def test_the_old_import_path_is_the_same_code():
    """Configs written for m3l 0.1 name ``m3l.deploy.tiling.TiledPredictor``: it still resolves."""
    from m3l.deploy import tiling as old
    from m3l.models import tiling as new

    assert old.TiledPredictor is new.TiledPredictor and old.sliding_windows is new.sliding_windows
