r"""Local (stripe) guarantees of the layered pursuits: thresholding and basis pursuit chains (chapter 6).

Every bound here is our derivation (chapter 6, ``thm-ch6-stripe-thresholding``, ``thm-ch6-lasso`` and
``thm-ch6-layered-bp``). For one layer :math:`y = D\Gamma + e` with unit-norm atoms, coherence
:math:`\mu` and :math:`\eta \ge \|D^\top e\|_\infty`, the count that matters is not the global
:math:`\|\Gamma\|_0` but the number of support atoms one atom can meet: for a convolutional dictionary
(stride 1, whole atoms) at most the stripe norm :math:`s = \|\Gamma\|_{0,\infty}^{s}`
(:func:`cscnb.theory.stripe_norm`); for a dense dictionary :math:`s = \|\Gamma\|_0`.

Between layers, the error :math:`e_i = \hat\Gamma_i - \Gamma_i` is supported inside
:math:`\operatorname{supp}\Gamma_i` (both pursuits guarantee it), so an atom of :math:`D_{i+1}` sees at most
:math:`q_i = \max_j |\operatorname{supp} d_{i+1,j} \cap \operatorname{supp}\Gamma_i|` of its entries
(:func:`cscnb.theory.patch_norm` for a convolutional :math:`D_{i+1}`) and

.. math:: \eta_i = \max_j |d_{i+1,j}^\top e_i| \le \sqrt{q_i}\,\|e_i\|_\infty
   \qquad (\text{chapter 6, ``eq-ch6-local-noise``}).

With :math:`q_i = \|\Gamma_i\|_0` this is the global chain of :func:`~cscnb.mlcsc.bounds.stability_chain`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..core.validation import check_int, nonneg_number, positive_number

__all__ = ["ChainCertificate", "lasso_min_lambda", "lasso_entry_error", "thresholding_chain", "layered_bp_chain"]


@dataclass(frozen=True)
class ChainCertificate:
    r"""What a layered stability chain certifies, layer by layer (layers counted from 1).

    ``noise[i]`` bounds :math:`\eta_i = \max_j |d_{i+1,j}^\top e_i|`, the noise level entering layer
    :math:`i+1` (``noise[0]`` is the signal noise :math:`\eta_0`); ``entry_error[i-1]`` bounds
    :math:`\|\hat\Gamma_i - \Gamma_i\|_\infty`. ``certified`` is ``True`` when every layer's condition holds;
    otherwise ``failed_layer`` is the first layer whose condition fails and the lists stop before it.
    """
    certified: bool
    failed_layer: int | None
    noise: list
    entry_error: list


def _coherence(mu, name: str) -> float:
    mu = positive_number(mu, name)
    if mu > 1:
        raise ValueError(f"{name} is a mutual coherence, so it lies in (0, 1], got {mu}")
    return mu


def _per_layer(values, name: str, n: int | None):
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise TypeError(f"{name} must be a list or tuple with one entry per layer, got {type(values).__name__}")
    if len(values) == 0 or (n is not None and len(values) != n):
        raise ValueError(f"{name} must have one entry per layer ({n if n is not None else 'at least one'}), "
                         f"got {len(values)}")
    return list(values)


def lasso_min_lambda(mu, s, noise) -> float:
    r"""The penalty above which the Lasso keeps inside the true support (chapter 6, ``eq-ch6-lasso-lambda``).

    .. math:: \lambda > \eta\,\frac{1 + \theta}{1 - \theta} = \eta\,\frac{1 + \mu}{1 + \mu - 2\mu s},
              \qquad \theta = \frac{\mu s}{1 - \mu(s - 1)},

    for :math:`y = D\Gamma + e` with :math:`\|D^\top e\|_\infty \le \eta` (``noise``) and :math:`s` the stripe
    norm of :math:`\Gamma` (dense: :math:`\|\Gamma\|_0`). Needs :math:`s < \tfrac12(1 + 1/\mu)` (then
    :math:`\theta < 1`); raises ``ValueError`` otherwise. Returns the (excluded) lower end.
    """
    mu = _coherence(mu, "mu")
    s = check_int(s, "s", minimum=1)
    noise = nonneg_number(noise, "noise")
    if 2 * mu * s >= 1 + mu:
        raise ValueError(f"s={s} is not below (1 + 1/mu)/2 = {0.5 * (1 + 1 / mu):.4g}: the Lasso condition "
                         "cannot hold")
    return noise * (1 + mu) / (1 + mu - 2 * mu * s)


def lasso_entry_error(mu, s, noise, lam) -> float:
    r"""Entry-error bound of the Lasso, :math:`\|\hat z - \Gamma\|_\infty \le (\eta + \lambda)/(1 - \mu(s - 1))`.

    Chapter 6, ``eq-ch6-lasso-error``.

    Valid when ``lam`` exceeds :func:`lasso_min_lambda` (then the Lasso minimizer is unique and
    supported inside :math:`\operatorname{supp}\Gamma`); every entry of :math:`\Gamma` larger than the bound is
    recovered with its sign.
    """
    lower = lasso_min_lambda(mu, s, noise)
    lam = positive_number(lam, "lam")
    if not lam > lower:
        raise ValueError(f"lam={lam:.4g} must exceed eta (1 + mu)/(1 + mu - 2 mu s) = {lower:.4g}")
    return (noise + lam) / (1 - mu * (s - 1))


def _q(patch_sparsities, i, n_layers):
    return None if patch_sparsities is None or i >= n_layers - 1 else check_int(
        patch_sparsities[i], f"patch_sparsities[{i}]", minimum=1)


def _check_patch_sparsities(patch_sparsities, n: int) -> None:
    """The q_i of layers 1..L-1 of an ``n``-layer chain: a list or tuple of ``n - 1`` (or ``n``) entries."""
    if patch_sparsities is not None and (not isinstance(patch_sparsities, (list, tuple))
                                         or len(patch_sparsities) not in (n - 1, n)):
        raise ValueError(f"patch_sparsities must have one entry per layer but the last ({n - 1}), got "
                         f"{patch_sparsities!r}")
    if n > 1 and patch_sparsities is None:
        raise ValueError("patch_sparsities (the q_i of layers 1..L-1) are needed for more than one layer")


def thresholding_chain(mus: Sequence, sparsities: Sequence, gamma_mins: Sequence, gamma_maxs: Sequence, *,
                       patch_sparsities: Sequence | None = None, thresholds: Sequence | None = None,
                       noise=0.0) -> ChainCertificate:
    r"""The local stability chain of layered soft thresholding (chapter 6, ``thm-ch6-stripe-thresholding``).

    Layer :math:`i` (:math:`\mu_i`, stripe norm :math:`s_i`, non-zero magnitudes in
    :math:`[\Gamma_i^{\min}, \Gamma_i^{\max}]`) recovers support and signs when

    .. math:: s_i\mu_i\Gamma_i^{\max} + \eta_{i-1} \le \beta_i
              < \Gamma_i^{\min} - (s_i - 1)\mu_i\Gamma_i^{\max} - \eta_{i-1},

    and then :math:`\|\hat\Gamma_i - \Gamma_i\|_\infty \le \delta_i
    = (s_i - 1)\mu_i\Gamma_i^{\max} + \eta_{i-1} + \beta_i` and :math:`\eta_i \le \sqrt{q_i}\,\delta_i`.
    ``thresholds=None`` takes every :math:`\beta_i` at the bottom of its interval (the smallest error).
    ``patch_sparsities`` are the :math:`q_i` of the layers :math:`1, \dots, L-1` (``len = L - 1``, or ``L`` with
    the last entry ignored); ``noise`` is :math:`\eta_0`.
    """
    mus = _per_layer(mus, "mus", None)
    n = len(mus)
    sparsities = _per_layer(sparsities, "sparsities", n)
    gamma_mins, gamma_maxs = _per_layer(gamma_mins, "gamma_mins", n), _per_layer(gamma_maxs, "gamma_maxs", n)
    _check_patch_sparsities(patch_sparsities, n)
    if thresholds is not None:
        thresholds = _per_layer(thresholds, "thresholds", n)
    eta, noise_list, errors = nonneg_number(noise, "noise"), [], []
    noise_list.append(eta)
    for i in range(n):
        mu = _coherence(mus[i], f"mus[{i}]")
        s = check_int(sparsities[i], f"sparsities[{i}]", minimum=1)
        g_lo, g_hi = positive_number(gamma_mins[i], f"gamma_mins[{i}]"), positive_number(gamma_maxs[i],
                                                                                      f"gamma_maxs[{i}]")
        if g_lo > g_hi:
            raise ValueError(f"gamma_mins[{i}] ({g_lo}) must not exceed gamma_maxs[{i}] ({g_hi})")
        low, high = s * mu * g_hi + eta, g_lo - (s - 1) * mu * g_hi - eta
        beta = low if thresholds is None else nonneg_number(thresholds[i], f"thresholds[{i}]")
        if not low <= beta < high:
            return ChainCertificate(False, i + 1, noise_list, errors)
        errors.append((s - 1) * mu * g_hi + eta + beta)
        q = _q(patch_sparsities, i, n)
        if q is not None:
            eta = math.sqrt(q) * errors[-1]
            noise_list.append(eta)
    return ChainCertificate(True, None, noise_list, errors)


def layered_bp_chain(mus: Sequence, sparsities: Sequence, lams: Sequence, *, patch_sparsities: Sequence | None = None,
                     noise=0.0) -> ChainCertificate:
    r"""The local stability chain of layered basis pursuit (chapter 6, ``thm-ch6-layered-bp``).

    Layer :math:`i` solves a Lasso with penalty :math:`\lambda_i` on the previous estimate. If
    :math:`s_i < \tfrac12(1 + 1/\mu_i)` and :math:`\lambda_i > \eta_{i-1}(1 + \mu_i)/(1 + \mu_i - 2\mu_i s_i)`
    (:func:`lasso_min_lambda`), its minimizer is unique, supported inside :math:`\operatorname{supp}\Gamma_i`,
    and :math:`\|\hat\Gamma_i - \Gamma_i\|_\infty \le \delta_i = (\eta_{i-1} + \lambda_i)/(1 - \mu_i(s_i - 1))`
    (:func:`lasso_entry_error`); the next layer's noise is :math:`\eta_i \le \sqrt{q_i}\,\delta_i`. Arguments as
    in :func:`thresholding_chain`; ``noise`` is :math:`\eta_0 \ge \|D_1^\top e\|_\infty`.
    """
    mus = _per_layer(mus, "mus", None)
    n = len(mus)
    sparsities, lams = _per_layer(sparsities, "sparsities", n), _per_layer(lams, "lams", n)
    _check_patch_sparsities(patch_sparsities, n)
    eta, noise_list, errors = nonneg_number(noise, "noise"), [], []
    noise_list.append(eta)
    for i in range(n):
        mu = _coherence(mus[i], f"mus[{i}]")
        s = check_int(sparsities[i], f"sparsities[{i}]", minimum=1)
        lam = positive_number(lams[i], f"lams[{i}]")
        if 2 * mu * s >= 1 + mu or not lam > lasso_min_lambda(mu, s, eta):
            return ChainCertificate(False, i + 1, noise_list, errors)
        errors.append(lasso_entry_error(mu, s, eta, lam))
        q = _q(patch_sparsities, i, n)
        if q is not None:
            eta = math.sqrt(q) * errors[-1]
            noise_list.append(eta)
    return ChainCertificate(True, None, noise_list, errors)
