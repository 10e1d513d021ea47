"""Stripe-norm theory (cscnb.theory.stripe), the local chains (cscnb.mlcsc.stripe_bounds), the ML-BP certificate
(cscnb.mlcsc.certificate) and the brute-force helpers they use, each against an independent computation."""
import itertools
import math

import pytest
import torch

import cscnb
from cscnb import mlcsc, theory
from cscnb.theory.bruteforce import _farthest_in_ellipsoid

LOW_COHERENCE_FILTERS = torch.tensor([[0.80, 0.12, -0.44, 0.39], [-0.80, -0.11, -0.44, 0.39]], dtype=torch.float64)


def _conv_dictionary(circular=False):
    w = (LOW_COHERENCE_FILTERS / LOW_COHERENCE_FILTERS.norm(dim=1, keepdim=True))[:, None, :]
    if circular:
        w = w[:, :, :3] / w[:, :, :3].norm(dim=2, keepdim=True)   # odd kernel: padding (k - 1) / 2
        return cscnb.ConvDictionary(w, padding=1, padding_mode="circular")
    return cscnb.ConvDictionary(w)


def _hadamard(n):
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


@pytest.mark.parametrize("circular", [False, True])
def test_stripe_supports_match_exhaustive_subsets(float64, circular):
    d = _conv_dictionary(circular)
    shape = (1, 7) if circular else (1, 9)
    geometry = theory.stripe_geometry(d, shape)
    n = geometry.n_columns
    # every subset of the columns as a 0/1 code, stripe norms by the convolution-based stripe_norm
    subsets = torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)))
    norms = theory.stripe_norm(subsets.reshape(-1, d.n_atoms, *geometry.code_size), d.kernel_size, circular=circular)
    for k in (1, 2):
        expected = {tuple(row.nonzero().flatten().tolist())
                    for row, norm in zip(subsets, norms, strict=True) if norm <= k}
        found = theory.stripe_supports(geometry, k)
        assert len(found) == len(set(found)) and set(found) == expected
        maximal = theory.stripe_supports(geometry, k, maximal=True)
        assert all(any(set(s) <= set(m) for m in maximal) for s in found)
        for m in maximal:  # no column can be added
            assert all(geometry.stripe_norm(m + (j,)) > k for j in range(n) if j not in m)


def test_stripe_eigenvalue_bound_and_attainment(float64):
    d = _conv_dictionary()
    shape = (1, 12)
    matrix = d.matrix(shape)
    mu = cscnb.mutual_coherence(matrix)
    geometry = theory.stripe_geometry(d, shape)
    for k in (1, 2, 3):
        smallest = theory.stripe_restricted_min_eigenvalue_bruteforce(d, shape, k)
        # independent: every (not only maximal) support, eigenvalues by numpy-free torch.eigvalsh one at a time
        direct = min(float(torch.linalg.eigvalsh(matrix[:, list(s)].T @ matrix[:, list(s)])[0])
                     for s in theory.stripe_supports(geometry, k) if s)
        assert smallest == pytest.approx(direct, abs=1e-12)
        assert smallest >= 1 - mu * (k - 1) - 1e-12
    assert theory.stripe_restricted_min_eigenvalue_bruteforce(d, shape, 2) == pytest.approx(1 - mu, abs=1e-12)


def test_stripe_spark_attains_coherence_bound_for_mercedes_frames(float64):
    angles = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3])
    frame = torch.stack([angles.cos(), angles.sin()], dim=1)       # 3 atoms in R^2, mu = 1/2
    d = cscnb.ConvDictionary(frame[:, :, None])                    # kernel size 1, two input channels
    assert theory.stripe_spark_bruteforce(d, (2, 4)) == 3
    assert theory.stripe_spark_bruteforce(_conv_dictionary(), (1, 10), max_stripe=3) == math.inf


def test_patch_norm_equals_window_count(float64):
    g = torch.Generator().manual_seed(0)
    code = torch.randn(3, 2, 15, generator=g) * (torch.rand(3, 2, 15, generator=g) < 0.3)
    for k in (1, 3, 4):
        nonzero = (code != 0).sum(dim=1)
        expected = [max(int(nonzero[b, p:p + k].sum()) for p in range(15 - k + 1)) for b in range(3)]
        assert theory.patch_norm(code, k).tolist() == expected
        circular = [max(int(sum(nonzero[b, (p + t) % 15] for t in range(k))) for p in range(15)) for b in range(3)]
        assert theory.patch_norm(code, k, circular=True).tolist() == circular


def test_exact_representations_and_dependent_supports(float64):
    d = _conv_dictionary()
    shape = (1, 14)
    matrix = d.matrix(shape)
    geometry = theory.stripe_geometry(d, shape)
    code = torch.zeros(matrix.shape[1])
    code[[0, 13, 9]] = torch.tensor([1.2, -0.7, 1.5])             # stripe norm 2 (< (1 + 1/mu) / 2)
    assert geometry.stripe_norm((0, 9, 13)) == 2
    reps = theory.exact_representations_bruteforce(matrix, matrix @ code, theory.stripe_supports(geometry, 2,
                                                                                               maximal=True))
    assert reps.shape[0] == 1 and torch.allclose(reps[0], code, atol=1e-10)
    dependent = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match="dependent"):
        theory.exact_representations_bruteforce(dependent, torch.tensor([1.0, 0.0]), [(0, 1)])
    # sparsest_solutions_bruteforce: complete at the sparsest size, refuses an incomplete list beyond it
    with pytest.raises(ValueError, match="infinitely many"):
        theory.sparsest_solutions_bruteforce(dependent, torch.tensor([0.0, 1.0]), 3, stop_at_sparsest=False)
    assert theory.sparsest_solutions_bruteforce(dependent, torch.tensor([0.0, 1.0]), 3).supports == [(2,)]
    with pytest.raises(TypeError):
        theory.sparsest_solutions_bruteforce(dependent, [0.0, 1.0], 1)


def test_worst_stable_code_with_supports_matches_size_enumeration(float64):
    g = torch.Generator().manual_seed(3)
    D = torch.randn(6, 9, generator=g)
    D = D / D.norm(dim=0)
    code = torch.zeros(9)
    code[2] = 1.3
    e = torch.randn(6, generator=g)
    x = D @ code + 0.1 * e / e.norm()
    by_size = theory.worst_stable_code_bruteforce(D, x, code, 0.1, 2)
    by_list = theory.worst_stable_code_bruteforce(D, x, code, 0.1, None,
                                                  supports=list(itertools.combinations(range(9), 2)))
    assert by_list.error_sq == pytest.approx(by_size.error_sq, rel=1e-12)
    with pytest.raises(ValueError, match="either s"):
        theory.worst_stable_code_bruteforce(D, x, code, 0.1, 2, supports=[(0, 1)])


def test_farthest_point_of_ellipsoid_is_certified(float64):
    # trust-region optimality: u = (nu Lambda - I)^{-1} c with nu Lambda - I >= 0 and the constraint active;
    # and no boundary sample beats it
    g = torch.Generator().manual_seed(0)
    for _ in range(25):
        lam = torch.sort(torch.rand(3, generator=g) * 2 + 0.05).values
        c = torch.randn(3, generator=g)
        rho_sq = torch.rand(1, generator=g) * 2 + 0.01
        u = _farthest_in_ellipsoid(c[None], lam[None], rho_sq)[0]
        assert float((lam * u ** 2).sum()) == pytest.approx(float(rho_sq), rel=1e-9)
        nu = float(((c + u) / (lam * u)).mean())                 # stationarity: c + u = nu * lam * u
        torch.testing.assert_close(c + u, nu * lam * u, rtol=1e-7, atol=1e-9)
        assert nu * float(lam[0]) >= 1 - 1e-9                      # second-order condition (global maximum)
        w = torch.randn(2000, 3, generator=g)
        w = w / (lam.sqrt() * w).norm(dim=1, keepdim=True) * rho_sq.sqrt()
        assert float((c + w).pow(2).sum(dim=1).max()) <= float((c + u).pow(2).sum()) + 1e-12


def test_global_thresholding_chain_is_the_local_chain_with_q_equal_s(float64):
    mus, s, g_lo, g_hi, betas = [0.05, 0.05], [2, 1], [1.0, 1.5], [1.1, 2.0], [0.15, 0.6]
    cert = mlcsc.thresholding_chain(mus, s, g_lo, g_hi, patch_sparsities=[2], thresholds=betas, noise=0.01)
    global_chain = mlcsc.stability_chain(mus, s, g_hi, betas, noise=0.01)
    assert cert.certified
    assert cert.noise[1] == pytest.approx(global_chain[1])
    assert math.sqrt(s[1]) * cert.entry_error[1] == pytest.approx(global_chain[2])
    assert not mlcsc.thresholding_chain([0.3], [3], [1.0], [1.0]).certified


def test_lasso_bounds_are_attained_on_dirac_hadamard(float64):
    W = torch.cat([torch.eye(16), _hadamard(16) / 4], dim=1)      # mu = 1/4
    mu, eta = 0.25, 0.05
    k, j = 0, 16 + 3
    g_jk = float(W[:, j] @ W[:, k])
    gamma = torch.zeros(32)
    gamma[k] = 2.0 * math.copysign(1.0, g_jk)
    pair = W[:, [j, k]]
    e = pair @ torch.linalg.solve(pair.T @ pair, torch.tensor([eta, -eta * math.copysign(1.0, g_jk)]))
    assert float((W.T @ e).abs().max()) <= eta + 1e-12
    y = (W @ gamma + e)[None]
    threshold = mlcsc.lasso_min_lambda(mu, 1, eta)
    assert threshold == pytest.approx(eta * (1 + mu) / (1 - mu))
    dictionary = cscnb.LinearDictionary(W)
    for factor, leaks in ((1 + 1e-6, False), (1 - 1e-3, True)):
        lam = threshold * factor
        z = cscnb.solve(dictionary, y, lam, method="fista_restart", polish=True, n_iter=5000, tol=1e-14).z
        assert float(cscnb.kkt_residual(dictionary, y, z, lam).max()) < 1e-12
        assert bool(z[0, j] != 0) == leaks
        if not leaks:
            assert float((z[0] - gamma).abs().max()) == pytest.approx(mlcsc.lasso_entry_error(mu, 1, eta, lam))
    with pytest.raises(ValueError):
        mlcsc.lasso_min_lambda(0.25, 3, 0.1)                          # 2 mu s >= 1 + mu


def test_admm_and_dual_bound_certify_the_ml_bp_minimum(float64):
    g = torch.Generator().manual_seed(1)
    d1 = torch.randn(10, 14, generator=g)
    d2 = torch.randn(14, 18, generator=g)
    chain = [cscnb.LinearDictionary(d1 / d1.norm(dim=0)), cscnb.LinearDictionary(d2 / d2.norm(dim=0))]
    y = torch.randn(3, 10, generator=g)
    lams = [0.3, 0.3]
    z, duals, _ = mlcsc.ml_bp_admm(chain, y, lams, rho=0.3, n_iter=5000, tol=1e-12)
    lower, value = mlcsc.ml_bp_dual_bound(chain, y, z, lams, duals)
    assert float((value - lower).max()) < 1e-8
    reference, _ = mlcsc.ml_bp_primal_dual(chain, y, lams, n_iter=3000, tol=1e-13)
    other = mlcsc.ml_bp_objective(chain, y, reference, lams)
    assert bool((other >= lower - 1e-10).all())                   # weak duality holds for any primal point
    torch.testing.assert_close(other, value, rtol=0, atol=1e-4)   # the other solver approaches the certified value
    zero_lower, _ = mlcsc.ml_bp_dual_bound(chain, y, torch.zeros_like(z), lams, [torch.zeros(3, 14)])
    assert bool((zero_lower <= value + 1e-12).all())


@pytest.mark.parametrize("call, error", [
    (lambda: theory.stripe_geometry(torch.eye(3), (1, 5)), TypeError),
    (lambda: theory.stripe_geometry(cscnb.ConvDictionary(torch.ones(1, 1, 3), padding=1), (1, 5)), ValueError),
    (lambda: theory.stripe_geometry(cscnb.ConvDictionary(torch.ones(1, 1, 3), stride=2), (1, 5)), ValueError),
    (lambda: theory.stripe_geometry(cscnb.ConvDictionary(torch.ones(1, 1, 3), padding=1, padding_mode="circular"),
                                    (1, 4)), ValueError),
    (lambda: theory.stripe_supports("geometry", 2), TypeError),
    (lambda: theory.stripe_supports(theory.stripe_geometry(cscnb.ConvDictionary(torch.ones(1, 1, 3)), (1, 6)), 0),
     ValueError),
    (lambda: theory.patch_norm(torch.ones(1, 1, 3), 4), ValueError),
    (lambda: mlcsc.thresholding_chain([0.1, 0.1], [1, 1], [1.0, 1.0], [1.0, 1.0]), ValueError),
    (lambda: mlcsc.layered_bp_chain("0.1", [1], [0.1]), TypeError),
    (lambda: mlcsc.lasso_entry_error(0.1, 1, 0.1, 0.05), ValueError),
])
def test_bad_input(call, error):
    with pytest.raises(error):
        call()
