"""cscnb.train.unrolled: unrolled solvers trained through cscnb.train.fit (chapter 10)."""
import pytest
import torch

import cscnb
from cscnb.nn import LISTACP, ConvLISTACP, UnrolledConfig
from cscnb.train import fit_unrolled, unrolled_loss


def test_unrolled_loss_matches_its_definition():
    g = torch.Generator().manual_seed(0)
    iterates, z = torch.randn(4, 5, 6, generator=g), torch.randn(5, 6, generator=g)
    relative = ((iterates - z).square().sum(2) / z.square().sum(1))            # (K + 1, B)
    torch.testing.assert_close(unrolled_loss(iterates, z), relative[1:].mean())
    torch.testing.assert_close(unrolled_loss(iterates, z, "last"), relative[-1].mean())
    with pytest.raises(ValueError):
        unrolled_loss(iterates, z, "first")
    with pytest.raises(ValueError):
        unrolled_loss(iterates[:1], z)


def test_fit_unrolled_is_deterministic_stops_on_validation_and_restores_the_best(gaussian_dictionary):
    D = cscnb.LinearDictionary(gaussian_dictionary(16, 32))
    train = cscnb.planted_sparse_codes(D, 256, 2, seed=1)
    val = cscnb.planted_sparse_codes(D, 128, 2, seed=2)
    runs = []
    for _ in range(2):
        model = LISTACP(D, UnrolledConfig(n_layers=4, threshold=0.05))
        with torch.no_grad():
            before = float(unrolled_loss(model(val.x, return_iterates=True), val.z))
        result = fit_unrolled(model, train, val, epochs=30, patience=3, lr=3e-3, seed=1)
        with torch.no_grad():
            after = float(unrolled_loss(model(val.x, return_iterates=True), val.z))
        runs.append((result.val_metric, after))
    assert runs[0] == runs[1]
    assert after < before and abs(after - result.best_val_metric) < 1e-12      # best epoch's weights restored
    assert result.best_val_metric == min(result.val_metric)


def test_fit_unrolled_trains_a_convolutional_network_and_checks_its_arguments():
    g = torch.Generator().manual_seed(3)
    d = torch.randn(2, 1, 5, generator=g, dtype=torch.float64)
    D = cscnb.ConvDictionary(d / d.flatten(1).norm(dim=1)[:, None, None])
    train = cscnb.planted_sparse_codes(D, 64, 2, seed=1, signal_size=24)
    val = cscnb.planted_sparse_codes(D, 32, 2, seed=2, signal_size=24)
    model = ConvLISTACP(D, UnrolledConfig(n_layers=3, threshold=0.05), D.weight / D.lipschitz_constant((24,)))
    result = fit_unrolled(model, train, val, objective="last", epochs=5, patience=5, lr=1e-2)
    assert result.val_metric[result.best_epoch - 1] < unrolled_loss(
        ConvLISTACP(D, UnrolledConfig(n_layers=3, threshold=0.05), D.weight / D.lipschitz_constant((24,)))(
            val.x, return_iterates=True), val.z, "last")
    relu = LISTACP(cscnb.LinearDictionary(torch.eye(4, dtype=torch.float64)), UnrolledConfig(2, "relu"))
    signed = cscnb.planted_sparse_codes(cscnb.LinearDictionary(torch.eye(4, dtype=torch.float64)), 8, 1, seed=0)
    with pytest.raises(ValueError, match="non-negative"):
        fit_unrolled(relu, signed, signed)
    with pytest.raises(TypeError):
        fit_unrolled(model, train.x, val)
    with pytest.raises(ValueError):
        fit_unrolled(model, (train.x, torch.zeros_like(train.z)), val)
