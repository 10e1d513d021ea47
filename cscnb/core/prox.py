"""Proximal operators of the sparsity penalties used throughout the book.

Every operator is elementwise, differentiable almost everywhere, and accepts a
threshold ``t`` that is a Python scalar or a tensor broadcastable to ``u``
(a per-atom threshold has shape ``(n_atoms,)`` for dense codes and
``(n_atoms, 1, 1)`` for 2-D convolutional codes).
"""
from __future__ import annotations

import torch

from .validation import check_threshold

__all__ = ["soft_threshold", "nonneg_soft_threshold", "elastic_net_prox", "elastic_net_shrink", "hard_threshold"]


def _like(t, u: torch.Tensor):
    """A tensor threshold in u's dtype and device (numbers broadcast as they are)."""
    return t.to(dtype=u.dtype, device=u.device) if isinstance(t, torch.Tensor) else t


def soft_threshold(u: torch.Tensor, t) -> torch.Tensor:
    r"""Soft threshold :math:`S_t(u) = \operatorname{sign}(u)\max(|u| - t, 0)`.

    The proximal operator of :math:`t|\cdot|`:
    :math:`S_t(u) = \argmin_a \tfrac12 (u - a)^2 + t|a|`; for :math:`t = \sigma^2\lambda` the MAP estimate
    (posterior mode) of a Laplace coefficient observed in Gaussian noise, not its posterior mean
    (chapter 1, ``prop-ch1-map-not-mmse``).

    Implements chapter 1, equation :math:`\eqref{eq-soft-threshold}` (label ``eq-soft-threshold``).
    """
    check_threshold(t)
    t = _like(t, u)
    # u - clamp(u, -t, t) equals sign(u)·max(|u|-t, 0) and keeps a tensor t broadcastable.
    return u - torch.clamp(u, -t, t)


def nonneg_soft_threshold(u: torch.Tensor, t) -> torch.Tensor:
    r"""Non-negative soft threshold :math:`\max(u - t, 0) = \operatorname{ReLU}(u - t)`.

    The proximal operator of :math:`t a + \iota_{a \ge 0}(a)`:
    :math:`\argmin_{a \ge 0} \tfrac12 (u - a)^2 + t a`.

    Implements chapter 2, equation ``eq-relu-bias`` (ReLU with bias :math:`b = -t`).
    """
    check_threshold(t)
    return torch.relu(u - _like(t, u))


def elastic_net_prox(u: torch.Tensor, t, s=0.0, nonneg: bool = False) -> torch.Tensor:
    r"""Proximal operator of the elastic-net penalty :math:`t|a| + \tfrac{s}{2}a^2`.

    .. math:: \argmin_a \tfrac12 (u - a)^2 + t|a| + \tfrac{s}{2} a^2 = \frac{S_t(u)}{1 + s},

    and, with ``nonneg=True`` (constraint :math:`a \ge 0`), :math:`\operatorname{ReLU}(u - t)/(1 + s)`.

    Implements chapter 12, equation ``eq-elastic-net-prox`` (used by every solver step).
    """
    check_threshold(t)
    check_threshold(s, "s")
    return elastic_net_shrink(u, t, s, nonneg)


def elastic_net_shrink(u: torch.Tensor, t, s, nonneg: bool) -> torch.Tensor:
    """:func:`elastic_net_prox` without argument checks, for solver loops whose ``t`` and ``s``
    were validated once before the first iteration (the checks synchronize with the device).

    ``t`` is a number or a tensor broadcastable to ``u``; ``s`` a number (0: no shrink) or a tensor.
    Used by the iterations of :mod:`cscnb.solvers` (chapter 12, ``eq-elastic-net-prox``).
    """
    t = _like(t, u)
    shrunk = torch.relu(u - t) if nonneg else u - torch.clamp(u, -t, t)
    if isinstance(s, torch.Tensor):
        return shrunk / (1 + _like(s, u))
    return shrunk / (1 + s) if s else shrunk


def hard_threshold(u: torch.Tensor, t) -> torch.Tensor:
    r"""Hard threshold :math:`H_t(u) = u\,\mathbb 1[|u| > t]`.

    The proximal operator of :math:`\tfrac{t^2}{2}\|a\|_0`:
    :math:`\argmin_a \tfrac12 (u - a)^2 + \tfrac{t^2}{2}\mathbb 1[a \ne 0]`
    (ties at :math:`|u| = t` resolved to 0).

    Implements chapter 10, equation ``eq-hard-threshold``.
    """
    check_threshold(t)
    return u * (u.abs() > _like(t, u)).to(u.dtype)
