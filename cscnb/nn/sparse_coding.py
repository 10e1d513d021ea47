r"""Sparse-coding layers: a network layer that *is* a few steps of non-negative sparse coding.

Each layer holds a dictionary :math:`D` (its weight) and per-atom thresholds
:math:`\theta_i = \sigma^2\lambda_i \ge 0` (noise variance times the rate of an exponential prior on
:math:`z_i`, chapter 2) and computes ``n_iter`` proximal-gradient steps, from :math:`z_0 = 0`, on

.. math:: \min_{z \ge 0}\ \tfrac12\|x - Dz\|_2^2 + \sum_i \theta_i z_i ,

.. math:: z_{k+1} = \operatorname{ReLU}\big(z_k - \eta\,D^\top(Dz_k - x) - \eta\,\theta\big)

(ISTA: the package's proximal-gradient loop without momentum, :func:`cscnb.solvers.engine.proximal_gradient`).

**Step-size convention.** The step :math:`\eta` is a fixed constant (default 1). With
:math:`z_0 = 0` the first step is :math:`\operatorname{ReLU}(\eta D^\top x - \eta\theta)`; for
:math:`\eta = 1` this is exactly a convolution (or linear map) with bias :math:`-\theta` followed by
ReLU — the one-step, orthogonal-dictionary (:math:`D^\top D = I`, hence Lipschitz constant 1) reading
of a CNN layer of :cite:t:`bowren2021sparse`. More steps converge to the sparse code for every step
:math:`0 < \eta < 2/\|D^\top D\|_2`; :math:`\eta \le 1/\|D^\top D\|_2` is the range in which chapter 5
proves the monotone decrease and the :math:`O(1/k)` rate. A unit step with :math:`\|D^\top D\|_2 > 2` (as in the
trained layers of chapter 4) lies outside that range; chapter 4, ``prop-ch4-first-ista-step``, reads one such
step as the first admissible step up to a positive factor.

**Non-negative thresholds.** The trainable parameter is :math:`\rho` with :math:`\theta = |\rho|`:
non-negative by construction, its gradient does not vanish near :math:`\theta = 0` (unlike
:math:`\rho^2`), and its inverse on :math:`\theta \ge 0` is exact (:math:`\rho = \theta`), so
conversions to and from ``nn.Conv2d`` are lossless.
"""
from __future__ import annotations

import math
from numbers import Real

import torch
import torch.nn as nn

from ..core.dictionary import ConvDictionary, LinearDictionary
from ..core.prox import nonneg_soft_threshold
from ..core.validation import check_choice, conv2d_geometry, positive_int, positive_number
from ..solvers.engine import proximal_gradient

__all__ = ["SparseCodingConv2d", "SparseCodingLinear"]


def _threshold_tensor(threshold, n_atoms: int) -> torch.Tensor:
    """The initial θ as a float tensor of shape (n_atoms,), validated non-negative."""
    if isinstance(threshold, bool) or not isinstance(threshold, (Real, torch.Tensor)):
        raise TypeError(f"threshold must be a non-negative number or a tensor of shape ({n_atoms},), "
                        f"got {type(threshold).__name__}")
    theta = torch.as_tensor(threshold, dtype=torch.get_default_dtype()).detach().clone()
    if theta.ndim == 0:
        theta = theta.expand(n_atoms).clone()
    if theta.shape != (n_atoms,):
        raise ValueError(f"threshold must be a scalar or have shape ({n_atoms},), got shape {tuple(theta.shape)}")
    if not torch.isfinite(theta).all() or (theta < 0).any():
        raise ValueError("threshold must be finite and non-negative (θ = σ²λ with λ ≥ 0)")
    return theta


def _threshold_from_bias(bias, n_atoms: int, step: float, like: torch.Tensor) -> torch.Tensor:
    """θ = −b/η for a layer computing ReLU(η·Dᵀx + b); a positive b has no exponential-prior reading."""
    if bias is None:
        return torch.zeros(n_atoms, dtype=like.dtype, device=like.device)
    bias = bias.detach()
    if (bias > 0).any():
        raise ValueError(
            "the layer's bias has positive entries; θ = -bias would be negative, which no exponential "
            "prior gives (chapter 2). Clamp the bias to <= 0 first if an approximation is acceptable.")
    return -bias / step


class SparseCodingConv2d(nn.Module):
    r"""``n_iter`` non-negative proximal-gradient steps of 2-D convolutional sparse coding.

    Solves (approximately, from :math:`z_0 = 0`)
    :math:`\min_{z \ge 0} \tfrac12\|x - Dz\|_2^2 + \sum_i \theta_i \|z_i\|_1` where :math:`D^\top x` is
    ``conv2d(x, weight, stride, padding, dilation)`` (chapter 3, ``eq-conv-analysis``) and :math:`D` its
    adjoint (``eq-conv-synthesis``). With ``n_iter=1`` and ``step=1`` the output equals
    ``relu(conv2d(x, weight, bias=-θ))`` — chapter 3, theorem ``thm-ch3-conv-relu``; see
    :meth:`to_conv2d` and :meth:`from_conv2d`. The step convention and the parametrization
    :math:`\theta = |\rho|` are described in the module docstring.

    Args:
        in_channels: channels of the input signal ``x``.
        out_channels: number of atoms (channels of the code).
        kernel_size: atom size, an int or a pair.
        stride: of ``conv2d``, an int or a pair (default 1).
        padding: of ``conv2d``, an int or a pair (default 0).
        dilation: of ``conv2d``, an int or a pair (default 1).
        n_iter: proximal-gradient steps, at least 1 (default 1).
        step: the fixed step :math:`\eta > 0` (default 1).
        threshold: initial :math:`\theta \ge 0`, a number or a tensor ``(out_channels,)`` (default 0.01);
            trained through :math:`\rho` with :math:`\theta = |\rho|`.
        padding_mode: ``"zeros"`` (default) or ``"circular"``.

    Shape:
        - Input: ``(N, in_channels, H, W)``, in the layer's dtype.
        - Output: ``(N, out_channels, H_out, W_out)``, as ``nn.Conv2d`` with the same geometry.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 n_iter: int = 1, step: float = 1.0, threshold=0.01, padding_mode: str = "zeros"):
        super().__init__()
        (self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
         self.dilation) = conv2d_geometry(in_channels, out_channels, kernel_size, stride, padding, dilation)
        self.n_iter = positive_int(n_iter, "n_iter")
        self.step = positive_number(step, "step")
        self.padding_mode = check_choice(padding_mode, "padding_mode", ("zeros", "circular"))
        self.weight = nn.Parameter(torch.empty(self.out_channels, self.in_channels, *self.kernel_size))
        # the same initialization as nn.Conv2d, so the layer is a drop-in replacement when trained
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.threshold_param = nn.Parameter(_threshold_tensor(threshold, self.out_channels))

    @property
    def threshold(self) -> torch.Tensor:
        r"""Per-atom threshold :math:`\theta = |\rho| \ge 0`, shape ``(out_channels,)``."""
        return self.threshold_param.abs()

    def dictionary(self) -> ConvDictionary:
        """The layer's dictionary D; it shares ``weight``, so gradients flow through it."""
        return ConvDictionary(self.weight, stride=self.stride, padding=self.padding, dilation=self.dilation,
                              padding_mode=self.padding_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        D = self.dictionary()
        D.check_signal(x, "x")
        if x.dtype != self.weight.dtype:
            raise TypeError(f"x has dtype {x.dtype} but the layer has dtype {self.weight.dtype}; convert one of them")
        eta = self.step
        t = (eta * self.threshold).view(1, -1, 1, 1)
        analysis = D.analyze(x)  # Dᵀx, reused by every step

        def step(z, k, out):
            if k == 0:
                return nonneg_soft_threshold(eta * analysis, t)  # first step from z_0 = 0
            gradient = D.analyze(D.synthesize(z, output_size=x.shape[2:])) - analysis
            return nonneg_soft_threshold(z - eta * gradient, t)
        return proximal_gradient(step, analysis.new_zeros(()).expand_as(analysis), self.n_iter, momentum="none")[0]

    def to_conv2d(self) -> nn.Conv2d:
        r"""The ``nn.Conv2d`` (weight :math:`\eta W`, bias :math:`-\eta\theta`) whose ReLU equals this layer.

        :math:`\operatorname{ReLU}(\eta D^\top x - \eta\theta)
        = \operatorname{ReLU}(\texttt{conv2d}(x, \eta W) - \eta\theta)`,
        chapter 3, ``eq-ch3-conv-relu``. Only a one-step layer (``n_iter == 1``) is a single convolution.
        """
        if self.n_iter != 1:
            raise ValueError(f"only a one-step layer (n_iter=1) is a Conv2d + ReLU; this one has n_iter={self.n_iter}")
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, stride=self.stride,
                         padding=self.padding, dilation=self.dilation, bias=True, padding_mode=self.padding_mode,
                         device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(self.step * self.weight)
            conv.bias.copy_(-self.step * self.threshold)
        return conv

    @classmethod
    def from_conv2d(cls, conv: nn.Conv2d, *, n_iter: int = 1, step: float = 1.0) -> SparseCodingConv2d:
        r"""The sparse-coding layer whose one step equals ``relu(conv(x))``: :math:`W = w/\eta`,
        :math:`\theta = -b/\eta`.

        Inverse of :meth:`to_conv2d` (chapter 3, ``eq-ch3-conv-relu``). Raises ``ValueError`` if the bias has
        positive entries (a negative threshold), for grouped convolutions and string paddings.
        """
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
        if conv.groups != 1:
            raise ValueError(f"conv has groups={conv.groups}; only groups=1 is a single dictionary")
        if isinstance(conv.padding, str):
            raise ValueError(f"conv has padding={conv.padding!r}; give explicit integer padding")
        step = positive_number(step, "step")
        w = conv.weight.detach()
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, n_iter=n_iter, step=step, padding_mode=conv.padding_mode)
        layer = layer.to(device=w.device, dtype=w.dtype)
        with torch.no_grad():
            layer.weight.copy_(w / step)
            layer.threshold_param.copy_(_threshold_from_bias(conv.bias, conv.out_channels, step, w))
        return layer

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, n_iter={self.n_iter}, step={self.step}, "
                f"padding_mode={self.padding_mode!r}")


class SparseCodingLinear(nn.Module):
    r"""``n_iter`` non-negative proximal-gradient steps of dense sparse coding.

    Solves (approximately, from :math:`z_0 = 0`) :math:`\min_{z \ge 0} \tfrac12\|x - Dz\|_2^2 + \sum_i\theta_i z_i`
    with :math:`D` = ``weight.T`` (``weight`` has the ``nn.Linear`` layout ``(out_features, in_features)``,
    so :math:`D^\top x` = ``x @ weight.T``). With ``n_iter=1``, ``step=1`` it equals
    ``relu(linear(x, weight, -θ))`` — chapter 2, ``eq-relu-bias``.

    Args:
        in_features: size of the signal ``x``.
        out_features: number of atoms (size of the code).
        n_iter: proximal-gradient steps, at least 1 (default 1).
        step: the fixed step :math:`\eta > 0` (default 1).
        threshold: initial :math:`\theta \ge 0`, a number or a tensor ``(out_features,)`` (default 0.01);
            trained through :math:`\rho` with :math:`\theta = |\rho|`.

    Shape:
        - Input: ``(N, in_features)``, in the layer's dtype.
        - Output: ``(N, out_features)``.
    """

    def __init__(self, in_features: int, out_features: int, n_iter: int = 1, step: float = 1.0, threshold=0.01):
        super().__init__()
        self.in_features = positive_int(in_features, "in_features")
        self.out_features = positive_int(out_features, "out_features")
        self.n_iter = positive_int(n_iter, "n_iter")
        self.step = positive_number(step, "step")
        self.weight = nn.Parameter(torch.empty(self.out_features, self.in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # as nn.Linear
        self.threshold_param = nn.Parameter(_threshold_tensor(threshold, self.out_features))

    @property
    def threshold(self) -> torch.Tensor:
        r"""Per-atom threshold :math:`\theta = |\rho| \ge 0`, shape ``(out_features,)``."""
        return self.threshold_param.abs()

    def dictionary(self) -> LinearDictionary:
        """The layer's dictionary D = weight.T (a view: gradients flow to ``weight``)."""
        return LinearDictionary(self.weight.T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        D = self.dictionary()
        D.check_signal(x, "x")
        if x.dtype != self.weight.dtype:
            raise TypeError(f"x has dtype {x.dtype} but the layer has dtype {self.weight.dtype}; convert one of them")
        eta, t = self.step, self.step * self.threshold
        analysis = D.analyze(x)

        def step(z, k, out):
            if k == 0:
                return nonneg_soft_threshold(eta * analysis, t)  # first step from z_0 = 0
            return nonneg_soft_threshold(z - eta * (D.analyze(D.synthesize(z)) - analysis), t)
        return proximal_gradient(step, analysis.new_zeros(()).expand_as(analysis), self.n_iter, momentum="none")[0]

    def to_linear(self) -> nn.Linear:
        r"""The ``nn.Linear`` (weight :math:`\eta W`, bias :math:`-\eta\theta`) whose ReLU equals this one-step layer.

        :math:`\operatorname{ReLU}(\eta D^\top x - \eta\theta)`, chapter 2, ``eq-relu-bias``.
        """
        if self.n_iter != 1:
            raise ValueError(f"only a one-step layer (n_iter=1) is a Linear + ReLU; this one has n_iter={self.n_iter}")
        linear = nn.Linear(self.in_features, self.out_features, device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(self.step * self.weight)
            linear.bias.copy_(-self.step * self.threshold)
        return linear

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, n_iter: int = 1, step: float = 1.0) -> SparseCodingLinear:
        r"""The sparse-coding layer whose one step equals ``relu(linear(x))``: :math:`W = w/\eta`,
        :math:`\theta = -b/\eta \ge 0`.

        Inverse of :meth:`to_linear` (chapter 2, ``eq-relu-bias``); raises ``ValueError`` if the bias has
        positive entries.
        """
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        step = positive_number(step, "step")
        w = linear.weight.detach()
        layer = cls(linear.in_features, linear.out_features, n_iter=n_iter, step=step).to(device=w.device,
                                                                                          dtype=w.dtype)
        with torch.no_grad():
            layer.weight.copy_(w / step)
            layer.threshold_param.copy_(_threshold_from_bias(linear.bias, linear.out_features, step, w))
        return layer

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, n_iter={self.n_iter}, step={self.step}"
