"""Unit tests for cscnb.symbolic (the SymPy helpers of chapters 1 and 2)."""
import pytest
import sympy as sp
import torch

import cscnb
from cscnb import symbolic

y, a = sp.symbols("y a", real=True)
t = sp.Symbol("t", positive=True)


def test_soft_threshold_cases_match_package():
    cases = symbolic.scalar_prox_by_cases(y, a, [(-t * a, -sp.oo, 0), (t * a, 0, sp.oo)])
    f = symbolic.lambdify_torch(symbolic.cases_to_piecewise(cases), [y, t])
    u = torch.linspace(-3, 3, 61, dtype=torch.float64)
    torch.testing.assert_close(f(u, 0.7), cscnb.soft_threshold(u, 0.7), atol=1e-15, rtol=0)


def test_box_kkt_gives_clipped_relu():
    c = sp.Symbol("c", positive=True)
    cases = symbolic.box_kkt_cases(sp.Rational(1, 2) * (y - a) ** 2 - t * a, a, lower=0, upper=c)
    f = symbolic.lambdify_torch(symbolic.cases_to_piecewise(cases), [y, t, c])
    u = torch.linspace(-3, 3, 61, dtype=torch.float64)
    torch.testing.assert_close(f(u, 0.5, 1.0), torch.clamp(u + 0.5, 0, 1.0), atol=1e-15, rtol=0)


def test_lambdify_broadcasts_constants_and_max():
    assert symbolic.lambdify_torch(sp.Integer(0), [y])(torch.zeros(3, dtype=torch.float64)).shape == (3,)
    g = symbolic.lambdify_torch(sp.Max(y - t, 0), [y, t])
    out = g(torch.tensor([-1.0, 2.0], dtype=torch.float64), 0.5)
    torch.testing.assert_close(out, torch.tensor([0.0, 1.5], dtype=torch.float64))


def test_decide_and_evaluate_piecewise():
    s = sp.Symbol("s", positive=True)
    assert symbolic.decide(t + s > t) is True
    assert symbolic.decide(t + s < t) is False
    assert symbolic.decide(y > 0) is None
    pw = sp.Piecewise((y - t, y > t), (0, True))
    assert symbolic.evaluate_piecewise(pw, {y: t + s}) == s
    with pytest.raises(ValueError):
        symbolic.evaluate_piecewise(pw, {y: y})


def test_map_objective_reduction():
    sigma, lam = sp.symbols("sigma lambda", positive=True)
    x, z = sp.Matrix(sp.symbols("x1:3", real=True)), sp.Matrix(sp.symbols("z1:3", real=True))
    cost = symbolic.neg_log_posterior(x, sp.eye(2), z, sigma, lambda zi: sp.log(lam / 2) - lam * sp.Abs(zi))
    target = sum((x[i] - z[i]) ** 2 / 2 + sigma**2 * lam * sp.Abs(z[i]) for i in range(2))
    gap = symbolic.drop_constant_terms(sp.expand(sigma**2 * cost - target), list(z))
    assert sp.simplify(gap) == 0


def test_bad_inputs_raise():
    with pytest.raises(TypeError):
        symbolic.lambdify_torch("y", [y])
    with pytest.raises(ValueError):
        symbolic.lambdify_torch(y + t, [y])
    with pytest.raises(ValueError):
        symbolic.scalar_prox_by_cases(y, a, [])
    with pytest.raises(ValueError):
        symbolic.scalar_prox_by_cases(y, a, [(t * a, 0, 1), (t * a, 2, 3)])
    with pytest.raises(TypeError):
        symbolic.scalar_prox_by_cases("y", a, [(t * a, 0, 1)])
    with pytest.raises(ValueError):
        symbolic.box_kkt_cases((y - a) ** 2, a)
    with pytest.raises(ValueError):
        symbolic.gaussian_neg_log_likelihood(sp.Matrix([y]), sp.eye(2), sp.Matrix([a, t]), t)
