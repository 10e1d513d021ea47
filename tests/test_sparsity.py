"""Tests of cscnb.nn.sparsity: metrics, hooks, penalties, sparse activations, schedule, training loop (chapter 11)."""
import math

import pytest
import torch
from torch import nn

import cscnb
from cscnb.nn import sparsity
from cscnb.train import fit


def test_zero_fraction_and_hoyer_on_known_vectors():
    a = torch.tensor([[0.0, 0.0, 0.0, 5.0], [2.0, 2.0, 2.0, 2.0]])
    assert sparsity.zero_fraction(a) == 3 / 8
    assert sparsity.hoyer_sparsity(a[:1]) == pytest.approx(1.0)
    assert sparsity.hoyer_sparsity(a[1:]) == pytest.approx(0.0, abs=1e-12)
    assert sparsity.hoyer_sparsity(a) == pytest.approx(0.5)
    assert sparsity.hoyer_sparsity(torch.zeros(3, 4)) == pytest.approx(1.0)  # all-zero counts as sparsest


def test_collect_activations_removes_hooks_and_restores_mode():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), sparsity.TopKReLU(0.5))
    net.train()
    out = sparsity.collect_activations(net, torch.randn(5, 3))
    assert list(out) == ["1", "3"] and out["3"].shape == (5, 2)
    assert not out["1"].requires_grad
    assert net.training and all(not m._forward_hooks for m in net.modules())
    with pytest.raises(ValueError, match="no submodule"):
        sparsity.collect_activations(nn.Linear(3, 3), torch.randn(2, 3))
    assert all(not m._forward_hooks for m in net.modules())
    report = sparsity.feature_sparsity(net, torch.randn(5, 3))
    assert report["3"]["zero_fraction"] >= 0.5


def test_l1_penalty_gradient_on_bias_is_lambda_per_active_sample():
    torch.manual_seed(0)
    layer = nn.Linear(6, 4).double()
    x = torch.randn(32, 6, dtype=torch.float64)
    a = torch.relu(layer(x))
    (grad,) = torch.autograd.grad(sparsity.l1_activation_penalty([a]), layer.bias)
    torch.testing.assert_close(grad, (a > 0).sum(0).double() / a.numel())


def test_hoyer_square_is_scale_invariant_with_orthogonal_gradient():
    a = torch.rand(3, 2, 5, dtype=torch.float64, requires_grad=True)
    value = sparsity.hoyer_square_penalty({"layer": a})
    torch.testing.assert_close(sparsity.hoyer_square_penalty([2.5 * a]), value)
    (grad,) = torch.autograd.grad(value, a)
    torch.testing.assert_close((grad * a).flatten(1).sum(1), torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
    one_hot = torch.zeros(1, 10, dtype=torch.float64)
    one_hot[0, 3] = 1.0
    assert float(sparsity.hoyer_square_penalty([one_hot])) == pytest.approx(0.1)  # 1/n: the minimum


def test_shifted_relu_is_nonneg_soft_threshold():
    u = torch.linspace(-2, 2, 41, dtype=torch.float64)
    torch.testing.assert_close(sparsity.ShiftedReLU(0.3)(u), cscnb.nonneg_soft_threshold(u, 0.3))


def test_topk_keeps_the_k_largest_positive_entries():
    u = torch.tensor([[3.0, -1.0, 2.0, 0.5, 1.0, -4.0]])
    out = sparsity.TopKReLU(2 / 6)(u)
    torch.testing.assert_close(out, torch.tensor([[3.0, 0.0, 2.0, 0.0, 0.0, 0.0]]))
    conv_like = torch.randn(4, 3, 5, 5)
    kept = (sparsity.TopKReLU(0.1)(conv_like) != 0).flatten(1).sum(1)
    assert (kept <= math.ceil(0.1 * 75)).all()


def test_replace_relus_counts_and_swaps():
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
    assert sparsity.replace_relus(net, lambda: sparsity.ShiftedReLU(0.1)) == 2
    assert sum(isinstance(m, sparsity.ShiftedReLU) for m in net.modules()) == 2
    with pytest.raises(TypeError, match="make_activation"):
        sparsity.replace_relus(nn.Sequential(nn.ReLU()), lambda: 3)


def test_linear_warmup():
    assert sparsity.linear_warmup(0, 10, 2.0) == 0.0
    assert sparsity.linear_warmup(5, 10, 2.0) == pytest.approx(1.0)
    assert sparsity.linear_warmup(50, 10, 2.0) == 2.0
    assert sparsity.linear_warmup(0, 0, 2.0) == 2.0


def test_l1_penalty_training_makes_features_sparser():
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = (x[:, 0] > 0).long()

    def trained(strength):
        torch.manual_seed(1)
        net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
        losses = fit(net, x, y, penalty=sparsity.ActivationPenalty("l1", strength), epochs=8, seed=0,
                     lr=1e-2).train_loss
        assert len(losses) == 8 and all(math.isfinite(v) for v in losses)
        return sparsity.feature_sparsity(net, x)["1"]["zero_fraction"]

    assert trained(5.0) > trained(0.0) + 0.2


@pytest.mark.parametrize("call, error, match", [
    (lambda: sparsity.zero_fraction([1.0]), TypeError, "a must be a torch.Tensor"),
    (lambda: sparsity.hoyer_sparsity(torch.ones(3, 1)), ValueError, "at least 2"),
    (lambda: sparsity.ShiftedReLU(-1.0), ValueError, "threshold"),
    (lambda: sparsity.TopKReLU(0.0), ValueError, "fraction"),
    (lambda: sparsity.TopKReLU("half"), TypeError, "fraction"),
    (lambda: sparsity.linear_warmup(-1, 5, 1.0), ValueError, "step"),
    (lambda: sparsity.l1_activation_penalty([]), TypeError, "activations"),
    (lambda: sparsity.collect_activations("net", torch.ones(1, 2)), TypeError, "model"),
    (lambda: sparsity.ActivationPenalty("l2", 1.0), ValueError, "kind"),
    (lambda: sparsity.ActivationPenalty("l1", -1.0), ValueError, "strength"),
    (lambda: fit(nn.Linear(2, 2), torch.ones(4, 2), torch.zeros(4, dtype=torch.long),
                 penalty=sparsity.ActivationPenalty("l1", 1.0)), ValueError, "no activation module"),
])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
