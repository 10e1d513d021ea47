r"""Layer-by-layer pursuits of the ML-CSC model (chapter 6): layered thresholding and layered basis pursuit.

A signal of the ML-CSC model :cite:p:`papyan2017convolutional` is :math:`x = \Gamma_0 = D_1\Gamma_1`
with :math:`\Gamma_{i-1} = D_i\Gamma_i` (chapter 6, ``eq-ch6-mlcsc``; :mod:`cscnb.mlcsc.chain`).
The pursuits here estimate the codes one layer at a time, each from the previous layer's estimate:
layered thresholding (one thresholding step per layer, exactly a CNN's forward pass) and layered
basis pursuit (one Lasso per layer). Codes are returned as lists ``[Γ_1, ..., Γ_L]`` (the signal
:math:`\Gamma_0 = x` is not repeated).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..core.dictionary import Dictionary
from ..core.prox import nonneg_soft_threshold, soft_threshold
from ..solvers.lasso import solve
from .chain import check_dictionaries, check_lams, check_signal, per_layer

__all__ = ["layered_thresholding", "layered_basis_pursuit"]


# ---------------------------------------------------------------------------------------------
# the forward pass


def layered_thresholding(dictionaries: Sequence[Dictionary], x: torch.Tensor, thresholds, *,
                         nonneg: bool = True) -> list:
    r"""Layered thresholding: the ML-CSC pursuit that is exactly a CNN's forward pass.

    .. math:: \hat\Gamma_0 = x,\qquad
              \hat\Gamma_i = \operatorname{ReLU}\big(D_i^\top\hat\Gamma_{i-1} - \beta_i\big)
              \quad\Big(\text{or } \mathcal S_{\beta_i}\big(D_i^\top\hat\Gamma_{i-1}\big)
              \text{ if not } \texttt{nonneg}\Big),\quad i = 1,\dots,L,

    i.e. the one-step (thresholding) estimate of every layer's code from the previous layer's
    estimate :cite:p:`papyan2017convolutional`. With ``ConvDictionary`` layers,
    :math:`D_i^\top` is ``conv2d`` (or ``conv1d``), so ``nonneg=True`` is a plain CNN:
    convolutions with bias :math:`-\beta_i`, each followed by ReLU. Implements chapter 6,
    equation ``eq-ch6-layered-thresholding`` (theorem ``thm-ch6-cnn-forward``).

    Args:
        dictionaries: list of ``LinearDictionary``/``ConvDictionary`` :math:`[D_1,\dots,D_L]`
        x: signal batch for :math:`D_1`
        thresholds: list of :math:`L` non-negative thresholds :math:`\beta_i`, each a number or a
            per-atom tensor of shape ``(n_atoms_i,)`` (tensors keep their autograd graph)
        nonneg: ReLU with bias (default) or the two-sided soft threshold

    Returns:
        list of the :math:`L` codes :math:`[\hat\Gamma_1,\dots,\hat\Gamma_L]`.
    """
    dictionaries = check_dictionaries(dictionaries)
    check_signal(dictionaries, x)
    if not isinstance(nonneg, bool):
        raise TypeError(f"nonneg must be a bool, got {type(nonneg).__name__}")
    betas = per_layer(thresholds, dictionaries, "thresholds")
    shrink = nonneg_soft_threshold if nonneg else soft_threshold
    codes, gamma = [], x
    for d, beta in zip(dictionaries, betas, strict=True):
        gamma = shrink(d.analyze(gamma), beta)
        codes.append(gamma)
    return codes


def layered_basis_pursuit(dictionaries: Sequence[Dictionary], x: torch.Tensor, lams, *, nonneg: bool = False,
                          **solve_kwargs) -> list:
    r"""Layered basis pursuit: one Lasso per layer, each coding the previous layer's estimate.

    .. math:: \hat\Gamma_0 = x,\qquad \hat\Gamma_i = \argmin_{\Gamma}\ \tfrac12\|\hat\Gamma_{i-1} - D_i\Gamma\|_2^2
              + \lambda_i\|\Gamma\|_1\quad(\Gamma \ge 0 \text{ if } \texttt{nonneg}),

    the layer-by-layer pursuit of :cite:t:`papyan2017convolutional` that replaces each
    thresholding step of :func:`layered_thresholding` by a full :func:`cscnb.solve`. Implements
    chapter 6, equation ``eq-ch6-layered-bp``. ``lams`` has one entry per layer (number or
    per-atom tensor); ``solve_kwargs`` (``method``, ``n_iter``, ``tol``, ...) go to every solve.
    Returns ``[Γ̂_1, ..., Γ̂_L]``.
    """
    dictionaries = check_dictionaries(dictionaries)
    check_signal(dictionaries, x)
    lams = check_lams(lams, dictionaries)
    for forbidden in ("z0", "history", "lam"):
        if forbidden in solve_kwargs:
            raise ValueError(f"{forbidden} cannot be passed to layered_basis_pursuit (it differs per layer)")
    codes, gamma = [], x
    for d, lam in zip(dictionaries, lams, strict=True):
        # a per-atom conv λ was reshaped to (n_atoms, 1, ...); solve wants (n_atoms,) or a scalar
        lam_arg = lam.reshape(-1) if lam.ndim > 0 else lam
        gamma = solve(d, gamma, lam_arg, nonneg=nonneg, **solve_kwargs).z
        codes.append(gamma)
    return codes

