r"""An independent solver and a duality certificate for the multi-layer basis pursuit (chapter 6).

The problem ``eq-ch6-ml-bp`` with dense dictionaries, written with :math:`A = D_1\cdots D_L` and
:math:`K_i = D_{i+1}\cdots D_L` (:math:`K_L = I`),

.. math:: \min_z F(z) = \tfrac12\|y - Az\|_2^2 + \sum_{i=1}^{L}\lambda_i\|K_i z\|_1 .

*Weak duality* (chapter 6, ``eq-ch6-ml-bp-dual``): for every :math:`p` and every :math:`q_i` with
:math:`\|q_i\|_\infty \le \lambda_i` and :math:`A^\top p + \sum_i K_i^\top q_i = 0`,

.. math:: F(z) \ge \langle p, Az - y\rangle - \tfrac12\|p\|^2 + \sum_i\langle q_i, K_i z\rangle
          = -\tfrac12\|p\|^2 - \langle p, y\rangle ,

because :math:`\tfrac12\|u\|^2 \ge \langle p, u\rangle - \tfrac12\|p\|^2` and
:math:`\lambda_i\|w\|_1 \ge \langle q_i, w\rangle`. :func:`ml_bp_dual_bound` builds such a point from any
candidate :math:`z` and any inner :math:`q_1, \dots, q_{L-1}`; :func:`ml_bp_admm` is ADMM on the split
:math:`w_i = K_i z` (exact :math:`z`-solves), whose scaled dual variables supply good :math:`q_i`. Neither
shares code with :func:`~cscnb.mlcsc.ml_fista` or :func:`~cscnb.mlcsc.ml_bp_primal_dual`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..core.dictionary import LinearDictionary
from ..core.validation import nonneg_number, positive_int, positive_number

__all__ = ["ml_bp_matrices", "ml_bp_admm", "ml_bp_dual_bound"]


def ml_bp_matrices(dictionaries: Sequence[LinearDictionary]):
    r"""``(A, [K_1, ..., K_L])`` with :math:`A = D_1\cdots D_L` and :math:`K_i = D_{i+1}\cdots D_L` (dense chains)."""
    if not isinstance(dictionaries, (list, tuple)) or len(dictionaries) == 0:
        raise TypeError("dictionaries must be a non-empty list of LinearDictionary")
    for i, d in enumerate(dictionaries):
        if not isinstance(d, LinearDictionary):
            raise TypeError(f"dictionaries[{i}] must be a LinearDictionary (dense chains only), got {type(d).__name__}")
    weights = [d.weight.detach() for d in dictionaries]
    for i in range(1, len(weights)):
        if weights[i].shape[0] != weights[i - 1].shape[1]:
            raise ValueError(f"dictionaries[{i}] has {weights[i].shape[0]} rows but dictionaries[{i - 1}] has "
                             f"{weights[i - 1].shape[1]} atoms")
    ks = [torch.eye(weights[-1].shape[1], dtype=weights[-1].dtype, device=weights[-1].device)]
    for w in reversed(weights[1:]):
        ks.insert(0, w @ ks[0])
    return weights[0] @ ks[0], ks


def _lams(lams, n: int) -> list:
    if not isinstance(lams, (list, tuple)) or len(lams) != n:
        raise ValueError(f"lams must list one non-negative number per layer ({n}), got {lams!r}")
    return [nonneg_number(lam, f"lams[{i}]") for i, lam in enumerate(lams)]


def _signals(y, n_features: int) -> torch.Tensor:
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a torch.Tensor of shape (batch, {n_features}), got {type(y).__name__}")
    if y.ndim != 2 or y.shape[1] != n_features:
        raise ValueError(f"y must have shape (batch, {n_features}), got {tuple(y.shape)}")
    return y.detach()


@torch.no_grad()
def ml_bp_admm(dictionaries: Sequence[LinearDictionary], y: torch.Tensor, lams, *, rho: float = 1.0,
               n_iter: int = 20000, tol: float = 1e-13):
    r"""ADMM for the multi-layer basis pursuit with dense dictionaries (chapter 6, ``eq-ch6-ml-bp``).

    Splits :math:`w_i = K_i z` and iterates (scaled form, Boyd et al. 2011)

    .. math:: z \leftarrow \big(A^\top A + \rho\textstyle\sum_i K_i^\top K_i\big)^{-1}
              \big(A^\top y + \rho\sum_i K_i^\top(w_i - u_i)\big),\quad
              w_i \leftarrow S_{\lambda_i/\rho}(K_i z + u_i),\quad u_i \leftarrow u_i + K_i z - w_i ,

    a convergent scheme for this convex problem (the :math:`z`-system is positive definite because
    :math:`K_L = I`). Stops when every primal residual :math:`\|K_i z - w_i\|` and dual change
    :math:`\rho\|w_i - w_i^{\text{old}}\|` falls below ``tol`` (relative to the largest of
    :math:`\|K_i z\|`, :math:`\|\rho u_i\|`, 1). Returns ``(z, duals, n_iter)`` where ``duals[i]`` is
    :math:`q_{i+1} = \rho u_{i+1}` for the inner layers, the multipliers to pass to :func:`ml_bp_dual_bound`.
    """
    A, ks = ml_bp_matrices(dictionaries)
    y = _signals(y, A.shape[0]).to(A.dtype)
    lams = _lams(lams, len(ks))
    rho = positive_number(rho, "rho")
    n_iter = positive_int(n_iter, "n_iter")
    tol = positive_number(tol, "tol")
    system = A.T @ A + rho * sum(k.T @ k for k in ks)
    factor = torch.linalg.cholesky(system)
    rhs0 = y @ A                                     # (B, m_L): A^T y per sample
    batch = y.shape[0]
    ws = [torch.zeros(batch, k.shape[0], dtype=A.dtype) for k in ks]
    us = [torch.zeros_like(w) for w in ws]
    z = torch.zeros(batch, A.shape[1], dtype=A.dtype)
    for iteration in range(1, n_iter + 1):  # noqa: B007 (returned: the iterations taken)
        rhs = rhs0 + rho * sum((w - u) @ k for w, u, k in zip(ws, us, ks, strict=True))
        z = torch.cholesky_solve(rhs.T, factor).T
        worst = 0.0
        for i, k in enumerate(ks):
            kz = z @ k.T
            w_old = ws[i]
            v = kz + us[i]
            ws[i] = torch.sign(v) * torch.relu(v.abs() - lams[i] / rho)
            us[i] = us[i] + kz - ws[i]
            scale = max(float(kz.norm()), float((rho * us[i]).norm()), 1.0)
            worst = max(worst, float((kz - ws[i]).norm()) / scale, rho * float((ws[i] - w_old).norm()) / scale)
        if worst < tol:
            break
    return z, [rho * u for u in us[:-1]], iteration


@torch.no_grad()
def ml_bp_dual_bound(dictionaries: Sequence[LinearDictionary], y: torch.Tensor, z: torch.Tensor, lams,
                     inner_duals: Sequence[torch.Tensor]):
    r"""A lower bound on :math:`\min F` from a dual-feasible point, and :math:`F(z)`: ``(lower, value)``, each ``(B,)``.

    Takes :math:`p = Az - y`, clips each inner :math:`q_i` (``inner_duals``, shape ``(B, m_i)``) to
    :math:`[-\lambda_i, \lambda_i]`, sets :math:`q_L = -(A^\top p + \sum_{i<L} K_i^\top q_i)` and scales all of them by
    :math:`\alpha = \min(1, \lambda_L/\|q_L\|_\infty)`, which keeps :math:`A^\top p + \sum_i K_i^\top q_i = 0` and
    makes every :math:`|q_i| \le \lambda_i`. Then
    ``lower`` :math:`= -\tfrac12\alpha^2\|p\|^2 - \alpha\langle p, y\rangle \le \min F \le F(z) =` ``value``
    (weak duality, module docstring), so ``value - lower`` bounds how far
    :math:`F(z)` is above the minimum. At a fixed point of :func:`~cscnb.mlcsc.ml_fista` with its nested
    subgradients as ``inner_duals`` the difference is exactly the gap of ``eq-ch6-gap``.
    """
    A, ks = ml_bp_matrices(dictionaries)
    y = _signals(y, A.shape[0]).to(A.dtype)
    lams = _lams(lams, len(ks))
    if not isinstance(z, torch.Tensor) or z.shape != (y.shape[0], A.shape[1]):
        raise ValueError(f"z must be a tensor of shape {(y.shape[0], A.shape[1])}")
    if not isinstance(inner_duals, (list, tuple)) or len(inner_duals) != len(ks) - 1:
        raise ValueError(f"inner_duals must list {len(ks) - 1} tensors (one per inner layer)")
    z = z.detach().to(A.dtype)
    p = z @ A.T - y
    qs = []
    for i, (q, k) in enumerate(zip(inner_duals, ks[:-1], strict=True)):
        if not isinstance(q, torch.Tensor) or q.shape != (y.shape[0], k.shape[0]):
            raise ValueError(f"inner_duals[{i}] must have shape {(y.shape[0], k.shape[0])}")
        qs.append(q.detach().to(A.dtype).clamp(-lams[i], lams[i]))
    q_last = -(p @ A + sum((q @ k for q, k in zip(qs, ks[:-1], strict=True)), torch.zeros_like(z)))
    peak = q_last.abs().amax(dim=1)
    alpha = torch.where(peak > lams[-1], lams[-1] / peak.clamp_min(torch.finfo(A.dtype).tiny),
                        torch.ones_like(peak))
    lower = -0.5 * alpha ** 2 * p.pow(2).sum(dim=1) - alpha * (p * y).sum(dim=1)
    value = 0.5 * p.pow(2).sum(dim=1) + sum(lam * (z @ k.T).abs().sum(dim=1) for lam, k in zip(lams, ks, strict=True))
    return lower, value
