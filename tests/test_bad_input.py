"""Bad input raises ValueError/TypeError whose message names the offending argument."""
import pytest
import torch

import cscnb

DTYPE = torch.float64


@pytest.fixture
def dense():
    gen = torch.Generator().manual_seed(0)
    return cscnb.LinearDictionary(torch.randn(5, 8, generator=gen, dtype=DTYPE)), \
        torch.randn(3, 5, generator=gen, dtype=DTYPE)


@pytest.fixture
def conv():
    gen = torch.Generator().manual_seed(0)
    return cscnb.ConvDictionary(torch.randn(4, 2, 3, 3, generator=gen, dtype=DTYPE)), \
        torch.randn(2, 2, 6, 6, generator=gen, dtype=DTYPE)


def with_value(t, index, value):
    t = t.clone()
    t.view(-1)[index] = value
    return t


@pytest.mark.parametrize("bad_x,match", [
    (lambda x: x[:, :4], r"x must have shape \(batch, n_features=5\)"),
    (lambda x: x[0], r"x must have shape"),
    (lambda x: x[:0], r"x must contain at least one sample"),
    (lambda x: with_value(x, 3, float("nan")), "x contains NaN or Inf"),
    (lambda x: with_value(x, 0, float("inf")), "x contains NaN or Inf"),
])
def test_bad_dense_signal(dense, bad_x, match):
    dictionary, x = dense
    with pytest.raises(ValueError, match=match):
        cscnb.solve(dictionary, bad_x(x), 0.1)


def test_bad_conv_signal(conv):
    dictionary, x = conv
    with pytest.raises(ValueError, match="x must have shape .* in_channels=2"):
        cscnb.solve(dictionary, x[:, :1], 0.1)
    with pytest.raises(ValueError, match="x must have shape"):
        cscnb.solve(dictionary, x[0], 0.1)
    with pytest.raises(ValueError, match="x has spatial size"):
        cscnb.solve(dictionary, x[..., :2, :2], 0.1)


def test_x_type_and_dtype(dense):
    dictionary, x = dense
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        cscnb.solve(dictionary, x.numpy(), 0.1)
    with pytest.raises(TypeError, match="x has dtype torch.float32"):
        cscnb.solve(dictionary, x.float(), 0.1)
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        cscnb.solve(cscnb.LinearDictionary(dictionary.weight), x.to(torch.int64), 0.1)


def test_bad_dictionary_weight():
    with pytest.raises(ValueError, match="weight contains NaN or Inf"):
        cscnb.LinearDictionary(torch.tensor([[1.0, float("nan")]], dtype=DTYPE))
    with pytest.raises(ValueError, match="weight contains NaN or Inf"):
        cscnb.ConvDictionary(torch.full((2, 1, 3, 3), float("inf"), dtype=DTYPE))
    with pytest.raises(ValueError, match=r"weight must have shape \(n_features, n_atoms\)"):
        cscnb.LinearDictionary(torch.zeros(2, 3, 4, dtype=DTYPE))
    with pytest.raises(TypeError, match="weight must be a floating-point"):
        cscnb.LinearDictionary(torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="weight must be a torch.Tensor"):
        cscnb.LinearDictionary([[1.0, 2.0]])
    with pytest.raises(ValueError, match="padding_mode"):
        cscnb.ConvDictionary(torch.zeros(2, 1, 3, 3, dtype=DTYPE), padding_mode="reflect")
    with pytest.raises(ValueError, match="stride"):
        cscnb.ConvDictionary(torch.zeros(2, 1, 3, 3, dtype=DTYPE), stride=0)


def test_weight_corrupted_after_construction(dense):
    """A NaN written into the weight later must still be caught by solve."""
    dictionary, x = dense
    with torch.no_grad():
        dictionary.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="dictionary weight contains NaN or Inf"):
        cscnb.solve(dictionary, x, 0.1)


def test_not_a_dictionary(dense):
    _, x = dense
    with pytest.raises(TypeError, match="dictionary must be a cscnb"):
        cscnb.solve(torch.zeros(5, 8, dtype=DTYPE), x, 0.1)


@pytest.mark.parametrize("lam,error,match", [
    (-0.1, ValueError, "lam must be non-negative"),
    (torch.full((8,), -1.0, dtype=DTYPE), ValueError, "lam must be non-negative"),
    (torch.full((7,), 0.1, dtype=DTYPE), ValueError, "per-atom lam must have length n_atoms=8"),
    (float("nan"), ValueError, "lam contains NaN or Inf"),
    (torch.tensor([0.1, float("inf")] * 4, dtype=DTYPE), ValueError, "lam contains NaN or Inf"),
    ("0.1", TypeError, "lam must be"),
    (True, TypeError, "lam must be"),
    (torch.zeros(1, 1, 8, dtype=DTYPE), ValueError, "lam must be a scalar, a per-atom tensor"),
])
def test_bad_lam(dense, lam, error, match):
    dictionary, x = dense
    with pytest.raises(error, match=match):
        cscnb.solve(dictionary, x, lam)
    with pytest.raises(error, match=match):
        cscnb.objective(dictionary, x, torch.zeros(3, 8, dtype=DTYPE), lam)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"tol": 0.0}, ValueError, "tol must be a positive"),
    ({"tol": -1e-3}, ValueError, "tol must be a positive"),
    ({"tol": float("nan")}, ValueError, "tol must be a positive"),
    ({"tol": "small"}, TypeError, "tol must be a positive number"),
    ({"n_iter": 0}, ValueError, "n_iter must be a positive int"),
    ({"n_iter": -5}, ValueError, "n_iter must be a positive int"),
    ({"n_iter": 10.0}, TypeError, "n_iter must be a positive int"),
    ({"method": "admm"}, ValueError, "method must be one of"),
    ({"method": None}, ValueError, "method must be one of"),
    ({"mu": -0.5}, ValueError, "mu must be a finite non-negative"),
    ({"mu": "1"}, TypeError, "mu must be a non-negative number"),
    ({"z0": torch.zeros(3, 7, dtype=DTYPE)}, ValueError, r"z0 must have the code shape \(3, 8\)"),
    ({"z0": torch.zeros(2, 8, dtype=DTYPE)}, ValueError, r"z0 must have the code shape"),
    ({"z0": [[0.0] * 8] * 3}, TypeError, "z0 must be a torch.Tensor"),
    ({"z0": torch.full((3, 8), float("nan"), dtype=DTYPE)}, ValueError, "z0 contains NaN or Inf"),
    ({"polish": True}, ValueError, "polish=True needs method='fista_restart'"),
    ({"polish": 1, "method": "fista_restart"}, TypeError, "polish must be a bool"),
    ({"iterate_dtype": torch.float32}, ValueError, "iterate_dtype needs method='fista_restart'"),
    ({"iterate_dtype": torch.float32, "method": "fista_restart"}, ValueError, "iterate_dtype needs polish=True"),
    ({"iterate_dtype": "float32", "method": "fista_restart", "polish": True}, TypeError, "iterate_dtype must be"),
    ({"history": True, "method": "fista_restart"}, ValueError, "history=True is recorded for"),
])
def test_bad_solver_options(dense, kwargs, error, match):
    dictionary, x = dense
    with pytest.raises(error, match=match):
        cscnb.solve(dictionary, x, 0.1, **kwargs)


def test_polish_needs_a_linear_dictionary(conv):
    dictionary, x = conv
    with pytest.raises(ValueError, match="polish=True needs a LinearDictionary"):
        cscnb.solve(dictionary, x, 0.1, method="fista_restart", polish=True)


def test_all_zero_dictionary(dense):
    _, x = dense
    with pytest.raises(ValueError, match="dictionary is all zeros"):
        cscnb.solve(cscnb.LinearDictionary(torch.zeros(5, 8, dtype=DTYPE)), x, 0.1)


def test_bad_code_for_objective_and_kkt(dense):
    dictionary, x = dense
    with pytest.raises(ValueError, match=r"z must have the code shape \(3, 8\)"):
        cscnb.objective(dictionary, x, torch.zeros(3, 9, dtype=DTYPE), 0.1)
    with pytest.raises(ValueError, match=r"z must have the code shape \(3, 8\)"):
        cscnb.kkt_residual(dictionary, x, torch.zeros(4, 8, dtype=DTYPE), 0.1)


def test_bad_output_size_for_synthesize():
    d = cscnb.ConvDictionary(torch.zeros(2, 1, 3, 3, dtype=DTYPE), stride=2)
    z = torch.zeros(1, 2, 3, 3, dtype=DTYPE)   # code of signals of size 7 or 8
    assert d.synthesize(z, output_size=(8, 7)).shape == (1, 1, 8, 7)
    with pytest.raises(ValueError, match="output_size"):
        d.synthesize(z, output_size=(9, 7))
