r"""MNIST-1D :cite:p:`greydanus2020scaling`, generated procedurally and offline (chapters 7 and 11).

Nothing here touches the network: the ``mnist1d`` package generates the set from a seed.
"""
from __future__ import annotations

import torch

from ..core.validation import check_float_dtype, check_int, check_number, nonneg_int
from .split import Split

__all__ = ["load_mnist1d"]


_MNIST1D_CACHE: dict = {}


def load_mnist1d(*, seed: int = 42, num_samples: int = 5000, val_fraction: float = 0.0, val_seed: int = 0,
                 dtype: torch.dtype = torch.float32, device=None) -> Split:
    r"""MNIST-1D :cite:p:`greydanus2020scaling`, generated procedurally and offline, as ``(N, 1, 40)`` tensors.

    Calls ``mnist1d.data.make_dataset`` with the package's default arguments except ``seed`` and
    ``num_samples`` (never ``get_dataset``, which downloads): ten 1-D digit templates padded, scaled,
    translated, sheared and corrupted by correlated and i.i.d. noise, 80 % train / 20 % test, the
    whole set standardized to mean 0 and standard deviation 1. ``make_dataset`` reseeds NumPy's and
    Python's global generators; their states are saved and restored, so callers' random streams are
    untouched. Generated sets are cached in memory per ``(seed, num_samples)``. Used by chapters 7 (the
    training of ``eq-ch7-network``) and 11. With ``val_fraction > 0`` a stratified validation part of the
    training samples (drawn with a generator seeded by ``val_seed``) is held out for model selection.
    """
    seed = nonneg_int(seed, "seed")
    num_samples = check_int(num_samples, "num_samples", minimum=50,
                            expected="an int >= 50 (5 per class in the test split)")
    val_fraction = check_number(val_fraction, "val_fraction", minimum=0, maximum=1, open_maximum=True)
    val_seed = nonneg_int(val_seed, "val_seed")
    check_float_dtype(dtype)
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
    split = Split(x_train=x_train.unsqueeze(1).to(dtype=dtype, device=device), y_train=y_train.to(device=device),
                  x_test=x_test.unsqueeze(1).to(dtype=dtype, device=device), y_test=y_test.to(device=device),
                  num_classes=10)
    return split.with_validation(val_fraction, val_seed) if val_fraction > 0 else split
