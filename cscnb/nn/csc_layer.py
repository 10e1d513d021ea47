r"""The convolutional sparse-coding layer of SDNet (:cite:t:`dai2022revisiting`): a drop-in ``nn.Conv2d``.

Its output is the (approximate) solution of the elastic-net convolutional sparse-coding problem

.. math:: z^\star(x) = \argmin_{z \ge 0}\ \lambda\|z\|_1 + \tfrac{\mu}{2}\|z\|_2^2 + \tfrac12\|x - Az\|_2^2,

where :math:`Az` = ``conv_transpose2d(z, W)`` (``ConvDictionary(W).synthesize``) with unit-norm atoms
:math:`W_i`, so :math:`A^\top x` = ``conv2d(x, W)`` has the shape of ``nn.Conv2d``'s output. The layer
runs ``n_iter`` FISTA steps from :math:`z_0 = 0` (:func:`cscnb.solvers.fista_step`, the step
``cscnb.solve`` uses) with step :math:`\eta = 1/L`, :math:`L \ge \|A\|_2^2` (chapter 12,
``eq-ch12-fista``).

**Step size by a warm-started power iteration** (:class:`cscnb.nn.csc_ops.PowerIterationStep`).
:math:`L` depends on the weight, so the layer keeps the top eigenvector :math:`v` of :math:`A^\top A`
(a buffer) and, only when the weight changed since the last estimate (``weight._version`` or the
storage changed; an optimizer step changes it in place), runs ``steady_power_iters`` (default 2)
power iterations from the stored :math:`v` — at batch size 1, so their cost is a small share of a
training step (measured by ``benchmarks/bench_csc_layer.py``). The estimate :math:`\|A^\top A v\|`
(unit :math:`v`) is a *lower* bound on :math:`\|A\|_2^2`; because an optimizer step moves the weight a
little, the warm vector is already close to the new top eigenvector and the bound is tight up to a
small relative error, which the safety margin ``STEP_MARGIN`` (10 %) covers: the layer uses
:math:`L = (1 + 0.1)\,\|A^\top A v\|`. (FISTA's guarantee needs :math:`\eta \le 1/\|A\|^2`; the
proximal-gradient map itself stays non-expansive up to :math:`\eta < 2/\|A\|^2`, so a slightly
underestimated :math:`L` degrades gracefully rather than diverging.) :meth:`CSCLayer.refresh_step_size`
recomputes :math:`L` from scratch with many iterations; a new input size recomputes it too.

**Cost.** From :math:`z_0 = 0`, :math:`K` steps cost :math:`K` analyses (``conv2d``) and :math:`K - 1`
syntheses (chapter 12, ``eq-ch12-floor``): the first step is one ``conv2d`` with bias
:math:`-\eta\lambda` and a ReLU, each further step is written in residual form
:math:`\operatorname{ReLU}(y + \texttt{conv2d}(x - Ay, \eta W, -\eta\lambda))` with in-place updates
(:class:`cscnb.nn.csc_ops.FusedProxGrad`), and the synthesis is the faster exact one for the shape
(``synthesis="auto"``). λ is validated once per forward pass. The FISTA iteration itself is
:func:`cscnb.solvers.fista_steps`, shared with :func:`cscnb.solve`.

**torch.compile is off.** Measured on this project's CPU machine (``benchmarks/bench_csc_layer.py``,
whole layer at the stem shape (32, 3, 32, 32) → 64, K = 2, inductor, one thread): compiling takes
4–35 s (plus 1–11 s for the backward graph), the inference forward pass runs 1.1–1.4x faster, but
forward+backward runs slower (0.56–0.75x over five runs), and the step size is a Python float read
from a buffer (a graph break). Compiling only the elementwise tail of a step (add, ReLU, momentum)
saves about 15 % of that tail, which is memory-bound. The layer therefore runs eagerly; wrap it in
``torch.compile`` yourself for long inference runs at one input shape.

**Gradients.** ``backward="unroll"`` differentiates through the ``n_iter`` steps (memory grows with
``n_iter``). ``backward="implicit"`` runs the steps without autograd, reusing the iterates' memory (peak
memory flat in ``n_iter``, ``benchmarks/bench_memory.py``), and differentiates the fixed
point: on the support :math:`S` of :math:`z^\star` the optimality condition
:math:`(A_S^\top A_S + \mu I) z_S = A_S^\top x - \lambda` is smooth, so (implicit function theorem)
:math:`\partial\ell/\partial\theta = v^\top \partial_\theta F` with
:math:`F = A^\top x - A^\top A z - \mu z - \lambda\,\mathrm{sign}(z)` restricted to :math:`S` and
:math:`v` the solution of :math:`(A_S^\top A_S + \mu I)v = \partial\ell/\partial z_S`, found by conjugate
gradients (chapter 12, ``eq-ch12-implicit``). This is the exact gradient of the *converged* code;
with few iterations it is an approximation.
"""
from __future__ import annotations

import contextlib
import math
from numbers import Real

import torch
import torch.nn as nn

from ..core.dictionary import ConvDictionary
from ..core.validation import check_bool, check_choice, nonneg_number, pair, positive_int, positive_number
from ..solvers.proximal_gradient import fista_steps
from .csc_ops import SYNTHESES, FusedProxGrad, PowerIterationStep, code_shape, fastest_synthesis

__all__ = ["CSCLayer", "csc_code", "test_time_lam", "unit_norm_atoms", "PowerIterationStep", "BACKWARDS", "STEP_MARGIN"]

BACKWARDS = ("unroll", "implicit")
#: relative safety margin on the warm-started power-iteration estimate ‖AᵀA v‖ of ‖A‖² (see module docstring)
STEP_MARGIN = 0.1
_ATOM_EPS = 1e-12


def _lam_values(lam, n_channels: int, per_channel: bool) -> torch.Tensor:
    """λ validated as a tensor: shape () for a scalar layer, (n_channels,) for a per-channel one."""
    is_sequence = isinstance(lam, (list, tuple)) and all(isinstance(v, Real) and not isinstance(v, bool) for v in lam)
    if isinstance(lam, bool) or not (isinstance(lam, (Real, torch.Tensor)) or is_sequence):
        raise TypeError(f"lam must be a non-negative number, a sequence of numbers or a tensor, got {type(lam).__name__}")
    value = torch.as_tensor(lam).detach()
    if not value.is_floating_point():
        value = value.to(torch.get_default_dtype())
    if not torch.isfinite(value).all() or (value < 0).any():
        raise ValueError("lam must be finite and non-negative")
    if per_channel:
        if value.ndim == 0:
            return value.expand(n_channels).clone()
        if value.shape != (n_channels,):
            raise ValueError(f"per-channel lam must be a scalar or have length out_channels={n_channels}, "
                             f"got shape {tuple(value.shape)}")
        return value.clone()
    if value.numel() != 1:
        raise ValueError(f"lam must be a scalar for a layer with per_channel_lam=False, got shape {tuple(value.shape)}")
    return value.reshape(()).clone()


def unit_norm_atoms(weight: torch.Tensor) -> torch.Tensor:
    r"""Atoms rescaled to unit Euclidean norm, :math:`W_i / \|W_i\|_2` (differentiable; chapter 12, ``eq-ch12-model``)."""
    norms = weight.flatten(1).norm(dim=1).clamp_min(_ATOM_EPS)
    return weight / norms.reshape(-1, *([1] * (weight.ndim - 1)))


def _check_synthesis(synthesis) -> str:
    return check_choice(synthesis, "synthesis", ("auto", *SYNTHESES))


def _checked_lam(lam, x: torch.Tensor, n_atoms: int) -> torch.Tensor:
    """λ as a tensor in x's dtype, checked once per forward pass (one device sync, not one per step)."""
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
    iterates' memory whatever ``overwrite`` says.
    """
    size = tuple(x.shape[2:])
    shape = code_shape(weight.shape, size, stride, padding, x.shape[0])
    differentiable = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or lam.requires_grad)
    overwrite = overwrite or not differentiable
    if synthesis == "auto":
        synthesis = fastest_synthesis(weight, stride, padding, size, shape, backward=differentiable)
    step_map = FusedProxGrad(x, weight, lam, eta, mu, nonneg, stride, padding, synthesis)
    zero = x.new_zeros(()).expand(shape)  # z₀ = 0 without memory: T(0) comes from step_map.first()
    return fista_steps(step_map, zero, n_iter, first=step_map.first(), overwrite=overwrite)


def _conjugate_gradient(apply_h, rhs, mask, n_iter: int, tol: float, curvature_floor: float):
    """Solve H v = rhs on the masked coordinates (per sample) by CG; H symmetric positive semidefinite.

    A sample stops when its residual is below ``tol`` (relative) or when a search direction has
    curvature pᵀHp ≤ ``curvature_floor``·pᵀp: before the solver has converged the active set can make
    H singular, and stopping there keeps the (then approximate) implicit gradient bounded.
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
    for _ in range(n_iter):
        if not bool(running.any()):
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


class _ImplicitCSC(torch.autograd.Function):
    """Forward: FISTA without autograd. Backward: implicit differentiation of the fixed point."""

    @staticmethod
    def forward(ctx, x, weight, lam_map, mu, eta, n_iter, stride, padding, nonneg, cg_iter, cg_tol, synthesis):
        with torch.no_grad():  # no graph: the iterates' memory is reused (memory flat in n_iter)
            z = _run_fista(x.detach(), weight.detach(), lam_map.detach(), mu, eta, n_iter, stride, padding, nonneg,
                           synthesis, overwrite=True)
        ctx.save_for_backward(x, weight, lam_map, z)
        ctx.options = (mu, eta, stride, padding, cg_iter, cg_tol)
        return z

    @staticmethod
    def backward(ctx, grad_z):
        x, weight, lam_map, z = ctx.saved_tensors
        mu, eta, stride, padding, cg_iter, cg_tol = ctx.options
        support = (z != 0).to(z.dtype)
        fixed = ConvDictionary(weight.detach(), stride=stride, padding=padding)
        size = tuple(x.shape[2:])

        def apply_h(v):  # (A_Sᵀ A_S + μ I) v, v supported on S
            v = v * support
            return (fixed.analyze(fixed.synthesize(v, output_size=size)) + mu * v) * support
        # curvature floor relative to 1/η ≥ ‖A‖²: much flatter directions count as null (float32: 3e-4, float64: 1e-6)
        floor = max(1e-6, math.sqrt(torch.finfo(z.dtype).eps)) / eta
        v = _conjugate_gradient(apply_h, grad_z, support, cg_iter, cg_tol, floor).detach()
        with torch.enable_grad():
            xs = x.detach().requires_grad_(ctx.needs_input_grad[0])
            ws = weight.detach().requires_grad_(ctx.needs_input_grad[1])
            ls = lam_map.detach().requires_grad_(ctx.needs_input_grad[2])
            d = ConvDictionary(ws, stride=stride, padding=padding)
            # F(θ) = Aᵀx − AᵀA z − μ z − λ sign(z) at the fixed z; dℓ/dθ = vᵀ ∂F/∂θ
            residual_map = d.analyze(xs - d.synthesize(z, output_size=size)) - mu * z - ls * torch.sign(z)
            inputs = [t for t, need in zip((xs, ws, ls), ctx.needs_input_grad[:3]) if need]
            grads = iter(torch.autograd.grad((v * residual_map).sum(), inputs, allow_unused=True)) if inputs else iter(())
            out = [next(grads) if need else None for need in ctx.needs_input_grad[:3]]
        return (*out, None, None, None, None, None, None, None, None, None)


def csc_code(x: torch.Tensor, weight: torch.Tensor, lam, *, mu: float = 0.0, step: float, n_iter: int,
             stride=1, padding=0, nonneg: bool = True, backward: str = "unroll", cg_iter: int = 200,
             cg_tol: float = 1e-10, synthesis: str = "auto") -> torch.Tensor:
    r"""``n_iter`` FISTA steps from 0 on :math:`\min_{z(\ge 0)} \lambda\|z\|_1 + \tfrac{\mu}{2}\|z\|^2 + \tfrac12\|x - Az\|^2`.

    :math:`A` = ``ConvDictionary(weight, stride, padding)`` (used as given: no renormalisation), step
    ``step`` (:math:`\eta \le 1/\|A\|^2`), ``lam`` a scalar or per-channel tensor. ``backward`` selects
    the unrolled or the implicit gradient; ``synthesis`` the form of :math:`Az` (``"auto"``: the faster
    exact one for this shape, :func:`cscnb.nn.csc_ops.fastest_synthesis`). The steps use the fused map
    :class:`cscnb.nn.csc_ops.FusedProxGrad`. Implements chapter 12, ``eq-ch12-fista``, ``eq-ch12-fused``
    and ``eq-ch12-implicit``.
    """
    check_choice(backward, "backward", BACKWARDS)
    _check_synthesis(synthesis)
    n_iter = positive_int(n_iter, "n_iter")
    step = positive_number(step, "step")
    mu = nonneg_number(mu, "mu")
    stride, padding = pair(stride, "stride", 1), pair(padding, "padding", 0)
    lam = _checked_lam(lam, x, weight.shape[0])
    if backward == "implicit":
        lam_map = lam.reshape(-1, 1, 1) if lam.ndim == 1 else lam
        return _ImplicitCSC.apply(x, weight, lam_map, mu, float(step), n_iter, stride, padding, nonneg,
                                  cg_iter, cg_tol, synthesis)
    return _run_fista(x, weight, lam, mu, float(step), n_iter, stride, padding, nonneg, synthesis, overwrite=False)


class CSCLayer(nn.Module):
    r"""Convolutional sparse coding as a layer: a drop-in replacement for ``nn.Conv2d`` (Dai et al. 2022).

    .. math:: \mathrm{CSCLayer}(x) \approx \argmin_{z \ge 0} \lambda\|z\|_1 + \tfrac{\mu}{2}\|z\|_2^2
              + \tfrac12\|x - A z\|_2^2 ,

    ``n_iter`` FISTA steps from 0 with unit-norm atoms (chapter 12, ``eq-ch12-model`` and ``eq-ch12-fista``).
    Same constructor arguments and output shape as ``nn.Conv2d`` (``bias`` must be False: the layer's
    bias is :math:`-\eta\lambda`, chapter 12 ``eq-ch12-one-step``). ``lam`` is a number or a per-channel
    tensor (``per_channel_lam=True``), learnable with ``learnable_lam=True`` (parametrised as
    :math:`\lambda = |\rho|`), and can be changed at any time: ``layer.lam = 0.3`` or
    :func:`test_time_lam`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = False, *, n_iter: int = 2, lam=0.1, mu: float = 0.0,
                 nonneg: bool = True, backward: str = "unroll", learnable_lam: bool = False,
                 per_channel_lam: bool = False, steady_power_iters: int = 2, synthesis: str = "auto"):
        super().__init__()
        self.in_channels = positive_int(in_channels, "in_channels")
        self.out_channels = positive_int(out_channels, "out_channels")
        self.kernel_size = pair(kernel_size, "kernel_size", 1)
        self.stride = pair(stride, "stride", 1)
        self.padding = pair(padding, "padding", 0)
        if pair(dilation, "dilation", 1) != (1, 1):
            raise ValueError(f"dilation must be 1 for a CSCLayer, got {dilation}")
        if groups != 1:
            raise ValueError(f"groups must be 1 for a CSCLayer, got {groups}")
        if check_bool(bias, "bias"):
            raise ValueError("bias must be False: a CSCLayer's bias is -step*lam (set lam instead)")
        self.n_iter = positive_int(n_iter, "n_iter")
        self.mu = nonneg_number(mu, "mu")
        self.nonneg = check_bool(nonneg, "nonneg")
        self.backward = check_choice(backward, "backward", BACKWARDS)
        self.synthesis = _check_synthesis(synthesis)
        self.per_channel_lam = bool(per_channel_lam)
        self.learnable_lam = bool(learnable_lam)
        weight = torch.empty(self.out_channels, self.in_channels, *self.kernel_size)
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))  # nn.Conv2d's default initialisation
        self.weight = nn.Parameter(weight)
        lam_init = _lam_values(lam, self.out_channels, self.per_channel_lam).to(weight.dtype)
        if self.learnable_lam:
            self.lam_param = nn.Parameter(lam_init)  # λ = |ρ|; ρ = λ initially
        else:
            self.register_buffer("lam_param", lam_init)
        self.step_size = PowerIterationStep(positive_int(steady_power_iters, "steady_power_iters"), STEP_MARGIN)

    # ----------------------------------------------------------------------------------- λ
    @property
    def lam(self) -> torch.Tensor:
        """The current λ (shape () or (out_channels,)), non-negative."""
        return self.lam_param.abs()

    @lam.setter
    def lam(self, value) -> None:
        new = _lam_values(value, self.out_channels, self.per_channel_lam)
        with torch.no_grad():
            self.lam_param.copy_(new.to(self.lam_param))

    # ----------------------------------------------------------------------------------- step
    def dictionary_weight(self) -> torch.Tensor:
        """The unit-norm atoms used in the forward pass (differentiable in ``weight``)."""
        return unit_norm_atoms(self.weight)

    def refresh_step_size(self, x_or_size=None, n_iter: int = 200) -> float:
        """Recompute :math:`L = (1 + \\text{margin})\\|A\\|^2` from a fresh random vector (``n_iter`` power iterations).

        ``x_or_size``: an input batch or its spatial size; default the size of the last forward pass.
        """
        if x_or_size is None:
            if self.step_size.size is None:
                raise ValueError("x_or_size is required before the first forward pass (the input size is unknown)")
            x_or_size = self.step_size.size
        size = tuple(x_or_size.shape[2:]) if isinstance(x_or_size, torch.Tensor) else tuple(x_or_size)
        return self.step_size.refresh(self._fixed_dictionary(), size, positive_int(n_iter, "n_iter"),
                                      self._weight_token())

    def _fixed_dictionary(self) -> ConvDictionary:
        with torch.no_grad():
            return ConvDictionary(self.dictionary_weight().detach(), stride=self.stride, padding=self.padding)

    def _weight_token(self):
        w = self.weight
        return (w.data_ptr(), w._version, w.dtype, str(w.device))

    def lipschitz(self, x: torch.Tensor) -> float:
        """The :math:`L` the forward pass uses for inputs of ``x``'s size (warm-started power iteration)."""
        return self.step_size.get(self._fixed_dictionary, tuple(x.shape[2:]), self._weight_token())

    # ----------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape (batch, {self.in_channels}, height, width), "
                             f"got {tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        L = self.lipschitz(x)
        return csc_code(x, self.dictionary_weight(), self.lam.to(x.dtype), mu=self.mu, step=1.0 / L,
                        n_iter=self.n_iter, stride=self.stride, padding=self.padding, nonneg=self.nonneg,
                        backward=self.backward, synthesis=self.synthesis)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, n_iter={self.n_iter}, mu={self.mu}, nonneg={self.nonneg}, "
                f"backward={self.backward!r}, learnable_lam={self.learnable_lam}, "
                f"per_channel_lam={self.per_channel_lam}")


@contextlib.contextmanager
def test_time_lam(model: nn.Module, lam):
    r"""Set :math:`\lambda` of every :class:`CSCLayer` in ``model`` to ``lam`` inside the ``with`` block.

    Solves the layers' problems with a different sparsity weight at test time (chapter 13). The SDNet
    authors' robust inference changes the stem layer's λ only: pass that layer as ``model``, or use
    :func:`cscnb.robustness.lam_sweep` with ``layers="stem"``. The previous values are restored on exit,
    also when the block raises.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    layers = [m for m in model.modules() if isinstance(m, CSCLayer)]
    if not layers:
        raise ValueError("model contains no CSCLayer")
    saved = [layer.lam_param.detach().clone() for layer in layers]
    try:
        for layer in layers:
            layer.lam = lam
        yield model
    finally:
        with torch.no_grad():
            for layer, value in zip(layers, saved):
                layer.lam_param.copy_(value)


test_time_lam.__test__ = False  # its name starts with "test": keep pytest from collecting it
