"""Fourier-domain paths of cscnb.solve: exact operators, closed-form Lipschitz constant, optimality, dispatch."""
import pytest
import torch

import cscnb
from cscnb.solvers.fourier import FourierConvOperator, fourier_applicable, prefer_fourier

DTYPE = torch.float64

# (weight shape, signal size, padding, dilation): 2-D and 1-D, several channels, odd/even/dilated kernels
GEOMETRIES = [
    ((5, 1, 7, 7), (20, 24), 3, 1),
    ((4, 3, 3, 3), (9, 10), 1, 1),
    ((4, 2, 3, 5), (12, 13), (2, 4), 2),
    ((6, 2, 5), (17,), 2, 1),
    ((3, 1, 4, 4), (11, 11), (3, 3), (2, 2)),
]


def circular(shape, padding, dilation, seed=0):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(shape, generator=gen, dtype=DTYPE)
    weight = weight / weight.flatten(1).norm(dim=1).reshape(-1, *[1] * (weight.ndim - 1))
    return cscnb.ConvDictionary(weight, padding=padding, dilation=dilation, padding_mode="circular"), gen


@pytest.mark.parametrize("shape,size,padding,dilation", GEOMETRIES)
def test_fft_operators_equal_the_conv_dictionary(shape, size, padding, dilation):
    dictionary, gen = circular(shape, padding, dilation)
    op = FourierConvOperator(dictionary, size)
    x = torch.randn(2, shape[1], *size, generator=gen, dtype=DTYPE)
    z = torch.randn(2, shape[0], *size, generator=gen, dtype=DTYPE)
    torch.testing.assert_close(op.synthesize(z), dictionary.synthesize(z, output_size=size), rtol=0, atol=1e-12)
    torch.testing.assert_close(op.analyze(x), dictionary.analyze(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape,size,padding,dilation", GEOMETRIES)
def test_closed_form_lipschitz_constant_equals_power_iteration(shape, size, padding, dilation):
    dictionary, _ = circular(shape, padding, dilation)
    closed = FourierConvOperator(dictionary, size).lipschitz_constant()
    # power iteration run to convergence (no safety margin): ‖DᵀD‖ from below
    iterated = dictionary._power_iteration(size, 5_000, 1e-14)
    assert iterated <= closed * (1 + 1e-12)
    assert closed == pytest.approx(iterated, rel=1e-8)


def test_applicability_and_rule():
    square, _ = circular((4, 1, 7, 7), 3, 1)
    assert fourier_applicable(square, (16, 16)) and prefer_fourier(square, (16, 16))
    small, _ = circular((4, 1, 3, 3), 1, 1)
    assert fourier_applicable(small, (16, 16)) and not prefer_fourier(small, (16, 16))
    zeros = cscnb.ConvDictionary(square.weight, padding=3)
    valid = cscnb.ConvDictionary(square.weight, padding=0, padding_mode="circular")   # code smaller than x
    strided = cscnb.ConvDictionary(square.weight, padding=3, stride=2, padding_mode="circular")
    for other in (zeros, valid, strided):
        assert not fourier_applicable(other, (16, 16))
    assert not fourier_applicable(cscnb.LinearDictionary(torch.eye(3, dtype=DTYPE)), None)


CASES = [  # (method, weight shape, size, padding, lam, mu, nonneg); small and well conditioned: fast to solve
    ("fista_restart", (4, 1, 7, 7), (10, 12), 3, 0.3, 0.0, False),
    ("fista_restart", (4, 3, 5, 5), (10, 10), 2, "per-atom", 0.1, True),
    ("admm_fourier", (4, 1, 7, 7), (10, 12), 3, 0.3, 0.0, False),
    ("admm_fourier", (4, 3, 5, 5), (10, 10), 2, "per-atom", 0.1, True),
    ("admm_fourier", (6, 2, 5), (17,), 2, 0.3, 0.0, False),
]


@pytest.mark.parametrize("method,shape,size,padding,lam,mu,nonneg", CASES)
def test_fourier_solution_is_optimal_and_matches_spatial_fista(method, shape, size, padding, lam, mu, nonneg):
    dictionary, gen = circular(shape, padding, 1, seed=3)
    x = torch.randn(3, shape[1], *size, generator=gen, dtype=DTYPE)
    if lam == "per-atom":
        lam = torch.linspace(0.1, 0.4, shape[0], dtype=DTYPE)
    fourier = cscnb.solve(dictionary, x, lam, mu=mu, nonneg=nonneg, method=method, domain="fourier", tol=1e-10,
                          n_iter=20_000)
    assert fourier.converged and (fourier.z != 0).any()
    assert float(cscnb.kkt_residual(dictionary, x, fourier.z, lam, mu=mu, nonneg=nonneg).max()) < 1e-7
    spatial = cscnb.solve(dictionary, x, lam, mu=mu, nonneg=nonneg, method="fista_restart", domain="spatial",
                          tol=1e-10, n_iter=20_000)
    torch.testing.assert_close(fourier.objective, spatial.objective, rtol=1e-9, atol=0)
    torch.testing.assert_close(fourier.objective, cscnb.objective(dictionary, x, fourier.z, lam, mu=mu))


@pytest.mark.parametrize("method", ["fista_restart", "admm_fourier"])
def test_float32_iterations_end_in_float64(method):
    dictionary, gen = circular((4, 1, 7, 7), 3, 1, seed=4)
    x = torch.randn(2, 1, 12, 12, generator=gen, dtype=DTYPE)
    exact = cscnb.solve(dictionary, x, 0.2, method=method, domain="fourier", tol=1e-11, n_iter=20_000)
    fast = cscnb.solve(dictionary, x, 0.2, method=method, domain="fourier", tol=1e-11, n_iter=20_000,
                       iterate_dtype=torch.float32)
    assert fast.z.dtype == DTYPE and fast.converged
    assert float(cscnb.kkt_residual(dictionary, x, fast.z, 0.2).max()) < 1e-8
    torch.testing.assert_close(fast.objective, exact.objective, rtol=1e-10, atol=0)


def test_auto_domain_picks_fourier_for_large_kernels():
    """The automatic path and the forced Fourier path are the same computation (identical iterates)."""
    dictionary, gen = circular((4, 1, 7, 7), 3, 1, seed=5)
    x = torch.randn(1, 1, 16, 16, generator=gen, dtype=DTYPE)
    auto = cscnb.solve(dictionary, x, 0.2, method="fista_restart", n_iter=7, tol=1e-30)
    forced = cscnb.solve(dictionary, x, 0.2, method="fista_restart", domain="fourier", n_iter=7, tol=1e-30)
    spatial = cscnb.solve(dictionary, x, 0.2, method="fista_restart", domain="spatial", n_iter=7, tol=1e-30)
    assert torch.equal(auto.z, forced.z)
    assert not torch.equal(auto.z, spatial.z), "after 7 steps the paths differ by rounding (and step 1/L)"


def test_fourier_path_is_differentiable():
    dictionary, gen = circular((3, 1, 5, 5), 2, 1, seed=6)
    x = torch.randn(1, 1, 12, 12, generator=gen, dtype=DTYPE, requires_grad=True)
    z = cscnb.solve(dictionary, x, 0.1, method="fista_restart", domain="fourier", n_iter=3, tol=1e-30).z
    (grad,) = torch.autograd.grad(z.square().sum(), x)
    assert grad.abs().sum() > 0
    assert torch.autograd.gradcheck(
        lambda xx: cscnb.solve(dictionary, xx, 0.1, method="fista_restart", domain="fourier", n_iter=3,
                               tol=1e-30).z, (x,), eps=1e-6, atol=1e-7)


def test_warm_start_is_not_modified():
    dictionary, gen = circular((4, 1, 7, 7), 3, 1, seed=7)
    x = torch.randn(1, 1, 16, 16, generator=gen, dtype=DTYPE)
    for method in ("fista_restart", "admm_fourier"):
        z0 = torch.randn(1, 4, 16, 16, generator=gen, dtype=DTYPE)
        copy = z0.clone()
        cscnb.solve(dictionary, x, 0.2, method=method, domain="fourier", z0=z0, n_iter=5)
        assert torch.equal(z0, copy), method


@pytest.mark.parametrize("kwargs,match", [
    ({"method": "fista_restart", "domain": "frequency"}, "domain must be one of"),
    ({"method": "fista", "domain": "fourier"}, "domain='fourier' needs method='fista_restart'"),
    ({"method": "admm_fourier", "domain": "spatial"}, "contradicts"),
    ({"method": "admm_fourier", "history": True}, "history=True is recorded for"),
    ({"method": "admm_fourier", "polish": True}, "polish=True needs method='fista_restart'"),
])
def test_bad_fourier_options(kwargs, match):
    dictionary, gen = circular((4, 1, 7, 7), 3, 1)
    x = torch.randn(1, 1, 16, 16, generator=gen, dtype=DTYPE)
    with pytest.raises(ValueError, match=match):
        cscnb.solve(dictionary, x, 0.1, **kwargs)


@pytest.mark.parametrize("method,options", [("fista_restart", {"domain": "fourier"}), ("admm_fourier", {})])
def test_fourier_path_needs_a_circular_same_size_dictionary(method, options):
    gen = torch.Generator().manual_seed(8)
    dictionary = cscnb.ConvDictionary(torch.randn(4, 1, 7, 7, generator=gen, dtype=DTYPE), padding=3)
    x = torch.randn(1, 1, 16, 16, generator=gen, dtype=DTYPE)
    with pytest.raises(ValueError, match="padding_mode='circular'"):
        cscnb.solve(dictionary, x, 0.1, method=method, **options)


@pytest.mark.parametrize("method", ["fista_restart", "admm_fourier"])
def test_in_place_and_autograd_iterations_agree(method):
    """Without autograd the Fourier solvers write into reused buffers; the iterates must not change."""
    dictionary, gen = circular((4, 2, 5, 5), 2, 1, seed=9)
    x = torch.randn(2, 2, 10, 10, generator=gen, dtype=DTYPE)
    lam = torch.linspace(0.1, 0.3, 4, dtype=DTYPE)
    plain = cscnb.solve(dictionary, x, lam, method=method, domain="fourier", n_iter=40, tol=1e-30)
    tracked = cscnb.solve(dictionary, x.clone().requires_grad_(True), lam, method=method, domain="fourier",
                          n_iter=40, tol=1e-30)
    assert (plain.z != 0).any()
    torch.testing.assert_close(plain.z, tracked.z.detach(), rtol=0, atol=1e-12)
