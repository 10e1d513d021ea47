"""cscnb.nn.sparse_coding and cscnb.models: sparse-coding layers are CNN layers (chapters 3 and 4)."""
import dataclasses

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import cscnb
from cscnb.core.dictionary import ConvDictionary
from cscnb.models import HierarchicalSparseCodingConfig, HierarchicalSparseCodingNet
from cscnb.nn.sparse_coding import SparseCodingConv2d, SparseCodingLinear


def _seeded(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("stride, padding, dilation, mode", [(1, 1, 1, "zeros"), (2, 1, 1, "zeros"),
                                                             (2, 2, 2, "zeros"), (1, 1, 1, "circular")])
def test_one_step_conv_layer_is_conv2d_plus_relu(stride, padding, dilation, mode):
    torch.manual_seed(0)
    layer = SparseCodingConv2d(3, 5, 3, stride=stride, padding=padding, dilation=dilation, threshold=0.1,
                               padding_mode=mode).double()
    x = torch.randn(4, 3, 9, 9, dtype=torch.float64, generator=_seeded(1))
    conv = layer.to_conv2d()
    torch.testing.assert_close(layer(x), torch.relu(conv(x)))
    # and in terms of the functional definition: relu(conv2d(x, W) - θ)
    D = ConvDictionary(layer.weight.detach(), stride=stride, padding=padding, dilation=dilation, padding_mode=mode)
    torch.testing.assert_close(layer(x), torch.relu(D.analyze(x) - layer.threshold.view(1, -1, 1, 1)))


def test_conv_round_trip_is_exact():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 4, 3, stride=2, padding=1).double()
    with torch.no_grad():
        conv.bias.copy_(-conv.bias.abs())
    layer = SparseCodingConv2d.from_conv2d(conv)
    back = layer.to_conv2d()
    assert torch.equal(back.weight, conv.weight) and torch.equal(back.bias, conv.bias)
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(layer(x), torch.relu(conv(x)))


def test_from_conv2d_rejects_positive_bias_and_groups():
    conv = nn.Conv2d(2, 4, 3)
    with torch.no_grad():
        conv.bias.fill_(0.5)
    with pytest.raises(ValueError, match="bias"):
        SparseCodingConv2d.from_conv2d(conv)
    with pytest.raises(ValueError, match="groups"):
        SparseCodingConv2d.from_conv2d(nn.Conv2d(2, 4, 3, groups=2))
    with pytest.raises(TypeError, match="conv"):
        SparseCodingConv2d.from_conv2d(nn.Linear(2, 3))


def test_step_scales_weight_and_bias():
    torch.manual_seed(0)
    layer = SparseCodingConv2d(1, 3, 3, padding=1, step=0.5, threshold=0.2).double()
    x = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(layer(x), torch.relu(layer.to_conv2d()(x)))
    again = SparseCodingConv2d.from_conv2d(layer.to_conv2d(), step=0.5)
    torch.testing.assert_close(again.weight, layer.weight)
    torch.testing.assert_close(again.threshold, layer.threshold)


def test_many_steps_converge_to_the_nonneg_sparse_code():
    """With η = 1/L, n_iter ISTA steps of the layer match cscnb.solve's ISTA iterates."""
    torch.manual_seed(0)
    layer = SparseCodingConv2d(2, 4, 3, stride=2, padding=1, threshold=0.05).double()
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64, generator=_seeded(2))
    D = layer.dictionary()
    L = D.lipschitz_constant((8, 8))
    layer.step = 1.0 / L
    layer.n_iter = 30
    ref = cscnb.solve(ConvDictionary(layer.weight.detach(), stride=2, padding=1), x, layer.threshold.detach(),
                      method="ista", nonneg=True, n_iter=30, tol=1e-300)
    torch.testing.assert_close(layer(x), ref.z)


def test_threshold_is_nonnegative_and_trainable():
    layer = SparseCodingConv2d(1, 2, 3, threshold=torch.tensor([0.0, 0.3]))
    with torch.no_grad():
        layer.threshold_param.copy_(torch.tensor([-0.2, 0.3]))
    assert (layer.threshold >= 0).all()
    torch.testing.assert_close(layer.threshold, torch.tensor([0.2, 0.3]))
    layer(torch.randn(1, 1, 5, 5)).sum().backward()
    assert layer.threshold_param.grad is not None and layer.weight.grad is not None


@pytest.mark.parametrize("kwargs, error", [
    (dict(in_channels=0), ValueError), (dict(out_channels=2.5), TypeError), (dict(kernel_size=(3,)), ValueError),
    (dict(stride=0), ValueError), (dict(padding=-1), ValueError), (dict(n_iter=0), ValueError),
    (dict(step=0.0), ValueError), (dict(threshold=-0.1), ValueError), (dict(threshold=torch.ones(3)), ValueError),
    (dict(padding_mode="reflect"), ValueError),
])
def test_conv_layer_bad_arguments(kwargs, error):
    args = dict(in_channels=1, out_channels=2, kernel_size=3)
    args.update(kwargs)
    with pytest.raises(error):
        SparseCodingConv2d(**args)


def test_conv_layer_bad_input():
    layer = SparseCodingConv2d(2, 3, 3)
    with pytest.raises(ValueError, match="x"):
        layer(torch.randn(1, 3, 6, 6))
    with pytest.raises(TypeError, match="x"):
        layer(torch.randn(1, 2, 6, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="n_iter"):
        SparseCodingConv2d(2, 3, 3, n_iter=2).to_conv2d()


def test_linear_layer_is_linear_plus_relu_and_round_trips():
    torch.manual_seed(0)
    layer = SparseCodingLinear(6, 4, threshold=0.1).double()
    x = torch.randn(5, 6, dtype=torch.float64)
    lin = layer.to_linear()
    torch.testing.assert_close(layer(x), torch.relu(lin(x)))
    back = SparseCodingLinear.from_linear(lin)
    assert torch.equal(back.weight, layer.weight) and torch.equal(back.threshold, layer.threshold)
    with pytest.raises(ValueError, match="x"):
        layer(torch.randn(5, 7, dtype=torch.float64))


def test_linear_layer_many_steps_match_solver():
    torch.manual_seed(0)
    layer = SparseCodingLinear(6, 8, threshold=0.1).double()
    x = torch.randn(3, 6, dtype=torch.float64)
    L = layer.dictionary().lipschitz_constant()
    layer.step, layer.n_iter = 1.0 / L, 25
    ref = cscnb.solve(cscnb.LinearDictionary(layer.weight.detach().T.contiguous()), x, layer.threshold.detach(),
                      method="ista", nonneg=True, n_iter=25, tol=1e-300)
    torch.testing.assert_close(layer(x), ref.z)


# ---------------------------------------------------------------------------------------------- models

def test_model_shapes_and_codes():
    torch.manual_seed(0)
    model = HierarchicalSparseCodingNet()
    x = torch.randn(7, 1, 8, 8)
    assert model(x).shape == (7, 10)
    shapes = [tuple(z.shape) for z in model.codes(x)]
    assert shapes == [(7, 16, 8, 8), (7, 32, 4, 4), (7, 32, 2, 2)]
    assert all((z >= 0).all() for z in model.codes(x))
    torch.testing.assert_close(model.predict_proba(x).sum(dim=1), torch.ones(7))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_model_equals_its_sequential_cnn(dtype):
    torch.manual_seed(0)
    model = HierarchicalSparseCodingNet(HierarchicalSparseCodingConfig(threshold=0.05)).to(dtype)
    x = torch.randn(5, 1, 8, 8, dtype=dtype)
    seq = model.to_sequential()
    assert [type(m) for m in seq] == [nn.Conv2d, nn.ReLU] * 3 + [nn.Flatten, nn.Linear]
    torch.testing.assert_close(model(x), seq(x))
    # the sequential network owns copies: changing it does not change the model
    with torch.no_grad():
        seq[0].weight.zero_()
    assert not torch.allclose(model(x), seq(x))


def test_model_sequential_round_trip():
    torch.manual_seed(0)
    config = HierarchicalSparseCodingConfig(channels=(4, 6), strides=(2, 2), kernel_size=2, padding=0, threshold=0.1)
    model = HierarchicalSparseCodingNet(config).double()
    back = HierarchicalSparseCodingNet.from_sequential(model.to_sequential(), image_size=8)
    # every field but the initial threshold (θ is read from the biases instead)
    assert dataclasses.replace(back.config, threshold=config.threshold) == config
    for (name, p), (name_b, q) in zip(model.named_parameters(), back.named_parameters(), strict=True):
        assert name == name_b and torch.equal(p, q), name
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(back(x), model(x))


def test_model_gradients_flow_to_every_parameter():
    torch.manual_seed(0)
    model = HierarchicalSparseCodingNet()
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    F.cross_entropy(model(x), y).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_model_bad_inputs_and_configs():
    model = HierarchicalSparseCodingNet()
    with pytest.raises(ValueError, match="x"):
        model(torch.randn(2, 1, 7, 7))
    with pytest.raises(TypeError, match="x"):
        model([[0.0]])
    with pytest.raises(TypeError, match="config"):
        HierarchicalSparseCodingNet({"channels": (4,)})
    with pytest.raises(ValueError, match="strides"):
        HierarchicalSparseCodingConfig(channels=(4, 8), strides=(1,))
    with pytest.raises(ValueError, match="channels"):
        HierarchicalSparseCodingConfig(channels=(), strides=())
    with pytest.raises(TypeError, match="image_size"):
        HierarchicalSparseCodingConfig(image_size=8.0)
    with pytest.raises(ValueError, match="image_size"):
        HierarchicalSparseCodingConfig(image_size=3, kernel_size=2, padding=0, channels=(2, 2), strides=(2, 2))
    with pytest.raises(ValueError, match="padding"):
        HierarchicalSparseCodingConfig(padding=-1)
    with pytest.raises(ValueError, match="n_iter"):
        HierarchicalSparseCodingNet(HierarchicalSparseCodingConfig(n_iter=2)).to_sequential()
    with pytest.raises(ValueError, match="Conv2d"):
        HierarchicalSparseCodingNet.from_sequential(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), image_size=8)
    seq = HierarchicalSparseCodingNet().to_sequential()
    with pytest.raises(ValueError, match="image_size"):
        HierarchicalSparseCodingNet.from_sequential(seq, image_size=16)
