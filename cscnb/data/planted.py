r"""Planted sparse-coding problems: signals :math:`x = Dz + \sigma\varepsilon` with known sparse codes.

Generated from a seed (chapter 1, ``eq-generative-model``), for any dense or convolutional dictionary.
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import torch

from ..core.dictionary import ConvDictionary, Dictionary, LinearDictionary
from ..core.validation import check_int, nonneg_int, nonneg_number, positive_int

__all__ = ["PlantedCodes", "planted_sparse_codes"]


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
        raise TypeError("dictionary must be a cscnb LinearDictionary or ConvDictionary, "
                        f"got {type(dictionary).__name__}")
    n = positive_int(n, "n")
    noise = nonneg_number(noise, "noise")
    seed = nonneg_int(seed, "seed")
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
    sparsity = check_int(sparsity, "sparsity", minimum=1, maximum=per_sample,
                         expected=f"an int between 1 and the code size {per_sample} (non-zeros per code)")

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
