"""cscnb.nn.lista: unrolled solvers (LISTA, LISTA-CP, ALISTA), their activations and the rate theorem (chapter 10)."""
import math

import pytest
import torch
import torch.nn.functional as F

import cscnb
from cscnb.nn.lista import (
    ACTIVATIONS,
    ALISTA,
    LISTA,
    LISTACP,
    UnrolledConfig,
    activation_fn,
    empirical_rate,
    firm_threshold,
    hopfield_energy,
    iterate_errors,
    theorem_thresholds,
)
from cscnb.theory import generalized_coherence, generalized_coherence_weights, lista_cp_rate_constant


def _identity_hadamard(n=16):
    # [I, H/sqrt(n)] has coherence 1/sqrt(n): low enough for the rate theorem with s = 2
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return torch.cat([torch.eye(n, dtype=torch.float64), h / math.sqrt(n)], 1)


def test_firm_threshold_is_the_mcp_prox_by_brute_force():
    u = torch.linspace(-4, 4, 161, dtype=torch.float64)
    a = torch.linspace(-5, 5, 10001, dtype=torch.float64)
    for t, gamma in [(0.5, 2.0), (1.0, 1.5)]:
        penalty = torch.where(a.abs() <= gamma * t, t * a.abs() - a**2 / (2 * gamma),
                              torch.full_like(a, gamma * t**2 / 2))
        brute = a[(0.5 * (u[:, None] - a[None]) ** 2 + penalty[None]).argmin(dim=1)]
        torch.testing.assert_close(firm_threshold(u, t, gamma), brute, rtol=0, atol=1e-3)


def test_firm_threshold_limits_and_pieces():
    u = torch.linspace(-3, 3, 601, dtype=torch.float64)
    out = firm_threshold(u, 0.5, 3.0)
    assert bool((out[u.abs() <= 0.5] == 0).all())
    assert torch.equal(out[u.abs() > 1.5], u[u.abs() > 1.5])
    # gamma -> infinity approaches the soft threshold
    torch.testing.assert_close(firm_threshold(u, 0.5, 1e9), cscnb.soft_threshold(u, 0.5), rtol=0, atol=1e-8)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations_satisfy_the_two_properties_of_the_rate_proof(name):
    eta = activation_fn(name, firm_gamma=2.0)
    u = torch.linspace(-3, 3, 1201, dtype=torch.float64)
    targets = torch.linspace(0 if name == "relu" else -2, 2, 41, dtype=torch.float64)
    for t in (0.0, 0.4):
        out = eta(u, t)
        assert bool((out[u.abs() <= t] == 0).all())
        assert bool(((out[:, None] - targets).abs() <= (u[:, None] - targets).abs() + t + 1e-12).all())


def test_bad_arguments_raise_naming_the_argument(gaussian_dictionary):
    with pytest.raises(ValueError, match="activation"):
        activation_fn("tanh")
    with pytest.raises(ValueError, match="n_layers"):
        UnrolledConfig(n_layers=0)
    with pytest.raises(TypeError, match="n_layers"):
        UnrolledConfig(n_layers=2.0)
    with pytest.raises(ValueError, match="activation"):
        UnrolledConfig(activation="sigmoid")
    with pytest.raises(ValueError, match="firm_gamma"):
        UnrolledConfig(activation="firm", firm_gamma=1.0)
    with pytest.raises(ValueError, match="non-negative"):
        firm_threshold(torch.zeros(3), -0.1)
    D = cscnb.LinearDictionary(gaussian_dictionary(16, 32))
    with pytest.raises(ValueError, match="threshold"):
        LISTACP(D, UnrolledConfig(n_layers=3, threshold=-0.1))
    with pytest.raises(ValueError, match="threshold"):
        LISTACP(D, UnrolledConfig(n_layers=3, threshold=[0.1, 0.2]))
    with pytest.raises(ValueError, match="encoder"):
        LISTACP(D, UnrolledConfig(n_layers=3), encoder=torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="dictionary"):
        LISTACP(D.weight, UnrolledConfig(n_layers=3))
    with pytest.raises(TypeError, match="config"):
        LISTA(D, {"n_layers": 3})
    with pytest.raises(ValueError, match="step"):
        ALISTA(D, UnrolledConfig(n_layers=3), step=0.0)
    model = LISTACP(D, UnrolledConfig(n_layers=3)).double()
    with pytest.raises(ValueError, match="x must have shape"):
        model(torch.zeros(4, 15, dtype=torch.float64))
    with pytest.raises(TypeError, match="dtype"):
        model(torch.zeros(4, 16, dtype=torch.float32))
    with pytest.raises(ValueError, match="mu_tilde"):
        theorem_thresholds(-0.1, 2, 1.0, 4)
    with pytest.raises(ValueError, match="sparsity"):
        theorem_thresholds(0.1, 0, 1.0, 4)
    with pytest.raises(ValueError, match="beta"):
        hopfield_energy(torch.zeros(2, 3), torch.zeros(4, 3), 0.0)
    with pytest.raises(ValueError, match="two errors"):
        empirical_rate(torch.tensor([1.0, 0.0, 0.0]))


def test_lista_cp_at_ista_weights_reproduces_cscnb_ista(gaussian_dictionary):
    D = cscnb.LinearDictionary(gaussian_dictionary(16, 32))
    x = torch.randn(5, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lam, L = 0.1, D.lipschitz_constant()
    model = LISTACP(D, UnrolledConfig(n_layers=7, threshold=lam / L), encoder=D.weight / L)
    with torch.no_grad():
        iterates = model(x, return_iterates=True)
    assert iterates.shape == (8, 5, 32) and bool((iterates[0] == 0).all())
    for k in (1, 7):
        torch.testing.assert_close(iterates[k], cscnb.solve(D, x, lam, method="ista", n_iter=k, tol=1e-300).z,
                                   rtol=1e-10, atol=1e-12)


def test_lista_at_initialization_equals_lista_cp_with_exact_step(gaussian_dictionary):
    D = cscnb.LinearDictionary(gaussian_dictionary(16, 32))
    x = torch.randn(5, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    config = UnrolledConfig(n_layers=5, activation="hard", threshold=0.05)
    exact = D.weight / torch.linalg.matrix_norm(D.weight, ord=2) ** 2
    with torch.no_grad():
        torch.testing.assert_close(LISTA(D, config)(x), LISTACP(D, config, encoder=exact)(x), rtol=1e-10, atol=1e-12)


def test_alista_with_unit_steps_is_lista_cp_and_uses_the_analytic_encoder(gaussian_dictionary):
    D = cscnb.LinearDictionary(gaussian_dictionary(16, 32))
    x = torch.randn(5, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    config = UnrolledConfig(n_layers=4, activation="firm", threshold=0.1)
    alista = ALISTA(D, config)
    torch.testing.assert_close((alista.encoder * D.weight).sum(dim=0), torch.ones(32, dtype=torch.float64))
    with torch.no_grad():
        torch.testing.assert_close(alista(x), LISTACP(D, config, encoder=alista.encoder)(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_rate_theorem_bound_holds_with_the_theorem_thresholds(name):
    weight = _identity_hadamard(16)
    D = cscnb.LinearDictionary(weight)
    W = generalized_coherence_weights(weight)
    mu, s, B, K = generalized_coherence(W, weight), 2, 2.0, 12
    c = lista_cp_rate_constant(mu, s)
    data = cscnb.planted_sparse_codes(D, 300, s, nonneg=(name == "relu"), seed=4)
    model = LISTACP(D, UnrolledConfig(n_layers=K, activation=name, threshold=theorem_thresholds(mu, s, B, K)),
                    encoder=W)
    with torch.no_grad():
        iterates = model(data.x, return_iterates=True)
    errors = iterate_errors(iterates, data.z)
    bound = s * B * torch.exp(-c * torch.arange(K + 1, dtype=torch.float64))
    assert bool((errors <= bound[:, None]).all())
    assert not bool(((iterates != 0) & (data.z == 0)).any())
    # and the bound is not vacuous: thresholds 100 times too small let false positives in for the soft threshold
    if name == "soft":
        loose = LISTACP(D, UnrolledConfig(n_layers=K, threshold=theorem_thresholds(mu, s, B, K) / 100), encoder=W)
        with torch.no_grad():
            assert bool(((loose(data.x, return_iterates=True) != 0) & (data.z == 0)).any())


def test_theorem_thresholds_and_empirical_rate():
    theta = theorem_thresholds(0.1, 3, 2.0, 4)
    torch.testing.assert_close(theta, 0.1 * 6 * 0.5 ** torch.arange(4, dtype=torch.float64))
    geometric = 3.0 * torch.exp(-0.7 * torch.arange(10, dtype=torch.float64))
    assert abs(empirical_rate(geometric) - 0.7) < 1e-12
    with pytest.raises(ValueError):
        iterate_errors(torch.zeros(3, 2, 4), torch.zeros(2, 5))


def test_float32_networks_pass_gradients_to_encoders_and_thresholds(gaussian_dictionary):
    D = cscnb.LinearDictionary(gaussian_dictionary(16, 32))
    model32 = LISTACP(D, UnrolledConfig(n_layers=3, activation="relu", threshold=0.05)).float()
    out = model32(torch.randn(4, 16))
    assert out.dtype == torch.float32 and bool((out >= 0).all())
    out.sum().backward()
    assert model32.encoders.grad is not None and model32.threshold_param.grad is not None


def test_attention_is_a_unit_gradient_step_on_the_hopfield_energy():
    g = torch.Generator().manual_seed(6)
    keys = torch.randn(12, 5, dtype=torch.float64, generator=g)
    queries = torch.randn(3, 5, dtype=torch.float64, generator=g).requires_grad_(True)
    grad, = torch.autograd.grad(hopfield_energy(queries, keys, 1.5).sum(), queries)
    attention = F.scaled_dot_product_attention(queries[None], keys[None], keys[None], scale=1.5)[0]
    torch.testing.assert_close(attention, queries - grad, rtol=1e-12, atol=1e-12)
