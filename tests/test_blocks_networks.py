"""cscnb.nn.blocks / cscnb.models.classifiers / cscnb.data.load_mnist1d: Res-CSC and MSD-CSC (chapters 7 and 8)."""
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cscnb
from cscnb.data import load_mnist1d
from cscnb.models.classifiers import DenseNetCNN, MLCSCNet, MSDCSCNet, NetworkConfig, PlainCNN, ResCSCNet, ResNetCNN
from cscnb.nn.blocks import MSDCSCBlock, ResCSCBlock, UnfoldedCSCLayer, conv_operator_norm, dilate_kernel
from cscnb.train import evaluate, fit

DIMS = [(1, (20,)), (2, (7, 7))]


pytestmark = pytest.mark.usefixtures("float64")  # tests/conftest.py


@pytest.mark.parametrize("dim, size", DIMS)
def test_res_csc_block_equals_terms_and_absorbed_resnet(dim, size):
    block = ResCSCBlock(3, 3, hidden_channels=5, dim=dim, threshold=0.05)
    x = torch.relu(torch.randn(2, 3, *size))
    with torch.no_grad():
        t = block.terms(x)
        out = block(x)
        torch.testing.assert_close(out, torch.relu(t.skip + t.branch + t.extra - t.threshold), rtol=0, atol=1e-12)
        torch.testing.assert_close(out, block.to_resnet_block(exact=True)(x), rtol=0, atol=1e-12)
        # the common reading drops a non-zero term, so it must differ on a generic input
        assert (out - block.to_resnet_block(exact=False)(x)).abs().max() > 1e-3


def test_res_csc_unfolding_solves_the_layer_pursuit():
    block = ResCSCBlock(3, 3, 400, hidden_channels=4, dim=1, threshold=0.05)
    x = torch.relu(torch.randn(1, 3, 12))
    with torch.no_grad():
        hidden, z = block.hidden(x), block(x)
    D = cscnb.ConvDictionary(block.dictionary_weight.detach(), padding=1)
    # optimality (KKT) of the pursuit, checked independently of the unfolding
    assert cscnb.kkt_residual(D, hidden, z, 0.05, nonneg=True).max() < 1e-4
    with pytest.raises(ValueError, match="n_unfold"):
        block.to_resnet_block()


@pytest.mark.parametrize("dim, size", DIMS)
def test_msd_csc_block_equals_scaled_dense_block(dim, size):
    block = MSDCSCBlock(3, growth=2, dilations=(1, 2, 3), dim=dim, threshold=0.05)
    x = torch.rand(2, 3, *size)
    scales = block.output_scales().view(1, -1, *(1,) * dim)
    with torch.no_grad():
        torch.testing.assert_close(block(x), scales * block.to_dense_block()(x), rtol=0, atol=1e-12)
    assert block(x).shape == (2, block.out_channels, *size) and block.out_channels == 3 + 3 * 2


def test_msd_csc_unfolding_converges_to_passthrough():
    # unpenalized identity atoms: [u; 0] is a minimizer with value 0 (chapter 8)
    block = MSDCSCBlock(3, growth=2, dilations=(2,), dim=1, n_unfold=300, threshold=0.05)
    u = torch.rand(2, 3, 20)
    with torch.no_grad():
        z = block(u)
    torch.testing.assert_close(z[:, :3], u, rtol=0, atol=1e-8)
    assert z[:, 3:].abs().max() < 1e-8


def test_unfolded_layer_first_step_is_conv_relu_and_fista_converges():
    layer = UnfoldedCSCLayer(2, 3, 3, dim=2, threshold=0.1)
    x = torch.randn(1, 2, 5, 5)
    with torch.no_grad():
        expected = torch.relu(layer.step * (F.conv2d(x, layer.weight, padding=1) - 0.1))
        torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-12)
    layer.n_unfold = 400
    D = cscnb.ConvDictionary(layer.weight.detach(), padding=1)
    with torch.no_grad():
        z = layer(x)
    assert cscnb.kkt_residual(D, x, z, 0.1, nonneg=True).max() < 1e-4


@pytest.mark.parametrize("rate", [1, 2, 3])
def test_dilate_kernel_matches_dilated_convolution(rate):
    w, x = torch.randn(3, 2, 3, 3), torch.randn(1, 2, 13, 13)
    torch.testing.assert_close(F.conv2d(x, w, dilation=rate), F.conv2d(x, dilate_kernel(w, rate)), rtol=0, atol=1e-12)
    assert dilate_kernel(w, rate).shape[-1] == rate * 2 + 1


def test_operator_norm_bounds_power_iteration():
    w = torch.randn(4, 3, 3)
    D = cscnb.ConvDictionary(w, padding=2, dilation=2)
    power = D.lipschitz_constant((30,)) / (1 + D.lipschitz_margin)
    bound = conv_operator_norm(w, 2) ** 2
    assert power <= bound * (1 + 1e-9)
    assert bound < 1.2 * power  # and it is not a loose bound


def test_step_bounds_are_enforced():
    with pytest.raises(ValueError, match="step"):
        ResCSCBlock(3, dim=1, step=100.0)
    with pytest.raises(ValueError, match="step"):
        MSDCSCBlock(3, dim=1, step=1.0)  # 1/(1 + ||W||^2) < 1 always
    block = ResCSCBlock(3, dim=1)
    assert block.step <= block.step_bound()
    with torch.no_grad():
        block.dictionary_weight.mul_(10)
    with pytest.raises(ValueError, match="exceeds"):
        block.check_step()


@pytest.mark.parametrize("make, error", [
    (lambda: ResCSCBlock(0), ValueError), (lambda: ResCSCBlock(3, 4), ValueError),
    (lambda: ResCSCBlock(3, dim=3), ValueError), (lambda: ResCSCBlock(3, n_unfold=-1), ValueError),
    (lambda: ResCSCBlock(3, method="adam"), ValueError), (lambda: ResCSCBlock(3, threshold=-1.0), ValueError),
    (lambda: ResCSCBlock(3.0), TypeError), (lambda: MSDCSCBlock(3, dilations=()), ValueError),
    (lambda: MSDCSCBlock(3, dilations=(0,)), ValueError), (lambda: ResCSCBlock(3, step="big"), TypeError),
    (lambda: NetworkConfig(dim=3), ValueError), (lambda: NetworkConfig(width=0), ValueError),
    (lambda: NetworkConfig(kernel_size=2), ValueError), (lambda: NetworkConfig(n_unfold=-1), ValueError),
])
def test_bad_arguments_raise(make, error):
    with pytest.raises(error):
        make()


def test_blocks_reject_bad_input():
    block = ResCSCBlock(3, dim=2)
    with pytest.raises(ValueError, match="channels=3"):
        block(torch.zeros(1, 4, 5, 5))
    with pytest.raises(ValueError):
        block(torch.zeros(1, 3, 5))
    with pytest.raises(TypeError):
        block([1, 2, 3])


NETWORKS = [MLCSCNet, PlainCNN, ResCSCNet, ResNetCNN, MSDCSCNet, DenseNetCNN]


@pytest.mark.parametrize("cls", NETWORKS, ids=lambda c: c.__name__)
def test_networks_run_1d_and_cifar_sized_2d(cls):
    torch.set_default_dtype(torch.float32)
    net1 = cls(NetworkConfig(dim=1, width=4, growth=2, n_unfold=1))
    assert net1(torch.randn(2, 1, 40)).shape == (2, 10)
    net2 = cls(NetworkConfig(in_channels=3, dim=2, width=4, growth=2, n_blocks=1, n_unfold=1))
    logits = net2(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in net2.parameters())
    with pytest.raises(ValueError):
        net2(torch.randn(2, 1, 32, 32))


def test_ml_csc_net_without_unfolding_is_a_plain_cnn():
    c = NetworkConfig(dim=1, width=4, n_blocks=1)
    ml, plain = MLCSCNet(c), PlainCNN(c)
    with torch.no_grad():
        plain.stem.load_state_dict(ml.stem.state_dict())
        plain.classifier.load_state_dict(ml.classifier.state_dict())
        for layer, seq in zip(ml.stages, plain.stages, strict=True):
            seq[0].weight.copy_(layer.step * layer.weight)
            seq[0].bias.copy_(-layer.step * layer.threshold_param.abs())
    x = torch.randn(3, 1, 40)
    torch.testing.assert_close(ml(x), plain(x), rtol=0, atol=1e-12)


def test_fit_trains_a_res_csc_net_on_a_separable_toy_problem():
    torch.set_default_dtype(torch.float32)
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (128,), generator=g)
    x = torch.randn(128, 1, 16, generator=g) * 0.1 + (2 * y.float() - 1).view(-1, 1, 1)
    torch.manual_seed(0)
    net = ResCSCNet(NetworkConfig(dim=1, width=4, n_blocks=1, num_classes=2))
    losses = fit(net, x, y, epochs=5, seed=0).train_loss
    assert losses[-1] < losses[0] and evaluate(net, x, y) > 0.9


def test_load_mnist1d_shapes_determinism_and_rng_restoration():
    random.seed(123)
    np.random.seed(123)
    before = (random.random(), float(np.random.rand()))
    random.seed(123)
    np.random.seed(123)
    d = load_mnist1d(num_samples=200, seed=7)
    after = (random.random(), float(np.random.rand()))
    assert before == after  # make_dataset's reseeding does not leak
    assert d.x_train.shape == (160, 1, 40) and d.x_test.shape == (40, 1, 40)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert set(d.y_train.tolist()) <= set(range(10))
    again = load_mnist1d(num_samples=200, seed=7, dtype=torch.float64)
    torch.testing.assert_close(again.x_train.float(), d.x_train)
    assert not torch.equal(load_mnist1d(num_samples=200, seed=8).x_train, d.x_train)


@pytest.mark.parametrize("kwargs, error", [
    (dict(seed=-1), ValueError), (dict(seed=1.5), TypeError), (dict(num_samples=10), ValueError),
    (dict(num_samples=100.0), TypeError), (dict(dtype=torch.int64), TypeError),
])
def test_load_mnist1d_bad_arguments(kwargs, error):
    with pytest.raises(error):
        load_mnist1d(**kwargs)
