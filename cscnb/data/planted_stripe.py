r"""Planted convolutional codes with a bounded stripe norm: :math:`x = Dz + \sigma\varepsilon`,
:math:`\|z\|_{0,\infty}^{s} \le s`.

The local sparsity of convolutional sparse coding (chapters 6, 9 and 10) counts the non-zeros of the densest
*stripe*, the :math:`2k - 1` code positions (all channels) whose atoms overlap one atom
(:func:`cscnb.theory.stripe.stripe_norm`). Codes drawn here have many non-zeros in total but at most
``stripe_sparsity`` in every stripe, so the stripe conditions of chapter 10 can hold where the global ones fail.
"""
from __future__ import annotations

import torch

from ..core.dictionary import ConvDictionary
from ..core.validation import check_bool, nonneg_int, nonneg_number, positive_int
from .planted import PlantedCodes

__all__ = ["planted_stripe_codes"]


def planted_stripe_codes(dictionary: ConvDictionary, n: int, stripe_sparsity: int, n_nonzeros: int, signal_size, *,
                         nonneg: bool = False, noise: float = 0.0, seed: int = 0) -> PlantedCodes:
    r"""Draw ``n`` 1-D signals :math:`x = Dz + \sigma\varepsilon` whose codes have stripe norm :math:`\le s`.

    For each code, (atom, position) pairs are visited in a random order and a non-zero is placed when every
    stripe (code positions :math:`q - (k-1), \dots, q + (k-1)`, all atoms; positions outside the code are
    empty) keeps at most ``stripe_sparsity`` non-zeros, until ``n_nonzeros`` are placed or no pair is left.
    Magnitudes are uniform in :math:`[1, 2]` with random signs (positive if ``nonneg``), as in
    :func:`cscnb.planted_sparse_codes`; :math:`\varepsilon` is standard Gaussian and :math:`\sigma` = ``noise``.
    Needs a 1-D ``ConvDictionary`` with stride 1 and dilation 1; ``signal_size`` is the signals' length.
    Deterministic given ``seed``. Used by chapter 10 (``eq-ch10-stripe-recursion``).
    """
    if not isinstance(dictionary, ConvDictionary):
        raise TypeError(f"dictionary must be a cscnb.ConvDictionary, got {type(dictionary).__name__}")
    if dictionary.dim != 1 or set(dictionary.stride) != {1} or set(dictionary.dilation) != {1}:
        raise ValueError("planted_stripe_codes needs a 1-D ConvDictionary with stride 1 and dilation 1")
    n, s = positive_int(n, "n"), positive_int(stripe_sparsity, "stripe_sparsity")
    n_nonzeros, length = positive_int(n_nonzeros, "n_nonzeros"), positive_int(signal_size, "signal_size")
    nonneg, noise, seed = check_bool(nonneg, "nonneg"), nonneg_number(noise, "noise"), nonneg_int(seed, "seed")
    dictionary.check_signal(torch.empty(1, dictionary.in_channels, length), "a signal of signal_size")
    n_atoms, half = dictionary.n_atoms, dictionary.kernel_size[0] - 1
    positions = dictionary.code_size((length,))[0]
    generator = torch.Generator().manual_seed(seed)
    order = torch.rand(n, n_atoms * positions, generator=generator, dtype=torch.float64).argsort(dim=1)
    magnitude = 1 + torch.rand(n, n_atoms, positions, generator=generator, dtype=torch.float64)
    sign = torch.ones_like(magnitude) if nonneg else \
        torch.randint(0, 2, magnitude.shape, generator=generator).to(torch.float64) * 2 - 1
    support = torch.zeros(n, n_atoms, positions, dtype=torch.bool)
    for b in range(n):
        stripe = [0] * positions            # non-zeros in the stripe centred at each position
        placed = 0
        for flat in order[b].tolist():
            atom, q = divmod(flat, positions)
            lo, hi = max(q - half, 0), min(q + half, positions - 1)
            if max(stripe[lo:hi + 1]) >= s:
                continue
            support[b, atom, q] = True
            for p in range(lo, hi + 1):
                stripe[p] += 1
            placed += 1
            if placed == n_nonzeros:
                break
    z = (support * magnitude * sign).to(dtype=dictionary.weight.dtype, device=dictionary.weight.device)
    eps = torch.randn(n, dictionary.in_channels, length, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        clean = dictionary.synthesize(z, output_size=(length,))
    x = clean + noise * eps.to(dtype=clean.dtype, device=clean.device)
    return PlantedCodes(x=x, z=z, clean=clean)
