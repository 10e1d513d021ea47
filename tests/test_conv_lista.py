"""cscnb.nn.conv_lista (convolutional LISTA-CP) and cscnb.theory.rates (stripe and noisy rates; chapter 10)."""
import math

import pytest
import torch

import cscnb
from cscnb.data import planted_stripe_codes
from cscnb.mlcsc.bounds import conv_mutual_coherence
from cscnb.nn import LISTACP, ConvLISTACP, UnrolledConfig
from cscnb.theory import generalized_coherence, stripe_norm
from cscnb.theory.rates import (
    RateBlock,
    conv_generalized_coherence,
    conv_generalized_coherence_weights,
    deep_rate_chain,
    noise_patch_norm,
    rate_schedule,
    window_counts,
)


def _filters(m=3, channels=2, k=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(m, channels, k, generator=g, dtype=torch.float64)
    return d / d.flatten(1).norm(dim=1)[:, None, None]


def test_conv_lista_cp_equals_dense_lista_cp_on_the_operator_matrices():
    d = _filters()
    D = cscnb.ConvDictionary(d)
    W = conv_generalized_coherence_weights(d)
    length = 17
    D_dense = D.matrix((2, length))
    W_dense = cscnb.ConvDictionary(W).matrix((2, length))
    config = UnrolledConfig(n_layers=4, activation="soft", threshold=[0.3, 0.2, 0.1, 0.05])
    conv_net, dense_net = ConvLISTACP(D, config, W), LISTACP(cscnb.LinearDictionary(D_dense), config, encoder=W_dense)
    x = torch.randn(6, 2, length, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        conv_iterates = conv_net(x, return_iterates=True)
        dense_iterates = dense_net(x.flatten(1), return_iterates=True)
    torch.testing.assert_close(conv_iterates.flatten(2), dense_iterates, rtol=1e-12, atol=1e-12)


def test_conv_generalized_coherence_equals_the_dense_operator_and_the_lp_is_optimal():
    d = _filters(m=3, channels=1, k=4, seed=3)
    length = 12                                         # >= 2k - 1: every lag is realised
    W = conv_generalized_coherence_weights(d)
    dense = generalized_coherence(cscnb.ConvDictionary(W).matrix((1, length)),
                                  cscnb.ConvDictionary(d).matrix((1, length)))
    assert abs(conv_generalized_coherence(W, d) - dense) < 1e-10
    assert abs(conv_generalized_coherence(d, d) - conv_mutual_coherence(cscnb.ConvDictionary(d))) < 1e-12
    # LP optimality against random feasible encoders (rescaled so <w_a, d_a> = 1): none beats it
    g = torch.Generator().manual_seed(4)
    best = conv_generalized_coherence(W, d)
    for _ in range(200):
        trial = W + 0.05 * torch.randn(W.shape, generator=g, dtype=torch.float64)
        assert conv_generalized_coherence(trial, d, rescale=True) >= best - 1e-9
    with pytest.raises(ValueError, match="<w_a, d_a> = 1"):
        conv_generalized_coherence(2 * W, d)


def test_rate_schedule_closed_form_and_deep_chain():
    schedule = rate_schedule(0.1, 3, 2.0, 6, noise=0.01, encoder_norm=1.5)
    rho = 0.5
    k = torch.arange(7, dtype=torch.float64)
    expected = 2.0 * rho**k + 2 * 1.5 * 0.01 * (1 - rho**k) / (1 - rho)
    torch.testing.assert_close(schedule.error_bounds, expected, rtol=1e-14, atol=0)
    torch.testing.assert_close(schedule.thresholds, 0.1 * 3 * expected[:-1] + 1.5 * 0.01, rtol=1e-14, atol=0)
    assert abs(schedule.floor - 2 * 1.5 * 0.01 / 0.5) < 1e-15 and schedule.rho == rho
    chain = deep_rate_chain([RateBlock(0.1, 3, 2.0, 6, 1.5, patch_sparsity=4), RateBlock(0.2, 1, 1.0, 3, 2.0)], 0.01)
    eta1 = math.sqrt(4) * float(schedule.error_bounds[-1])
    torch.testing.assert_close(chain[1].error_bounds, rate_schedule(0.2, 1, 1.0, 3, noise=eta1,
                                                                     encoder_norm=2.0).error_bounds)
    assert rate_schedule(0.6, 1, 1.0, 2, noise=0.1, encoder_norm=1.0).floor == 0.2 / 0.4
    assert math.isinf(rate_schedule(0.5, 2, 1.0, 2, noise=0.1).floor)
    with pytest.raises(TypeError):
        deep_rate_chain([(0.1, 3, 2.0, 6)])


def test_stripe_rate_bound_holds_on_planted_stripe_codes_with_noise():
    d = torch.tensor([[1, 1, 1, 1, 1, -1, -1, 1, 1, -1, 1, -1, 1.]], dtype=torch.float64)[None] / math.sqrt(13)
    D = cscnb.ConvDictionary(d)                                          # Barker-13: mu = 1/13
    W = conv_generalized_coherence_weights(d)
    mu_tilde, omega = conv_generalized_coherence(W, d), float(W.flatten(1).norm(dim=1).max())
    s, length = 3, 96
    data = planted_stripe_codes(D, 200, s, 20, length, noise=0.01, seed=2)
    assert int(stripe_norm(data.z, 13).max()) <= s and int((data.z != 0).flatten(1).sum(1).max()) > 2 * s
    eta = float(noise_patch_norm(data.x - data.clean, 13).max())
    schedule = rate_schedule(mu_tilde, s, 2.0, 12, noise=eta, encoder_norm=omega)
    net = ConvLISTACP(D, UnrolledConfig(n_layers=12, activation="soft", threshold=schedule.thresholds), W)
    with torch.no_grad():
        iterates = net(data.x, return_iterates=True)
    errors = (iterates - data.z).abs().flatten(2).amax(dim=2)            # (K + 1, B)
    assert bool((errors <= schedule.error_bounds[:, None] * (1 + 1e-12)).all())
    assert not bool(((iterates != 0) & (data.z == 0)).any())


def test_window_counts_patch_norm_and_stripe_generator_by_brute_force():
    g = torch.Generator().manual_seed(5)
    code = (torch.rand(4, 3, 20, generator=g) < 0.15).double() * torch.randn(4, 3, 20, generator=g)
    for b in range(4):
        brute = max(int((code[b, :, q:q + 5] != 0).sum()) for q in range(16))
        assert int(window_counts(code, 5)[b]) == brute
        largest = max(float(code[b, :, q:q + 5].norm()) for q in range(16))
        assert abs(float(noise_patch_norm(code, 5)[b]) - largest) < 1e-12
    assert window_counts(torch.tensor([[0.0, 1.0, 2.0]]), 1).tolist() == [2]
    D = cscnb.ConvDictionary(_filters(m=2, channels=1, k=4))
    data = planted_stripe_codes(D, 30, 2, 50, 40, seed=0)
    assert int(stripe_norm(data.z, 4).max()) == 2
    torch.testing.assert_close(data.x, D.synthesize(data.z, output_size=(40,)))
    with pytest.raises(TypeError):
        planted_stripe_codes(cscnb.LinearDictionary(torch.eye(3)), 2, 1, 1, 3)
    with pytest.raises(ValueError):
        window_counts(code, 25)


def test_conv_lista_cp_checks_its_arguments():
    D = cscnb.ConvDictionary(_filters())
    with pytest.raises(TypeError):
        ConvLISTACP(cscnb.LinearDictionary(torch.eye(3)), UnrolledConfig(), torch.zeros(3, 3))
    with pytest.raises(ValueError):
        ConvLISTACP(D, UnrolledConfig(n_layers=2), torch.zeros(3, 2, 4))
    net = ConvLISTACP(D, UnrolledConfig(n_layers=2), D.weight.clone())
    with pytest.raises(TypeError):
        net(torch.zeros(1, 2, 9, dtype=torch.float32))
    with pytest.raises(ValueError):
        net(torch.zeros(1, 3, 9, dtype=torch.float64))
    assert net(torch.zeros(2, 2, 9, dtype=torch.float64)).shape == (2, 3, 5)
