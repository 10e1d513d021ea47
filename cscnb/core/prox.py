"""Proximal operators of the sparsity penalties used throughout the book: one family, with ``out=`` variants.

Every operator is elementwise, differentiable almost everywhere, and accepts a
threshold ``t`` that is a Python scalar or a tensor broadcastable to ``u``
(a per-atom threshold has shape ``(n_atoms,)`` for dense codes and
``(n_atoms, 1, 1)`` for 2-D convolutional codes).

``out`` (a tensor of ``u``'s shape, possibly ``u`` itself) receives the result without allocating, for
loops that run without autograd. ``check=False`` skips the argument check (which reads a tensor threshold
back to the host): solver loops check once before iterating. :func:`elastic_net_prox` is the one
elastic-net prox of the package, used by every solver, layer and unrolled network.
"""
from __future__ import annotations

from numbers import Real

import torch
import torch.nn.functional as F

from .validation import check_threshold

__all__ = ["soft_threshold", "nonneg_soft_threshold", "elastic_net_prox", "hard_threshold"]


def _like(t, u: torch.Tensor):
    """A tensor threshold in u's dtype and device (numbers broadcast as they are)."""
    return t.to(dtype=u.dtype, device=u.device) if isinstance(t, torch.Tensor) else t


def soft_threshold(u: torch.Tensor, t, *, out: torch.Tensor | None = None, check: bool = True) -> torch.Tensor:
    r"""Soft threshold :math:`S_t(u) = \operatorname{sign}(u)\max(|u| - t, 0)`.

    The proximal operator of :math:`t|\cdot|`:
    :math:`S_t(u) = \argmin_a \tfrac12 (u - a)^2 + t|a|`; for :math:`t = \sigma^2\lambda` the MAP estimate
    (posterior mode) of a Laplace coefficient observed in Gaussian noise, not its posterior mean
    (chapter 1, ``prop-ch1-map-not-mmse``).

    Implements chapter 1, equation :math:`\eqref{eq-soft-threshold}` (label ``eq-soft-threshold``).

    Args:
        u: input tensor.
        t: threshold :math:`\ge 0`, a number or a tensor broadcastable to ``u``.
        out: optional output tensor of ``u``'s shape (may be ``u``).
        check: validate ``t`` (``False`` inside solver loops, which check once).
    """
    if check:
        check_threshold(t)
    t = _like(t, u)
    # u - clamp(u, -t, t) equals sign(u)·max(|u|-t, 0) and keeps a tensor t broadcastable.
    return torch.sub(u, torch.clamp(u, -t, t), out=out)


def nonneg_soft_threshold(u: torch.Tensor, t, *, out: torch.Tensor | None = None,
                          check: bool = True) -> torch.Tensor:
    r"""Non-negative soft threshold :math:`\max(u - t, 0) = \operatorname{ReLU}(u - t)`.

    The proximal operator of :math:`t a + \iota_{a \ge 0}(a)`:
    :math:`\argmin_{a \ge 0} \tfrac12 (u - a)^2 + t a`.

    Implements chapter 2, equation ``eq-relu-bias`` (ReLU with bias :math:`b = -t`).

    Args:
        u: input tensor.
        t: threshold :math:`\ge 0`, a number or a tensor broadcastable to ``u``.
        out: optional output tensor of ``u``'s shape (may be ``u``).
        check: validate ``t`` (``False`` inside solver loops, which check once).
    """
    if check:
        check_threshold(t)
    t = _like(t, u)
    if isinstance(t, Real) and t == 0:  # e.g. a threshold already applied as a convolution's bias
        return torch.relu(u) if out is None else (out if out is u else out.copy_(u)).relu_()
    return torch.relu(u - t) if out is None else torch.sub(u, t, out=out).relu_()


def elastic_net_prox(u: torch.Tensor, t, s=0.0, nonneg: bool = False, *, out: torch.Tensor | None = None,
                     check: bool = True) -> torch.Tensor:
    r"""Proximal operator of the elastic-net penalty :math:`t|a| + \tfrac{s}{2}a^2`.

    .. math:: \argmin_a \tfrac12 (u - a)^2 + t|a| + \tfrac{s}{2} a^2 = \frac{S_t(u)}{1 + s},

    and, with ``nonneg=True`` (constraint :math:`a \ge 0`), :math:`\operatorname{ReLU}(u - t)/(1 + s)`.
    ``s`` is a number (0: no shrink) or a tensor (e.g. one per sample).

    Implements chapter 12, equation ``eq-elastic-net-prox`` (used by every solver step).

    Args:
        u: input tensor.
        t: threshold :math:`\ge 0`, a number or a tensor broadcastable to ``u``.
        s: elastic-net weight :math:`\ge 0`, a number or a tensor (default 0).
        nonneg: constrain :math:`a \ge 0` (default False).
        out: optional output tensor of ``u``'s shape (may be ``u``).
        check: validate ``t`` (``False`` inside solver loops, which check once).
    """
    if check:
        check_threshold(t)
        check_threshold(s, "s")
    if nonneg:
        shrunk = nonneg_soft_threshold(u, t, out=out, check=False)
    elif isinstance(t, Real):  # a number: softshrink computes the same values as u - clamp(u, -t, t) in one pass
        shrunk = F.softshrink(u, t) if out is None else torch.ops.aten.softshrink.out(u, t, out=out)
    else:
        shrunk = soft_threshold(u, t, out=out, check=False)
    if isinstance(s, torch.Tensor) or s:
        s = _like(s, u)
        return shrunk / (1 + s) if out is None else shrunk.div_(1 + s)
    return shrunk


def hard_threshold(u: torch.Tensor, t, *, out: torch.Tensor | None = None, check: bool = True) -> torch.Tensor:
    r"""Hard threshold :math:`H_t(u) = u\,\mathbb 1[|u| > t]`.

    The proximal operator of :math:`\tfrac{t^2}{2}\|a\|_0`:
    :math:`\argmin_a \tfrac12 (u - a)^2 + \tfrac{t^2}{2}\mathbb 1[a \ne 0]`
    (ties at :math:`|u| = t` resolved to 0).

    Implements chapter 10, equation ``eq-hard-threshold``.

    Args:
        u: input tensor.
        t: threshold :math:`\ge 0`, a number or a tensor broadcastable to ``u``.
        out: optional output tensor of ``u``'s shape (may be ``u``).
        check: validate ``t`` (``False`` inside solver loops, which check once).
    """
    if check:
        check_threshold(t)
    return torch.mul(u, (u.abs() > _like(t, u)).to(u.dtype), out=out)
