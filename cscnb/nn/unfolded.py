r"""Shared machinery of the unfolded sparse-coding blocks (chapters 7 and 8).

Argument checks, the operator-norm bound (valid for every signal size) used by every step-size check, the
dilated-kernel identity, the ISTA/FISTA continuation loop, and :class:`UnfoldedCSCLayer` — one ML-CSC
layer unfolded into ``1 + n_unfold`` proximal-gradient steps. :mod:`cscnb.nn.blocks` re-exports the
public names.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.prox import nonneg_soft_threshold
from ..core.validation import check_choice, check_int, nonneg_int, nonneg_number, positive_int, positive_number
from ..solvers.engine import forward_backward, proximal_gradient

__all__ = ["conv_operator_norm", "dilate_kernel", "UnfoldedCSCLayer"]


CONV = {1: F.conv1d, 2: F.conv2d}
CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d}
CONV_MODULE = {1: nn.Conv1d, 2: nn.Conv2d}


def check_dim(dim) -> int:
    return check_int(dim, "dim", minimum=1, maximum=2, expected="1 (signals) or 2 (images)")


def odd_kernel(kernel_size) -> int:
    k = positive_int(kernel_size, "kernel_size")
    if k % 2 == 0:
        raise ValueError(f"kernel_size must be odd ('same' padding keeps the size), got {k}")
    return k


def check_method(method) -> str:
    return check_choice(method, "method", ("ista", "fista"))


def check_dilations(dilations) -> tuple:
    """A non-empty tuple or list of dilation rates (positive ints), as a tuple."""
    if not isinstance(dilations, (tuple, list)):
        raise TypeError(f"dilations must be a non-empty tuple of ints, got {dilations!r}")
    if not dilations:
        raise ValueError("dilations must be a non-empty tuple of ints, got an empty one")
    return tuple(positive_int(r, "dilations") for r in dilations)


def check_conv_weight(weight, name: str = "weight") -> torch.Tensor:
    """A 1-D or 2-D convolution weight: a tensor of shape (C_out, C_in, k) or (C_out, C_in, kh, kw)."""
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (C_out, C_in, k) or (C_out, C_in, kh, kw), "
                        f"got {type(weight).__name__}")
    if weight.ndim not in (3, 4):
        raise ValueError(f"{name} must have shape (C_out, C_in, k) or (C_out, C_in, kh, kw), got {tuple(weight.shape)}")
    return weight


def init_weight(shape) -> nn.Parameter:
    # the nn.Conv initialization, so CSC nets and their CNN counterparts start alike
    weight = torch.empty(shape)
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    return nn.Parameter(weight)


def threshold_param(threshold, n: int) -> nn.Parameter:
    return nn.Parameter(torch.full((n,), nonneg_number(threshold, "threshold")))


def check_input(x, channels: int, dim: int, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != dim + 2 or x.shape[1] != channels:
        layout = "(batch, channels, length)" if dim == 1 else "(batch, channels, height, width)"
        raise ValueError(f"{name} must have shape {layout} with channels={channels}, got {tuple(x.shape)}")


def conv_operator_norm(weight: torch.Tensor, dilation: int = 1, grid: int = 64, *, signal_size=None) -> float:
    r"""An upper bound on :math:`\|D\|_2` for ``conv(·, weight, dilation)`` (chapter 7, ``lem-ch7-conv-norm``).

    :math:`D` is the stride-1 convolution with zero padding of at most "same" size (or its adjoint,
    the transposed convolution: same norm). Let :math:`d_a \le r(k_a - 1)` be the extent of the dilated
    kernel's non-zero taps along axis :math:`a` (last minus first), :math:`\hat K(\omega)` the kernel's
    frequency response (a ``C_out × C_in`` matrix of trigonometric polynomials of degree :math:`d_a`
    per axis), :math:`M = \sup_\omega \sigma_{\max}(\hat K(\omega))`, and :math:`G_N` the maximum of
    :math:`\sigma_{\max}` over the :math:`N`-point DFT grid per axis.

    * ``signal_size=None`` (default): returns :math:`G_N / \sqrt{1 - \tfrac12(\pi\sum_a d_a/N)^2}` with
      :math:`N` = ``grid``, an upper bound on :math:`M` and therefore on :math:`\|D\|_2` for signals of
      **every** size (:math:`\|D\|_2 \to M` as the size grows). Every :math:`\omega` lies within
      :math:`\pi/N` per axis of a grid point, and :math:`|u^*\hat K v|^2` (top singular vectors at the
      maximiser) has a vanishing gradient there and second derivative at most
      :math:`(\pi\sum_a d_a/N)^2 M^2` along the way (Bernstein's inequality). The factor is below
      :math:`1.003` for a 3-tap 1-D kernel at ``grid=64``.
    * ``signal_size=(n_1, …)``: returns :math:`G_N` with :math:`N_a = n_a + r(k_a - 1)`, an upper bound
      on :math:`\|D\|_2` for signals of that size or smaller (embedding the zero-padded signal in a
      periodic one of that length changes no output, and the circular convolution's norm is
      :math:`G_N`). ``grid`` is not used.

    Used for the step bounds ``eq-ch7-step-bound`` (chapter 7) and ``eq-ch8-step-bound`` (chapter 8).
    """
    check_conv_weight(weight)
    dilation = positive_int(dilation, "dilation")
    grid = positive_int(grid, "grid")
    dim = weight.ndim - 2
    w = dilate_kernel(weight.detach(), dilation)
    spans = [dilation * (k - 1) for k in weight.shape[2:]]
    if signal_size is None:
        # the degree that matters is the extent of the non-zero taps (trailing or leading zero taps do not count)
        taps = torch.nonzero(w.abs().sum(dim=(0, 1)) > 0)
        extent = [int(taps[:, a].max() - taps[:, a].min()) if taps.numel() else 0 for a in range(dim)]
        if max(spans) + 1 > grid:
            raise ValueError(f"grid={grid} is smaller than the dilated kernel ({max(spans) + 1} taps)")
        tau = math.pi * sum(extent) / grid
        if tau * tau >= 1.0:  # keep the correction factor below sqrt(2)
            raise ValueError(f"grid={grid} is too coarse for a dilated kernel of span {spans}: "
                             f"use grid > {math.ceil(math.pi * sum(extent))}")
        sizes, factor = (grid,) * dim, 1.0 / math.sqrt(1.0 - tau * tau / 2)
    else:
        if not isinstance(signal_size, (tuple, list)) or len(signal_size) != dim:
            raise TypeError(f"signal_size must be a tuple of {dim} ints (the spatial size), got {signal_size!r}")
        sizes = tuple(positive_int(n, "signal_size") + d for n, d in zip(signal_size, spans, strict=True))
        factor = 1.0
    spectrum = torch.fft.fftn(w, s=sizes, dim=tuple(range(2, 2 + dim)))
    spectrum = spectrum.permute(*range(2, 2 + dim), 0, 1)  # (freq..., C_out, C_in)
    return float(torch.linalg.matrix_norm(spectrum, ord=2).max()) * factor


def dilate_kernel(weight: torch.Tensor, rate: int) -> torch.Tensor:
    r"""The dense kernel of a rate-``rate`` dilated kernel: size :math:`r(k-1)+1`, zero off the grid.

    :math:`\tilde w[r j] = w[j]` and :math:`\tilde w = 0` elsewhere, so
    ``conv(x, w, dilation=r) == conv(x, dilate_kernel(w, r))`` (chapter 8, theorem ``thm-ch8-dilation``).
    """
    check_conv_weight(weight)
    rate = positive_int(rate, "rate")
    spatial = weight.shape[2:]
    out = weight.new_zeros(*weight.shape[:2], *(rate * (k - 1) + 1 for k in spatial))
    out[(slice(None), slice(None)) + (slice(None, None, rate),) * len(spatial)] = weight
    return out


def proximal_steps(z_prev, z, gradient, threshold, step: float, n_steps: int, method: str):
    r"""``n_steps`` more steps :math:`z \leftarrow \operatorname{ReLU}(y - c\nabla f(y) - c\theta)`.

    ``z_prev`` is the initial point and ``z`` the first step from it; FISTA extrapolates
    :math:`y = z_k + \tfrac{t_k - 1}{t_{k+1}}(z_k - z_{k-1})` with :math:`t_1 = 1` (ISTA: :math:`y = z_k`).
    The package's loop (:func:`cscnb.solvers.engine.proximal_gradient`) with the non-negative prox.
    """
    forward_backward_step = forward_backward(
        gradient, lambda u, eta, out: nonneg_soft_threshold(u, eta * threshold, out=out, check=False), step)

    def step_map(y, k, out):
        return z if k == 0 else forward_backward_step(y, k, out)  # the first step is the caller's
    momentum = "fista" if method == "fista" else "none"
    return proximal_gradient(step_map, z_prev, n_steps + 1, momentum=momentum)[0]


class UnfoldedCSCLayer(nn.Module):
    r"""``1 + n_unfold`` proximal-gradient steps, from 0, on one layer of ML-CSC (chapter 7, ``eq-ch7-pursuit``).

    .. math:: \min_{\Gamma \ge 0}\ \tfrac12\|x - D\Gamma\|_2^2 + \theta^\top\Gamma, \qquad
              \Gamma^{1} = \operatorname{ReLU}(c D^\top x - c\theta).

    With ``n_unfold=0`` it is ``relu(conv(x, c·W) - c·θ)``, a CNN layer (layered thresholding).
    ``step`` :math:`c \le 1/\|D\|_2^2`; ``None`` picks 0.9 times that bound for the initial weights.

    Args:
        in_channels: channels of the input ``x``.
        out_channels: number of atoms (channels of :math:`\Gamma`).
        kernel_size: odd atom size (default 3); the padding ``dilation * (kernel_size - 1) // 2`` keeps the size.
        n_unfold: proximal-gradient steps after the first one (default 0: a CNN layer).
        dim: 1 (signals) or 2 (images, default).
        dilation: dilation of the kernel (default 1).
        step: the step :math:`c`, at most :math:`1/\|D\|_2^2` for the initial weights (a ``ValueError`` above
            it); ``None`` (default) picks 0.9 times that bound.
        threshold: initial :math:`\theta \ge 0` of every channel (default 0); trained through :math:`\rho` with
            :math:`\theta = |\rho|`.
        method: ``"fista"`` (default, momentum between the unfolded steps) or ``"ista"`` (none).

    Shape:
        - Input: ``(B, in_channels, *spatial)`` with ``dim`` spatial axes.
        - Output: ``(B, out_channels, *spatial)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, n_unfold: int = 0, *, dim: int = 2,
                 dilation: int = 1, step=None, threshold: float = 0.0, method: str = "fista"):
        super().__init__()
        self.in_channels = positive_int(in_channels, "in_channels")
        self.out_channels = positive_int(out_channels, "out_channels")
        self.kernel_size = odd_kernel(kernel_size)
        self.n_unfold = nonneg_int(n_unfold, "n_unfold")
        self.dim, self.dilation, self.method = check_dim(dim), positive_int(dilation, "dilation"), check_method(method)
        self.padding = self.dilation * (self.kernel_size - 1) // 2
        self.weight = init_weight((self.out_channels, self.in_channels) + (self.kernel_size,) * self.dim)
        self.threshold_param = threshold_param(threshold, self.out_channels)
        self.step = checked_step(step, self.step_bound())

    @property
    def threshold(self) -> torch.Tensor:
        return self.threshold_param.abs().view(-1, *(1,) * self.dim)

    def step_bound(self) -> float:
        """:math:`1/\\|D\\|_2^2` for the current weights (``eq-ch7-step-bound``)."""
        return 1.0 / conv_operator_norm(self.weight, self.dilation) ** 2

    def check_step(self) -> None:
        checked_step(self.step, self.step_bound())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.dim)
        conv, conv_t = CONV[self.dim], CONV_T[self.dim]
        analysis = conv(x, self.weight, None, 1, self.padding, self.dilation)  # D^T x, reused by every step
        z = torch.relu(self.step * (analysis - self.threshold))
        if self.n_unfold == 0:
            return z

        def gradient(v):  # D^T (D v - x)
            return conv(conv_t(v, self.weight, None, 1, self.padding, 0, 1, self.dilation), self.weight, None, 1,
                        self.padding, self.dilation) - analysis

        return proximal_steps(torch.zeros_like(z), z, gradient, self.threshold, self.step, self.n_unfold,
                               self.method)


def checked_step(step, bound: float) -> float:
    if step is None:
        return 0.9 * bound
    step = positive_number(step, "step")
    if step > bound * (1 + 1e-9):  # tolerance: the bound itself is computed in floating point
        raise ValueError(f"step={step:.4g} exceeds its convergence bound {bound:.4g} for these weights")
    return float(step)
