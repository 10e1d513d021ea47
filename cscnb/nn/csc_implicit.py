r"""The implicit gradient of the CSC layer (chapter 12, ``eq-ch12-implicit``): differentiate the fixed point.

On the support :math:`S` of the code :math:`z^\star` the optimality condition
:math:`(A_S^\top A_S + \mu I) z_S = A_S^\top x - \lambda` is smooth, so (implicit function theorem)
:math:`\partial\ell/\partial\theta = v^\top \partial_\theta F` with
:math:`F = A^\top x - A^\top A z - \mu z - \lambda\,\mathrm{sign}(z)` restricted to :math:`S` and :math:`v` the
solution of :math:`(A_S^\top A_S + \mu I)v = \partial\ell/\partial z_S`, found by conjugate gradients. The
forward pass runs the iterations without autograd and reuses their memory (peak memory flat in the
number of steps, ``benchmarks/bench_memory.py``). This is the exact gradient of the *converged* code;
with few iterations it is an approximation.

Under ``torch.autocast`` the iterations run in the autocast dtype (as the unrolled layer's
convolutions do) and the code comes out in it; the backward pass (conjugate gradients) runs in the
inputs' own dtype with autocast off, and the gradients have the inputs' dtypes.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .csc_ops import synthesis_operator

__all__ = ["implicit_code", "CG_CHECK_EVERY"]

#: conjugate-gradient iterations between two convergence checks (each check reads one flag on the host)
CG_CHECK_EVERY = 10


def _conjugate_gradient(apply_h, rhs, mask, n_iter: int, tol: float, curvature_floor):
    """Solve H v = rhs on the masked coordinates (per sample) by CG; H symmetric positive semidefinite.

    A sample stops when its residual is below ``tol`` (relative) or when a search direction has
    curvature pᵀHp ≤ ``curvature_floor``·pᵀp: before the solver has converged the active set can make
    H singular, and stopping there keeps the (then approximate) implicit gradient bounded. Stopped
    samples no longer move; whether all have stopped is read on the host every ``CG_CHECK_EVERY``
    iterations only.
    """
    def dot(a, b):
        return (a * b).flatten(1).sum(dim=1).reshape(-1, *([1] * (a.ndim - 1)))
    tiny = torch.finfo(rhs.dtype).tiny
    v = torch.zeros_like(rhs)
    r = rhs * mask
    p = r.clone()
    rr = dot(r, r)
    stop = tol * tol * rr
    running = rr > stop
    for k in range(n_iter):
        if k % CG_CHECK_EVERY == 0 and not bool(running.any()):
            break
        hp = apply_h(p)
        curvature = dot(p, hp)
        running = running & (curvature > curvature_floor * dot(p, p))
        alpha = torch.where(running, rr / curvature.clamp_min(tiny), torch.zeros_like(rr))
        v = v + alpha * p
        r = r - alpha * hp
        rr_new = dot(r, r)
        running = running & (rr_new > stop)
        p = r + (rr_new / rr.clamp_min(tiny)) * p
        rr = rr_new
    return v


def _autocast_dtype(device_type: str):
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None


class _ImplicitCSC(torch.autograd.Function):
    """Forward: the iterations without autograd (``run``). Backward: implicit differentiation of the fixed point."""

    @staticmethod
    def forward(ctx, x, weight, lam_map, eta, mu, stride, padding, cg_iter, cg_tol, run):
        device_type = x.device.type
        low = _autocast_dtype(device_type)
        with torch.no_grad(), torch.autocast(device_type, enabled=False):
            cast = (lambda t: t.detach().to(low)) if low is not None else (lambda t: t.detach())
            z = run(cast(x), cast(weight), cast(lam_map), cast(eta))
        ctx.save_for_backward(x, weight, lam_map, eta, z)
        ctx.options = (mu, stride, padding, cg_iter, cg_tol)
        return z

    @staticmethod
    def backward(ctx, grad_z):
        x, weight, lam_map, eta, z_saved = ctx.saved_tensors
        mu, stride, padding, cg_iter, cg_tol = ctx.options
        size = tuple(x.shape[2:])
        with torch.autocast(x.device.type, enabled=False):
            dtype = weight.dtype
            z, grad_z = z_saved.to(dtype), grad_z.to(dtype)
            support = (z != 0).to(dtype)
            w_fixed = weight.detach()
            synthesize = synthesis_operator(w_fixed, stride, padding, size, "conv_transpose2d")

            def apply_h(v):  # (A_Sᵀ A_S + μ I) v, v supported on S
                v = v * support
                return (F.conv2d(synthesize(v), w_fixed, None, stride, padding) + mu * v) * support
            # curvature floor relative to 1/η ≥ ‖A‖²: much flatter directions count as null
            # (float32: 3e-4, float64: 1e-6)
            floor = max(1e-6, math.sqrt(torch.finfo(dtype).eps)) / eta.to(dtype)
            v = _conjugate_gradient(apply_h, grad_z, support, cg_iter, cg_tol, floor).detach()
            with torch.enable_grad():
                xs = x.detach().requires_grad_(ctx.needs_input_grad[0])
                ws = weight.detach().requires_grad_(ctx.needs_input_grad[1])
                ls = lam_map.detach().requires_grad_(ctx.needs_input_grad[2])
                synth = synthesis_operator(ws, stride, padding, size, "conv_transpose2d")
                # F(θ) = Aᵀx − AᵀA z − μ z − λ sign(z) at the fixed z; dℓ/dθ = vᵀ ∂F/∂θ
                residual_map = F.conv2d(xs.to(dtype) - synth(z), ws, None, stride, padding) - mu * z \
                    - ls.to(dtype) * torch.sign(z)
                inputs = [t for t, need in zip((xs, ws, ls), ctx.needs_input_grad[:3], strict=True) if need]
                grads = iter(torch.autograd.grad((v * residual_map).sum(), inputs, allow_unused=True)) if inputs \
                    else iter(())
                out = [next(grads) if need else None for need in ctx.needs_input_grad[:3]]
        return (*out, None, None, None, None, None, None, None)


def implicit_code(x, weight, lam_map, eta, mu: float, stride, padding, cg_iter: int, cg_tol: float, run):
    r"""The code ``run(x, weight, lam_map, eta)`` with the implicit gradient of the fixed point (module docstring).

    ``run`` computes the iterations (without autograd); ``eta`` is a 0-d tensor or a number; ``lam_map``
    broadcasts to the code. Chapter 12, ``eq-ch12-implicit``.
    """
    eta_t = eta if isinstance(eta, torch.Tensor) else torch.tensor(float(eta), dtype=weight.dtype,
                                                                       device=weight.device)
    return _ImplicitCSC.apply(x, weight, lam_map, eta_t.detach(), mu, tuple(stride), tuple(padding), cg_iter,
                              cg_tol, run)
