r"""Convergence rates of unrolled sparse coding: stripe (local) and noisy forms, deep chains (chapter 10).

LISTA-CP's layer :math:`z_{k+1} = \eta_{\theta_k}(z_k + W^\top(x - Dz_k))` with :math:`x = Dz^\star + e` has
input :math:`u = z^\star + (I - W^\top D)(z_k - z^\star) + W^\top e`. When :math:`w_i^\top d_i = 1`, atom
:math:`i` only meets the atoms :math:`j` with :math:`(W^\top D)_{ij} \ne 0`: for a convolutional dictionary
the atoms of its *stripe*. This module holds what chapter 10 derives from that identity (our
derivation, equations ``eq-ch10-stripe-recursion`` and ``eq-ch10-deep-chain``):

* :func:`rate_schedule` — the thresholds and the :math:`\ell_\infty` error bounds of one block of
  LISTA-CP layers, for codes of stripe sparsity :math:`s` and noise of patch norm :math:`\eta`:
  :math:`a_0 = B`, :math:`\theta_k = \tilde\mu s a_k + \omega\eta`,
  :math:`a_{k+1} = (2s - 1)\tilde\mu\,a_k + 2\omega\eta`;
* :func:`deep_rate_chain` — blocks composed: each block's error, seen through the next block's
  filters, is that block's noise (the chain of chapter 9's layered stability, for a network of finite depth);
* :func:`conv_generalized_coherence` and :func:`conv_generalized_coherence_weights` — the generalized
  coherence :math:`\tilde\mu(W, D)` when :math:`W^\top` and :math:`D` are convolutions, and the minimax
  convolutional encoder (one linear program per filter);
* :func:`window_counts` and :func:`noise_patch_norm` — the non-zeros and the :math:`\ell_2` norm of the densest
  window of consecutive positions (all channels): the patch quantities the noise term needs.

Convolutions here have whole-atom columns: stride 1, dilation 1 and no padding (the layout of
:func:`cscnb.mlcsc.bounds.conv_mutual_coherence`), so entry :math:`((a, q), (b, q'))` of :math:`W^\top D` is
the cross-correlation of filters :math:`w_a` and :math:`d_b` at lag :math:`q - q'`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core.validation import check_number, nonneg_int, nonneg_number, positive_int

__all__ = ["RateSchedule", "RateBlock", "rate_schedule", "deep_rate_chain", "conv_generalized_coherence",
           "conv_generalized_coherence_weights", "window_counts", "noise_patch_norm"]


@dataclass(frozen=True)
class RateSchedule:
    r"""Thresholds :math:`\theta_0..\theta_{K-1}` and :math:`\ell_\infty` error bounds :math:`a_0..a_K` of one block."""
    thresholds: torch.Tensor     # (K,) float64
    error_bounds: torch.Tensor   # (K + 1,) float64: ||z_k - z*||_inf <= a_k
    rho: float                   # (2s - 1) mu_tilde, the contraction factor
    floor: float                 # 2 omega eta / (1 - rho): the limit of a_k (inf if rho >= 1 and eta > 0)


def rate_schedule(mu_tilde, sparsity, bound, n_layers, *, noise=0.0, encoder_norm=1.0) -> RateSchedule:
    r"""Thresholds and :math:`\ell_\infty` error bounds of LISTA-CP for stripe-sparse codes with noise (chapter 10).

    .. math:: a_0 = B, \qquad \theta_k = \tilde\mu\, s\, a_k + \omega\eta, \qquad
              a_{k+1} = (2s - 1)\tilde\mu\, a_k + 2\omega\eta ,

    so :math:`a_k = B\rho^k + 2\omega\eta\,(1 - \rho^k)/(1 - \rho)` with :math:`\rho = (2s - 1)\tilde\mu`
    (chapter 10, ``eq-ch10-stripe-recursion``). Arguments: ``mu_tilde`` :math:`\tilde\mu \ge 0`, ``sparsity``
    :math:`s` (the stripe sparsity of the codes; the global sparsity for a dense dictionary), ``bound``
    :math:`B \ge \|z^\star\|_\infty`, ``n_layers`` :math:`K`, ``noise`` :math:`\eta`, the largest
    :math:`\ell_2` norm of the noise over the patches one encoder filter sees (:math:`\|e\|_2` for a dense
    dictionary; :func:`noise_patch_norm`), and ``encoder_norm`` :math:`\omega = \max_i \|w_i\|_2`. The recursion holds
    for every :math:`\rho`; it decays only when :math:`\rho < 1`.
    """
    mu_tilde, bound = nonneg_number(mu_tilde, "mu_tilde"), nonneg_number(bound, "bound")
    sparsity, n_layers = positive_int(sparsity, "sparsity"), positive_int(n_layers, "n_layers")
    noise, omega = nonneg_number(noise, "noise"), nonneg_number(encoder_norm, "encoder_norm")
    rho = (2 * sparsity - 1) * mu_tilde
    a = [float(bound)]
    thresholds = []
    for _ in range(n_layers):
        thresholds.append(mu_tilde * sparsity * a[-1] + omega * noise)
        a.append(rho * a[-1] + 2 * omega * noise)
    if noise * omega == 0:
        floor = 0.0
    elif rho < 1:
        floor = 2 * omega * noise / (1 - rho)
    else:
        floor = math.inf
    return RateSchedule(torch.tensor(thresholds, dtype=torch.float64), torch.tensor(a, dtype=torch.float64),
                        rho, floor)


@dataclass(frozen=True)
class RateBlock:
    r"""One block of a deep unrolled network, for :func:`deep_rate_chain`.

    ``mu_tilde`` :math:`\tilde\mu_i`, ``sparsity`` :math:`s_i` (stripe sparsity of :math:`\Gamma_i`), ``bound``
    :math:`B_i \ge \|\Gamma_i\|_\infty`, ``n_layers`` :math:`K_i`, ``encoder_norm`` :math:`\omega_i`, and
    ``patch_sparsity`` :math:`p_i`: the most non-zeros of :math:`\Gamma_i` that one filter of the *next* block
    sees (a window of its kernel size, all channels; :func:`window_counts`); for a dense next layer,
    :math:`\|\Gamma_i\|_0`. Unused for the last block.
    """
    mu_tilde: float
    sparsity: int
    bound: float
    n_layers: int
    encoder_norm: float = 1.0
    patch_sparsity: int = 1


def deep_rate_chain(blocks, noise=0.0) -> list:
    r"""The deep chain of chapter 10 (``eq-ch10-deep-chain``): one :class:`RateSchedule` per block.

    Block :math:`i` codes the previous block's output :math:`\hat\Gamma_{i-1} = D_i\Gamma_i + (\hat\Gamma_{i-1} -
    \Gamma_{i-1})`; its noise level is :math:`\eta_0` = ``noise`` for the first block and

    .. math:: \eta_i = \sqrt{p_i}\;a^{(i)}_{K_i}

    afterwards, because the error of block :math:`i` is supported on :math:`\operatorname{supp}(\Gamma_i)` with
    :math:`\ell_\infty` norm at most :math:`a^{(i)}_{K_i}`, and a filter of block :math:`i+1` sees at most
    :math:`p_i` of its entries. Returns ``[rate_schedule(block 1, noise=eta_0), ...]``.
    """
    if isinstance(blocks, RateBlock):
        blocks = [blocks]
    if not isinstance(blocks, (list, tuple)) or not blocks or not all(isinstance(b, RateBlock) for b in blocks):
        raise TypeError("blocks must be a non-empty list of cscnb.theory.rates.RateBlock")
    eta = nonneg_number(noise, "noise")
    schedules = []
    for i, block in enumerate(blocks):
        schedule = rate_schedule(block.mu_tilde, block.sparsity, block.bound, block.n_layers, noise=eta,
                                 encoder_norm=block.encoder_norm)
        schedules.append(schedule)
        p = positive_int(block.patch_sparsity, f"blocks[{i}].patch_sparsity")
        eta = math.sqrt(p) * float(schedule.error_bounds[-1])
    return schedules


def _check_filters(filters, name: str) -> torch.Tensor:
    if not isinstance(filters, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of filters (n_atoms, in_channels, *kernel)")
    if filters.ndim not in (3, 4):
        raise ValueError(f"{name} must have shape (n_atoms, in_channels, k) or (n_atoms, in_channels, kh, kw), "
                         f"got {tuple(filters.shape)}")
    if not filters.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {filters.dtype}")
    if not torch.isfinite(filters).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return filters


def _lags(kernel, max_lag):
    if max_lag is None:
        return tuple(k - 1 for k in kernel)
    if isinstance(max_lag, int) and not isinstance(max_lag, bool):
        max_lag = (max_lag,) * len(kernel)
    if not isinstance(max_lag, tuple) or len(max_lag) != len(kernel):
        raise TypeError(f"max_lag must be an int or a tuple of {len(kernel)} ints")
    return tuple(min(k - 1, nonneg_int(m, "max_lag")) for k, m in zip(kernel, max_lag, strict=True))


def _correlations(encoder: torch.Tensor, dictionary: torch.Tensor, max_lag) -> torch.Tensor:
    # corr[a, b, *lag] = <w_a placed at q, d_b placed at q - lag> = sum_{c,t} w_a[c, t] d_b[c, t + lag]
    kernel = tuple(dictionary.shape[2:])
    conv = F.conv1d if dictionary.ndim == 3 else F.conv2d
    corr = conv(dictionary, encoder, padding=tuple(k - 1 for k in kernel))      # (b, a, *lags)
    corr = corr.transpose(0, 1)                                                 # (a, b, *lags)
    index = tuple(slice(k - 1 - m, k + m) for k, m in zip(kernel, max_lag, strict=True))
    return corr[(slice(None), slice(None)) + index]


def conv_generalized_coherence(encoder: torch.Tensor, dictionary: torch.Tensor, *, max_lag=None,
                               rescale: bool = False, tol: float = 1e-8) -> float:
    r"""Generalized coherence of a convolutional encoder against a convolutional dictionary (chapter 10).

    .. math:: \tilde\mu(W, D) = \max_{(a, \ell) \ne (b, 0)}
              \Big|\sum_{c, t} w_a[c, t]\, d_b[c, t + \ell]\Big|
              \quad\text{with}\quad \langle w_a, d_a\rangle = 1,

    the largest off-diagonal entry of :math:`W^\top D` when both are convolutions with whole-atom columns
    (``eq-ch10-conv-coherence``). ``encoder`` and ``dictionary`` hold filters ``(n_atoms, in_channels, *kernel)``
    of the same shape; ``max_lag`` limits the lags :math:`|\ell|` to those two code positions can realise
    (default: :math:`k - 1`, a long signal). The normalisation :math:`\langle w_a, d_a\rangle = 1` is checked
    to ``tol``; ``rescale=True`` divides each :math:`w_a` by :math:`\langle w_a, d_a\rangle` first. With
    ``encoder = dictionary`` (unit-norm filters) it is the mutual coherence of the convolutional dictionary.
    """
    encoder, dictionary = _check_filters(encoder, "encoder"), _check_filters(dictionary, "dictionary")
    if encoder.shape != dictionary.shape:
        raise ValueError(f"encoder must have the dictionary's shape {tuple(dictionary.shape)}, "
                         f"got {tuple(encoder.shape)}")
    tol = check_number(tol, "tol", minimum=0)
    lags = _lags(dictionary.shape[2:], max_lag)
    corr = _correlations(encoder.detach(), dictionary.detach(), lags).clone()
    centre = lags
    atoms = torch.arange(corr.shape[0])
    diagonal = corr[(atoms, atoms) + centre]
    if rescale:
        if bool((diagonal.abs() <= tol).any()):
            raise ValueError("a filter has <w_a, d_a> = 0; it cannot be rescaled to <w_a, d_a> = 1")
        corr = corr / diagonal.reshape(-1, *([1] * (corr.ndim - 1)))
    elif not torch.allclose(diagonal, torch.ones_like(diagonal), rtol=0.0, atol=tol):
        raise ValueError(f"the encoder must satisfy <w_a, d_a> = 1 for every filter (max deviation "
                         f"{float((diagonal - 1).abs().max()):.3g}); pass rescale=True to normalise it")
    corr = corr.abs()
    corr[(atoms, atoms) + centre] = 0
    return float(corr.max())


def conv_generalized_coherence_weights(dictionary: torch.Tensor, *, max_lag=None) -> torch.Tensor:
    r"""The minimax convolutional encoder: for each filter :math:`a` one linear program (needs scipy),

    .. math:: \min_{w_a,\,t}\ t \quad\text{s.t.}\quad \Big|\sum_{c,t'} w_a[c,t']\,d_b[c,t'+\ell]\Big| \le t
              \ \ \big((b, \ell) \ne (a, 0)\big), \qquad \langle w_a, d_a\rangle = 1,

    over filters :math:`w_a` of the dictionary's shape; the largest optimum over :math:`a` is the smallest
    :func:`conv_generalized_coherence` a convolutional encoder can reach (chapter 10, ``eq-ch10-conv-coherence``).
    """
    dictionary = _check_filters(dictionary, "dictionary")
    try:
        import numpy as np
        from scipy.optimize import linprog
    except ImportError as error:  # scipy is not a core dependency
        raise ImportError("conv_generalized_coherence_weights needs scipy (pip install scipy)") from error
    d = dictionary.detach().to(torch.float64).cpu()
    n_atoms, size = d.shape[0], d[0].numel()
    lags = _lags(d.shape[2:], max_lag)
    basis = torch.eye(size, dtype=torch.float64).reshape(size, *d.shape[1:])
    rows = _correlations(basis, d, lags)                                   # (size, n_atoms, *lags): linear in w
    rows = rows.reshape(size, n_atoms, -1).permute(1, 2, 0).numpy()       # (n_atoms, n_lags, size)
    centre = int(np.ravel_multi_index(lags, tuple(2 * m + 1 for m in lags)))
    weights = np.zeros((n_atoms, size))
    cost = np.zeros(size + 1)
    cost[-1] = 1.0
    for a in range(n_atoms):
        keep = np.ones(rows.shape[:2], dtype=bool)
        keep[a, centre] = False
        others = rows[keep]                                                 # (n_constraints, size)
        minus_t = -np.ones((others.shape[0], 1))
        inequalities = np.vstack([np.hstack([others, minus_t]), np.hstack([-others, minus_t])])
        equality = np.append(rows[a, centre], 0.0)[None, :]
        result = linprog(cost, A_ub=inequalities, b_ub=np.zeros(inequalities.shape[0]), A_eq=equality,
                         b_eq=[1.0], bounds=[(None, None)] * size + [(0, None)], method="highs")
        if result.status != 0:
            raise RuntimeError(f"the linear program for filter {a} failed: {result.message}")
        weights[a] = result.x[:size]
    w = torch.as_tensor(weights, dtype=torch.float64).reshape(d.shape)
    w = w / (w * d).flatten(1).sum(dim=1).reshape(-1, *([1] * (d.ndim - 1)))   # <w_a, d_a> = 1 to round-off
    return w.to(dtype=dictionary.dtype, device=dictionary.device)


def _window_sums(values: torch.Tensor, window: int) -> torch.Tensor:
    # values (B, 1, L) -> sums over every window of `window` consecutive positions, (B, L - window + 1)
    ones = torch.ones(1, 1, window, dtype=values.dtype, device=values.device)
    return F.conv1d(values, ones).squeeze(1)


def window_counts(code: torch.Tensor, window: int, *, tol: float = 0.0) -> torch.Tensor:
    r"""Most non-zeros of ``code`` ``(B, channels, length)`` in a window of ``window`` positions (all channels).

    Shape ``(B,)``, int64; a coefficient counts when its magnitude exceeds ``tol``. It is :math:`p_i` of
    :class:`RateBlock` when ``window`` is the next layer's kernel size (chapter 10, ``eq-ch10-deep-chain``).
    A dense code ``(B, n)`` is one position: the count is :math:`\|z\|_0`.
    """
    if not isinstance(code, torch.Tensor):
        raise TypeError(f"code must be a torch.Tensor, got {type(code).__name__}")
    tol = check_number(tol, "tol", minimum=0)
    if code.ndim == 2:
        return (code.abs() > tol).sum(dim=1)
    if code.ndim != 3:
        raise ValueError(f"code must have shape (B, n) or (B, channels, length), got {tuple(code.shape)}")
    window = positive_int(window, "window")
    if window > code.shape[2]:
        raise ValueError(f"window {window} is longer than the code ({code.shape[2]} positions)")
    per_position = (code.abs() > tol).sum(dim=1, keepdim=True).to(torch.float64)
    return _window_sums(per_position, window).amax(dim=1).round().to(torch.int64)


def noise_patch_norm(signal: torch.Tensor, window: int) -> torch.Tensor:
    r"""Largest :math:`\ell_2` norm of ``signal`` ``(B, channels, length)`` over windows of ``window`` positions.

    Shape ``(B,)``: the patch norm :math:`\eta` of a noise :math:`e` that one encoder filter of kernel size
    ``window`` sees, :math:`|\langle w_a, e\rangle| \le \|w_a\|_2\,\eta` (chapter 10, ``eq-ch10-stripe-recursion``).
    A dense signal ``(B, n)`` is one window: its :math:`\ell_2` norm.
    """
    if not isinstance(signal, torch.Tensor):
        raise TypeError(f"signal must be a torch.Tensor, got {type(signal).__name__}")
    if signal.ndim == 2:
        return signal.norm(dim=1)
    if signal.ndim != 3:
        raise ValueError(f"signal must have shape (B, n) or (B, channels, length), got {tuple(signal.shape)}")
    window = positive_int(window, "window")
    if window > signal.shape[2]:
        raise ValueError(f"window {window} is longer than the signal ({signal.shape[2]} positions)")
    energy = signal.square().sum(dim=1, keepdim=True)
    return _window_sums(energy, window).clamp_min(0).amax(dim=1).sqrt()
