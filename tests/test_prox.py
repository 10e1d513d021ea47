"""Proximal operators against brute-force minimization of their defining scalar problems."""
import pytest
import torch

import cscnb

DTYPE = torch.float64
GRID = torch.arange(-30_000, 30_001, dtype=DTYPE) * 2e-4  # spacing 2e-4; contains 0 exactly (linspace may not)
SPACING = float(GRID[1] - GRID[0])
U_VALUES = [-4.3, -1.7, -0.61, -0.2, 0.0, 0.13, 0.45, 0.9, 2.2, 5.1]
T_VALUES = [0.0, 0.3, 0.5, 1.0, 2.5]


def brute_force(penalty, u, grid=GRID):
    """argmin_a ½(u − a)² + penalty(a) over the grid."""
    values = 0.5 * (u - grid) ** 2 + penalty(grid)
    return float(grid[values.argmin()])


@pytest.mark.parametrize("t", T_VALUES)
def test_soft_threshold_is_the_l1_prox(t):
    for u in U_VALUES:
        expected = brute_force(lambda a: t * a.abs(), u)
        got = float(cscnb.soft_threshold(torch.tensor(u, dtype=DTYPE), t))
        assert got == pytest.approx(expected, abs=SPACING), (u, t)


@pytest.mark.parametrize("t", T_VALUES)
def test_nonneg_soft_threshold_is_the_constrained_l1_prox(t):
    nonneg_grid = GRID[GRID >= 0]
    for u in U_VALUES:
        expected = brute_force(lambda a: t * a, u, nonneg_grid)
        got = float(cscnb.nonneg_soft_threshold(torch.tensor(u, dtype=DTYPE), t))
        assert got == pytest.approx(expected, abs=SPACING), (u, t)


@pytest.mark.parametrize("nonneg", [False, True])
@pytest.mark.parametrize("t,s", [(0.0, 0.5), (0.4, 0.0), (0.4, 0.5), (1.0, 2.0)])
def test_elastic_net_prox(t, s, nonneg):
    grid = GRID[GRID >= 0] if nonneg else GRID
    for u in U_VALUES:
        expected = brute_force(lambda a: t * a.abs() + 0.5 * s * a ** 2, u, grid)
        got = float(cscnb.elastic_net_prox(torch.tensor(u, dtype=DTYPE), t, s, nonneg=nonneg))
        assert got == pytest.approx(expected, abs=SPACING), (u, t, s, nonneg)


@pytest.mark.parametrize("t", [0.3, 1.0, 2.5])
def test_hard_threshold_is_the_l0_prox(t):
    for u in U_VALUES:
        if abs(abs(u) - t) < 1e-3:
            continue  # the tie |u| = t has two minimizers
        expected = brute_force(lambda a: 0.5 * t ** 2 * (a != 0).to(DTYPE), u)
        got = float(cscnb.hard_threshold(torch.tensor(u, dtype=DTYPE), t))
        assert got == pytest.approx(expected, abs=SPACING), (u, t)


def test_hard_threshold_tie_goes_to_zero():
    assert float(cscnb.hard_threshold(torch.tensor(0.5, dtype=DTYPE), 0.5)) == 0.0


OPERATORS = [
    ("soft", lambda u, t: cscnb.soft_threshold(u, t)),
    ("nonneg", lambda u, t: cscnb.nonneg_soft_threshold(u, t)),
    ("elastic", lambda u, t: cscnb.elastic_net_prox(u, t, 0.5)),
    ("elastic-nonneg", lambda u, t: cscnb.elastic_net_prox(u, t, 0.5, nonneg=True)),
    ("hard", lambda u, t: cscnb.hard_threshold(u, t)),
]


@pytest.mark.parametrize("name,op", OPERATORS, ids=[n for n, _ in OPERATORS])
def test_per_atom_threshold_equals_scalar_threshold_per_atom(name, op):
    gen = torch.Generator().manual_seed(0)
    thresholds = torch.tensor([0.0, 0.2, 0.7, 1.5], dtype=DTYPE)
    dense = 2 * torch.randn(5, 4, generator=gen, dtype=DTYPE)       # (B, n_atoms)
    conv = 2 * torch.randn(2, 4, 3, 3, generator=gen, dtype=DTYPE)  # (B, n_atoms, H, W)
    got_dense = op(dense, thresholds)
    got_conv = op(conv, thresholds.reshape(4, 1, 1))
    for i, t in enumerate(thresholds.tolist()):
        torch.testing.assert_close(got_dense[:, i], op(dense[:, i], t), rtol=0, atol=0)
        torch.testing.assert_close(got_conv[:, i], op(conv[:, i], t), rtol=0, atol=0)


@pytest.mark.parametrize("name,op", OPERATORS, ids=[n for n, _ in OPERATORS])
def test_prox_keeps_dtype_and_accepts_float32(name, op):
    u = torch.linspace(-2, 2, 9, dtype=torch.float32)
    out = op(u, torch.tensor(0.5, dtype=torch.float64))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, op(u.double(), 0.5).float(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name,op", OPERATORS, ids=[n for n, _ in OPERATORS])
def test_prox_rejects_bad_thresholds(name, op):
    u = torch.zeros(3, dtype=DTYPE)
    with pytest.raises(ValueError, match="t must be non-negative"):
        op(u, -0.1)
    with pytest.raises(ValueError, match="t must be finite"):
        op(u, torch.tensor([0.1, float("nan"), 0.2], dtype=DTYPE))
    with pytest.raises(TypeError, match="t must be a number"):
        op(u, "0.1")
