"""cscnb.theory and cscnb.theory.bruteforce: coherence bounds against exhaustive enumeration on small dictionaries."""
import itertools
import math

import pytest
import torch

from cscnb import theory

DTYPE = torch.float64


def mercedes_frame():
    # three unit vectors at 120 degrees: coherence 1/2 and spark 3 = 1 + 1/mu, the bound is attained
    angles = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3], dtype=DTYPE)
    return torch.stack([angles.cos(), angles.sin()])


def dirac_hadamard(n=4):
    hadamard = torch.ones(1, 1, dtype=DTYPE)
    while hadamard.shape[0] < n:
        hadamard = torch.cat([torch.cat([hadamard, hadamard], 1), torch.cat([hadamard, -hadamard], 1)], 0)
    return torch.cat([torch.eye(n, dtype=DTYPE), hadamard / math.sqrt(n)], 1)


# ------------------------------------------------------------------ generalized coherence, LISTA-CP rate
def test_generalized_coherence_of_dictionary_itself_is_mutual_coherence(gaussian_dictionary):
    D = gaussian_dictionary(6, 10, 0)
    assert theory.generalized_coherence(D, D) == pytest.approx(theory.mutual_coherence(D), abs=1e-12)


def test_generalized_coherence_checks_constraint_and_rescales(gaussian_dictionary):
    D = gaussian_dictionary(6, 10, 1)
    with pytest.raises(ValueError, match="w_i\\^T d_i = 1"):
        theory.generalized_coherence(2 * D, D)
    assert theory.generalized_coherence(2 * D, D, rescale=True) == pytest.approx(theory.mutual_coherence(D))
    with pytest.raises(ValueError, match="W must have the shape of D"):
        theory.generalized_coherence(D[:, :5], D)
    with pytest.raises(TypeError, match="W must be a torch.Tensor"):
        theory.generalized_coherence(D.numpy(), D)


@pytest.mark.parametrize("method", ["analytic", "minimax"])
def test_weights_are_feasible_and_beat_the_dictionary(method, gaussian_dictionary):
    D = gaussian_dictionary(8, 12, 2)
    W = theory.generalized_coherence_weights(D, method=method)
    torch.testing.assert_close((W * D).sum(0), torch.ones(12, dtype=DTYPE), rtol=0, atol=1e-10)
    assert theory.generalized_coherence(W, D) <= theory.mutual_coherence(D) + 1e-12


def test_analytic_weights_minimize_frobenius_and_minimax_minimizes_max(gaussian_dictionary):
    D = gaussian_dictionary(8, 12, 3)
    analytic = theory.generalized_coherence_weights(D)
    minimax = theory.generalized_coherence_weights(D, method="minimax")
    assert theory.generalized_coherence(minimax, D) <= theory.generalized_coherence(analytic, D) + 1e-9
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):  # feasible perturbations (orthogonal to each d_i) never do better
        direction = torch.randn(8, 12, generator=generator, dtype=DTYPE)
        direction = direction - D * (direction * D).sum(0) / (D * D).sum(0)
        for scale in (1e-3, 1e-1):
            perturbed_a, perturbed_m = analytic + scale * direction, minimax + scale * direction
            assert (perturbed_a.T @ D).pow(2).sum() >= (analytic.T @ D).pow(2).sum() - 1e-12
            assert theory.generalized_coherence(perturbed_m, D) >= theory.generalized_coherence(minimax, D) - 1e-9
    with pytest.raises(ValueError, match="method must be"):
        theory.generalized_coherence_weights(D, method="newton")


def test_orthonormal_dictionary_has_zero_generalized_coherence():
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(4), dtype=DTYPE))
    W = theory.generalized_coherence_weights(q)
    assert theory.generalized_coherence(W, q) < 1e-12
    assert theory.lista_cp_rate_constant(0.0, 3) == math.inf


def test_lista_cp_rate_constant():
    assert theory.lista_cp_rate_constant(0.1, 3) == pytest.approx(-math.log(0.5))
    with pytest.raises(ValueError, match="invalid sparsity level"):
        theory.lista_cp_rate_constant(0.2, 3)
    with pytest.raises(ValueError, match="mu_tilde .* must lie in \\[0, 1\\]"):
        theory.lista_cp_rate_constant(1.5, 1)
    with pytest.raises(TypeError, match="s must be a positive integer"):
        theory.lista_cp_rate_constant(0.1, 2.5)


# ------------------------------------------------------------------ bounds
def test_uniqueness_and_stability_bounds_values():
    assert theory.uniqueness_bound(0.25) == pytest.approx(2.5)
    assert theory.spark_lower_bound(0.5) == pytest.approx(3.0)
    assert theory.uniqueness_bound(0.0) == math.inf
    assert theory.stability_bound(0.1, 0.2, 2) == pytest.approx(0.04 / 0.4)


@pytest.mark.parametrize("call,error,match", [
    (lambda: theory.stability_bound(0.1, 0.5, 2), ValueError, "invalid sparsity level s=2"),
    (lambda: theory.stability_bound(-0.1, 0.1, 1), ValueError, "eps is a noise level"),
    (lambda: theory.stability_bound(0.1, -0.1, 1), ValueError, "mu is a coherence"),
    (lambda: theory.stability_bound(0.1, 0.1, 0), ValueError, "s must be a positive integer"),
    (lambda: theory.uniqueness_bound(float("nan")), ValueError, "mu must be finite"),
    (lambda: theory.uniqueness_bound(True), TypeError, "mu must be a real number"),
    (lambda: theory.deep_stability_bounds(0.1, [0.1], [1, 1]), ValueError, "equal length"),
    (lambda: theory.deep_stability_bounds(0.1, [0.1, 0.6], [1, 2]), ValueError, "layer 1: invalid sparsity"),
    (lambda: theory.deep_stability_bounds(0.1, [0.1], [1], mode="fast"), ValueError, "mode must be"),
    (lambda: theory.deep_uniqueness_holds(0.1, [1]), TypeError, "mus must be a sequence"),
])
def test_bad_bound_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_deep_bounds_chain_and_modes():
    mus, sparsities = [0.1, 0.2, 0.05], [2, 1, 3]
    layered = theory.deep_stability_bounds(0.1, mus, sparsities)
    consistent = theory.deep_stability_bounds(0.1, mus, sparsities, mode="consistent")
    assert layered[0] == pytest.approx(theory.stability_bound(0.1, 0.1, 2))
    assert layered[1] == pytest.approx(theory.stability_bound(math.sqrt(layered[0]), 0.2, 1))
    for layer in range(3):  # the consistent chain saves the factor 4 at every layer after the first
        assert layered[layer] == pytest.approx(4 ** layer * consistent[layer])
    assert theory.deep_uniqueness_holds(mus, sparsities)
    assert not theory.deep_uniqueness_holds([0.1, 0.5], [2, 2])


# ------------------------------------------------------------------ brute force
def test_spark_on_known_dictionaries(gaussian_dictionary):
    assert theory.spark_bruteforce(mercedes_frame()) == 3
    assert theory.spark_bruteforce(dirac_hadamard(4)) == 4
    assert theory.spark_bruteforce(gaussian_dictionary(6, 8, 5)) == 7
    planted = gaussian_dictionary(6, 8, 6)
    planted[:, 7] = planted[:, 1] - 2 * planted[:, 4]
    assert theory.spark_bruteforce(planted) == 3
    assert theory.spark_bruteforce(torch.eye(4, dtype=DTYPE)) == math.inf
    with pytest.raises(ValueError, match="max_subsets"):
        theory.spark_bruteforce(gaussian_dictionary(20, 40, 0))


def test_restricted_eigenvalue_and_gershgorin(gaussian_dictionary):
    D = gaussian_dictionary(8, 12, 7)
    mu = theory.mutual_coherence(D)
    assert theory.restricted_min_eigenvalue_bruteforce(D, 2) == pytest.approx(1 - mu, abs=1e-12)
    for k in (2, 3, 4):
        assert theory.restricted_min_eigenvalue_bruteforce(D, k) >= 1 - mu * (k - 1) - 1e-12
    with pytest.raises(ValueError, match="k must be an int in"):
        theory.restricted_min_eigenvalue_bruteforce(D, 0)


def test_sparsest_solutions(gaussian_dictionary):
    D = gaussian_dictionary(8, 12, 8)
    code = torch.zeros(12, dtype=DTYPE)
    code[[2, 7]] = torch.tensor([1.5, -0.5], dtype=DTYPE)
    found = theory.sparsest_solutions_bruteforce(D, D @ code, 4, stop_at_sparsest=False)
    assert found.sparsity == 2 and found.supports == [(2, 7)]
    torch.testing.assert_close(found.codes[0], code)
    # the picket fence is 2 spikes and 2 Hadamard atoms: two sparsest solutions
    comb = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=DTYPE)
    assert theory.sparsest_solutions_bruteforce(dirac_hadamard(4), comb, 3).supports == [(0, 2), (4, 5)]
    assert theory.sparsest_solutions_bruteforce(D, torch.zeros(8, dtype=DTYPE), 2).sparsity == 0
    assert theory.sparsest_solutions_bruteforce(D, torch.ones(8, dtype=DTYPE), 2).sparsity is None
    with pytest.raises(ValueError, match="x must be a tensor of shape"):
        theory.sparsest_solutions_bruteforce(D, torch.ones(7, dtype=DTYPE), 2)


def test_worst_stable_code_beats_sampling_and_is_feasible(gaussian_dictionary):
    D = gaussian_dictionary(6, 8, 9)
    code = torch.zeros(8, dtype=DTYPE)
    code[[1, 5]] = torch.tensor([1.0, -1.0], dtype=DTYPE)
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(6, generator=generator, dtype=DTYPE)
    eps = 0.3
    x = D @ code + 0.8 * eps * noise / noise.norm()
    worst = theory.worst_stable_code_bruteforce(D, x, code, eps, 2)
    assert (x - D @ worst.code).norm() <= eps * (1 + 1e-9)
    assert (worst.code - code).pow(2).sum() == pytest.approx(worst.error_sq)
    for support in [(1, 5), (0, 3), worst.support]:  # random points on each feasible ellipsoid's boundary
        columns = D[:, list(support)]
        center = torch.linalg.lstsq(columns, x).solution
        radius_sq = eps ** 2 - (x - columns @ center).pow(2).sum()
        if radius_sq < 0:
            continue
        chol = torch.linalg.cholesky(columns.T @ columns)
        directions = torch.randn(2000, 2, generator=generator, dtype=DTYPE)
        directions = directions / directions.norm(dim=1, keepdim=True) * radius_sq.sqrt()
        steps = torch.linalg.solve_triangular(chol.T, directions.T, upper=True).T
        candidates = torch.zeros(2000, 8, dtype=DTYPE)
        candidates[:, list(support)] = center + steps
        assert (candidates - code).pow(2).sum(1).max() <= worst.error_sq + 1e-9


def test_adversarial_instance_attains_sharp_constant(gaussian_dictionary):
    # delta along the weakest 2s-column direction, split between two codes: both fit x within eps
    D, s, eps = gaussian_dictionary(6, 8, 10), 2, 0.2
    lam, vector = theory.restricted_min_eigenvalue_bruteforce(D, 2 * s, return_vector=True)
    support = vector.nonzero().flatten().tolist()
    assert len(support) == 2 * s and abs(float(vector.norm()) - 1) < 1e-12
    assert float((D @ vector).pow(2).sum()) == pytest.approx(lam, abs=1e-12)
    for subset in itertools.combinations(range(8), 2 * s):  # it is the minimum over all supports
        assert float(torch.linalg.eigvalsh(D[:, list(subset)].T @ D[:, list(subset)])[0]) >= lam - 1e-12
    delta = vector * 2 * eps / math.sqrt(lam)
    code = torch.zeros(8, dtype=DTYPE)
    code[list(support[:s])] = -delta[list(support[:s])]
    x = D @ (code + delta / 2)
    worst = theory.worst_stable_code_bruteforce(D, x, code, eps, s)
    assert worst.error_sq == pytest.approx(4 * eps ** 2 / lam, rel=1e-8)


def test_hard_case_fills_the_weakest_direction(gaussian_dictionary):
    D, eps = gaussian_dictionary(6, 8, 11), 0.1
    code = torch.zeros(8, dtype=DTYPE)
    code[[0, 3]] = torch.tensor([1.0, 2.0], dtype=DTYPE)
    worst = theory.worst_stable_code_bruteforce(D, D @ code, code, eps, 2)  # noiseless: centre = code
    lam_min = float(torch.linalg.eigvalsh(D[:, [0, 3]].T @ D[:, [0, 3]])[0])
    assert worst.error_sq >= eps ** 2 / lam_min * (1 - 1e-9)
    with pytest.raises(ValueError, match="no code with at most s=1"):
        theory.worst_stable_code_bruteforce(D, D @ code, code, 1e-6, 1)


def test_incoherent_dictionary():
    generator = torch.Generator().manual_seed(0)
    target = 1.1 * theory.welch_bound(10, 12)
    D = theory.incoherent_dictionary(10, 12, target, generator=generator)
    torch.testing.assert_close(D.norm(dim=0), torch.ones(12, dtype=DTYPE))
    assert theory.welch_bound(10, 12) - 1e-12 <= theory.mutual_coherence(D) < 0.2
    with pytest.raises(ValueError, match="target is a coherence"):
        theory.incoherent_dictionary(10, 12, 2.0)


@pytest.mark.parametrize("s", [1, 2, 3])
def test_stability_bound_holds_for_the_worst_admissible_code(s):
    generator = torch.Generator().manual_seed(s)
    D = theory.incoherent_dictionary(10, 12, 1.1 * theory.welch_bound(10, 12), generator=generator)
    mu, eps = theory.mutual_coherence(D), 0.05
    assert mu * (2 * s - 1) < 1
    code = torch.zeros(12, dtype=DTYPE)
    code[torch.randperm(12, generator=generator)[:s]] = 1.0 + torch.rand(s, generator=generator, dtype=DTYPE)
    noise = torch.randn(10, generator=generator, dtype=DTYPE)
    worst = theory.worst_stable_code_bruteforce(D, D @ code + eps * noise / noise.norm(), code, eps, s)
    sharp = 4 * eps ** 2 / theory.restricted_min_eigenvalue_bruteforce(D, 2 * s)
    assert worst.error_sq <= sharp * (1 + 1e-9) <= theory.stability_bound(eps, mu, s) * (1 + 2e-9)
