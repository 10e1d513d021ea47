"""cscnb.theory.dilation: effective atoms of stacked dilated dictionaries (chapter 8, thm-ch8-effective-atoms)."""
import pytest
import torch

import cscnb
from cscnb.theory import circular_conv_coherence, dilation_support, effective_kernel

pytestmark = pytest.mark.usefixtures("float64")  # tests/conftest.py


def layer_matrices(weights, rates, size, circular=True):
    mats, channels = [], [weights[0].shape[1]] + [w.shape[0] for w in weights]
    for i, (w, r) in enumerate(zip(weights, rates, strict=True)):
        pad = r * (w.shape[-1] - 1) // 2 if circular else 0
        mode = "circular" if circular else "zeros"
        d = cscnb.ConvDictionary(w, padding=pad, dilation=r, padding_mode=mode)
        mats.append(d.matrix((channels[i], *size[i])))
    return mats


@pytest.mark.parametrize("dim, n", [(1, (30,)), (2, (13, 13))])
def test_effective_kernel_equals_the_product_of_explicit_circular_matrices(dim, n):
    rates, k = (1, 2, 3), 3
    ws = [torch.randn(c_out, c_in, *(k,) * dim) for c_in, c_out in ((2, 3), (3, 2), (2, 4))]
    mats = layer_matrices(ws, rates, [n] * 3)
    h = effective_kernel(ws, rates)
    assert h.shape == (4, 2, *(1 + 2 * sum(rates),) * dim)
    pad = sum(r * (k - 1) // 2 for r in rates)
    effective = cscnb.ConvDictionary(h, padding=pad, padding_mode="circular").matrix((2, *n))
    torch.testing.assert_close(mats[0] @ mats[1] @ mats[2], effective, rtol=0, atol=1e-12)
    assert circular_conv_coherence(h, n) == pytest.approx(cscnb.mutual_coherence(effective), abs=1e-12)


def test_effective_kernel_equals_the_product_of_full_syntheses():
    rates, ws = (2, 1), [torch.randn(3, 1, 3), torch.randn(2, 3, 3)]
    code = 10                                   # code length of layer 2; layer 1's code is 12, the signal 16
    mats = layer_matrices(ws, rates, [(code + 2 + 4,), (code + 2,)], circular=False)
    effective = cscnb.ConvDictionary(effective_kernel(ws, rates)).matrix((1, code + 6))
    torch.testing.assert_close(mats[0] @ mats[1], effective, rtol=0, atol=1e-12)


@pytest.mark.parametrize("rates", [(1, 1, 1), (2, 2, 2), (1, 2, 4), (1, 3, 9), (3, 1)])
def test_support_of_generic_kernels_is_the_dilation_support(rates):
    h = effective_kernel([torch.randn(1, 1, 3) for _ in rates], rates)
    support = tuple(int(i) for i in torch.nonzero(h[0, 0].abs() > 1e-12).flatten())
    assert support == dilation_support(3, rates)
    assert h.shape[-1] == 1 + 2 * sum(rates)


def test_support_shapes():
    assert dilation_support(3, (1, 3, 9)) == tuple(range(27))        # k-adic rates: no holes
    assert dilation_support(3, (2, 2, 2)) == tuple(range(0, 13, 2))  # common factor 2: holes
    assert dilation_support(3, (1, 1, 1)) == tuple(range(7))


def test_bad_arguments():
    w = torch.randn(2, 2, 3)
    with pytest.raises(TypeError, match="weights"):
        effective_kernel(w, (1,))
    with pytest.raises(ValueError, match="dilations"):
        effective_kernel([w, w], (1,))
    with pytest.raises(ValueError, match="input channels"):
        effective_kernel([w, torch.randn(2, 3, 3)], (1, 1))
    with pytest.raises(ValueError, match="dilations"):
        dilation_support(3, (0,))
    with pytest.raises(ValueError, match="smaller"):
        circular_conv_coherence(torch.randn(1, 1, 9), (5,))
    with pytest.raises(ValueError, match="all-zero"):
        circular_conv_coherence(torch.zeros(2, 1, 3), (8,))
