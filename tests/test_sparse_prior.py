"""Chapter 5's additions: the polyphase norm bound, the two projections and the sparse-prior experiments."""
import math

import pytest
import torch
import torch.nn as nn

import cscnb
from cscnb.models import HierarchicalSparseCodingConfig, HierarchicalSparseCodingNet
from cscnb.models.hierarchical import clamp_biases_nonpositive_, conv_norm_bound
from cscnb.robustness import sparse_prior


def exact_norm(weight, n, stride=1, padding=0, dilation=1):
    dictionary = cscnb.ConvDictionary(weight, stride=stride, padding=padding, dilation=dilation)
    return float(torch.linalg.svdvals(dictionary.matrix((weight.shape[1], n, n)))[0])


@pytest.mark.parametrize("stride,padding,dilation,n", [(1, 1, 1, 8), (2, 1, 1, 8), (2, 1, 1, 4), (3, 2, 1, 9),
                                                       (2, 0, 2, 9), (1, 0, 1, 5)])
def test_conv_norm_bound_is_an_upper_bound(stride, padding, dilation, n):
    g = torch.Generator().manual_seed(stride * 10 + padding + n)
    for _ in range(5):
        w = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64)
        exact = exact_norm(w, n, stride, padding, dilation)
        assert conv_norm_bound(w, n, stride, padding, dilation) >= exact * (1 - 1e-12)


@pytest.mark.parametrize("c_in,c_out,s,n", [(1, 4, 2, 8), (3, 5, 2, 6), (2, 3, 3, 9)])
def test_conv_norm_bound_is_exact_for_non_overlapping_atoms(c_in, c_out, s, n):
    w = torch.randn(c_out, c_in, s, s, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    exact = exact_norm(w, n, stride=s)
    assert conv_norm_bound(w, n, stride=s) == pytest.approx(exact, rel=1e-12)
    assert exact == pytest.approx(float(torch.linalg.svdvals(w.flatten(1))[0]), rel=1e-12)


def test_conv_norm_bound_rejects_bad_input():
    w = torch.randn(2, 1, 3, 3)
    with pytest.raises(TypeError, match="weight"):
        conv_norm_bound(w[0], 8)
    with pytest.raises(ValueError, match="signal_size"):
        conv_norm_bound(w, 1)
    with pytest.raises(ValueError, match="dilation"):
        conv_norm_bound(w, 8, dilation=(1, 2))
    with pytest.raises(ValueError, match="stride"):
        conv_norm_bound(w, 8, stride=0)


def test_project_step_admissible_bounds_every_layer_norm():
    torch.manual_seed(0)
    net = HierarchicalSparseCodingNet(HierarchicalSparseCodingConfig(channels=(4, 8, 8), n_iter=2, step=0.5)).double()
    thresholds = [layer.threshold.clone() for layer in net.layers]
    assert max(net.operator_norm_bounds()) > 1 / math.sqrt(0.5)      # the default initialization is not admissible
    assert net.project_step_admissible_() is net
    sizes, widths = net.config.spatial_sizes(), (1, 4, 8, 8)
    for i, layer in enumerate(net.layers):
        matrix = layer.dictionary().matrix((widths[i], sizes[i], sizes[i])).detach()
        assert 0.5 * float(torch.linalg.svdvals(matrix)[0]) ** 2 <= 1 + 1e-12
        torch.testing.assert_close(layer.threshold, thresholds[i])
    before = [layer.weight.clone() for layer in net.layers]
    net.project_step_admissible_()                                   # already admissible: (almost) unchanged
    for layer, weight in zip(net.layers, before, strict=True):
        torch.testing.assert_close(layer.weight, weight, rtol=1e-12, atol=0)


def test_clamp_biases_nonpositive_gives_a_sparse_coding_network():
    torch.manual_seed(1)
    config = HierarchicalSparseCodingConfig(channels=(4, 8), strides=(1, 2))
    cnn = HierarchicalSparseCodingNet(config).double().to_sequential()
    with torch.no_grad():
        cnn[0].bias.uniform_(-1, 1)
    with pytest.raises(ValueError, match="positive"):
        HierarchicalSparseCodingNet.from_sequential(cnn, image_size=8)
    assert clamp_biases_nonpositive_(cnn) is cnn
    assert all(bool((m.bias <= 0).all()) for m in cnn if isinstance(m, nn.Conv2d))
    net = HierarchicalSparseCodingNet.from_sequential(cnn, image_size=8)
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(net(x), cnn(x))
    with pytest.raises(TypeError, match="module"):
        clamp_biases_nonpositive_(cnn[0].weight)


@pytest.fixture(scope="module")
def problem():
    return sparse_prior.code_problem(0, n_atoms=32)


def test_code_problem_and_one_step_codes(problem):
    assert problem.dictionary.weight.shape == (64, 32) and problem.x_train.dtype == torch.float64
    assert float(problem.x_train.min()) >= 0 and float(problem.x_train.max()) <= 1
    assert problem.noise_val.shape == problem.x_val.shape and problem.noise_val.dtype == torch.float64
    z, kkt = sparse_prior.digit_codes(problem.dictionary, problem.x_test[:5], "1 step", 0.5)
    assert kkt is None
    W = problem.dictionary.weight
    expected = cscnb.soft_threshold(problem.x_test[:5] @ W, 0.5) / problem.dictionary.lipschitz_constant()
    torch.testing.assert_close(z, expected)


def test_certified_codes_certify_or_raise(problem):
    z, residual = sparse_prior.certified_codes(problem.dictionary, problem.x_test[:20], 0.5)
    assert residual < 1e-8
    assert float(cscnb.kkt_residual(problem.dictionary, problem.x_test[:20], z, 0.5).max()) == residual
    with pytest.raises(RuntimeError, match="not certified"):
        sparse_prior.certified_codes(problem.dictionary, problem.x_test[:20], 0.5, kkt_tol=1e-300)


def test_code_sets_density_matching_and_errors(problem):
    converged = sparse_prior.code_sets(problem, "converged", 0.5, [0.0, 0.2])
    matched = sparse_prior.code_sets(problem, "1 step, density-matched", 0.5, [0.0, 0.2], density=converged["density"])
    assert matched["density"] == pytest.approx(converged["density"], abs=2 / matched["train"].numel() + 1e-12)
    assert matched["kkt_max"] is None and converged["kkt_max"] < 1e-8
    errors = sparse_prior.code_errors(problem, converged)
    assert errors["relative"][0] == 0 and errors["pooled"][0] == 0 and errors["relative"][1] > 0
    scores = sparse_prior.classify_codes(problem, converged, 1.0)
    assert len(scores["val"]) == len(scores["test"]) == 2 and all(0 <= a <= 1 for a in scores["test"])
    with pytest.raises(ValueError, match="density"):
        sparse_prior.code_sets(problem, "1 step, density-matched", 0.5, [0.0])
    with pytest.raises(ValueError, match="method"):
        sparse_prior.code_sets(problem, "two steps", 0.5, [0.0])


def test_variants_share_their_initial_weights_and_projections():
    first = {}
    for name in sparse_prior.TRAINING_VARIANTS:
        model, after_step = sparse_prior.build_variant(name, 3, channels=(4, 8, 8))
        weight = (model[0].weight if isinstance(model, nn.Sequential) else model.layers[0].weight).detach()
        assert weight.dtype == torch.float32
        if "admissible" in name:
            assert after_step is not None and max(model.operator_norm_bounds()) <= 1 + 1e-6
        else:
            first.setdefault("weight", weight)
            torch.testing.assert_close(weight, first["weight"])
    assert sparse_prior.build_variant("CNN, biases <= 0", 0)[1] is clamp_biases_nonpositive_
    with pytest.raises(ValueError, match="name"):
        sparse_prior.build_variant("K = 3", 0)


def test_train_variant_is_deterministic():
    a = sparse_prior.train_variant("CNN, biases <= 0", 0, 1e-2, [0.0, 1.0], max_epochs=2, patience=1)
    b = sparse_prior.train_variant("CNN, biases <= 0", 0, 1e-2, [0.0, 1.0], max_epochs=2, patience=1)
    assert a == b and a["positive_bias_fraction"] == 0.0 and len(a["test"]) == 2
    with pytest.raises(ValueError, match="lr"):
        sparse_prior.train_variant("K = 1", 0, 0.0, [0.0])
