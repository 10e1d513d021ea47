r"""The CSC layer as a function: ``csc_code`` runs :math:`K` FISTA steps from 0 with a given step (chapter 12).

:func:`csc_code` is the checked functional form of :class:`cscnb.nn.CSCLayer` (as ``F.conv2d`` is of
``nn.Conv2d``): the dictionary ``weight`` is used as given and the step :math:`\eta` is an argument. The
layer calls the unchecked core :func:`_code` with its own unit-norm atoms and on-device step.
"""
from __future__ import annotations

import torch

from ..core.validation import check_choice, nonneg_number, pair, positive_int, positive_number
from ..solvers.engine import fista_steps
from .csc_implicit import implicit_code
from .csc_ops import SYNTHESIS_CHOICES, FusedProxGrad, code_shape, resolve_synthesis

__all__ = ["csc_code", "unit_norm_atoms", "BACKWARDS"]

BACKWARDS = ("unroll", "implicit")
_ATOM_EPS = 1e-12


def unit_norm_atoms(weight: torch.Tensor) -> torch.Tensor:
    r"""Atoms rescaled to unit Euclidean norm, :math:`W_i / \|W_i\|_2` (differentiable; chapter 12, ``eq-ch12-model``).
    """
    norms = weight.flatten(1).norm(dim=1).clamp_min(_ATOM_EPS)
    return weight / norms.reshape(-1, *([1] * (weight.ndim - 1)))


def _checked_lam(lam, x: torch.Tensor, n_atoms: int) -> torch.Tensor:
    """λ of :func:`csc_code` as a tensor in x's dtype, checked (one device sync)."""
    if not isinstance(lam, torch.Tensor):
        return torch.tensor(nonneg_number(lam, "lam"), dtype=x.dtype, device=x.device)
    if not lam.is_floating_point():
        raise TypeError(f"lam must be a floating-point tensor, got dtype {lam.dtype}")
    if lam.ndim == 1 and lam.shape[0] != n_atoms:
        raise ValueError(f"per-channel lam must have length {n_atoms} (the number of atoms), got {lam.shape[0]}")
    if not bool((torch.isfinite(lam) & (lam >= 0)).all()):
        raise ValueError("lam must be finite and non-negative (got NaN, Inf or a negative value)")
    return lam.to(x.dtype)


def _run_fista(x, weight, lam, mu, eta, n_iter, stride, padding, nonneg, synthesis, overwrite: bool):
    """K FISTA steps from 0 with the fused map (K analyses, K − 1 syntheses; chapter 12, ``eq-ch12-floor``).

    Without a graph to record (``torch.no_grad()``, or nothing requires grad) the momentum reuses the
    iterates' memory whatever ``overwrite`` says. ``synthesis`` is a concrete form.
    """
    shape = code_shape(weight.shape, tuple(x.shape[2:]), stride, padding, x.shape[0])
    differentiable = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or lam.requires_grad)
    step_map = FusedProxGrad(x, weight, lam, eta, mu, nonneg, stride, padding, synthesis)
    zero = x.new_zeros(()).expand(shape)  # z₀ = 0 without memory: T(0) comes from step_map.first()
    return fista_steps(step_map, zero, n_iter, first=step_map.first(), overwrite=overwrite or not differentiable)


def _code(x, weight, lam, mu, eta, n_iter, stride, padding, nonneg, backward, synthesis, cg_iter=200, cg_tol=1e-10):
    """The layer's code without argument checks (λ, μ, η validated or computed by the caller)."""
    if backward == "implicit":
        lam_map = lam.reshape(-1, 1, 1) if lam.ndim == 1 else lam

        def run(x_, w_, lam_, eta_):
            return _run_fista(x_, w_, lam_, mu, eta_, n_iter, stride, padding, nonneg, synthesis, overwrite=True)
        return implicit_code(x, weight, lam_map, eta, mu, stride, padding, cg_iter, cg_tol, run)
    return _run_fista(x, weight, lam, mu, eta, n_iter, stride, padding, nonneg, synthesis, overwrite=False)


def csc_code(x: torch.Tensor, weight: torch.Tensor, lam, *, mu: float = 0.0, step: float, n_iter: int,
             stride=1, padding=0, nonneg: bool = True, backward: str = "unroll", cg_iter: int = 200,
             cg_tol: float = 1e-10, synthesis: str = "auto") -> torch.Tensor:
    r"""``n_iter`` FISTA steps from 0 on the elastic-net CSC problem of chapter 12.

    .. math:: \min_{z(\ge 0)} \lambda\|z\|_1 + \tfrac{\mu}{2}\|z\|^2 + \tfrac12\|x - Az\|^2 .

    :math:`A` = ``ConvDictionary(weight, stride, padding)`` (used as given: no renormalisation), step
    ``step`` (:math:`\eta \le 1/\|A\|^2`), ``lam`` a scalar or per-channel tensor. ``backward`` selects
    the unrolled or the implicit gradient; ``synthesis`` the form of :math:`Az`
    (:func:`cscnb.nn.csc_ops.resolve_synthesis`). The steps use the fused map
    :class:`cscnb.nn.csc_ops.FusedProxGrad`. Implements chapter 12, ``eq-ch12-fista``, ``eq-ch12-fused``
    and ``eq-ch12-implicit``.

    Args:
        x: signals ``(N, C_in, H, W)``.
        weight: dictionary ``(C_out, C_in, k_h, k_w)``, used as given (no renormalisation).
        lam: :math:`\lambda \ge 0`, a number or a per-channel tensor ``(C_out,)``.
        mu: elastic-net weight :math:`\mu \ge 0` (default 0).
        step: the step :math:`\eta > 0` of every FISTA step (required keyword); the iteration converges for
            :math:`\eta \le 1/\|A\|^2` (not checked).
        n_iter: FISTA steps :math:`K \ge 1` (required keyword).
        stride: of ``conv2d(x, weight)``, an int or a pair (default 1).
        padding: of ``conv2d(x, weight)``, an int or a pair (default 0).
        nonneg: non-negative codes (ReLU prox, default) or signed codes (soft threshold).
        backward: ``"unroll"`` (default) or ``"implicit"`` (chapter 12, ``eq-ch12-implicit``).
        cg_iter: iteration cap of the implicit backward's conjugate gradients (default 200).
        cg_tol: tolerance of the implicit backward's conjugate gradients (default 1e-10).
        synthesis: ``"auto"`` (default), ``"conv2d"``, ``"conv_transpose2d"`` or ``"timed"``.

    Returns:
        The code :math:`z_K`.

    Shape:
        - Input ``x``: ``(N, C_in, H, W)``.
        - Output: ``(N, C_out, H_out, W_out)``, as ``nn.Conv2d`` with the same ``stride`` and ``padding``.

    Checks ``lam``, ``mu``, ``step``, ``n_iter``, ``stride``, ``padding``, ``backward`` and ``synthesis``
    (λ on the host); the shapes and dtypes of ``x`` and ``weight`` are not checked. The layer calls the
    unchecked core.
    """
    check_choice(backward, "backward", BACKWARDS)
    check_choice(synthesis, "synthesis", SYNTHESIS_CHOICES)
    n_iter = positive_int(n_iter, "n_iter")
    step = positive_number(step, "step")
    mu = nonneg_number(mu, "mu")
    stride, padding = pair(stride, "stride", 1), pair(padding, "padding", 0)
    lam = _checked_lam(lam, x, weight.shape[0])
    size = tuple(x.shape[2:])
    differentiable = torch.is_grad_enabled() and backward == "unroll" and (
        x.requires_grad or weight.requires_grad or lam.requires_grad)
    form = resolve_synthesis(synthesis, weight, stride, padding, size,
                             code_shape(weight.shape, size, stride, padding, x.shape[0]), backward=differentiable)
    return _code(x, weight, lam, mu, step, n_iter, stride, padding, nonneg, backward, form, cg_iter, cg_tol)


