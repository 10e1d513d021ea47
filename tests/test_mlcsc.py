"""ML-CSC pursuits and bounds (chapter 6): cscnb.mlcsc, cscnb.mlcsc.ml_bp, cscnb.mlcsc.bounds."""
import math

import pytest
import torch
import torch.nn as nn

from cscnb import ConvDictionary, LinearDictionary, mlcsc, mutual_coherence, solve


def _unit_columns(weight):
    return weight / weight.norm(dim=0)


@pytest.fixture
def dense_chain():
    g = torch.Generator().manual_seed(0)
    d1 = _unit_columns(torch.randn(12, 16, generator=g, dtype=torch.float64))
    d2 = _unit_columns(torch.randn(16, 20, generator=g, dtype=torch.float64))
    x = torch.randn(3, 12, generator=g, dtype=torch.float64)
    return [LinearDictionary(d1), LinearDictionary(d2)], x


@pytest.fixture
def conv_chain():
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(4, 1, 3, 3, generator=g, dtype=torch.float64),
               torch.randn(5, 4, 3, 3, generator=g, dtype=torch.float64)]
    dictionaries = [ConvDictionary(weights[0], padding=1), ConvDictionary(weights[1], stride=2)]
    x = torch.randn(2, 1, 9, 9, generator=g, dtype=torch.float64)
    return dictionaries, weights, x


# ---------------------------------------------------------------------------------------------
# layered thresholding


def test_layered_thresholding_is_conv_bias_relu(conv_chain):
    dictionaries, weights, x = conv_chain
    betas = [torch.tensor([0.1, 0.0, 0.3, 0.2], dtype=torch.float64), 0.25]
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, stride=2), nn.ReLU()).double()
    with torch.no_grad():
        net[0].weight.copy_(weights[0]), net[0].bias.copy_(-betas[0])
        net[2].weight.copy_(weights[1]), net[2].bias.fill_(-betas[1])
        expected = net(x)
    codes = mlcsc.layered_thresholding(dictionaries, x, betas)
    assert len(codes) == 2 and codes[0].shape == (2, 4, 9, 9)
    torch.testing.assert_close(codes[-1], expected, rtol=1e-12, atol=1e-13)


def test_layered_thresholding_signed_is_softshrink(dense_chain):
    dictionaries, x = dense_chain
    codes = mlcsc.layered_thresholding(dictionaries, x, [0.2, 0.1], nonneg=False)
    first = nn.functional.softshrink(x @ dictionaries[0].weight, 0.2)
    torch.testing.assert_close(codes[0], first)
    torch.testing.assert_close(codes[1], nn.functional.softshrink(first @ dictionaries[1].weight, 0.1))
    assert (codes[1] < 0).any()  # signed codes survive


def test_layered_thresholding_gradient_reaches_thresholds(dense_chain):
    dictionaries, x = dense_chain
    beta = torch.full((16,), 0.05, dtype=torch.float64, requires_grad=True)
    codes = mlcsc.layered_thresholding(dictionaries, x, [beta, 0.0])
    codes[-1].sum().backward()
    assert beta.grad is not None and beta.grad.abs().sum() > 0


def test_synthesize_chain_inverts_shapes(conv_chain):
    dictionaries, _, x = conv_chain
    deepest = mlcsc.layered_thresholding(dictionaries, x, [0.0, 0.0])[-1]
    chain = mlcsc.synthesize_chain(dictionaries, deepest, [(9, 9), (9, 9)])
    assert [tuple(c.shape) for c in chain] == [(2, 1, 9, 9), (2, 4, 9, 9), (2, 5, 4, 4)]
    torch.testing.assert_close(chain[1], dictionaries[1].synthesize(deepest, output_size=(9, 9)))


# ---------------------------------------------------------------------------------------------
# layered BP, ML-FISTA, the reference solver


def test_layered_basis_pursuit_is_one_solve_per_layer(dense_chain):
    dictionaries, x = dense_chain
    codes = mlcsc.layered_basis_pursuit(dictionaries, x, [0.1, 0.05], n_iter=300, tol=1e-10)
    first = solve(dictionaries[0], x, 0.1, n_iter=300, tol=1e-10).z
    torch.testing.assert_close(codes[0], first)
    torch.testing.assert_close(codes[1], solve(dictionaries[1], first, 0.05, n_iter=300, tol=1e-10).z)


@pytest.mark.parametrize("momentum,method", [(True, "fista"), (False, "ista")])
def test_ml_fista_without_inner_penalty_is_fista_on_the_product(dense_chain, momentum, method):
    dictionaries, x = dense_chain
    product = LinearDictionary(dictionaries[0].weight @ dictionaries[1].weight)
    step = 1 / product.lipschitz_constant()
    nested = mlcsc.ml_fista(dictionaries, x, [0.0, 0.1], momentum=momentum, n_iter=25, tol=1e-300, steps=[0.5, step])
    plain = solve(product, x, 0.1, method=method, n_iter=25, tol=1e-300)
    torch.testing.assert_close(nested.codes[-1], plain.z, rtol=1e-10, atol=1e-12)
    assert nested.history.shape == (26, 3)


def test_ml_fista_gap_bound_dominates_true_gap(dense_chain):
    dictionaries, x = dense_chain
    lams = [0.2, 0.2]   # (at 0.05 this random chain needs far more iterations to reach a fixed point)
    run = mlcsc.ml_fista(dictionaries, x, lams, n_iter=3000, tol=1e-13, history=False)
    reference, history = mlcsc.ml_bp_primal_dual(dictionaries, x, lams, n_iter=10000, tol=1e-13)
    f_star = mlcsc.ml_bp_objective(dictionaries, x, reference, lams)
    gap, residual = mlcsc.ml_fista_gap_bound(dictionaries, x, run.codes[-1], lams)
    assert run.converged and float(residual.max()) < 1e-8
    assert bool((run.objective - f_star <= gap + 1e-9).all())
    assert bool((run.objective - f_star >= -1e-9).all())
    torch.testing.assert_close(history[-1], f_star)


def test_primal_dual_matches_lasso_when_inner_penalty_is_zero(dense_chain):
    dictionaries, x = dense_chain
    product = LinearDictionary(dictionaries[0].weight @ dictionaries[1].weight)
    reference, _ = mlcsc.ml_bp_primal_dual(dictionaries, x, [0.0, 0.5], n_iter=4000, tol=1e-12)
    lasso = solve(product, x, 0.5, n_iter=4000, tol=1e-12)
    torch.testing.assert_close(mlcsc.ml_bp_objective(dictionaries, x, reference, [0.0, 0.5]), lasso.objective,
                               rtol=1e-7, atol=1e-9)


def test_ml_bp_objective_formula(dense_chain):
    dictionaries, x = dense_chain
    g = torch.Generator().manual_seed(3)
    deep = torch.randn(3, 20, generator=g, dtype=torch.float64)
    middle = deep @ dictionaries[1].weight.T
    expected = 0.5 * (x - middle @ dictionaries[0].weight.T).square().sum(1) + 0.3 * middle.abs().sum(1) \
        + 0.1 * deep.abs().sum(1)
    torch.testing.assert_close(mlcsc.ml_bp_objective(dictionaries, x, deep, [0.3, 0.1]), expected)


def test_ml_fista_nonneg_and_conv_chain_run(conv_chain):
    dictionaries, _, x = conv_chain
    run = mlcsc.ml_fista(dictionaries, x, [0.1, 0.1], nonneg=True, n_iter=30, history=False)
    assert run.history.shape == (2, 2)
    assert all((c >= 0).all() for c in run.inner_codes)
    assert run.codes[0].shape == (2, 4, 9, 9) and run.inner_codes[-1].shape == (2, 5, 4, 4)


# ---------------------------------------------------------------------------------------------
# coherence and bounds


def _global_matrix(dictionary, signal_shape):
    code_shape = dictionary.code_shape((1, *signal_shape))
    n_code = math.prod(code_shape[1:])
    basis = torch.eye(n_code, dtype=torch.float64).reshape(n_code, *code_shape[1:])
    return dictionary.synthesize(basis, output_size=signal_shape[1:]).reshape(n_code, -1).T


@pytest.mark.parametrize("weight_shape,signal_shape", [((3, 2, 4), (2, 11)), ((3, 2, 4), (2, 5)),
                                                       ((2, 1, 3, 3), (1, 6, 6)), ((3, 2, 2, 3), (2, 3, 7))])
def test_conv_mutual_coherence_matches_global_matrix(weight_shape, signal_shape):
    g = torch.Generator().manual_seed(4)
    dictionary = ConvDictionary(torch.randn(weight_shape, generator=g, dtype=torch.float64))
    expected = mutual_coherence(_global_matrix(dictionary, signal_shape))
    assert abs(mlcsc.conv_mutual_coherence(dictionary, signal_shape[1:]) - expected) < 1e-12


def test_bounds_values():
    assert mlcsc.stripe_uniqueness_bound(0.25) == 2.5
    assert mlcsc.thresholding_success_bound(0.125, 1.0, 2.0, 0.1) == pytest.approx(0.5 * (1 + 4) - 0.4)
    lo, hi = mlcsc.thresholding_interval(0.1, 3, 1.0, 2.0, 0.05)
    assert (lo, hi) == pytest.approx((0.65, 0.55))   # s = 3 violates the bound 0.5 (1 + 5) - 0.25 = 2.75
    assert mlcsc.stability_chain([0.1, 0.2], [2, 1], [2.0, 1.0], [0.5, 0.3], 0.1) == pytest.approx(
        [0.1, math.sqrt(2) * (0.1 + 0.2 + 0.5), math.sqrt(2) * 0.8 + 0.3])


def test_interval_nonempty_exactly_below_the_bound():
    g = torch.Generator().manual_seed(5)
    for _ in range(200):
        mu, g_lo = float(torch.rand(1, generator=g)) * 0.5 + 0.01, float(torch.rand(1, generator=g)) + 0.1
        g_hi, noise, s = g_lo + float(torch.rand(1, generator=g)), float(torch.rand(1, generator=g)) * 0.1, \
            int(torch.randint(1, 8, (1,), generator=g))
        lo, hi = mlcsc.thresholding_interval(mu, s, g_lo, g_hi, noise)
        assert (lo < hi) == (s < mlcsc.thresholding_success_bound(mu, g_lo, g_hi, noise))


# ---------------------------------------------------------------------------------------------
# bad input


def test_bad_chains_are_rejected(dense_chain, conv_chain):
    dictionaries, x = dense_chain
    conv_dicts, weights, xc = conv_chain
    with pytest.raises(TypeError, match="dictionaries"):
        mlcsc.layered_thresholding(dictionaries[0], x, [0.1])
    with pytest.raises(ValueError, match="at least one"):
        mlcsc.layered_thresholding([], x, [])
    with pytest.raises(TypeError, match=r"dictionaries\[1\]"):
        mlcsc.layered_thresholding([dictionaries[0], "D2"], x, [0.1, 0.1])
    with pytest.raises(ValueError, match=r"dictionaries\[1\] has n_features=12"):
        mlcsc.layered_thresholding([dictionaries[0], dictionaries[0]], x, [0.1, 0.1])
    with pytest.raises(ValueError, match="in_channels"):
        mlcsc.layered_thresholding([conv_dicts[1], conv_dicts[0]], xc, [0.1, 0.1])
    with pytest.raises(ValueError, match="mix dense and convolutional"):
        mlcsc.layered_thresholding([conv_dicts[0], dictionaries[1]], xc, [0.1, 0.1])
    with pytest.raises(ValueError, match="x must have shape"):
        mlcsc.layered_thresholding(dictionaries, x[:, :5], [0.1, 0.1])
    with pytest.raises(TypeError, match="dtype"):
        mlcsc.layered_thresholding(dictionaries, x.float(), [0.1, 0.1])


def test_bad_thresholds_are_rejected(dense_chain):
    dictionaries, x = dense_chain
    with pytest.raises(ValueError, match="one entry per layer"):
        mlcsc.layered_thresholding(dictionaries, x, [0.1])
    with pytest.raises(TypeError, match="thresholds must be a list"):
        mlcsc.layered_thresholding(dictionaries, x, 0.1)
    with pytest.raises(ValueError, match=r"thresholds\[1\] must be non-negative"):
        mlcsc.layered_thresholding(dictionaries, x, [0.1, -0.2])
    with pytest.raises(ValueError, match=r"thresholds\[0\] is per-atom"):
        mlcsc.layered_thresholding(dictionaries, x, [torch.ones(3), 0.1])
    with pytest.raises(TypeError, match="nonneg"):
        mlcsc.layered_thresholding(dictionaries, x, [0.1, 0.1], nonneg="yes")
    with pytest.raises(ValueError, match=r"lams\[0\] contains NaN"):
        mlcsc.layered_basis_pursuit(dictionaries, x, [float("nan"), 0.1])
    with pytest.raises(ValueError, match="z0"):
        mlcsc.layered_basis_pursuit(dictionaries, x, [0.1, 0.1], z0=None)


def test_bad_ml_fista_arguments(dense_chain):
    dictionaries, x = dense_chain
    with pytest.raises(ValueError, match="steps must list 2"):
        mlcsc.ml_fista(dictionaries, x, [0.1, 0.1], steps=[0.1])
    with pytest.raises(ValueError, match=r"steps\[1\]"):
        mlcsc.ml_fista(dictionaries, x, [0.1, 0.1], steps=[0.1, -1.0])
    with pytest.raises(ValueError, match="n_iter"):
        mlcsc.ml_fista(dictionaries, x, [0.1, 0.1], n_iter=0)
    with pytest.raises(ValueError, match="positive lams on the inner layers"):
        mlcsc.ml_fista_gap_bound(dictionaries, x, torch.zeros(3, 20, dtype=torch.float64), [0.0, 0.1])
    with pytest.raises(ValueError, match="deepest_code must be a tensor of shape"):
        mlcsc.ml_bp_objective(dictionaries, x, torch.zeros(3, 7, dtype=torch.float64), [0.1, 0.1])


def test_bad_bound_arguments():
    with pytest.raises(ValueError, match="mu"):
        mlcsc.stripe_uniqueness_bound(0.0)
    with pytest.raises(ValueError, match="lies in"):
        mlcsc.stripe_uniqueness_bound(1.5)
    with pytest.raises(ValueError, match="gamma_min"):
        mlcsc.thresholding_success_bound(0.1, 2.0, 1.0)
    with pytest.raises(ValueError, match="noise"):
        mlcsc.thresholding_success_bound(0.1, 1.0, 1.0, -0.1)
    with pytest.raises(ValueError, match="sparsity"):
        mlcsc.thresholding_interval(0.1, 0, 1.0, 1.0)
    with pytest.raises(ValueError, match="sparsities has length 1"):
        mlcsc.stability_chain([0.1, 0.1], [1], [1.0, 1.0], [0.1, 0.1])
    with pytest.raises(TypeError, match="dictionary must be a cscnb ConvDictionary"):
        mlcsc.conv_mutual_coherence(LinearDictionary(torch.eye(3, dtype=torch.float64)))
    with pytest.raises(ValueError, match="stride=1"):
        mlcsc.conv_mutual_coherence(ConvDictionary(torch.randn(2, 1, 3, dtype=torch.float64), padding=1))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        mlcsc.conv_mutual_coherence(ConvDictionary(torch.randn(2, 1, 3, dtype=torch.float64)), 2)


def test_nonneg_ml_bp_with_identity_second_layer_is_a_nonneg_lasso(dense_chain):
    # with D2 = I the chain is Γ1 = Γ2, so the problem is min_{Γ ≥ 0} ½‖x − D1Γ‖² + (λ1 + λ2)‖Γ‖₁
    dictionaries, x = dense_chain
    chain = [dictionaries[0], LinearDictionary(torch.eye(16, dtype=torch.float64))]
    lams = [0.1, 0.15]
    lasso = solve(dictionaries[0], x, 0.25, nonneg=True, n_iter=5000, tol=1e-13)
    reference, _ = mlcsc.ml_bp_primal_dual(chain, x, lams, nonneg=True, n_iter=20000, tol=1e-13)
    torch.testing.assert_close(mlcsc.ml_bp_objective(chain, x, reference, lams), lasso.objective, rtol=1e-8,
                               atol=1e-10)
    run = mlcsc.ml_fista(chain, x, lams, nonneg=True, n_iter=5000, tol=1e-13, history=False)
    gap, residual = mlcsc.ml_fista_gap_bound(chain, x, run.codes[-1], lams, nonneg=True)
    assert run.converged and float(residual.max()) < 1e-8 and bool((run.codes[-1] >= 0).all())
    assert bool((run.objective - lasso.objective <= gap + 1e-9).all())
