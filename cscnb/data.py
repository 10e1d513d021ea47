r"""Small, embedded data sets: scikit-learn digits and planted sparse-coding problems.

Nothing here touches the network: the digits ship with scikit-learn, and planted problems
are generated from a seed. Everything is deterministic given ``seed``.
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real

import torch

from .dictionary import ConvDictionary, Dictionary, LinearDictionary

__all__ = ["DigitsSplit", "load_digits", "PlantedCodes", "planted_sparse_codes", "MNIST1DSplit", "load_mnist1d"]


# ---------------------------------------------------------------------------------------------
# scikit-learn digits


@dataclass
class DigitsSplit:
    """A train/test split of the 8×8 digits, standardized with the training statistics."""
    x_train: torch.Tensor   # (N_train, 1, 8, 8)
    y_train: torch.Tensor   # (N_train,) int64 labels 0..9
    x_test: torch.Tensor    # (N_test, 1, 8, 8)
    y_test: torch.Tensor    # (N_test,) int64 labels 0..9
    mean: float             # training-set pixel mean subtracted from every image
    std: float              # training-set pixel standard deviation every image was divided by

    @property
    def n_classes(self) -> int:
        return 10


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return int(seed)


def _check_float_dtype(dtype) -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")


def _stratified_test_indices(labels: torch.Tensor, test_fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Boolean mask of test samples: round(test_fraction · n_c) random samples of every class c."""
    is_test = torch.zeros(labels.shape[0], dtype=torch.bool)
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        n_test = int(round(test_fraction * members.numel()))
        # keep at least one sample of each class on both sides
        n_test = min(max(n_test, 1), members.numel() - 1)
        chosen = members[torch.randperm(members.numel(), generator=generator)[:n_test]]
        is_test[chosen] = True
    return is_test


def load_digits(*, test_fraction: float = 0.25, seed: int = 0, dtype: torch.dtype = torch.float32,
                device=None) -> DigitsSplit:
    r"""The 1797 scikit-learn 8×8 digits :cite:p:`pedregosa2011scikit`, split and standardized.

    The split is stratified: from every class, ``round(test_fraction · n_class)`` images drawn
    with a ``torch.Generator`` seeded by ``seed`` go to the test set. Pixel values (0..16) are
    standardized with two scalars computed on the training images only,

    .. math:: \tilde x = (x - m_{\text{train}}) / s_{\text{train}},

    where :math:`m_{\text{train}}` and :math:`s_{\text{train}}` are the mean and standard deviation
    over all training pixels. Scalars (not per-pixel statistics) keep the images translation-
    consistent for convolutions, and the always-zero border pixels would have zero per-pixel
    variance. Used by chapter 4 (``eq-ch4-logistic``) and later chapters.
    """
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, Real):
        raise TypeError(f"test_fraction must be a number in (0, 1), got {type(test_fraction).__name__}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    seed = _check_seed(seed)
    _check_float_dtype(dtype)
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as err:  # scikit-learn is an optional ("book"/"test") dependency
        raise ImportError("cscnb.data.load_digits needs scikit-learn: pip install scikit-learn") from err
    bunch = _sk_load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float64).unsqueeze(1)  # (1797, 1, 8, 8)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    generator = torch.Generator().manual_seed(seed)
    is_test = _stratified_test_indices(labels, float(test_fraction), generator)
    x_train, x_test = images[~is_test], images[is_test]
    mean, std = x_train.mean(), x_train.std()
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    return DigitsSplit(
        x_train=x_train.to(dtype=dtype, device=device), y_train=labels[~is_test].to(device=device),
        x_test=x_test.to(dtype=dtype, device=device), y_test=labels[is_test].to(device=device),
        mean=float(mean), std=float(std))


# ---------------------------------------------------------------------------------------------
# planted sparse codes


@dataclass
class PlantedCodes:
    """Signals with known sparse codes: ``x = clean + noise``, ``clean = D z``."""
    x: torch.Tensor       # (n, n_features) or (n, C, *signal_size)
    z: torch.Tensor       # the planted codes, shaped like dictionary.analyze(x)
    clean: torch.Tensor   # D z, without noise


def planted_sparse_codes(dictionary: Dictionary, n: int, sparsity: int, *, nonneg: bool = False, noise: float = 0.0,
                         seed: int = 0, signal_size=None) -> PlantedCodes:
    r"""Draw ``n`` signals :math:`x = Dz + \sigma\varepsilon` with known :math:`\|z\|_0 = ` ``sparsity``.

    Each code has exactly ``sparsity`` non-zero entries at uniformly random positions (over atoms
    and, for a ``ConvDictionary``, code positions), with magnitudes uniform in :math:`[1, 2]`
    (bounded away from 0 so the support is identifiable) and random signs, or positive signs if
    ``nonneg``. :math:`\varepsilon` is standard Gaussian and :math:`\sigma` = ``noise``. This is the
    generative model of chapter 1, ``eq-generative-model``; a ``ConvDictionary`` needs
    ``signal_size`` (the spatial size of ``x``). Output has the dictionary's dtype and device.
    """
    if not isinstance(dictionary, Dictionary):
        raise TypeError(f"dictionary must be a cscnb LinearDictionary or ConvDictionary, got {type(dictionary).__name__}")
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if isinstance(noise, bool) or not isinstance(noise, Real):
        raise TypeError(f"noise must be a non-negative number, got {type(noise).__name__}")
    if not noise >= 0 or noise == float("inf"):
        raise ValueError(f"noise must be a finite non-negative number, got {noise}")
    seed = _check_seed(seed)
    if isinstance(dictionary, ConvDictionary):
        if signal_size is None:
            raise ValueError("signal_size (the spatial size of x) is required for a ConvDictionary")
        signal_size = tuple(int(s) for s in ((signal_size,) if isinstance(signal_size, Integral) else signal_size))
        if len(signal_size) != dictionary.dim:
            raise ValueError(f"signal_size must have {dictionary.dim} entries, got {signal_size}")
        dictionary.check_signal(torch.empty(1, dictionary.in_channels, *signal_size), "a signal of signal_size")
        code_shape = (n, dictionary.n_atoms, *dictionary.code_size(signal_size))
    elif isinstance(dictionary, LinearDictionary):
        if signal_size is not None:
            raise ValueError("signal_size applies only to a ConvDictionary")
        code_shape = (n, dictionary.n_atoms)
    else:
        raise TypeError(f"unsupported dictionary type {type(dictionary).__name__}")
    per_sample = 1
    for s in code_shape[1:]:
        per_sample *= s
    if isinstance(sparsity, bool) or not isinstance(sparsity, Integral):
        raise TypeError(f"sparsity must be an int (non-zeros per code), got {type(sparsity).__name__}")
    if not 1 <= sparsity <= per_sample:
        raise ValueError(f"sparsity must be between 1 and the code size {per_sample}, got {sparsity}")

    generator = torch.Generator().manual_seed(seed)
    # random support: the first `sparsity` entries of a random permutation, per sample
    order = torch.rand(n, per_sample, generator=generator, dtype=torch.float64).argsort(dim=1)
    support = torch.zeros(n, per_sample, dtype=torch.bool)
    support.scatter_(1, order[:, :sparsity], True)
    magnitude = 1 + torch.rand(n, per_sample, generator=generator, dtype=torch.float64)
    sign = torch.ones(n, per_sample, dtype=torch.float64) if nonneg else \
        torch.randint(0, 2, (n, per_sample), generator=generator).to(torch.float64) * 2 - 1
    z = (support * magnitude * sign).reshape(code_shape)
    eps = torch.randn(code_shape[:1] + _signal_shape(dictionary, signal_size), generator=generator,
                      dtype=torch.float64)
    weight = dictionary.weight
    z = z.to(dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        clean = dictionary.synthesize(z, output_size=signal_size)
    x = clean + noise * eps.to(dtype=weight.dtype, device=weight.device)
    return PlantedCodes(x=x, z=z, clean=clean)


def _signal_shape(dictionary, signal_size) -> tuple:
    if isinstance(dictionary, ConvDictionary):
        return (dictionary.in_channels, *signal_size)
    return (dictionary.n_features,)


# ---------------------------------------------------------------------------------------------
# MNIST-1D (appended for chapters 7 and 8)


@dataclass
class MNIST1DSplit:
    """The MNIST-1D train/test split as tensors (the generator's own 80/20 split and standardization)."""
    x_train: torch.Tensor   # (N_train, 1, 40)
    y_train: torch.Tensor   # (N_train,) int64 labels 0..9
    x_test: torch.Tensor    # (N_test, 1, 40)
    y_test: torch.Tensor    # (N_test,) int64 labels 0..9

    @property
    def n_classes(self) -> int:
        return 10


_MNIST1D_CACHE: dict = {}


def load_mnist1d(*, seed: int = 42, num_samples: int = 5000, dtype: torch.dtype = torch.float32,
                 device=None) -> MNIST1DSplit:
    r"""MNIST-1D :cite:p:`greydanus2020scaling`, generated procedurally and offline, as ``(N, 1, 40)`` tensors.

    Calls ``mnist1d.data.make_dataset`` with the package's default arguments except ``seed`` and
    ``num_samples`` (never ``get_dataset``, which downloads): ten 1-D digit templates padded, scaled,
    translated, sheared and corrupted by correlated and i.i.d. noise, 80 % train / 20 % test, the
    whole set standardized to mean 0 and standard deviation 1. ``make_dataset`` reseeds NumPy's and
    Python's global generators; their states are saved and restored, so callers' random streams are
    untouched. Generated sets are cached in memory per ``(seed, num_samples)``. Used by chapter 7 (the
    training of ``eq-ch7-network``).
    """
    seed = _check_seed(seed)
    if isinstance(num_samples, bool) or not isinstance(num_samples, Integral):
        raise TypeError(f"num_samples must be an int, got {type(num_samples).__name__}")
    if num_samples < 50:
        raise ValueError(f"num_samples must be >= 50 (5 per class in the test split), got {num_samples}")
    _check_float_dtype(dtype)
    key = (seed, int(num_samples))
    if key not in _MNIST1D_CACHE:
        import random

        import numpy as np
        try:
            from mnist1d.data import get_dataset_args, make_dataset
        except ImportError as err:
            raise ImportError("cscnb.data.load_mnist1d needs the mnist1d package: pip install mnist1d") from err
        args = get_dataset_args()
        args.seed, args.num_samples = seed, int(num_samples)
        python_state, numpy_state = random.getstate(), np.random.get_state()
        try:
            raw = make_dataset(args)
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
        _MNIST1D_CACHE[key] = tuple(torch.as_tensor(np.asarray(raw[name]), dtype=torch.float64 if name[0] == "x"
                                                    else torch.int64) for name in ("x", "y", "x_test", "y_test"))
    x_train, y_train, x_test, y_test = _MNIST1D_CACHE[key]
    return MNIST1DSplit(x_train=x_train.unsqueeze(1).to(dtype=dtype, device=device), y_train=y_train.to(device=device),
                        x_test=x_test.unsqueeze(1).to(dtype=dtype, device=device), y_test=y_test.to(device=device))
