"""Dictionaries: exact adjoints, explicit matrices, Lipschitz constants and their cache."""
import itertools

import pytest
import torch
import torch.nn as nn

import cscnb

DTYPE = torch.float64


def explicit_matrix(fn, in_shape):
    """The matrix of a linear map on tensors of shape ``in_shape`` (row j = fn(e_j) flattened)."""
    size = int(torch.tensor(in_shape).prod())
    basis = torch.eye(size, dtype=DTYPE).reshape(size, *in_shape)
    return fn(basis).reshape(size, -1)


def conv_cases():
    cases = []
    for dim, stride, padding, dilation, mode in itertools.product(
            (1, 2), (1, 2, 3), (0, 1, 2), (1, 2), ("zeros", "circular")):
        # sizes where the stride divides (size + 2p - d(k-1) - 1) and where it does not
        sizes = [(9,), (10,), (11,)] if dim == 1 else [(9, 10), (8, 11)]
        for size in sizes:
            cases.append((dim, stride, padding, dilation, mode, size))
    return cases


def make_conv(dim, stride, padding, dilation, mode, seed=0, n_atoms=3, in_channels=2, k=3):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(n_atoms, in_channels, *([k] * dim), generator=gen, dtype=DTYPE)
    return cscnb.ConvDictionary(weight, stride=stride, padding=padding, dilation=dilation, padding_mode=mode)


@pytest.mark.parametrize("dim,stride,padding,dilation,mode,size", conv_cases(),
                         ids=lambda v: str(v).replace(" ", ""))
def test_conv_adjoint_identity(dim, stride, padding, dilation, mode, size):
    d = make_conv(dim, stride, padding, dilation, mode)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, d.in_channels, *size, generator=gen, dtype=DTYPE)
    z = torch.randn(d.code_shape(x.shape), generator=gen, dtype=DTYPE)
    dz = d.synthesize(z, output_size=size)
    assert dz.shape == x.shape, "synthesize must return a signal shaped like x"
    lhs, rhs = (dz * x).sum(), (z * d.analyze(x)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)
    assert d.adjoint_check(x, z) < 1e-12


@pytest.mark.parametrize("dim,stride,padding,dilation,mode",
                         list(itertools.product((1, 2), (1, 2), (0, 2), (1, 2), ("zeros", "circular"))))
def test_conv_analyze_is_torch_conv(dim, stride, padding, dilation, mode):
    """analyze must be what nn.Conv{1,2}d computes (the adjoint test alone cannot see a wrong analyze)."""
    d = make_conv(dim, stride, padding, dilation, mode)
    conv_cls = nn.Conv1d if dim == 1 else nn.Conv2d
    conv = conv_cls(d.in_channels, d.n_atoms, 3, stride=stride, padding=padding, dilation=dilation,
                    padding_mode=mode, bias=False).to(DTYPE)
    with torch.no_grad():
        conv.weight.copy_(d.weight)
    x = torch.randn(2, d.in_channels, *([10] * dim), generator=torch.Generator().manual_seed(2), dtype=DTYPE)
    torch.testing.assert_close(d.analyze(x), conv(x).detach(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["zeros", "circular"])
@pytest.mark.parametrize("dim", [1, 2])
def test_synthesize_is_transpose_of_analyze_matrix(dim, mode):
    d = make_conv(dim, stride=2, padding=1, dilation=1, mode=mode)
    size = (7,) if dim == 1 else (5, 6)
    signal_shape = (d.in_channels, *size)
    code_shape = d.code_shape((1, *signal_shape))[1:]
    analysis = explicit_matrix(d.analyze, signal_shape)                                  # row j = Dᵀ e_j
    synthesis = explicit_matrix(lambda z: d.synthesize(z, output_size=size), code_shape)  # row j = D e_j
    torch.testing.assert_close(synthesis, analysis.T, rtol=0, atol=1e-12)


def test_linear_dictionary_adjoint_and_matrix():
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(5, 8, generator=gen, dtype=DTYPE)
    d = cscnb.LinearDictionary(w)
    x, z = torch.randn(4, 5, generator=gen, dtype=DTYPE), torch.randn(4, 8, generator=gen, dtype=DTYPE)
    torch.testing.assert_close((d.synthesize(z) * x).sum(), (z * d.analyze(x)).sum(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(explicit_matrix(d.synthesize, (8,)), w.T, rtol=0, atol=0)
    torch.testing.assert_close(explicit_matrix(d.analyze, (5,)), w, rtol=0, atol=0)


def true_lipschitz(d, signal_size=None):
    if isinstance(d, cscnb.LinearDictionary):
        return float(torch.linalg.eigvalsh(d.weight.T @ d.weight).max())
    code_shape = d.code_shape((1, d.in_channels, *signal_size))[1:]
    m = explicit_matrix(lambda z: d.synthesize(z, output_size=signal_size), code_shape)
    return float(torch.linalg.eigvalsh(m @ m.T).max())


@pytest.mark.parametrize("case", ["linear", "conv1d", "conv2d-stride2", "conv2d-circular"])
def test_lipschitz_constant_bounds_the_true_norm(case):
    gen = torch.Generator().manual_seed(4)
    if case == "linear":
        d, size = cscnb.LinearDictionary(torch.randn(6, 10, generator=gen, dtype=DTYPE)), None
    elif case == "conv1d":
        d, size = make_conv(1, 1, 1, 1, "zeros"), (12,)
    elif case == "conv2d-stride2":
        d, size = make_conv(2, 2, 1, 1, "zeros"), (7, 8)
    else:
        d, size = make_conv(2, 1, 1, 2, "circular"), (6, 7)
    exact = true_lipschitz(d, size)
    estimate = d.lipschitz_constant(size)
    assert estimate >= exact, "the step 1/L must not exceed 1/‖DᵀD‖"
    assert estimate <= exact * (1 + d.lipschitz_margin) * (1 + 1e-6), "the margin should be the only slack"


def test_lipschitz_constant_is_cached_and_invalidated_by_inplace_change(monkeypatch):
    gen = torch.Generator().manual_seed(5)
    d = cscnb.LinearDictionary(torch.randn(6, 10, generator=gen, dtype=DTYPE))
    calls = []
    original = type(d)._power_iteration

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)
    monkeypatch.setattr(type(d), "_power_iteration", counting)
    first = d.lipschitz_constant()
    second = d.lipschitz_constant()
    assert len(calls) == 1 and first == second, "a second call must come from the cache"
    with torch.no_grad():
        d.weight.mul_(2.0)  # ‖DᵀD‖ scales by 4
    third = d.lipschitz_constant()
    assert len(calls) == 2, "an in-place weight change must invalidate the cache"
    assert third == pytest.approx(4 * first, rel=1e-6)


def test_conv_lipschitz_depends_on_signal_size():
    d = make_conv(1, 1, 2, 1, "zeros")
    for size in [(4,), (16,)]:
        exact, estimate = true_lipschitz(d, size), d.lipschitz_constant(size)
        assert exact <= estimate <= exact * (1 + d.lipschitz_margin), size
    assert d.lipschitz_constant((4,)) < d.lipschitz_constant((16,)), \
        "a longer signal admits more overlapping atoms, so a larger norm (the cache must key on the size)"


def test_mutual_coherence_and_orthonormal():
    q = cscnb.random_orthonormal(6, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(q.T @ q, torch.eye(6, dtype=DTYPE), rtol=0, atol=1e-12)
    assert cscnb.mutual_coherence(q) < 1e-12
    w = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]], dtype=DTYPE)
    # atoms (1,0), (1,1)/√2, (0,1): the largest |cosine| is 1/√2
    assert cscnb.mutual_coherence(w) == pytest.approx(2 ** -0.5, rel=1e-12)


def test_matrix_is_the_synthesis_operator_and_its_transpose_the_analysis():
    g = torch.Generator().manual_seed(0)
    linear = cscnb.LinearDictionary(torch.randn(5, 7, generator=g, dtype=torch.float64))
    assert torch.equal(linear.matrix(), linear.weight)
    for kwargs in (dict(), dict(stride=2, padding=1), dict(stride=2, padding=1, padding_mode="circular"),
                   dict(padding=2, dilation=2)):
        conv = cscnb.ConvDictionary(torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64), **kwargs)
        matrix = conv.matrix((2, 7, 7))
        z = torch.randn(conv.code_shape((1, 2, 7, 7)), generator=g, dtype=torch.float64)
        x = torch.randn(1, 2, 7, 7, generator=g, dtype=torch.float64)
        torch.testing.assert_close(matrix @ z.flatten(), conv.synthesize(z, output_size=(7, 7)).flatten())
        torch.testing.assert_close(matrix.T @ x.flatten(), conv.analyze(x).flatten())
    with pytest.raises(ValueError, match="signal_shape"):
        cscnb.ConvDictionary(torch.randn(3, 1, 4, dtype=torch.float64)).matrix()
