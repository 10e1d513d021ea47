r"""Models built from sparse-coding layers.

``HierarchicalSparseCodingNet`` is chapter 4's model: a cascade of per-layer non-negative convolutional
sparse-coding steps — layer :math:`\ell` treats the code :math:`\hat z_{\ell-1}` of the layer below as its
observation, :math:`\hat z_{\ell-1} \approx D_\ell z_\ell` with an exponential prior on :math:`z_\ell`
(``eq-ch4-hierarchy``) — and multinomial logistic regression on the top code. With ``n_iter=1``,
``step=1`` and :math:`D_\ell^\top D_\ell = I` each step is that layer's MAP code; the cascade is not the MAP of
a joint model over all codes (``prop-ch4-cascade-not-joint``). No normalization and no pooling:
down-sampling is the stride of the convolutional dictionaries.

Chapter 5 trains it under two projections that keep the sparse prior's reading intact:
:meth:`HierarchicalSparseCodingNet.project_step_admissible_` (every one of the ``n_iter`` steps is an
ISTA step with an admissible step size, by the bound :func:`conv_norm_bound`) and, for the plain CNN
of :meth:`HierarchicalSparseCodingNet.to_sequential`, :func:`clamp_biases_nonpositive_` (biases of the
prior's sign, :math:`b = -\sigma^2\lambda \le 0`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.validation import nonneg_int, pair, positive_int
from ..nn.sparse_coding import SparseCodingConv2d
from ..nn.unfolded import conv_operator_norm, dilate_kernel

__all__ = ["HierarchicalSparseCodingConfig", "HierarchicalSparseCodingNet", "conv_norm_bound",
           "clamp_biases_nonpositive_"]


def conv_norm_bound(weight: torch.Tensor, signal_size, stride=1, padding=0, dilation=1) -> float:
    r"""An upper bound on :math:`\|D\|_2` for a strided, zero-padded 2-D convolutional dictionary.

    :math:`D^\top x` = ``conv2d(x, weight, stride, padding, dilation)`` on signals of spatial size
    ``signal_size`` (chapter 5, proposition ``thm-ch5-polyphase``). Splitting the zero-padded signal
    into its :math:`s_h s_w` polyphase components (an isometry) turns the strided convolution into a
    stride-1 convolution with :math:`C_{in} s_h s_w` input channels and kernels of
    :math:`\lceil k/s\rceil` taps; every output it needs is an output of the circular convolution on
    the polyphase grid, so

    .. math:: \|D\|_2 \le \max_\omega \sigma_{\max}\big(\hat K_{\mathrm{poly}}(\omega)\big),

    the largest singular value of the polyphase kernel's DFT (computed by
    :func:`cscnb.nn.conv_operator_norm`). Exact for non-overlapping atoms (kernel = stride, no padding,
    size a multiple of the stride); for stride 1 it is the circular bound of chapters 7–8.
    """
    if not isinstance(weight, torch.Tensor) or weight.ndim != 4:
        raise TypeError(f"weight must be a 2-D convolution weight of shape (C_out, C_in, kh, kw), got "
                        f"{type(weight).__name__ if not isinstance(weight, torch.Tensor) else tuple(weight.shape)}")
    size, s, p = pair(signal_size, "signal_size", 1), pair(stride, "stride", 1), pair(padding, "padding", 0)
    rate = pair(dilation, "dilation", 1)
    if rate[0] != rate[1]:
        raise ValueError(f"dilation must be the same along both axes, got {rate}")
    w = dilate_kernel(weight.detach(), rate[0]) if rate[0] != 1 else weight.detach()
    k = tuple(w.shape[2:])
    if any(size[i] + 2 * p[i] < k[i] for i in range(2)):
        raise ValueError(f"signal_size {size} with padding {p} is smaller than the kernel {k}")
    taps = tuple(-(-k[i] // s[i]) for i in range(2))                      # ⌈k/s⌉ polyphase taps
    w = F.pad(w, (0, s[1] * taps[1] - k[1], 0, s[0] * taps[0] - k[0]))   # zero taps up to a multiple of s
    c_out, c_in = w.shape[:2]
    # (C_out, C_in, a_h·s_h + b_h, a_w·s_w + b_w) → (C_out, C_in·s_h·s_w, a_h, a_w): phase b becomes a channel
    w = w.reshape(c_out, c_in, taps[0], s[0], taps[1], s[1]).permute(0, 1, 3, 5, 2, 4)
    w = w.reshape(c_out, c_in * s[0] * s[1], taps[0], taps[1])
    grid = max(max(-(-(size[i] + 2 * p[i]) // s[i]), taps[i]) for i in range(2))  # polyphase signal length
    # the maximum over the grid-point DFT itself (eq-ch5-polyphase), not the every-size bound of grid=
    return conv_operator_norm(w, signal_size=tuple(grid - t + 1 for t in taps))


@torch.no_grad()
def clamp_biases_nonpositive_(module: nn.Module) -> nn.Module:
    r"""Project every ``Conv2d`` bias of ``module`` onto :math:`b \le 0`, in place; returns ``module``.

    The sign an exponential prior gives a bias, :math:`b = -\sigma^2\lambda \le 0` (chapter 2): a
    projected CNN converts back to a :class:`HierarchicalSparseCodingNet` with
    :meth:`HierarchicalSparseCodingNet.from_sequential`. Use it as ``cscnb.train.fit(after_step=...)``
    (chapter 5's bias-sign experiment).
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    for sub in module.modules():
        if isinstance(sub, nn.Conv2d) and sub.bias is not None:
            sub.bias.clamp_(max=0.0)
    return module


@dataclass
class HierarchicalSparseCodingConfig:
    r"""Shape of a :class:`HierarchicalSparseCodingNet`; the defaults fit the 8×8 digits on a CPU.

    Args:
        in_channels: channels of the input images (default 1: grayscale digits).
        image_size: side of the square input images (default 8).
        channels: atoms per layer, one entry per layer (default ``(16, 32, 32)``).
        strides: one stride per layer (default ``(1, 2, 2)``: 8×8 → 8×8 → 4×4 → 2×2, no pooling).
        kernel_size: side of the square kernels (default 3).
        padding: of every layer; ``None`` (default) means ``kernel_size // 2`` ("same" size at stride 1), 0 gives
            non-overlapping atoms at stride ``kernel_size``.
        n_iter: proximal-gradient steps per layer (default 1: a plain CNN layer).
        step: the step :math:`\eta` (default 1; exact for an orthogonal :math:`D`, chapter 3).
        threshold: initial per-atom threshold :math:`\theta = \sigma^2\lambda` (default 0.01; it must be
            :math:`> 0` to be trainable).
        num_classes: outputs of the classifier (default 10: digits 0 to 9).
    """
    in_channels: int = 1                     # grayscale digits
    image_size: int = 8                      # digits are 8×8 (square images of this side)
    channels: tuple = (16, 32, 32)           # atoms per layer (code channels z_1, z_2, z_3)
    strides: tuple = (1, 2, 2)               # stride 2 down-samples instead of pooling: 8×8 → 8×8 → 4×4 → 2×2
    kernel_size: int = 3                     # square kernels
    padding: int | None = None               # None = kernel_size // 2 ("same" size at stride 1);
                                             # 0 for non-overlapping atoms
    n_iter: int = 1                          # proximal-gradient steps per layer (1 = a plain CNN layer)
    step: float = 1.0                        # step η; exact for orthogonal D (chapter 3); prop-ch4-first-ista-step
    threshold: float = 0.01                  # initial per-atom threshold θ = σ²λ (must be > 0 to be trainable)
    num_classes: int = 10                      # digits 0..9

    def __post_init__(self):
        positive_int(self.in_channels, "in_channels")
        positive_int(self.image_size, "image_size")
        positive_int(self.kernel_size, "kernel_size")
        if self.padding is None:
            self.padding = self.kernel_size // 2
        nonneg_int(self.padding, "padding")
        positive_int(self.n_iter, "n_iter")
        positive_int(self.num_classes, "num_classes")
        self.channels, self.strides = tuple(self.channels), tuple(self.strides)
        if len(self.channels) == 0:
            raise ValueError("channels must list at least one layer width")
        if len(self.strides) != len(self.channels):
            raise ValueError(f"strides must have one entry per layer ({len(self.channels)}), got {self.strides}")
        for c in self.channels:
            positive_int(c, "channels entries")
        for s in self.strides:
            positive_int(s, "strides entries")
        self.spatial_sizes()  # raises if the image is too small for the stack

    def spatial_sizes(self) -> list:
        """Side of every code map, from the input to the top code."""
        sizes, n = [self.image_size], self.image_size
        for s in self.strides:
            n = (n + 2 * self.padding - self.kernel_size) // s + 1
            if n < 1:
                raise ValueError(f"image_size {self.image_size} is too small for these kernels, paddings and strides")
            sizes.append(n)
        return sizes

    def feature_size(self) -> int:
        """Length of the flattened top code fed to logistic regression."""
        return self.channels[-1] * self.spatial_sizes()[-1] ** 2


class HierarchicalSparseCodingNet(nn.Module):
    r"""A cascade of per-layer non-negative convolutional sparse-coding steps + logistic regression.

    Layer :math:`\ell` computes :math:`z_\ell` = ``n_iter`` steps of
    :math:`\min_{z \ge 0}\tfrac12\|z_{\ell-1} - D_\ell z\|^2 + \theta_\ell^\top z` (chapter 4, ``eq-ch4-layer-map``)
    with :math:`z_0 = x`; the logits are :math:`Wz_L + b` and :math:`P(y = c \mid z_L)` =
    ``softmax(logits)[c]`` (chapter 4, ``eq-ch4-softmax``). With ``n_iter=1``, ``step=1`` it equals the
    plain CNN returned by :meth:`to_sequential` (chapter 4, theorem ``thm-ch4-cnn``).
    """

    def __init__(self, config: HierarchicalSparseCodingConfig | None = None):
        super().__init__()
        config = HierarchicalSparseCodingConfig() if config is None else config
        if not isinstance(config, HierarchicalSparseCodingConfig):
            raise TypeError(f"config must be a HierarchicalSparseCodingConfig, got {type(config).__name__}")
        self.config = config
        widths = (config.in_channels,) + config.channels
        self.layers = nn.ModuleList(
            SparseCodingConv2d(widths[i], widths[i + 1], config.kernel_size, stride=config.strides[i],
                               padding=config.padding, n_iter=config.n_iter, step=config.step,
                               threshold=config.threshold)
            for i in range(len(config.channels)))
        self.classifier = nn.Linear(config.feature_size(), config.num_classes)  # logistic regression

    def _check_input(self, x):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        c, n = self.config.in_channels, self.config.image_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (c, n, n):
            raise ValueError(f"x must have shape (batch, {c}, {n}, {n}), got {tuple(x.shape)}")

    def codes(self, x: torch.Tensor) -> list:
        r"""The codes :math:`\hat z_1, \dots, \hat z_L`: :math:`\hat z_\ell` = ``n_iter`` steps on
        :math:`\min_{z \ge 0} \tfrac12\|\hat z_{\ell-1} - D_\ell z\|^2 + \theta_\ell^\top z`
        (chapter 4, ``eq-ch4-layer-map``)."""
        self._check_input(x)
        codes = []
        for layer in self.layers:
            x = layer(x)
            codes.append(x)
        return codes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r"""Class logits :math:`a = W\operatorname{vec}(\hat z_L) + b`, shape ``(batch, num_classes)``
        (chapter 4, ``eq-ch4-logistic``)."""
        return self.classifier(self.codes(x)[-1].flatten(1))

    def operator_norm_bounds(self) -> list:
        r"""Upper bounds :func:`conv_norm_bound` on :math:`\|D_\ell\|_2`, one per layer, at the layer's input size."""
        sizes = self.config.spatial_sizes()
        return [conv_norm_bound(layer.weight, sizes[i], layer.stride, layer.padding, layer.dilation)
                for i, layer in enumerate(self.layers)]

    @torch.no_grad()
    def project_step_admissible_(self) -> HierarchicalSparseCodingNet:
        r"""Rescale every :math:`D_\ell` so that :math:`\eta\|D_\ell\|_2^2 \le 1`, in place; returns ``self``.

        With :math:`\eta \le 1/\|D_\ell^\top D_\ell\|_2` each of the ``n_iter`` steps of layer
        :math:`\ell` is an ISTA step that does not increase that layer's objective (chapter 5,
        theorem ``thm-ch5-one-step``), so ``n_iter`` steps approach the layer-wise MAP code
        (``thm-ch5-rates``). A layer whose bound (:func:`conv_norm_bound`) already satisfies it is left
        unchanged; the thresholds are not touched. Use it as ``cscnb.train.fit(after_step=...)``.
        """
        for layer, bound in zip(self.layers, self.operator_norm_bounds(), strict=True):
            limit = 1.0 / layer.step ** 0.5
            if bound > limit:
                layer.weight.mul_(limit / bound)
        return self

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        r"""The posterior :math:`P(y = c \mid \hat z_L) = \operatorname{softmax}(a)_c`, shape ``(batch, num_classes)``
        (chapter 4, ``eq-ch4-softmax``)."""
        return torch.softmax(self.forward(x), dim=1)

    def to_sequential(self) -> nn.Sequential:
        r"""The plain CNN ``Conv2d → ReLU → … → Flatten → Linear`` computing the same logits (copied weights).

        The network of chapter 4, ``eq-ch4-cnn`` (theorem ``thm-ch4-cnn``): conv weights :math:`\eta W_\ell`, biases
        :math:`-\eta\theta_\ell`. Needs ``n_iter == 1``.
        """
        modules = []
        for layer in self.layers:
            modules += [layer.to_conv2d(), nn.ReLU()]
        linear = nn.Linear(self.classifier.in_features, self.classifier.out_features,
                           device=self.classifier.weight.device, dtype=self.classifier.weight.dtype)
        linear.load_state_dict(self.classifier.state_dict())
        modules += [nn.Flatten(), linear]
        return nn.Sequential(*modules)

    @classmethod
    def from_sequential(cls, sequential: nn.Sequential, *, image_size: int, step: float = 1.0,
                        n_iter: int = 1) -> HierarchicalSparseCodingNet:
        r"""Read a ``Conv2d → ReLU → … → Flatten → Linear`` CNN (one square kernel and padding, biases <= 0) as a model.

        Inverse of :meth:`to_sequential` (chapter 4, ``eq-ch4-cnn``): :math:`W_\ell = w_\ell/\eta`,
        :math:`\theta_\ell = -b_\ell/\eta`.
        """
        if not isinstance(sequential, nn.Sequential):
            raise TypeError(f"sequential must be an nn.Sequential, got {type(sequential).__name__}")
        mods = list(sequential)
        n_conv = (len(mods) - 2) // 2
        pattern_ok = (len(mods) >= 4 and len(mods) % 2 == 0 and isinstance(mods[-2], nn.Flatten)
                      and isinstance(mods[-1], nn.Linear)
                      and all(isinstance(mods[2 * i], nn.Conv2d) and isinstance(mods[2 * i + 1], nn.ReLU)
                              for i in range(n_conv)))
        if not pattern_ok:
            raise ValueError("sequential must be Conv2d, ReLU, [Conv2d, ReLU, ...], Flatten, Linear")
        convs = [mods[2 * i] for i in range(n_conv)]
        k, p = convs[0].kernel_size[0], convs[0].padding[0]
        for conv in convs:
            if conv.kernel_size != (k, k) or conv.padding != (p, p) or conv.stride[0] != conv.stride[1] \
                    or conv.dilation != (1, 1) or conv.padding_mode != "zeros":
                raise ValueError("every Conv2d must have the same square kernel and integer padding, equal strides, "
                                 "no dilation and zero padding")
        linear = mods[-1]
        config = HierarchicalSparseCodingConfig(
            in_channels=convs[0].in_channels, image_size=image_size,
            channels=tuple(c.out_channels for c in convs), strides=tuple(c.stride[0] for c in convs),
            kernel_size=k, padding=p, n_iter=n_iter, step=step, num_classes=linear.out_features)
        if config.feature_size() != linear.in_features:
            raise ValueError(f"the Linear layer takes {linear.in_features} features but image_size={image_size} "
                             f"gives {config.feature_size()}")
        model = cls(config).to(device=linear.weight.device, dtype=linear.weight.dtype)
        for i, conv in enumerate(convs):
            model.layers[i] = SparseCodingConv2d.from_conv2d(conv, n_iter=n_iter, step=step)
        model.classifier.load_state_dict(linear.state_dict())
        return model
