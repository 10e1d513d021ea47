r"""Res-CSC and MSD-CSC blocks (our reconstruction of the models of :cite:p:`zhang2021towards`), and the ResNet /
DenseNet blocks they equal.

Every block is a few proximal-gradient (ISTA or FISTA) steps of non-negative convolutional sparse
coding, written with 1-D (``dim=1``) or 2-D (``dim=2``) stride-1 convolutions with "same" padding
(odd kernels), so the spatial size never changes. Notation: :math:`D^\top u` is
``conv(u, weight)`` (analysis) and :math:`D z` its exact adjoint ``conv_transpose(z, weight)``
(synthesis), as in chapter 3. ``n_unfold`` counts the proximal-gradient steps *beyond the first*:
``n_unfold=0`` is the single step that reads as a ResNet / DenseNet block; while the step stays within
its convergence bound (:math:`c \le 1/\|D\|_2^2`), larger values move the output towards the sparse
code the block's pursuit problem defines. Beyond the bound the extra steps are not proximal-gradient
steps of a convergent scheme.

Step sizes are checked against that bound when a block is built (``ValueError`` if above it) and on
demand with ``check_step()``: trained weights can grow past it, unless training rescales them after
every optimizer step (:func:`cscnb.nn.rescale_to_step_bound`). The bound uses :func:`conv_operator_norm`,
an upper bound on the operator norm valid for every signal size (chapter 7, ``lem-ch7-conv-norm``).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn

from ..core.validation import nonneg_int, positive_int
from .unfolded import (
    CONV,
    CONV_MODULE,
    CONV_T,
    UnfoldedCSCLayer,
    check_dilations,
    check_dim,
    check_input,
    check_method,
    checked_step,
    conv_operator_norm,
    dilate_kernel,
    init_weight,
    odd_kernel,
    proximal_steps,
    threshold_param,
)

__all__ = ["conv_operator_norm", "dilate_kernel", "UnfoldedCSCLayer", "ResCSCBlock", "ResidualBlock",
           "MSDCSCBlock", "DenseBlock"]


class ResCSCTerms(NamedTuple):
    """The three parts of the first Res-CSC step (chapter 7, ``eq-ch7-res-step``)."""
    skip: torch.Tensor      # Γ_{i-2}, the initial point
    branch: torch.Tensor    # c D_i^T Γ_{i-1}
    extra: torch.Tensor     # -c D_i^T D_i Γ_{i-2}
    threshold: torch.Tensor  # c θ_i


class ResCSCBlock(nn.Module):
    r"""Two ML-CSC layers; the second one's pursuit starts from the block input (chapter 7, ``eq-ch7-res-step``).

    Input :math:`\Gamma_{i-2}` (``channels``), hidden code by one thresholding step
    :math:`\Gamma_{i-1} = \operatorname{ReLU}(A^\top\Gamma_{i-2} - \theta_{i-1})` (``hidden_channels``), then
    proximal-gradient steps on

    .. math:: \min_{\Gamma \ge 0}\ \tfrac12\|\Gamma_{i-1} - D_i\Gamma\|_2^2 + \theta_i^\top\Gamma
              \quad\text{from}\quad \Gamma^0 = \Gamma_{i-2}:

    .. math:: \Gamma_i^1 = \operatorname{ReLU}\big(\Gamma_{i-2} + cD_i^\top\Gamma_{i-1} - cD_i^\top D_i\Gamma_{i-2}
              - c\theta_i\big),

    a ResNet block plus the extra term :math:`-cD_i^\top D_i\Gamma_{i-2}` (theorem ``thm-ch7-res-csc``);
    :meth:`to_resnet_block` builds the ResNet block that equals it. ``n_unfold`` adds ISTA/FISTA steps
    (step ``c`` :math:`\le 1/\|D_i\|_2^2`, ``eq-ch7-step-bound``; ``None``: 0.9 times the initial bound).

    Args:
        channels: channels of the input :math:`\Gamma_{i-2}` and of the output :math:`\Gamma_i`.
        kernel_size: odd kernel size of :math:`A` and :math:`D_i` (default 3; "same" padding).
        n_unfold: proximal-gradient steps after the first one (default 0: a ResNet-like block).
        hidden_channels: channels of :math:`\Gamma_{i-1}` (default ``None``: ``channels``).
        dim: 1 (signals) or 2 (images, default).
        step: the step :math:`c`, at most :math:`1/\|D_i\|_2^2` for the initial weights (a ``ValueError``
            above it); ``None`` (default) picks 0.9 times that bound.
        threshold: initial :math:`\theta_{i-1}` and :math:`\theta_i \ge 0` of every channel (default 0);
            trained through :math:`\rho` with :math:`\theta = |\rho|`.
        method: ``"fista"`` (default, momentum between the unfolded steps) or ``"ista"`` (none).

    Shape:
        - Input: ``(B, channels, *spatial)`` with ``dim`` spatial axes.
        - Output: ``(B, channels, *spatial)``.
    """

    def __init__(self, channels: int, kernel_size: int = 3, n_unfold: int = 0, *, hidden_channels=None, dim: int = 2,
                 step=None, threshold: float = 0.0, method: str = "fista"):
        super().__init__()
        self.channels = positive_int(channels, "channels")
        self.hidden_channels = (self.channels if hidden_channels is None
                                else positive_int(hidden_channels, "hidden_channels"))
        self.kernel_size = odd_kernel(kernel_size)
        self.n_unfold = nonneg_int(n_unfold, "n_unfold")
        self.dim, self.method = check_dim(dim), check_method(method)
        self.padding = (self.kernel_size - 1) // 2
        taps = (self.kernel_size,) * self.dim
        self.analysis_weight = init_weight((self.hidden_channels, self.channels) + taps)    # A^T: Γ_{i-2} → hidden
        self.dictionary_weight = init_weight((self.channels, self.hidden_channels) + taps)  # D_i^T: hidden → Γ_i
        self.hidden_threshold_param = threshold_param(threshold, self.hidden_channels)
        self.threshold_param = threshold_param(threshold, self.channels)
        self.step = checked_step(step, self.step_bound())

    def _shape(self, t):
        return t.abs().view(-1, *(1,) * self.dim)

    def step_bound(self) -> float:
        r""":math:`1/\|D_i\|_2^2` for the current dictionary (``eq-ch7-step-bound``)."""
        return 1.0 / conv_operator_norm(self.dictionary_weight) ** 2

    def check_step(self) -> None:
        checked_step(self.step, self.step_bound())

    def _analyze(self, u):   # D_i^T u
        return CONV[self.dim](u, self.dictionary_weight, None, 1, self.padding)

    def _synthesize(self, z):  # D_i z
        return CONV_T[self.dim](z, self.dictionary_weight, None, 1, self.padding)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\Gamma_{i-1} = \operatorname{ReLU}(A^\top\Gamma_{i-2} - \theta_{i-1})`."""
        check_input(x, self.channels, self.dim)
        return torch.relu(CONV[self.dim](x, self.analysis_weight, None, 1, self.padding)
                          - self._shape(self.hidden_threshold_param))

    def terms(self, x: torch.Tensor) -> ResCSCTerms:
        """The skip, branch and extra terms of the first step; ``relu(skip + branch + extra - threshold)`` is it."""
        h = self.hidden(x)
        c = self.step
        return ResCSCTerms(skip=x, branch=c * self._analyze(h), extra=-c * self._analyze(self._synthesize(x)),
                           threshold=c * self._shape(self.threshold_param))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hidden(x)
        c, theta = self.step, self._shape(self.threshold_param)
        target = self._analyze(h)  # D_i^T Γ_{i-1}, reused by every step

        def gradient(v):  # D_i^T (D_i v - Γ_{i-1})
            return self._analyze(self._synthesize(v)) - target

        z = torch.relu(x - c * gradient(x) - c * theta)
        return proximal_steps(x, z, gradient, theta, c, self.n_unfold, self.method)

    def to_resnet_block(self, *, exact: bool = True) -> ResidualBlock:
        r"""The :class:`ResidualBlock` equal to this block's first step (needs ``n_unfold == 0``).

        ``exact=True`` absorbs :math:`-cD_i^\top D_i x` with
        :math:`u = \operatorname{ReLU}(u) - \operatorname{ReLU}(-u)`:
        hidden channels :math:`[\,A^\top x - \theta_{i-1};\ D_i x;\ -D_i x\,]`, second weights
        :math:`c[\,D_i^\top, -D_i^\top, D_i^\top\,]` (``eq-ch7-absorbed``). ``exact=False`` drops the term,
        the common reading of the block (``eq-ch7-common``).
        """
        if self.n_unfold != 0:
            raise ValueError("only the first step (n_unfold=0) is a ResNet block; "
                             f"this block has n_unfold={self.n_unfold}")
        A, B = self.analysis_weight.detach(), self.dictionary_weight.detach()
        # D_i z = conv_transpose(z, B) = conv(z, B^T flipped): a convolution C -> hidden
        synth = B.transpose(0, 1).flip(dims=tuple(range(2, 2 + self.dim)))
        b1 = -self.hidden_threshold_param.detach().abs()
        if exact:
            w1, bias1 = torch.cat([A, synth, -synth]), torch.cat([b1, torch.zeros_like(b1), torch.zeros_like(b1)])
            w2 = self.step * torch.cat([B, -B, B], dim=1)
        else:
            w1, bias1, w2 = A, b1, self.step * B
        block = ResidualBlock(self.channels, w1.shape[0], self.kernel_size, dim=self.dim).to(A)
        with torch.no_grad():
            block.conv1.weight.copy_(w1)
            block.conv1.bias.copy_(bias1)
            block.conv2.weight.copy_(w2)
            block.conv2.bias.copy_(-self.step * self.threshold_param.detach().abs())
        return block


class ResidualBlock(nn.Module):
    r"""The ResNet basic block without normalization :cite:p:`he2016deep`:
    :math:`\operatorname{ReLU}(x + W_2\operatorname{ReLU}(W_1x + b_1) + b_2)`.

    Chapter 7, ``eq-ch7-resnet``.

    Args:
        channels: channels of the input and of the output.
        hidden_channels: output channels of :math:`W_1` (default ``None``: ``channels``).
        kernel_size: odd kernel size of both convolutions (default 3; "same" padding).
        dim: 1 (signals) or 2 (images, default).

    Shape:
        - Input: ``(B, channels, *spatial)`` with ``dim`` spatial axes.
        - Output: ``(B, channels, *spatial)``.
    """

    def __init__(self, channels: int, hidden_channels=None, kernel_size: int = 3, *, dim: int = 2):
        super().__init__()
        self.channels = positive_int(channels, "channels")
        hidden = self.channels if hidden_channels is None else positive_int(hidden_channels, "hidden_channels")
        k, self.dim = odd_kernel(kernel_size), check_dim(dim)
        conv = CONV_MODULE[self.dim]
        self.conv1 = conv(self.channels, hidden, k, padding=k // 2)
        self.conv2 = conv(hidden, self.channels, k, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.channels, self.dim)
        return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))


class MSDCSCBlock(nn.Module):
    r"""Dense layers of mixed-scale dense CSC: :math:`D_\ell = [\,I,\ W_\ell^\top\,]` (chapter 8, ``eq-ch8-msd-dict``).

    The dictionary with identity atoms, and the choice to leave those atoms unpenalised, are our reconstruction
    of the MSD-CSC model (chapter 8).

    Layer :math:`\ell` (dilation ``dilations[ℓ]``) solves, by ``1 + n_unfold`` proximal-gradient steps from 0,

    .. math:: \min_{\Gamma \ge 0}\ \tfrac12\|u - D_\ell\Gamma\|_2^2 + \theta_\ell^\top\Gamma^{b},\qquad
              \Gamma = [\Gamma^{a}; \Gamma^{b}],\quad D_\ell\Gamma = \Gamma^{a} + W_\ell^\top\Gamma^{b},

    whose first step :math:`\operatorname{ReLU}(c[\,u;\ W_\ell u\,] - c[0; \theta_\ell])` concatenates the input with
    new features (``eq-ch8-dense-step``); each layer adds ``growth`` channels. The step is shared,
    :math:`c \le \min_\ell 1/(1 + \|W_\ell\|_2^2)` (``eq-ch8-step-bound``; ``None``: 0.9 times the initial bound).
    With ``n_unfold=0`` and a non-negative input the block equals :meth:`to_dense_block` up to the fixed
    channel scales :meth:`output_scales` (theorem ``thm-ch8-dense``).

    Args:
        in_channels: channels of the input.
        growth: channels each layer adds (default 8).
        kernel_size: odd kernel size of every :math:`W_\ell` (default 3; "same" padding).
        dilations: one dilation per layer (default ``(1, 2)``).
        n_unfold: proximal-gradient steps after the first one, per layer (default 0: a dense block).
        dim: 1 (signals) or 2 (images, default).
        step: the shared step :math:`c`, at most :math:`\min_\ell 1/(1 + \|W_\ell\|_2^2)` for the initial
            weights (a ``ValueError`` above it); ``None`` (default) picks 0.9 times that bound.
        threshold: initial :math:`\theta_\ell \ge 0` of every new channel (default 0); trained through
            :math:`\rho` with :math:`\theta = |\rho|`.
        method: ``"fista"`` (default, momentum between the unfolded steps) or ``"ista"`` (none).

    Shape:
        - Input: ``(B, in_channels, *spatial)`` with ``dim`` spatial axes.
        - Output: ``(B, in_channels + len(dilations) * growth, *spatial)``.
    """

    def __init__(self, in_channels: int, growth: int = 8, kernel_size: int = 3, dilations=(1, 2), n_unfold: int = 0, *,
                 dim: int = 2, step=None, threshold: float = 0.0, method: str = "fista"):
        super().__init__()
        self.in_channels, self.growth = positive_int(in_channels, "in_channels"), positive_int(growth, "growth")
        self.kernel_size, self.dim = odd_kernel(kernel_size), check_dim(dim)
        self.dilations = check_dilations(dilations)
        self.n_unfold, self.method = nonneg_int(n_unfold, "n_unfold"), check_method(method)
        taps = (self.kernel_size,) * self.dim
        self.weights = nn.ParameterList(
            init_weight((self.growth, self.in_channels + i * self.growth) + taps) for i in range(len(self.dilations)))
        self.threshold_params = nn.ParameterList(threshold_param(threshold, self.growth) for _ in self.dilations)
        self.step = checked_step(step, self.step_bound())

    @property
    def out_channels(self) -> int:
        return self.in_channels + len(self.dilations) * self.growth

    def step_bound(self) -> float:
        r""":math:`\min_\ell 1/\|D_\ell\|_2^2 = \min_\ell 1/(1 + \|W_\ell\|_2^2)` (``eq-ch8-step-bound``)."""
        return min(1.0 / (1.0 + conv_operator_norm(w, r) ** 2)
                   for w, r in zip(self.weights, self.dilations, strict=True))

    def check_step(self) -> None:
        checked_step(self.step, self.step_bound())

    def _layer(self, u, weight, rate, theta_param):
        conv, conv_t, pad, c = CONV[self.dim], CONV_T[self.dim], rate * (self.kernel_size - 1) // 2, self.step
        m = u.shape[1]
        zero = torch.zeros(m, *(1,) * self.dim, dtype=u.dtype, device=u.device)
        theta = torch.cat([zero, theta_param.abs().view(-1, *(1,) * self.dim)])  # identity atoms: no threshold
        target = torch.cat([u, conv(u, weight, None, 1, pad, rate)], dim=1)  # D^T u = [u; W u]

        def gradient(v):  # D^T (D v - u) with D v = v^a + W^T v^b
            residual = v[:, :m] + conv_t(v[:, m:], weight, None, 1, pad, 0, 1, rate)
            return torch.cat([residual, conv(residual, weight, None, 1, pad, rate)], dim=1) - target

        z = torch.relu(c * target - c * theta)
        return proximal_steps(torch.zeros_like(z), z, gradient, theta, c, self.n_unfold, self.method)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.dim)
        for weight, rate, theta in zip(self.weights, self.dilations, self.threshold_params, strict=True):
            x = self._layer(x, weight, rate, theta)
        return x

    def _group_scales(self, n_groups: int) -> list:
        # channel groups [input, f_1, ..., f_{n-1}] after n-1 layers carry c^(n-1), ..., c^0
        return [self.step ** (n_groups - 1 - j) for j in range(n_groups)]

    def output_scales(self) -> torch.Tensor:
        r"""Per-channel :math:`s` with ``block(x) == s * dense(x)`` (:math:`c^{L}` on the input,
        :math:`c^{L-j}` on :math:`f_j`)."""
        sizes = [self.in_channels] + [self.growth] * len(self.dilations)
        return torch.cat([torch.full((n,), s) for n, s in zip(sizes, self._group_scales(len(sizes)), strict=True)])

    def to_dense_block(self) -> DenseBlock:
        r"""The :class:`DenseBlock` with :math:`V_\ell = cW_\ell\operatorname{diag}(c^{\ell-1-j})`,
        :math:`b_\ell = -c\theta_\ell` (``eq-ch8-dense-weights``)."""
        if self.n_unfold != 0:
            raise ValueError("only the first step (n_unfold=0) is a dense block; "
                             f"this block has n_unfold={self.n_unfold}")
        dense = DenseBlock(self.in_channels, self.growth, self.kernel_size, self.dilations, dim=self.dim)
        dense = dense.to(self.weights[0])
        with torch.no_grad():
            for i, (conv, w, theta) in enumerate(zip(dense.convs, self.weights, self.threshold_params, strict=True)):
                sizes = [self.in_channels] + [self.growth] * i
                scale = torch.cat([torch.full((n,), s)
                                   for n, s in zip(sizes, self._group_scales(i + 1), strict=True)]).to(w)
                conv.weight.copy_(self.step * w * scale.view(1, -1, *(1,) * self.dim))
                conv.bias.copy_(-self.step * theta.abs())
        return dense


class DenseBlock(nn.Module):
    r"""A dense block of dilated convolutions :cite:p:`huang2017densely,yu2016multiscale`
    (chapter 8, ``eq-ch8-densenet``).

    :math:`f_\ell = \operatorname{ReLU}(V_\ell * [x, f_1, \dots, f_{\ell-1}] + b_\ell)` with dilation ``dilations[ℓ]``;
    the output is the concatenation :math:`[x, f_1, \dots, f_L]`.

    Args:
        in_channels: channels of the input.
        growth: channels each layer adds (default 8).
        kernel_size: odd kernel size of every :math:`V_\ell` (default 3; "same" padding).
        dilations: one dilation per layer (default ``(1, 2)``).
        dim: 1 (signals) or 2 (images, default).

    Shape:
        - Input: ``(B, in_channels, *spatial)`` with ``dim`` spatial axes.
        - Output: ``(B, in_channels + len(dilations) * growth, *spatial)``.
    """

    def __init__(self, in_channels: int, growth: int = 8, kernel_size: int = 3, dilations=(1, 2), *, dim: int = 2):
        super().__init__()
        self.in_channels, self.growth = positive_int(in_channels, "in_channels"), positive_int(growth, "growth")
        k, self.dim = odd_kernel(kernel_size), check_dim(dim)
        rates = check_dilations(dilations)
        conv = CONV_MODULE[self.dim]
        self.convs = nn.ModuleList(conv(self.in_channels + i * self.growth, self.growth, k, padding=r * (k - 1) // 2,
                                        dilation=r) for i, r in enumerate(rates))

    @property
    def out_channels(self) -> int:
        return self.in_channels + len(self.convs) * self.growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.dim)
        for conv in self.convs:
            x = torch.cat([x, torch.relu(conv(x))], dim=1)
        return x
