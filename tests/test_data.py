"""cscnb.data: digits loader and planted sparse-coding problems."""
import pytest
import torch

from cscnb.core.dictionary import ConvDictionary, LinearDictionary, random_orthonormal
from cscnb.data import load_digits, planted_sparse_codes


def test_digits_shapes_and_standardization():
    d = load_digits()
    n_train, n_test = d.x_train.shape[0], d.x_test.shape[0]
    assert n_train + n_test == 1797
    assert d.x_train.shape[1:] == (1, 8, 8) and d.x_test.shape[1:] == (1, 8, 8)
    assert d.y_train.shape == (n_train,) and d.y_test.shape == (n_test,)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert abs(n_test / 1797 - 0.25) < 0.01
    # standardized with training statistics: mean 0 and std 1 on the training set only
    assert abs(float(d.x_train.double().mean())) < 1e-5
    assert abs(float(d.x_train.double().std()) - 1) < 1e-5
    # undoing the standardization gives the integer pixel values 0..16 back
    raw = d.x_test.double() * d.std + d.mean
    assert torch.allclose(raw, raw.round(), atol=1e-4) and raw.min() > -1e-4 and raw.max() < 16 + 1e-4


def test_digits_split_is_stratified_deterministic_and_disjoint():
    a, b = load_digits(seed=3), load_digits(seed=3)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    c = load_digits(seed=4)
    assert not torch.equal(a.y_test, c.y_test)
    train_counts = torch.bincount(a.y_train, minlength=10).double()
    test_counts = torch.bincount(a.y_test, minlength=10).double()
    fractions = test_counts / (train_counts + test_counts)
    assert ((fractions - 0.25).abs() < 0.01).all()
    # no test image appears among the training images
    train_rows = {tuple(r.tolist()) for r in a.x_train.flatten(1)}
    duplicates = sum(tuple(r.tolist()) in train_rows for r in a.x_test.flatten(1))
    assert duplicates < 5  # the raw data set itself holds a few identical images


def test_digits_dtype_and_fraction():
    d = load_digits(test_fraction=0.5, dtype=torch.float64)
    assert d.x_test.dtype == torch.float64
    assert abs(d.x_test.shape[0] / 1797 - 0.5) < 0.01


@pytest.mark.parametrize("kwargs, error", [
    (dict(test_fraction=0.0), ValueError), (dict(test_fraction=1.0), ValueError),
    (dict(test_fraction="0.2"), TypeError), (dict(seed=-1), ValueError), (dict(seed=1.5), TypeError),
    (dict(dtype=torch.int64), TypeError),
])
def test_digits_bad_arguments(kwargs, error):
    with pytest.raises(error):
        load_digits(**kwargs)


def test_planted_linear_codes_have_known_support_and_model():
    gen = torch.Generator().manual_seed(0)
    D = LinearDictionary(random_orthonormal(12, generator=gen))
    p = planted_sparse_codes(D, 50, 3, noise=0.0, seed=1)
    assert p.x.shape == (50, 12) and p.z.shape == (50, 12)
    assert ((p.z != 0).sum(dim=1) == 3).all()
    nz = p.z[p.z != 0].abs()
    assert nz.min() >= 1 and nz.max() <= 2
    assert (p.z < 0).any()  # signed by default
    torch.testing.assert_close(p.x, p.z @ D.weight.T)
    q = planted_sparse_codes(D, 50, 3, noise=0.1, seed=1)
    torch.testing.assert_close(q.clean, p.clean)
    residual_std = float((q.x - q.clean).std())
    assert 0.08 < residual_std < 0.12


@pytest.mark.parametrize("stride", [1, 2])
def test_planted_conv_codes(stride):
    w = torch.randn(4, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    D = ConvDictionary(w, stride=stride, padding=1)
    p = planted_sparse_codes(D, 5, 7, nonneg=True, seed=2, signal_size=(10, 10))
    assert p.x.shape == (5, 2, 10, 10)
    assert p.z.shape == (5, *D.code_shape(p.x.shape)[1:])
    assert ((p.z != 0).flatten(1).sum(dim=1) == 7).all() and (p.z >= 0).all()
    torch.testing.assert_close(p.x, D.synthesize(p.z, output_size=(10, 10)))


def test_planted_is_deterministic_and_follows_dtype():
    D = LinearDictionary(torch.eye(6, dtype=torch.float32))
    a = planted_sparse_codes(D, 4, 2, noise=0.5, seed=7)
    b = planted_sparse_codes(D, 4, 2, noise=0.5, seed=7)
    assert a.x.dtype == torch.float32 and torch.equal(a.x, b.x) and torch.equal(a.z, b.z)


def test_planted_bad_arguments():
    D = LinearDictionary(torch.eye(6, dtype=torch.float64))
    C = ConvDictionary(torch.ones(2, 1, 3, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="dictionary"):
        planted_sparse_codes(torch.eye(6), 4, 2)
    with pytest.raises(ValueError, match="n must"):
        planted_sparse_codes(D, 0, 2)
    with pytest.raises(ValueError, match="sparsity"):
        planted_sparse_codes(D, 4, 7)
    with pytest.raises(TypeError, match="sparsity"):
        planted_sparse_codes(D, 4, 0.5)
    with pytest.raises(ValueError, match="noise"):
        planted_sparse_codes(D, 4, 2, noise=-1.0)
    with pytest.raises(ValueError, match="signal_size"):
        planted_sparse_codes(C, 4, 2)
    with pytest.raises(ValueError, match="signal_size"):
        planted_sparse_codes(D, 4, 2, signal_size=(3,))
    with pytest.raises(ValueError, match="signal_size"):
        planted_sparse_codes(C, 4, 2, signal_size=(5,))
