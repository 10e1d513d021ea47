r"""Coherence, uniqueness and stability bounds of the ML-CSC model (chapter 6).

Each layer :math:`\Gamma_{i-1} = D_i\Gamma_i` is a sparse-coding model with unit-norm atoms, so the
single-layer bounds apply layer by layer, with the previous layer's estimation error acting as
noise. :cite:t:`papyan2017convolutional` state (in their abstract) that uniqueness and stable
estimation hold under local sparsity conditions; the bounds here, with their constants, are our
derivation. This module holds the *global* forms (:math:`s_i = \|\Gamma_i\|_0`, global coherence);
the local (stripe) chains are in :mod:`cscnb.mlcsc.stripe_bounds`, the stripe norm and its
exhaustive checks in :mod:`cscnb.theory.stripe`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..core.dictionary import ConvDictionary
from ..core.validation import int_tuple, nonneg_number, positive_int, positive_number
from ..theory.bounds import uniqueness_bound

__all__ = ["conv_mutual_coherence", "stripe_uniqueness_bound", "thresholding_success_bound",
           "thresholding_interval", "stability_chain"]


def _coherence(mu) -> float:
    mu = positive_number(mu, "mu")
    if mu > 1:
        raise ValueError(f"mu is a mutual coherence, so it lies in (0, 1], got {mu}")
    return mu


def conv_mutual_coherence(dictionary: ConvDictionary, signal_size=None) -> float:
    r"""Mutual coherence of the global operator of a convolutional dictionary, from correlations.

    .. math:: \mu(D) = \max_{(a,p) \ne (b,q)} \frac{|\langle d_a(\cdot - p), d_b(\cdot - q)\rangle|}{\|d_a\|\,\|d_b\|},

    the largest normalized inner product between distinct columns of the global matrix :math:`D`
    (every atom :math:`d_a` at every shift :math:`p`), computed without forming :math:`D`: the inner
    product of two shifted atoms is their cross-correlation at lag :math:`q - p`
    (``conv1d``/``conv2d`` of the atoms with themselves). ``signal_size`` limits the lags to those
    two code positions can realize (``None``: every lag up to the kernel size, i.e. a long signal).
    Needs stride 1, dilation 1 and no padding (then every column is a whole atom). Implements
    chapter 6, equation ``eq-ch6-conv-coherence``.
    """
    if not isinstance(dictionary, ConvDictionary):
        raise TypeError(f"dictionary must be a cscnb ConvDictionary, got {type(dictionary).__name__}")
    if set(dictionary.stride) != {1} or set(dictionary.dilation) != {1} or set(dictionary.padding) != {0}:
        raise ValueError("conv_mutual_coherence needs stride=1, dilation=1 and padding=0 (whole-atom columns)")
    kernel = dictionary.kernel_size
    if signal_size is None:
        max_lag = tuple(k - 1 for k in kernel)
    else:
        size = int_tuple(signal_size, dictionary.dim, "signal_size")
        if any(n < k for n, k in zip(size, kernel, strict=True)):
            raise ValueError(f"signal_size {size} is smaller than the kernel {kernel}")
        max_lag = tuple(min(k - 1, n - k) for n, k in zip(size, kernel, strict=True))  # code positions: n - k + 1
    w = dictionary.weight.detach()
    norms = w.reshape(w.shape[0], -1).norm(dim=1)
    if (norms == 0).any():
        raise ValueError("dictionary has an all-zero atom; its coherence is undefined")
    conv = F.conv1d if dictionary.dim == 1 else F.conv2d
    corr = conv(w, w, padding=tuple(k - 1 for k in kernel))  # (atoms, atoms, *lags): every pair, every lag
    corr = corr / (norms[:, None] * norms[None, :]).reshape(w.shape[0], w.shape[0], *([1] * dictionary.dim))
    # keep realizable lags; drop each atom's zero-lag correlation with itself (= 1)
    index = tuple(slice(k - 1 - m, k + m) for k, m in zip(kernel, max_lag, strict=True))
    corr = corr[(slice(None), slice(None)) + index].abs().clone()
    centre = tuple(m for m in max_lag)
    diagonal = torch.arange(w.shape[0])
    corr[(diagonal, diagonal) + centre] = 0
    if corr.numel() == 0 or (w.shape[0] == 1 and all(m == 0 for m in max_lag)):
        raise ValueError("the global dictionary has a single column; its coherence is undefined")
    return float(corr.max())


def stripe_uniqueness_bound(mu) -> float:
    r"""Uniqueness threshold :math:`\tfrac12\big(1 + 1/\mu(D_i)\big)` of the ML-CSC layers (``eq-ch6-uniqueness``).

    If every layer has :math:`\|\Gamma_i\|_0 < \tfrac12(1 + 1/\mu(D_i))`, the ML-CSC representation is
    unique (chapter 6, ``thm-ch6-uniqueness``); for convolutional dictionaries the same threshold on
    the stripe norm :math:`\|\Gamma_i\|_{0,\infty}^{s}` gives uniqueness among stripe-sparse codes
    (chapter 9, ``thm-ch9-stripe``). Both are our derivations. The value is
    :func:`cscnb.theory.uniqueness_bound` (one implementation); this name requires :math:`0 < \mu \le 1`.
    """
    return uniqueness_bound(_coherence(mu))


def thresholding_success_bound(mu, gamma_min=1.0, gamma_max=1.0, noise=0.0) -> float:
    r"""Largest sparsity for which one thresholding step recovers the support (chapter 6, ``eq-ch6-lt-condition``).

    .. math:: s < \tfrac12\Big(1 + \frac{1}{\mu}\frac{|\Gamma^{\min}|}{|\Gamma^{\max}|}\Big)
              - \frac{1}{\mu}\frac{\eta}{|\Gamma^{\max}|},

    for :math:`y = D\Gamma + e` with unit-norm atoms, :math:`\|\Gamma\|_0 = s`, non-zeros of magnitude in
    :math:`[|\Gamma^{\min}|, |\Gamma^{\max}|]` and :math:`\|D^\top e\|_\infty \le \eta` (for instance
    :math:`\eta = \|e\|_2`). Then some threshold separates support from off-support
    (:func:`thresholding_interval`). Returns the right-hand side.
    """
    mu = _coherence(mu)
    gamma_min, gamma_max = positive_number(gamma_min, "gamma_min"), positive_number(gamma_max, "gamma_max")
    if gamma_min > gamma_max:
        raise ValueError(f"gamma_min ({gamma_min}) must not exceed gamma_max ({gamma_max})")
    noise = nonneg_number(noise, "noise")
    return 0.5 * (1 + gamma_min / (mu * gamma_max)) - noise / (mu * gamma_max)


def thresholding_interval(mu, sparsity, gamma_min, gamma_max, noise=0.0) -> tuple:
    r"""Thresholds :math:`\beta \in [\beta_{lo}, \beta_{hi})` that recover the support in one step; returns the pair
    :math:`(\beta_{lo}, \beta_{hi})`.

    .. math:: \beta_{lo} = s\,\mu\,|\Gamma^{\max}| + \eta, \qquad
              \beta_{hi} = |\Gamma^{\min}| - (s - 1)\,\mu\,|\Gamma^{\max}| - \eta ,

    the largest off-support and smallest on-support magnitude of :math:`D^\top y` in the worst case
    (chapter 6, ``eq-ch6-lt-condition``); the interval is non-empty exactly when
    :func:`thresholding_success_bound` holds.
    """
    mu = _coherence(mu)
    sparsity = positive_int(sparsity, "sparsity")
    gamma_min, gamma_max = positive_number(gamma_min, "gamma_min"), positive_number(gamma_max, "gamma_max")
    noise = nonneg_number(noise, "noise")
    return (sparsity * mu * gamma_max + noise, gamma_min - (sparsity - 1) * mu * gamma_max - noise)


def stability_chain(mus: Sequence, sparsities: Sequence, gamma_maxs: Sequence, thresholds: Sequence,
                    noise=0.0) -> list:
    r"""Error bounds :math:`[\varepsilon_0, \dots, \varepsilon_L]` of layered soft thresholding (``eq-ch6-stability``).

    .. math:: \varepsilon_0 = \eta,\qquad
              \varepsilon_i = \sqrt{s_i}\,\big(\varepsilon_{i-1} + \mu(D_i)(s_i - 1)|\Gamma_i^{\max}| + \beta_i\big),

    valid while every layer meets :func:`thresholding_success_bound` with noise
    :math:`\varepsilon_{i-1}` and :math:`\beta_i` lies in its :func:`thresholding_interval`: then
    :math:`\|\hat\Gamma_i - \Gamma_i\|_2 \le \varepsilon_i` (our derivation, chapter 6,
    ``thm-ch6-layered-thresholding``). The local version, with stripe norms and the per-atom count
    :math:`q_i`, is :func:`cscnb.mlcsc.thresholding_chain`.
    """
    n = len(mus) if isinstance(mus, (list, tuple)) else -1
    for name, seq in (("mus", mus), ("sparsities", sparsities), ("gamma_maxs", gamma_maxs), ("thresholds", thresholds)):
        if not isinstance(seq, (list, tuple)):
            raise TypeError(f"{name} must be a list or tuple with one entry per layer, got {type(seq).__name__}")
        if len(seq) != n or n == 0:
            raise ValueError(f"mus, sparsities, gamma_maxs and thresholds must have the same non-zero length; "
                             f"{name} has length {len(seq)}, mus has {n}")
    eps = [nonneg_number(noise, "noise")]
    for i, (mu, s, gmax, beta) in enumerate(zip(mus, sparsities, gamma_maxs, thresholds, strict=True)):
        mu = _coherence(mu)
        s = positive_int(s, f"sparsities[{i}]")
        gmax, beta = positive_number(gmax, f"gamma_maxs[{i}]"), nonneg_number(beta, f"thresholds[{i}]")
        eps.append(math.sqrt(s) * (eps[-1] + mu * (s - 1) * gmax + beta))
    return eps
