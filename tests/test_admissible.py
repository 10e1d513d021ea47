"""cscnb.nn.rescale_to_step_bound: trained blocks kept inside their step bound (chapters 7 and 8)."""
import pytest
import torch

import cscnb
from cscnb.models.classifiers import MLCSCNet, MSDCSCNet, NetworkConfig, PlainCNN, ResCSCNet
from cscnb.nn import rescale_to_step_bound

pytestmark = pytest.mark.usefixtures("float64")  # tests/conftest.py


def exact_lipschitz(weight, dilation, size, identity=False):
    """||D||^2 from the explicit matrix of the 'same'-padded convolution (plus the identity atoms of MSD-CSC)."""
    pad = dilation * (weight.shape[-1] - 1) // 2
    matrix = cscnb.ConvDictionary(weight, padding=pad, dilation=dilation).matrix((weight.shape[1], *size))
    if identity:
        matrix = torch.cat([torch.eye(matrix.shape[0]), matrix], dim=1)
    return float(torch.linalg.matrix_norm(matrix, ord=2)) ** 2


@pytest.mark.parametrize("cls", [ResCSCNet, MLCSCNet, MSDCSCNet])
def test_grown_dictionaries_are_rescaled_onto_the_bound(cls):
    net = cls(NetworkConfig(dim=1, width=4, growth=2))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(4)
    assert rescale_to_step_bound(net) > 0
    for m in net.modules():
        if hasattr(m, "check_step"):
            m.check_step()
        if isinstance(m, cscnb.ResCSCBlock):
            assert m.step * exact_lipschitz(m.dictionary_weight.detach(), 1, (30,)) <= 1
        elif isinstance(m, cscnb.UnfoldedCSCLayer):
            assert m.step * exact_lipschitz(m.weight.detach(), m.dilation, (30,)) <= 1
        elif isinstance(m, cscnb.MSDCSCBlock):
            for w, r in zip(m.weights, m.dilations, strict=True):
                assert m.step * exact_lipschitz(w.detach(), r, (30,), identity=True) <= 1
    assert rescale_to_step_bound(net) == 0  # nothing left to do


def test_admissible_weights_are_left_alone_and_other_modules_ignored():
    net = ResCSCNet(NetworkConfig(dim=1, width=4))
    before = [p.clone() for p in net.parameters()]
    assert rescale_to_step_bound(net) == 0
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert rescale_to_step_bound(PlainCNN(NetworkConfig(dim=1, width=4))) == 0


def test_signal_size_bound_for_2d_codes():
    net = MSDCSCNet(NetworkConfig(dim=2, width=4, growth=2, n_blocks=1))
    block = net.stages[0][0]
    with torch.no_grad():
        for w in block.weights:
            w.mul_(4)
    assert rescale_to_step_bound(net, (8, 8)) == len(block.weights)
    for w, r in zip(block.weights, block.dilations, strict=True):
        assert block.step * exact_lipschitz(w.detach(), r, (8, 8), identity=True) <= 1


def test_bad_model():
    with pytest.raises(TypeError, match="model"):
        rescale_to_step_bound([1, 2])
