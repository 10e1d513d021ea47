r"""Effective atoms of stacked dilated convolutional dictionaries (chapter 8, ``thm-ch8-effective-atoms``).

In the ML-CSC model :math:`x = D_1\Gamma_1,\ \Gamma_1 = D_2\Gamma_2, \dots` the signal is synthesised from
the deepest code by the product :math:`D_1D_2\cdots D_i`, the *effective dictionary* of layer :math:`i`.
For stride-1 convolutions with kernels :math:`w_\ell` dilated at rates :math:`r_\ell` the product is one
convolution whose kernel is the full convolution of the zero-filled dilated kernels (z-transform
:math:`H(z) = W_1(z^{r_1})W_2(z^{r_2})\cdots W_i(z^{r_i})`, a product of channel matrices). This module
computes that kernel (:func:`effective_kernel`), the tap offsets it can occupy
(:func:`dilation_support`) and the mutual coherence of the circular convolutional dictionary it
defines (:func:`circular_conv_coherence`). Chapter 8 checks all three against products of the explicit
matrices :meth:`cscnb.Dictionary.matrix`.
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from ..core.validation import positive_int

__all__ = ["effective_kernel", "dilation_support", "circular_conv_coherence"]

_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d}


def _check_weight(weight, name: str) -> torch.Tensor:
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (C_out, C_in, *kernel), got {type(weight).__name__}")
    if weight.ndim not in (3, 4) or not weight.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor of shape (C_out, C_in, k) or "
                         f"(C_out, C_in, kh, kw), got shape {tuple(weight.shape)} and dtype {weight.dtype}")
    return weight


def _dilate(weight: torch.Tensor, rate: int) -> torch.Tensor:
    out = weight.new_zeros(*weight.shape[:2], *(rate * (k - 1) + 1 for k in weight.shape[2:]))
    out[(slice(None), slice(None)) + (slice(None, None, rate),) * (weight.ndim - 2)] = weight
    return out


def effective_kernel(weights, dilations) -> torch.Tensor:
    r"""The kernel of :math:`D_1D_2\cdots D_i` for convolutional :math:`D_\ell` (chapter 8, ``eq-ch8-effective``).

    ``weights[ℓ-1]`` is layer :math:`\ell`'s weight in the :class:`~cscnb.ConvDictionary` layout
    ``(C_ℓ, C_{ℓ-1}, *kernel)`` (atoms of layer :math:`\ell`, channels of the code below) and
    ``dilations[ℓ-1]`` its rate. Returns the weight ``(C_i, C_0, *span)`` with
    :math:`\text{span}_a = 1 + \sum_\ell r_\ell(k_{\ell,a} - 1)`: the synthesis of
    ``ConvDictionary(h, padding=P)`` equals the product of the syntheses of
    ``ConvDictionary(w_ℓ, padding=p_ℓ, dilation=r_ℓ)`` with :math:`P = \sum_\ell p_\ell` (padding 0:
    "full" synthesis; circular "same" padding :math:`p_\ell = r_\ell(k_\ell-1)/2`: exactly, as long as
    every padding fits the signal).
    """
    if not isinstance(weights, (list, tuple)) or not weights:
        raise TypeError("weights must be a non-empty list of convolution weights (C_out, C_in, *kernel)")
    if not isinstance(dilations, (list, tuple)) or len(dilations) != len(weights):
        raise ValueError(f"dilations must be a list with one rate per weight ({len(weights)}), got {dilations!r}")
    weights = [_check_weight(w, f"weights[{i}]") for i, w in enumerate(weights)]
    rates = [positive_int(r, "dilations") for r in dilations]
    dim = weights[0].ndim - 2
    h = _dilate(weights[0], rates[0])
    for i, (w, r) in enumerate(zip(weights[1:], rates[1:], strict=True), 1):
        if w.ndim != dim + 2 or w.shape[1] != h.shape[0]:
            raise ValueError(f"weights[{i}] has shape {tuple(w.shape)}; expected {dim + 2} dimensions and "
                             f"{h.shape[0]} input channels (the atoms of weights[{i - 1}])")
        # full convolution over the taps, summed over the shared channel: (C_l, C_{l-1}) * (C_{l-1}, C_0)
        h = _CONV_T[dim](_dilate(w, r), h)
    return h


def dilation_support(kernel_size: int, dilations) -> tuple:
    r"""The offsets :math:`S = \{\sum_\ell r_\ell j_\ell : 0 \le j_\ell < k\}` an effective atom can occupy (1-D).

    Sorted tuple. :math:`\max S + 1 = 1 + (k-1)\sum_\ell r_\ell` is the receptive field (span) of the
    atom; :math:`|S| \le \min(k^i, 1 + (k-1)\sum_\ell r_\ell)`. For generic kernels the support of
    :func:`effective_kernel` is exactly :math:`S` (chapter 8, ``thm-ch8-effective-atoms``).
    """
    k = positive_int(kernel_size, "kernel_size")
    if not isinstance(dilations, (list, tuple)) or not dilations:
        raise TypeError(f"dilations must be a non-empty list of rates, got {dilations!r}")
    rates = [positive_int(r, "dilations") for r in dilations]
    digits = itertools.product(range(k), repeat=len(rates))
    offsets = {sum(r * j for r, j in zip(rates, js, strict=True)) for js in digits}
    return tuple(sorted(offsets))


def circular_conv_coherence(kernel: torch.Tensor, signal_size) -> float:
    r"""Mutual coherence of the circular convolutional dictionary with weight ``kernel`` on signals of ``signal_size``.

    The atoms are all circular shifts of the ``C_out`` kernels ``kernel[a]`` (each ``(C_in, *taps)``); the
    coherence is :math:`\max |\langle d, d'\rangle| / (\|d\|\|d'\|)` over pairs of distinct atoms, from the
    circular cross-correlations of every kernel pair (FFTs of length ``signal_size``). Requires
    ``signal_size`` at least the kernel's span on every axis and no all-zero kernel.
    """
    kernel = _check_weight(kernel, "kernel")
    dim = kernel.ndim - 2
    if not isinstance(signal_size, (tuple, list)) or len(signal_size) != dim:
        raise TypeError(f"signal_size must be a tuple of {dim} ints, got {signal_size!r}")
    sizes = tuple(positive_int(n, "signal_size") for n in signal_size)
    if any(n < k for n, k in zip(sizes, kernel.shape[2:], strict=True)):
        raise ValueError(f"signal_size {sizes} is smaller than the kernel {tuple(kernel.shape[2:])}")
    norms = kernel.flatten(1).norm(dim=1)
    if (norms == 0).any():
        raise ValueError("kernel has an all-zero atom; its coherence is undefined")
    axes = tuple(range(2, 2 + dim))
    spectrum = torch.fft.fftn(kernel, s=sizes, dim=axes)                        # (A, C, *n)
    cross = torch.einsum("ac...,bc...->ab...", spectrum, spectrum.conj())       # (A, A, *n)
    corr = torch.fft.ifftn(cross, dim=axes).real.abs() / (norms[:, None] * norms[None, :]).view(
        *norms.shape, norms.shape[0], *(1,) * dim)
    n_atoms = kernel.shape[0]
    corr[(torch.arange(n_atoms), torch.arange(n_atoms)) + (0,) * dim] = 0.0   # an atom with itself
    return float(corr.max())
