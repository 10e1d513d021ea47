"""cscnb.nn.conv_operator_norm: an upper bound on the convolution's operator norm (chapter 7, lem-ch7-conv-norm)."""
import math

import pytest
import torch

import cscnb
from cscnb.nn import conv_operator_norm

pytestmark = pytest.mark.usefixtures("float64")  # tests/conftest.py


def exact_norm(weight, dilation, size):
    """The largest singular value of the explicit 'same'-padded convolution matrix."""
    pad = dilation * (weight.shape[-1] - 1) // 2
    matrix = cscnb.ConvDictionary(weight, padding=pad, dilation=dilation).matrix((weight.shape[1], *size))
    return float(torch.linalg.matrix_norm(matrix, ord=2))


def peaked_kernel():
    # |K(w)| of [1, a, b] peaks between two points of the 64-point DFT grid
    target, b = 2 * math.pi * 3.5 / 64, -0.3
    return torch.tensor([[[1.0, -4 * b * math.cos(target) / (1 + b), b]]])


def test_bound_holds_for_long_signals_where_the_grid_maximum_does_not():
    w = peaked_kernel()
    omega = torch.linspace(0, 2 * math.pi, 400_001, dtype=torch.float64)
    response = (w[0, 0, 0] + w[0, 0, 1] * torch.exp(-1j * omega) + w[0, 0, 2] * torch.exp(-2j * omega)).abs()
    grid_max = float(response[::6250].max())  # the 64-point DFT grid
    exact = exact_norm(w, 1, (1000,))
    assert grid_max < exact  # the plain grid maximum is below the norm of a long signal's convolution ...
    bound = conv_operator_norm(w)
    assert exact <= bound  # ... the returned value is not
    assert bound <= 1.003 * float(response.max())  # and it is tight: within 0.3 % of sup |K(w)|


@pytest.mark.parametrize("dim, size", [(1, (31,)), (2, (9, 9))])
@pytest.mark.parametrize("rate", [1, 2, 3])
def test_size_bound_between_exact_norm_and_size_independent_bound(dim, size, rate):
    w = torch.randn(3, 2, *(3,) * dim)
    exact = exact_norm(w, rate, size)
    at_size = conv_operator_norm(w, rate, signal_size=size)
    assert exact <= at_size * (1 + 1e-12)
    assert at_size <= conv_operator_norm(w, rate) * (1 + 1e-12)


def test_size_independent_bound_is_attained_by_long_signals():
    w = torch.randn(2, 2, 3)
    assert exact_norm(w, 1, (400,)) >= conv_operator_norm(w) / 1.01


def test_bad_arguments():
    w = torch.randn(2, 2, 3)
    with pytest.raises(TypeError, match="signal_size"):
        conv_operator_norm(w, signal_size=20)
    with pytest.raises(ValueError, match="grid"):
        conv_operator_norm(w, 20, grid=64)  # span 41, too coarse for the bound
    with pytest.raises(ValueError, match="grid"):
        conv_operator_norm(w, 40, grid=64)  # kernel longer than the grid
