r"""The convolutional sparse-coding layer of SDNet (:cite:t:`dai2022revisiting`): a drop-in ``nn.Conv2d``.

Its output is the (approximate) solution of the elastic-net convolutional sparse-coding problem

.. math:: z^\star(x) = \argmin_{z \ge 0}\ \lambda\|z\|_1 + \tfrac{\mu}{2}\|z\|_2^2 + \tfrac12\|x - Az\|_2^2,

where :math:`Az` = ``conv_transpose2d(z, W)`` (``ConvDictionary(W).synthesize``) with unit-norm atoms
:math:`W_i`, so :math:`A^\top x` = ``conv2d(x, W)`` has the shape of ``nn.Conv2d``'s output. The layer
runs ``n_iter`` FISTA steps from :math:`z_0 = 0` (:func:`cscnb.solvers.fista_steps`, the step
``cscnb.solve`` uses) with step :math:`\eta = c/\hat L` (chapter 12, ``eq-ch12-fista``).

**Unit-norm atoms.** ``atom_norm="reparametrize"`` (default) uses :math:`W_i/\|W_i\|` in the forward pass,
differentiably. ``atom_norm="project"`` is the SDNet authors' rule: in training mode the atoms of
``weight`` are renormalised *in place* (under ``torch.no_grad()``) before each forward pass, which then
uses ``weight`` as it is — a projection, so the gradient and weight decay act on the projected atoms;
in eval mode ``weight`` is left untouched and :math:`W_i/\|W_i\|` is used (the same atoms once trained).

**Step size by a warm-started power iteration** (:class:`cscnb.nn.csc_ops.PowerIterationStep`,
:func:`cscnb.core.operator_norm.power_iteration`). :math:`\hat L \le \|A\|_2^2` is estimated from the top
eigenvector :math:`v` of :math:`A^\top A`, kept in a persistent buffer; :math:`\eta = c/\hat L` with the
step factor :math:`c` (default :math:`1/1.1`, a 10 % margin; the authors use 0.9). Which iterations run
depends on the buffers and the input size only, never on Python object identity, so a run resumed from
a ``state_dict`` reproduces the straight run bit for bit:

* a *training step* (``layer.training`` and autograd recording) runs ``power_iters`` iterations from
  :math:`v` and stores the result — the authors refresh the step before every training iteration;
* any other forward pass (eval mode, ``torch.no_grad()``) uses the value those iterations would give
  for the current weight without storing it, computed once and reused while the weight (its storage
  and version counter), the input size and :math:`v` are unchanged. Writing the weight through
  ``weight.data`` bypasses its version counter: call :meth:`CSCLayer.refresh_step_size` after such a
  write (or write under ``torch.no_grad()`` with ``weight.copy_(...)``, which the check sees);
* the first input, or an input of a new size, starts cold: 50 iterations from a seeded random vector.

Everything stays on the device: :math:`\hat L` and :math:`\eta` are 0-d tensors, ``power_tol`` is tested
on the device, λ is validated when it is set (constructor, ``layer.lam = ...``, :func:`test_time_lam`), not
per forward pass, so a training step reads nothing back to the host. The step-size work runs outside
``torch.compile``'s graph (``torch.compiler.disable``) and hands the graph a tensor, so a compiled model
compiles once. How close :math:`\eta\|A\|^2` stays to the factor after optimizer steps is measured in
``tests/test_csc_layer.py``; the cost of the iterations in ``benchmarks/bench_csc_layer.py``.
:func:`frozen_step_size` reuses the stored :math:`\hat L` without iterations (profiling).

**Cost.** From :math:`z_0 = 0`, :math:`K` steps cost :math:`K` analyses (``conv2d``) and :math:`K - 1`
syntheses (chapter 12, ``eq-ch12-floor``): the first step is one ``conv2d`` with bias
:math:`-\eta\lambda` and a ReLU, each further step is written in residual form
:math:`\operatorname{ReLU}(y + \texttt{conv2d}(x - Ay, \eta W, -\eta\lambda))` with in-place updates
(:class:`cscnb.nn.csc_ops.FusedProxGrad`); the synthesis form is fixed (``synthesis="auto"``:
``conv_transpose2d``) unless timing is asked for (``"timed"``).

**Gradients.** ``backward="unroll"`` differentiates through the ``n_iter`` steps (memory grows with
``n_iter``); ``backward="implicit"`` differentiates the fixed point (:mod:`cscnb.nn.csc_implicit`, chapter 12,
``eq-ch12-implicit``; its conjugate gradients read a convergence flag on the host every 10 iterations).
Under ``torch.autocast`` the convolutions run in the autocast dtype and the code comes out in it.
"""
from __future__ import annotations

import contextlib
import math
from numbers import Real

import torch
import torch.nn as nn

from ..core.validation import (
    check_bool,
    check_choice,
    check_int,
    check_number,
    conv2d_geometry,
    nonneg_number,
    positive_int,
)
from .csc_functional import BACKWARDS, _code, csc_code, unit_norm_atoms
from .csc_ops import SYNTHESIS_CHOICES, PowerIterationStep, code_shape, conv_gram, flipped_available, resolve_synthesis

__all__ = ["CSCLayer", "csc_code", "test_time_lam", "frozen_step_size", "unit_norm_atoms", "BACKWARDS",
           "ATOM_NORMS", "STEP_FACTOR"]

ATOM_NORMS = ("reparametrize", "project")
#: default step factor c in η = c / L̂ (a 10 % margin on the warm-started estimate; the SDNet authors use 0.9)
STEP_FACTOR = 1 / 1.1


def _lam_values(lam, n_channels: int, per_channel: bool) -> torch.Tensor:
    """λ validated as a tensor: shape () for a scalar layer, (n_channels,) for a per-channel one."""
    is_sequence = isinstance(lam, (list, tuple)) and all(isinstance(v, Real) and not isinstance(v, bool) for v in lam)
    if isinstance(lam, bool) or not (isinstance(lam, (Real, torch.Tensor)) or is_sequence):
        raise TypeError("lam must be a non-negative number, a sequence of numbers or a tensor, "
                        f"got {type(lam).__name__}")
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


class CSCLayer(nn.Module):
    r"""Convolutional sparse coding as a layer: a drop-in replacement for ``nn.Conv2d`` (Dai et al. 2022).

    .. math:: \mathrm{CSCLayer}(x) \approx \argmin_{z \ge 0} \lambda\|z\|_1 + \tfrac{\mu}{2}\|z\|_2^2
              + \tfrac12\|x - A z\|_2^2 ,

    ``n_iter`` FISTA steps from 0 with unit-norm atoms and step :math:`\eta = c/\hat L` (chapter 12,
    ``eq-ch12-model``, ``eq-ch12-fista`` and ``eq-ch12-step``; the module docstring has the rules).

    Args:
        in_channels, out_channels, kernel_size, stride, padding: as in ``nn.Conv2d`` (an int or a pair).
        dilation, groups: only 1 (accepted for ``nn.Conv2d``'s signature).
        bias: only False: the layer's bias is :math:`-\eta\lambda` (chapter 12, ``eq-ch12-one-step``).
        n_iter: FISTA steps :math:`K \ge 1`.
        lam: :math:`\lambda \ge 0`, a number or (``per_channel_lam=True``) one per output channel; settable
            (``layer.lam = 0.3``, :func:`test_time_lam`), learnable with ``learnable_lam=True`` (stored as
            :math:`\rho` with :math:`\lambda = |\rho|`).
        mu: elastic-net weight :math:`\mu \ge 0`.
        nonneg: non-negative codes (ReLU prox, default) or signed codes (soft threshold).
        learnable_lam: store :math:`\lambda` as a parameter :math:`\rho` with :math:`\lambda = |\rho|` (default False).
        per_channel_lam: one :math:`\lambda` per output channel (default False).
        backward: ``"unroll"`` or ``"implicit"`` gradients.
        atom_norm: ``"reparametrize"`` (:math:`W/\|W\|` in the forward pass) or ``"project"`` (the authors'
            in-place renormalisation before each training forward pass).
        power_iters: warm-started power iterations per refresh (authors: up to 50).
        power_tol: relative tolerance after which a refresh's vector and estimate stop changing, tested on
            the device: all ``power_iters`` iterations still run (no host sync), unlike the authors' loop, which
            exits early (their tolerance: 1e-5); 0 lets every iteration update the estimate.
        step_factor: :math:`c` in :math:`\eta = c/\hat L`, in (0, 1] (default :math:`1/1.1`; authors 0.9).
        synthesis: ``"auto"`` (``conv_transpose2d``), ``"conv2d"`` (stride 1, padding ≤ k − 1),
            ``"conv_transpose2d"`` or ``"timed"`` (the faster form, timed once per shape).

    Shape:
        - Input: :math:`(N, C_{in}, H, W)`
        - Output: :math:`(N, C_{out}, H_{out}, W_{out})` with :math:`H_{out} = \lfloor (H + 2p - k)/s \rfloor + 1`
          (as ``nn.Conv2d``), in the autocast dtype under ``torch.autocast``.

    Attributes: ``weight`` :math:`(C_{out}, C_{in}, k_h, k_w)` (``nn.Conv2d``'s initialisation), ``lam_param``,
    ``step_size`` (:class:`cscnb.nn.csc_ops.PowerIterationStep`, persistent step-size state).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = False, *, n_iter: int = 2, lam=0.1, mu: float = 0.0,
                 nonneg: bool = True, backward: str = "unroll", learnable_lam: bool = False,
                 per_channel_lam: bool = False, atom_norm: str = "reparametrize", power_iters: int = 2,
                 power_tol: float = 0.0, step_factor: float = STEP_FACTOR, synthesis: str = "auto"):
        super().__init__()
        (self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
         self.dilation) = conv2d_geometry(in_channels, out_channels, kernel_size, stride, padding, dilation)
        if self.dilation != (1, 1):
            raise ValueError(f"dilation must be 1 for a CSCLayer, got {dilation}")
        self.groups = check_int(groups, "groups", minimum=1)
        if self.groups != 1:
            raise ValueError(f"groups must be 1 for a CSCLayer, got {groups}")
        if check_bool(bias, "bias"):
            raise ValueError("bias must be False: a CSCLayer's bias is -step*lam (set lam instead)")
        self.n_iter = positive_int(n_iter, "n_iter")
        self.mu = nonneg_number(mu, "mu")
        self.nonneg = check_bool(nonneg, "nonneg")
        self.backward = check_choice(backward, "backward", BACKWARDS)
        self.atom_norm = check_choice(atom_norm, "atom_norm", ATOM_NORMS)
        self.step_factor = check_number(step_factor, "step_factor", minimum=0, maximum=1, open_minimum=True)
        self.synthesis = check_choice(synthesis, "synthesis", SYNTHESIS_CHOICES)
        if self.synthesis == "conv2d" and not flipped_available(self.kernel_size, self.stride, self.padding):
            raise ValueError("synthesis='conv2d' needs stride 1 and padding <= kernel_size - 1, got "
                             f"stride={self.stride}, padding={self.padding}, kernel_size={self.kernel_size}")
        self.per_channel_lam = check_bool(per_channel_lam, "per_channel_lam")
        self.learnable_lam = check_bool(learnable_lam, "learnable_lam")
        self._lam_init = _lam_values(lam, self.out_channels, self.per_channel_lam)
        self.weight = nn.Parameter(torch.empty(self.out_channels, self.in_channels, *self.kernel_size))
        lam_init = self._lam_init.to(self.weight.dtype, copy=True)
        if self.learnable_lam:
            self.lam_param = nn.Parameter(lam_init)  # λ = |ρ|; ρ = λ initially
        else:
            self.register_buffer("lam_param", lam_init)
        self.step_size = PowerIterationStep(power_iters, power_tol)
        self._frozen = False
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s initialisation of ``weight``, λ back to its constructor value, the step size forgotten."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        with torch.no_grad():
            self.lam_param.copy_(self._lam_init.to(self.lam_param))
        self.step_size.reset()

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

    # ----------------------------------------------------------------------------------- step size
    def dictionary_weight(self) -> torch.Tensor:
        """The unit-norm atoms the forward pass uses (differentiable in ``weight``; ``weight`` itself if projected)."""
        if self.atom_norm == "project" and self.training:
            return self.weight
        return unit_norm_atoms(self.weight)

    def _project(self) -> None:
        if self.atom_norm == "project" and self.training:
            with torch.no_grad():
                self.weight.copy_(unit_norm_atoms(self.weight))

    def _size(self, x_or_size) -> tuple:
        if x_or_size is None:
            if self.step_size.size is None:
                raise ValueError("x_or_size is required before the first forward pass (the input size is unknown)")
            return self.step_size.size
        return tuple(x_or_size.shape[2:]) if isinstance(x_or_size, torch.Tensor) else tuple(x_or_size)

    def _gram_factory(self, size):
        def make_gram():  # the operator of W/‖W‖ (module docstring), built only when iterations run
            return conv_gram(unit_norm_atoms(self.weight).detach(), self.stride, self.padding, size)
        return make_gram

    @torch.compiler.disable
    def _estimate(self, size, mode: str) -> torch.Tensor:
        """:math:`\\hat L` for inputs of ``size``: ``mode`` "refresh" (stored), "peek" (not stored) or "frozen".

        The operator is that of :math:`W/\\|W\\|` in every mode (with ``atom_norm="project"`` in training mode
        the forward pass's atoms equal it up to rounding), so :meth:`lipschitz` never has to project.
        """
        w = self.weight
        make_gram = self._gram_factory(size)
        with torch.autocast(w.device.type, enabled=False):
            self.step_size.ensure(make_gram, code_shape(w.shape, size, self.stride, self.padding, 1), w)
            self.step_size.size = size
            if mode == "refresh":
                return self.step_size.refresh(make_gram)
            if mode == "frozen":
                return self.step_size.estimate
            return self.step_size.peek(make_gram, (size, w.data_ptr(), w._version, w.dtype, str(w.device)))

    @torch.compiler.disable
    def _prepare(self, x: torch.Tensor):
        """What precedes the iterations, outside ``torch.compile``: projection, step :math:`\\eta`, synthesis form."""
        self._project()
        size = tuple(x.shape[2:])
        training_step = self.training and torch.is_grad_enabled()
        mode = "frozen" if self._frozen else "refresh" if training_step else "peek"
        estimate = self._estimate(size, mode)
        eta = self.step_factor / estimate.clamp_min(torch.finfo(estimate.dtype).tiny)
        differentiable = torch.is_grad_enabled() and self.backward == "unroll"
        synthesis = resolve_synthesis(self.synthesis, self.weight, self.stride, self.padding, size,
                                      code_shape(self.weight.shape, size, self.stride, self.padding, x.shape[0]),
                                      backward=differentiable)
        return eta, synthesis

    def update_step_size(self, x_or_size=None) -> None:
        """Run one training refresh now (``power_iters`` warm iterations, stored), as SDNet's ``update_stepsize()``."""
        self._estimate(self._size(x_or_size), "refresh")

    def refresh_step_size(self, x_or_size=None, n_iter: int = 200) -> float:
        """Recompute the estimate from a fresh seeded random vector with ``n_iter`` power iterations and store it.

        ``x_or_size``: an input batch or its spatial size; default the size of the last forward pass.
        Returns :math:`L = \\hat L / c` as it is used from now on (:meth:`lipschitz`).
        """
        size, w = self._size(x_or_size), self.weight
        with torch.autocast(w.device.type, enabled=False):
            self.step_size.ensure(self._gram_factory(size), code_shape(w.shape, size, self.stride, self.padding, 1),
                                  w, n_iter=positive_int(n_iter, "n_iter"))
        self.step_size.size = size
        return self.lipschitz(size)

    def lipschitz(self, x_or_size) -> float:
        r""":math:`L = \hat L / c` (so :math:`\eta = 1/L`) that a forward pass on inputs of this size uses now.

        In training mode the next training step refreshes the estimate first; the value returned is the one
        that refresh computes. Reads the value on the host (one device sync; not called by ``forward``).
        """
        mode = "frozen" if self._frozen else "peek"
        return float(self._estimate(self._size(x_or_size), mode)) / self.step_factor

    # ----------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape (batch, {self.in_channels}, height, width), "
                             f"got {tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        eta, synthesis = self._prepare(x)
        return _code(x, self.dictionary_weight(), self.lam.to(x.dtype), self.mu, eta, self.n_iter, self.stride,
                     self.padding, self.nonneg, self.backward, synthesis)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, n_iter={self.n_iter}, mu={self.mu}, nonneg={self.nonneg}, "
                f"backward={self.backward!r}, learnable_lam={self.learnable_lam}, "
                f"per_channel_lam={self.per_channel_lam}, atom_norm={self.atom_norm!r}, "
                f"step_factor={self.step_factor:.4g}, synthesis={self.synthesis!r}")


def _csc_layers(model: nn.Module) -> list:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    layers = [m for m in model.modules() if isinstance(m, CSCLayer)]
    if not layers:
        raise ValueError("model contains no CSCLayer")
    return layers


@contextlib.contextmanager
def frozen_step_size(model: nn.Module):
    r"""Inside the ``with`` block every :class:`CSCLayer` of ``model`` uses its stored :math:`\hat L` (no iterations).

    For profiling a steady step's convolutions alone (:func:`cscnb.profiling.training_flops`,
    :func:`cscnb.profiling.timers.layer_costs`), or to keep a trained step size fixed. A layer that has
    never seen an input still starts cold. The previous behaviour is restored on exit.
    """
    layers = _csc_layers(model)
    saved = [layer._frozen for layer in layers]
    try:
        for layer in layers:
            layer._frozen = True
        yield model
    finally:
        for layer, value in zip(layers, saved, strict=True):
            layer._frozen = value


@contextlib.contextmanager
def test_time_lam(model: nn.Module, lam):
    r"""Set :math:`\lambda` of every :class:`CSCLayer` in ``model`` to ``lam`` inside the ``with`` block.

    Solves the layers' problems with a different sparsity weight at test time (chapter 13). The SDNet
    authors' robust inference changes the stem layer's λ only: pass that layer as ``model``, or use
    :func:`cscnb.robustness.lam_sweep` with ``layers="stem"``. The previous values are restored on exit,
    also when the block raises.
    """
    layers = _csc_layers(model)
    saved = [layer.lam_param.detach().clone() for layer in layers]
    try:
        for layer in layers:
            layer.lam = lam
        yield model
    finally:
        with torch.no_grad():
            for layer, value in zip(layers, saved, strict=True):
                layer.lam_param.copy_(value)


test_time_lam.__test__ = False  # its name starts with "test": keep pytest from collecting it
