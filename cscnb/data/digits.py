r"""The scikit-learn 8×8 digits as a stratified, standardized train/test split.

Nothing here touches the network: the digits ship with scikit-learn. Deterministic given ``seed``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.validation import check_float_dtype, check_number, nonneg_int

__all__ = ["DigitsSplit", "load_digits"]


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
    test_fraction = check_number(test_fraction, "test_fraction", minimum=0, maximum=1, open_minimum=True,
                                 open_maximum=True)
    seed = nonneg_int(seed, "seed")
    check_float_dtype(dtype)
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as err:  # scikit-learn is an optional ("book"/"test") dependency
        raise ImportError("cscnb.data.load_digits needs scikit-learn: pip install scikit-learn") from err
    bunch = _sk_load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float64).unsqueeze(1)  # (1797, 1, 8, 8)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    generator = torch.Generator().manual_seed(seed)
    is_test = _stratified_test_indices(labels, test_fraction, generator)
    x_train, x_test = images[~is_test], images[is_test]
    mean, std = x_train.mean(), x_train.std()
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    return DigitsSplit(
        x_train=x_train.to(dtype=dtype, device=device), y_train=labels[~is_test].to(device=device),
        x_test=x_test.to(dtype=dtype, device=device), y_test=labels[is_test].to(device=device),
        mean=float(mean), std=float(std))
