r"""The scikit-learn 8×8 digits as a stratified, standardized train/test split.

Nothing here touches the network: the digits ship with scikit-learn. Deterministic given ``seed``.
"""
from __future__ import annotations

import torch

from ..core.validation import check_float_dtype, check_number, nonneg_int
from .split import Split, stratified_mask

__all__ = ["load_digits"]


def load_digits(*, test_fraction: float = 0.25, val_fraction: float = 0.0, seed: int = 0,
                dtype: torch.dtype = torch.float32, device=None) -> Split:
    r"""The 1797 scikit-learn 8×8 digits :cite:p:`pedregosa2011scikit`, split and standardized.

    The split is stratified: from every class, ``round(test_fraction · n_class)`` images drawn
    with a ``torch.Generator`` seeded by ``seed`` go to the test set. Pixel values (0..16) are
    standardized with two scalars computed on the training images only,

    .. math:: \tilde x = (x - m_{\text{train}}) / s_{\text{train}},

    where :math:`m_{\text{train}}` and :math:`s_{\text{train}}` are the mean and standard deviation
    over all training pixels. Scalars (not per-pixel statistics) keep the images translation-
    consistent for convolutions, and the always-zero border pixels would have zero per-pixel
    variance. With ``val_fraction > 0``, ``round(val_fraction · n_class)`` of every class's training
    images (drawn with the same generator, after the test split) form the validation part, and the
    standardization uses the remaining training images only. Used by chapter 4 (``eq-ch4-logistic``)
    and later chapters.
    """
    test_fraction = check_number(test_fraction, "test_fraction", minimum=0, maximum=1, open_minimum=True,
                                 open_maximum=True)
    val_fraction = check_number(val_fraction, "val_fraction", minimum=0, maximum=1, open_maximum=True)
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
    is_test = stratified_mask(labels, test_fraction, generator)
    x_train, y_train, x_test, y_test = images[~is_test], labels[~is_test], images[is_test], labels[is_test]
    x_val = y_val = None
    if val_fraction > 0:
        is_val = stratified_mask(y_train, val_fraction, generator)
        x_train, y_train, x_val, y_val = x_train[~is_val], y_train[~is_val], x_train[is_val], y_train[is_val]
    mean, std = x_train.mean(), x_train.std()

    def prepare(images):
        return None if images is None else ((images - mean) / std).to(dtype=dtype, device=device)

    def move(labels):
        return None if labels is None else labels.to(device=device)

    return Split(x_train=prepare(x_train), y_train=move(y_train), x_test=prepare(x_test), y_test=move(y_test),
                 num_classes=10, x_val=prepare(x_val), y_val=move(y_val), mean=float(mean), std=float(std))
