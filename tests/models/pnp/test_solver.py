"""DPIR's schedule of the half-quadratic-splitting solver: geometric denoiser levels and the
data-step weights that follow them."""

from __future__ import annotations

import math

import pytest

from m3l.errors import ConfigError
from m3l.models.pnp.solver import ITERATIONS, LAMBDA, NOISE_FLOOR, SIGMA_MAX, schedule


def test_dpir_defaults() -> None:
    """The published DPIR settings: 8 iterations from 49/255, lambda 0.23, noise floored at 0.255/255."""
    assert (ITERATIONS, LAMBDA) == (8, 0.23)
    assert SIGMA_MAX == pytest.approx(49 / 255, rel=1e-15)
    assert NOISE_FLOOR == pytest.approx(0.255 / 255, rel=1e-15)


@pytest.mark.parametrize("sigma_min", [2 / 255, 7.65 / 255, 25 / 255])
def test_levels_fall_geometrically_from_sigma_max_to_sigma_min(sigma_min: float) -> None:
    """sigma_1 = sigma_max, sigma_K = sigma_min, and a constant ratio in between."""
    steps = schedule(8, 49 / 255, sigma_min, noise=sigma_min, lam=0.23)
    sigmas = [sigma for _, sigma in steps]
    assert len(sigmas) == 8
    assert sigmas[0] == pytest.approx(49 / 255, rel=1e-6)
    assert sigmas[-1] == pytest.approx(sigma_min, rel=1e-6)
    ratios = [after / before for before, after in zip(sigmas, sigmas[1:])]
    assert ratios == pytest.approx([ratios[0]] * 7, rel=1e-12)
    assert ratios[0] == pytest.approx((sigma_min / (49 / 255)) ** (1 / 7), rel=1e-6)


def test_levels_hit_their_endpoints_in_float64() -> None:
    sigmas = [sigma for _, sigma in schedule(8, 49 / 255, 2 / 255, noise=2 / 255, lam=0.23)]
    assert sigmas[0] == pytest.approx(49 / 255, rel=1e-12)
    assert sigmas[-1] == pytest.approx(2 / 255, rel=1e-12)


@pytest.mark.parametrize(("noise", "lam"), [(2 / 255, 0.23), (10 / 255, 0.5), (0.0, 0.23), (0.1 / 255, 1.0)])
def test_weights_are_lambda_noise_squared_over_sigma_squared(noise: float, lam: float) -> None:
    """alpha_k = lam * max(noise, 0.255/255)^2 / sigma_k^2: small first, growing as sigma_k falls."""
    sigma_min = max(noise, 2 / 255)
    steps = schedule(8, 49 / 255, sigma_min, noise=noise, lam=lam)
    floored = max(noise, 0.255 / 255)
    for alpha, sigma in steps:
        assert alpha == pytest.approx(lam * floored**2 / sigma**2, rel=1e-12)
    alphas = [alpha for alpha, _ in steps]
    assert alphas == sorted(alphas) and alphas[0] < alphas[-1]
    assert math.isfinite(alphas[-1]) and alphas[0] > 0  # a noiseless observation still has a finite weight


def test_one_iteration_runs_at_sigma_min() -> None:
    """With a single iteration the solver denoises at the final level, not at sigma_max."""
    ((alpha, sigma),) = schedule(1, 49 / 255, 5 / 255, noise=5 / 255, lam=0.23)
    assert sigma == pytest.approx(5 / 255, rel=1e-12)
    assert alpha == pytest.approx(0.23, rel=1e-12)


def test_sigma_min_equal_to_sigma_max_is_a_constant_schedule() -> None:
    sigmas = [sigma for _, sigma in schedule(4, 10 / 255, 10 / 255, noise=0.01, lam=0.23)]
    assert sigmas == pytest.approx([10 / 255] * 4, rel=1e-6)


def test_noise_above_sigma_max_starts_at_the_noise_level() -> None:
    """An observation noisier than sigma_max: every level is sigma_min (never below the noise)."""
    steps = schedule(3, 49 / 255, 60 / 255, noise=60 / 255, lam=0.23)
    assert [sigma for _, sigma in steps] == pytest.approx([60 / 255] * 3, rel=1e-6)
    assert [alpha for alpha, _ in steps] == pytest.approx([0.23] * 3, rel=1e-6)


def test_noiseless_blur_observation_has_a_schedule() -> None:
    """A noiseless observation (pnp.noise=0, or a level estimated as 0) still gets finite levels and weights."""
    from m3l.models.pnp.operators import Blur

    steps = schedule(ITERATIONS, SIGMA_MAX, Blur("gaussian:2.0").min_sigma(0.0), noise=0.0, lam=LAMBDA)
    assert all(sigma > 0 and 0 < alpha < math.inf for alpha, sigma in steps)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"iterations": 0}, "pnp.iterations"),
        ({"iterations": -3}, "pnp.iterations"),
        ({"lam": 0.0}, "pnp.lam"),
        ({"lam": -0.23}, "pnp.lam"),
        ({"sigma_min": float("nan")}, "positive"),
        ({"sigma_max": 0.0}, "pnp.sigma_max"),
        ({"sigma_max": -1.0}, "pnp.sigma_max"),
    ],
)
def test_bad_settings_raise_config_error(kwargs: dict, words: str) -> None:
    settings = {"iterations": 8, "sigma_max": 49 / 255, "sigma_min": 2 / 255, "noise": 2 / 255, "lam": 0.23, **kwargs}
    with pytest.raises(ConfigError, match=words):
        schedule(**settings)
