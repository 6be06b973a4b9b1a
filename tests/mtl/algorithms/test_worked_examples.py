"""Each method on fixed inputs against its paper's formula or a reference result."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from m3l.mtl import algorithms as A


def aggregate(agg, jac):
    agg.setup([f"t{i}" for i in range(len(jac))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return agg.aggregate(jac)


CONFLICT = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
ORTHOGONAL = torch.tensor([[1.0, 0.0], [0.0, 2.0]])


def test_pcgrad_two_tasks_by_hand():
    # Alg. 1 of Yu et al.: g1' = g1 - (g1.g2/|g2|^2) g2 = (.5,.5); g2' = g2 - (g2.g1/|g1|^2) g1 = (0,1)
    assert torch.allclose(aggregate(A.PCGrad(), CONFLICT), torch.tensor([0.5, 1.5]))


def test_mgda_two_tasks_closed_form():
    # Alg. 1 of Sener and Koltun: alpha = clip(((g2 - g1).g2) / |g1 - g2|^2, 0, 1)
    g1, g2 = ORTHOGONAL
    alpha = float(((g2 - g1) @ g2) / (g1 - g2).norm() ** 2)
    expected = alpha * g1 + (1 - alpha) * g2  # (0.8, 0.4): the min-norm point of the segment
    assert torch.allclose(aggregate(A.MGDA(epsilon=1e-6, max_iters=1000), ORTHOGONAL), expected, atol=1e-3)


def test_cagrad_matches_a_grid_search_of_the_dual():
    # Alg. 1 of Liu et al.: min_w g_w.g0 + sqrt(phi) |g_w| over the simplex, d = g0 + sqrt(phi)/|g_w| g_w
    jac, c = CONFLICT, 0.4
    g0 = jac.mean(0).double()
    sqrt_phi = c * g0.norm()
    ws = torch.linspace(0, 1, 20001, dtype=torch.float64)
    gw = ws[:, None] * jac[0].double() + (1 - ws[:, None]) * jac[1].double()
    best = gw[torch.argmin(gw @ g0 + sqrt_phi * gw.norm(dim=1))]
    expected = g0 + sqrt_phi / best.norm() * best
    assert torch.allclose(aggregate(A.CAGrad(c=c), jac).double(), expected, atol=1e-3)


def test_nash_mtl_solves_the_bargaining_equation():
    # Eq. (5) of Navon et al.: G alpha = 1 / alpha; for orthogonal gradients alpha_i = 1 / |g_i|
    agg = A.NashMTL(max_norm=0.0)
    out = aggregate(agg, ORTHOGONAL)
    assert torch.allclose(agg.last_weights, torch.tensor([1.0, 0.5]), atol=1e-3)
    assert torch.allclose(out, torch.tensor([1.0, 1.0]), atol=1e-3)
    gram = ORTHOGONAL @ ORTHOGONAL.T
    assert torch.allclose(gram @ agg.last_weights, 1 / agg.last_weights, atol=1e-2)
    clipped = aggregate(A.NashMTL(max_norm=1.0), ORTHOGONAL)
    assert clipped.norm().item() == pytest.approx(1.0, abs=1e-4)


def test_imtl_g_equal_projections_and_closed_form():
    # Sec. 3.2 of Liu et al. (2021): d.u_t equal for all t; alpha_{2:T} = g1 U^T (D U^T)^-1
    jac = torch.tensor([[1.0, 0.2, 0.0], [-0.5, 1.0, 0.3], [0.1, -0.4, 1.0]], dtype=torch.float64)
    agg = A.IMTLG()
    out = aggregate(agg, jac.float()).double()
    units = jac / jac.norm(dim=1, keepdim=True)
    proj = units @ out
    assert torch.allclose(proj, proj[0].expand(3), atol=1e-4)
    D = jac[0] - jac[1:]
    U = units[0] - units[1:]
    rest = jac[0] @ U.T @ torch.linalg.inv(D @ U.T)
    alpha = torch.cat([1 - rest.sum(0, keepdim=True), rest])
    assert torch.allclose(out, alpha @ jac, atol=1e-4)


def test_aligned_mtl_balances_the_singular_values():
    # Alg. 1 of Senushkin et al.: orthogonal gradients rescaled to the smallest norm, then averaged
    assert torch.allclose(aggregate(A.AlignedMTL(), ORTHOGONAL), torch.tensor([0.5, 0.5]), atol=1e-5)


def test_gradvac_first_step_is_pcgrad():
    # Wang et al. (Sec. 3): with the cosine targets at their initial value 0, GradVac is PCGrad
    assert torch.allclose(aggregate(A.GradVac(), CONFLICT), torch.tensor([0.5, 1.5]))


def test_graddrop_keeps_gradients_whose_signs_agree():
    # Alg. 1 of Chen et al.: sign purity 1 (or 0) on every coordinate, nothing is dropped
    jac = torch.tensor([[1.0, -2.0], [3.0, -1.0]])
    assert torch.equal(aggregate(A.GradDrop(), jac), torch.tensor([4.0, -3.0]))


def test_config_orthogonal_example():
    # Eq. 2-3 of Liu et al. (2025): direction (1,1)/sqrt2, length sum_i g_i.u = 3/sqrt2
    assert torch.allclose(aggregate(A.ConFIG(), ORTHOGONAL), torch.tensor([1.5, 1.5]), atol=1e-5)


def test_dualproj_projects_the_mean_onto_the_dual_cone():
    jac = torch.tensor([[1.0, 0.0], [-2.0, 1.0]])  # mean (-0.5, 0.5) conflicts with g1
    assert torch.allclose(aggregate(A.DualProj(), jac), torch.tensor([0.0, 0.5]), atol=1e-3)


def test_upgrad_reference_example():
    # torchjd's documented example (Quinton and Rey, 2024)
    jac = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
    assert torch.allclose(aggregate(A.UPGrad(), jac), torch.tensor([0.2929, 1.9004, 1.9004]), atol=1e-4)
    assert math.isclose(float(jac[0] @ aggregate(A.UPGrad(), jac)), 2.63, abs_tol=0.01)
