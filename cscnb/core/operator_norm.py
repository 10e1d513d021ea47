r"""The one power iteration of the package: :math:`\|A\|_2^2` for the step sizes of proximal gradient.

Every step size :math:`\eta = 1/L` of the book needs :math:`L \ge \|A^\top A\|_2 = \|A\|_2^2` for a linear
map :math:`A` (a dictionary, a chain of dictionaries, a convolution). :func:`power_iteration` estimates it
from the positive semidefinite map ``gram`` :math:`v \mapsto A^\top A v` alone:

.. math:: w_k = A^\top A\, v_k,\qquad v_{k+1} = w_k / \|w_k\|,\qquad
          \hat L_k = \max\big(v_k^\top w_k,\ \|w_k\|\big) \le \|A\|_2^2 \quad (\|v_k\| = 1),

both the Rayleigh quotient and :math:`\|A^\top A v_k\|` are lower bounds on :math:`\|A\|_2^2` (the
second is the larger, by Cauchy–Schwarz; it comes free with the normalisation). A warm start (the
previous top vector after a small change of :math:`A`) needs only a few iterations.

**Safety-margin policy** (one rule for every caller). The estimate approaches :math:`\|A\|_2^2` from
below, so the step uses a margin :math:`L = (1 + m)\,\hat L`:

* a *converged* estimate (cold start, iterations until the Rayleigh quotient changes by less than ``tol``
  relative: :meth:`cscnb.core.Dictionary.lipschitz_constant`, :func:`cscnb.mlcsc.ml_fista`) uses
  :data:`CONVERGED_MARGIN` :math:`m = 10^{-3}`;
* a *warm-started* estimate with a fixed small number of iterations (the CSC layer,
  :class:`cscnb.nn.CSCLayer`, refreshed before every training step) uses a larger margin, written as the
  step factor :math:`\eta = c/\hat L`: :math:`c = 1/1.1` (a 10 % margin) by default, :math:`c = 0.9` in the
  SDNet authors' code.

Chapter 5 (``eq-ista``: the step :math:`1/L`) and chapter 12 (``eq-ch12-step``).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from .validation import nonneg_int, nonneg_number

__all__ = ["power_iteration", "PowerIteration", "CONVERGED_MARGIN"]

#: relative margin on a converged estimate (see the module docstring)
CONVERGED_MARGIN = 1e-3


class PowerIteration(NamedTuple):
    """What :func:`power_iteration` returns."""
    vector: torch.Tensor     # the last unit vector v (warm start of the next call)
    estimate: torch.Tensor   # 0-d tensor: max(vᵀAᵀAv, ‖AᵀAv‖) ≤ ‖A‖², on the device of ``start``
    n_iter: int              # iterations run (``n_iter`` unless a host-side tolerance stopped earlier)


@torch.no_grad()
def power_iteration(gram: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor, n_iter: int, *,
                    tol: float = 0.0, on_device: bool = False) -> PowerIteration:
    r"""Estimate :math:`\|A\|_2^2` by power iteration on ``gram`` :math:`= v \mapsto A^\top A v` from ``start``.

    Runs at most ``n_iter`` iterations (module docstring) and returns the last unit vector, the estimate
    :math:`\hat L = \max(v^\top A^\top A v, \|A^\top A v\|)` (a lower bound on :math:`\|A\|_2^2`; apply the
    margin of the module docstring) and the number of iterations.

    ``tol > 0`` stops when the Rayleigh quotient changes by at most ``tol`` relative. By default the test
    reads the quotient on the host (one device sync per iteration) and breaks out of the loop;
    ``on_device=True`` keeps everything on the device: all ``n_iter`` iterations run, and from the one
    that meets the tolerance on the vector and estimate stop changing (``torch.where``), so a step size
    can be refreshed inside a training step without a host sync. A zero map gives the estimate 0.

    Chapter 5, ``eq-ista`` (the Lipschitz constant), and chapter 12, ``eq-ch12-step`` (warm start).
    """
    n_iter = nonneg_int(n_iter, "n_iter")
    tol = nonneg_number(tol, "tol")
    tiny = torch.finfo(start.dtype).tiny
    v = start / start.norm().clamp_min(tiny)
    estimate = v.new_zeros(())
    previous = done = None
    last_host = 0.0
    run = 0
    for run in range(1, n_iter + 1):  # noqa: B007 (the count is returned)
        w = gram(v)
        rayleigh, norm = (v * w).sum(), w.norm()
        new_v, new_estimate = w / norm.clamp_min(tiny), torch.maximum(rayleigh, norm)
        if not on_device:
            v, estimate = new_v, new_estimate
            if tol:
                value = float(rayleigh)
                if abs(value - last_host) <= tol * max(value, 1e-30):
                    break
                last_host = value
            continue
        if done is None:
            v, estimate = new_v, new_estimate
        else:
            v, estimate = torch.where(done, v, new_v), torch.where(done, estimate, new_estimate)
        if tol:
            converged = (rayleigh - previous).abs() <= tol * rayleigh.clamp_min(1e-30) if previous is not None \
                else torch.zeros((), dtype=torch.bool, device=v.device)
            done = converged if done is None else done | converged
            previous = rayleigh
    return PowerIteration(v, estimate, run)
