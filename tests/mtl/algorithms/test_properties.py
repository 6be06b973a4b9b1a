"""Properties every gradient aggregator must have, checked on one set of sampled matrices.

Modelled on torchjd's shared asserts: permutation invariance where the method promises it,
a non-conflicting update where it promises it, the scale of the update for identical
gradients, and a zero gradient handled without NaN.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from m3l import mtl
from m3l.mtl import algorithms as A

AGGREGATORS = {
    "pcgrad": A.PCGrad,
    "mgda": A.MGDA,
    "cagrad": A.CAGrad,
    "nash_mtl": A.NashMTL,
    "imtl_g": A.IMTLG,
    "aligned_mtl": A.AlignedMTL,
    "gradvac": A.GradVac,
    "graddrop": A.GradDrop,
    "config": A.ConFIG,
    "dualproj": A.DualProj,
    "upgrad": A.UPGrad,
}
RANDOM = {"pcgrad", "gradvac", "graddrop"}
NON_CONFLICTING = {"mgda", "dualproj", "upgrad", "config"}
# the update for T identical gradients g, as a multiple of g (the papers' conventions:
# sums for the surgery methods, the mean for the others; CAGrad adds c*g; Nash-MTL clips to 1)
IDENTICAL_FACTOR = {"pcgrad": "T", "gradvac": "T", "graddrop": "T", "config": "T", "cagrad": "1+c"}


def sampled_matrices() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    shapes = [(2, 5), (3, 7), (5, 12), (8, 20)]
    mats = [torch.randn(shape, generator=gen) for shape in shapes]
    mats.append(torch.tensor([[1.0, 0.0, 0.5], [-1.0, 1.0, 0.0]]))  # a conflicting pair
    return mats


def make(name: str, num: int):
    agg = AGGREGATORS[name]()
    agg.setup([f"t{i}" for i in range(num)])
    return agg


def run(agg, jacobian: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cvxpy's DPP notice
        return agg.aggregate(jacobian)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_shape_dtype_and_finite(name):
    for jac in sampled_matrices():
        out = run(make(name, len(jac)), jac)
        assert out.shape == (jac.shape[1],) and out.dtype == jac.dtype and torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(set(AGGREGATORS) - RANDOM))
def test_invariant_to_task_order(name):
    for jac in sampled_matrices():
        perm = torch.randperm(len(jac))
        a = run(make(name, len(jac)), jac)
        b = run(make(name, len(jac)), jac[perm])
        assert torch.allclose(a, b, atol=2e-3, rtol=2e-3), (a, b)


@pytest.mark.parametrize("name", sorted(NON_CONFLICTING))
def test_update_conflicts_with_no_task(name):
    for jac in sampled_matrices():
        out = run(make(name, len(jac)), jac)
        scale = jac.norm(dim=1) * out.norm()
        assert (jac @ out >= -2e-3 * scale).all(), jac @ out


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_identical_gradients_give_a_multiple_of_the_mean(name):
    for num in (2, 3, 5):
        g = torch.tensor([0.3, -0.4, 1.2])  # norm 1.3
        jac = g.repeat(num, 1)
        out = run(make(name, num), jac)
        factor = IDENTICAL_FACTOR.get(name, "1")
        expected = {"T": float(num), "1+c": 1.4, "1": 1.0}[factor]
        if name == "nash_mtl":
            expected = 1.0 / g.norm().item()  # weights 1/(T ||g||) summed, ||update|| = 1
        assert torch.allclose(out, expected * g, atol=2e-3), (out, expected * g)


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_zero_gradients_are_handled(name):
    jac = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    out = run(make(name, 2), jac)
    assert torch.isfinite(out).all()
    assert float(out @ jac[0]) >= -1e-6  # never against the only live task
    zero = run(make(name, 2), torch.zeros(2, 3))
    assert torch.equal(zero, torch.zeros(3))


@pytest.mark.parametrize("name", sorted(set(AGGREGATORS) - {"graddrop", "config"}))
def test_weighted_methods_expose_weights_consistent_with_the_update(name):
    jac = sampled_matrices()[1]
    agg = make(name, len(jac))
    out = run(agg, jac)
    assert agg.last_weights.shape == (len(jac),)
    assert torch.allclose(agg.last_weights @ jac, out, atol=1e-5)


@pytest.mark.parametrize("name", sorted(set(AGGREGATORS) - {"graddrop", "config"}))
def test_weights_from_the_gramian_match_weights_from_the_jacobian(name):
    """What DDP and ``wrt='representation'`` rely on: only ``J @ J.T`` matters."""
    if name in RANDOM:
        pytest.skip("random order: same distribution, not the same draw")
    jac = sampled_matrices()[2]
    a, b = make(name, len(jac)), make(name, len(jac))
    run(a, jac)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        weights = b.weights_from_gramian(jac @ jac.T)
    assert torch.allclose(a.last_weights, weights, atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("name", ["graddrop", "config"])
def test_unweighted_methods_refuse_update_every_and_config_the_representation(name):
    if name == "config":
        with pytest.raises(mtl.algorithms.RepresentationNotSupportedError, match="wrt='parameters'"):
            AGGREGATORS[name](wrt="representation")
    else:  # coordinate-wise: it acts on the representation's per-sample Jacobian itself
        assert AGGREGATORS[name](wrt="representation").wrt == "representation"
    with pytest.raises(Exception, match="update_every=1"):
        AGGREGATORS[name](update_every=4)


def test_update_every_reuses_the_weights():
    agg = make("imtl_g", 2)
    assert agg.needs_recompute()
    agg = A.IMTLG(update_every=3)
    agg.setup(["a", "b"])
    flags = []
    for _ in range(7):
        flags.append(agg.needs_recompute())
        if flags[-1]:
            run(agg, torch.randn(2, 4))
        else:
            agg.reuse()
    assert flags == [True, False, False, True, False, False, True]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: A.UPGrad(wrt="features"), "wrt must be 'parameters' or 'representation'"),
        (lambda: A.UPGrad(update_every=0), "update_every must be >= 1"),
        (lambda: A.GradDrop(update_every=3), r"fix: GradDrop\(update_every=1\)"),
    ],
)
def test_bad_method_arguments_are_config_errors(make, match):
    from m3l.errors import ConfigError

    with pytest.raises(ConfigError, match=match) as err:
        make()
    assert isinstance(err.value, ValueError)
