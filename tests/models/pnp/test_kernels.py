"""Kernel specs of plug-and-play restoration: Gaussian and motion kernels, kernel files, and the
errors that name the bad file or spec."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from m3l.data.degradations import gaussian_kernel
from m3l.errors import ConfigError
from m3l.models.pnp.kernels import parse_kernel

LOGGER = "m3l.models.pnp.kernels"


def test_gaussian_is_normalised_odd_symmetric_and_the_degradations_kernel() -> None:
    """gaussian:2.0 is the kernel m3l's blur degradation applies (default size 2 ceil(4 sigma) + 1)."""
    k = parse_kernel("gaussian:2.0")
    assert k.dtype == torch.float64
    assert k.shape == (17, 17)
    assert k.shape[0] % 2 == 1
    assert float(k.sum()) == pytest.approx(1, abs=1e-6)  # float32 exact: see the test below
    assert torch.equal(k, k.flip(0)) and torch.equal(k, k.flip(1)) and torch.equal(k, k.T)
    assert torch.allclose(k, gaussian_kernel(17, 2.0).double(), rtol=0, atol=1e-7)  # the reference is float32
    assert int(k.argmax()) == 17 * 8 + 8  # peak at the centre


def test_gaussian_with_an_explicit_size() -> None:
    """gaussian:SIGMA:SIZE honours SIZE."""
    k = parse_kernel("gaussian:2.0:21")
    assert k.shape == (21, 21)
    assert float(k.sum()) == pytest.approx(1, abs=1e-6)
    assert torch.allclose(k, gaussian_kernel(21, 2.0).double(), rtol=0, atol=1e-7)


@pytest.mark.parametrize("spec", ["gaussian:2.0", "gaussian:2.0:21"])
def test_gaussian_sums_to_one_in_float64(spec: str) -> None:
    """The module promises float64 kernels summing to 1, as the file and motion kernels do."""
    assert float(parse_kernel(spec).sum()) == pytest.approx(1, abs=1e-12)


def test_motion_at_0_degrees_is_a_horizontal_line() -> None:
    """motion:15:0 puts all its mass in the centre row, spread over the 15 pixels of the motion."""
    k = parse_kernel("motion:15:0")
    c = k.shape[0] // 2
    assert k.shape[0] % 2 == 1 and k.shape[0] >= 15
    assert float(k.sum()) == pytest.approx(1, abs=1e-12)
    assert float(k[c].sum()) == pytest.approx(1, abs=1e-12)
    assert int((k[c] > 0).sum()) >= 15
    assert torch.allclose(k[c], k[c].flip(0), atol=1e-12)  # centred


def test_motion_at_90_degrees_is_a_vertical_line() -> None:
    """motion:15:90 is the horizontal line turned upright: all its mass in the centre column."""
    k = parse_kernel("motion:15:90")
    c = k.shape[0] // 2
    assert float(k[:, c].sum()) == pytest.approx(1, abs=1e-12)
    assert torch.allclose(k, parse_kernel("motion:15:0").T, rtol=0, atol=1e-12)


def test_motion_angle_turns_counter_clockwise() -> None:
    """At 45 degrees (counter-clockwise, rows growing downwards) the line runs from the bottom
    left to the top right."""
    k = parse_kernel("motion:15:45")
    c = k.shape[0] // 2
    assert float(k[:c, c + 1 :].sum()) > 0.4  # top right
    assert float(k[c + 1 :, :c].sum()) > 0.4  # bottom left
    assert float(k[:c, :c].sum()) == 0 and float(k[c + 1 :, c + 1 :].sum()) == 0


def test_npy_file_loads_as_given(tmp_path: Path) -> None:
    """A .npy kernel that sums to 1 comes back unchanged, as float64."""
    array = np.random.default_rng(0).random((7, 7))
    array /= array.sum()
    path = tmp_path / "kernel.npy"
    np.save(path, array)
    k = parse_kernel(str(path))
    assert k.dtype == torch.float64
    assert torch.allclose(k, torch.from_numpy(array), rtol=0, atol=1e-15)


def test_gray_png_loads_as_its_normalised_pixel_values(tmp_path: Path) -> None:
    """A gray PNG's pixel values, normalised to sum 1."""
    pixels = np.random.default_rng(1).integers(0, 256, (9, 9), dtype=np.uint8)
    path = tmp_path / "kernel.png"
    Image.fromarray(pixels, mode="L").save(path)
    k = parse_kernel(str(path))
    assert k.shape == (9, 9)
    assert torch.allclose(k, torch.from_numpy(pixels / pixels.sum()), rtol=0, atol=1e-15)


def test_even_and_non_square_kernels_are_padded_to_an_odd_square(tmp_path: Path) -> None:
    """A 4x6 array becomes 7x7, its values kept, the rest zeros."""
    array = np.random.default_rng(2).random((4, 6))
    path = tmp_path / "kernel.npy"
    np.save(path, array / array.sum())
    k = parse_kernel(str(path))
    assert k.shape == (7, 7)
    assert float(k.sum()) == pytest.approx(1, abs=1e-12)
    assert sorted(k[k > 0].tolist()) == pytest.approx(sorted((array / array.sum()).ravel().tolist()), abs=1e-15)


def test_unnormalised_kernel_is_normalised_with_a_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A kernel file summing to 6 is divided by 6, and an INFO line names the file and says so."""
    path = tmp_path / "heavy.npy"
    np.save(path, np.full((3, 3), 6 / 9))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        k = parse_kernel(str(path))
    assert torch.allclose(k, torch.full((3, 3), 1 / 9, dtype=torch.float64), rtol=0, atol=1e-15)
    lines = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO]
    assert len(lines) == 1
    assert "heavy.npy" in lines[0].getMessage() and "normalised" in lines[0].getMessage()


def test_normalised_kernel_logs_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No normalisation line for a kernel that already sums to 1."""
    path = tmp_path / "unit.npy"
    np.save(path, np.full((3, 3), 1 / 9))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        parse_kernel(str(path))
    assert not [r for r in caplog.records if r.name == LOGGER]


@pytest.mark.parametrize(
    ("name", "array", "words"),
    [
        ("cube.npy", np.ones((3, 3, 3)), "2-D"),
        ("line.npy", np.ones(5), "2-D"),
        ("empty.npy", np.zeros((0, 0)), "empty"),
        ("negative.npy", np.array([[0.5, -0.1], [0.3, 0.3]]), "negative"),
        ("zeros.npy", np.zeros((3, 3)), "all zeros"),
        ("nan.npy", np.array([[np.nan, 1.0], [1.0, 1.0]]), "NaN"),
    ],
)
def test_bad_kernel_arrays_raise_config_error_naming_the_file(
    tmp_path: Path, name: str, array: np.ndarray, words: str
) -> None:
    """Arrays that are no blur kernel are refused with the file's name and the reason."""
    path = tmp_path / name
    np.save(path, array)
    with pytest.raises(ConfigError) as caught:
        parse_kernel(str(path))
    assert str(path) in str(caught.value)
    assert words in str(caught.value)


def test_missing_file_raises_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.npy"
    with pytest.raises(ConfigError, match="no such file") as caught:
        parse_kernel(str(path))
    assert str(path) in str(caught.value)


def test_rgb_png_raises_config_error_naming_it(tmp_path: Path) -> None:
    """Colour kernel images are refused (which channel would be the kernel?)."""
    path = tmp_path / "colour.png"
    Image.fromarray(np.full((5, 5, 3), 100, dtype=np.uint8), mode="RGB").save(path)
    with pytest.raises(ConfigError, match="RGB") as caught:
        parse_kernel(str(path))
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(("name", "content"), [("notes.txt", b"a kernel, honest"), ("broken.npy", b"not numpy")])
def test_unreadable_file_raises_config_error_naming_it(tmp_path: Path, name: str, content: bytes) -> None:
    """A file that is neither a .npy array nor an image is refused with its name."""
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        parse_kernel(str(path))
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("gaussian:", "missing parameters"),
        ("motion:", "missing parameters"),
        ("gaussian:-1", "positive"),
        ("gaussian:0", "positive"),
        ("gaussian:abc", "number"),
        ("gaussian:2:20", "odd"),
        ("gaussian:2:21:3", "gaussian:SIGMA"),
        ("motion:15", "motion:LENGTH:ANGLE"),
        ("motion:15:up", "ANGLE"),
        ("motion:-3:0", "positive"),
    ],
)
def test_bad_specs_raise_config_error_naming_the_spec(spec: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_kernel(spec)
    assert f"pnp.kernel={spec}" in str(caught.value)
    assert words in str(caught.value)
