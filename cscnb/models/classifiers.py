r"""Classifier networks built from ML-CSC, Res-CSC and MSD-CSC blocks, and their CNN counterparts.

All six share one layout (chapter 7, ``eq-ch7-network``): a stem (``relu(conv(x) + b)`` with a free
bias, a thresholding layer only when :math:`b \le 0`), ``n_blocks`` stages, adaptive average pooling to
``pool_size`` positions per spatial axis (a fixed linear map) and a linear classifier (logistic
regression on the pooled code).
They run on 1-D signals (``dim=1``, e.g. MNIST-1D ``(B, 1, 40)``) and 2-D images (``dim=2``, e.g.
digits ``(B, 1, 8, 8)`` or CIFAR ``(B, 3, 32, 32)``).

=================  =====================================  =======================================
stage              sparse-coding network                  CNN counterpart
=================  =====================================  =======================================
two layers         :class:`MLCSCNet` (layered pursuit)     :class:`PlainCNN`
residual block     :class:`ResCSCNet`                      :class:`ResNetCNN`
dense block        :class:`MSDCSCNet` (+ 1×1 transition)   :class:`DenseNetCNN` (+ 1×1 transition)
=================  =====================================  =======================================
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.validation import check_choice, check_int, nonneg_int, positive_int
from ..nn.blocks import DenseBlock, MSDCSCBlock, ResCSCBlock, ResidualBlock, UnfoldedCSCLayer

__all__ = ["NetworkConfig", "MLCSCNet", "ResCSCNet", "MSDCSCNet", "PlainCNN", "ResNetCNN", "DenseNetCNN",
           "with_unfolding"]


@dataclass(frozen=True)
class NetworkConfig:
    r"""Shape and unfolding settings shared by every network in this module.

    Args:
        in_channels: channels of the input (default 1: MNIST-1D and digits; 3 for CIFAR).
        num_classes: outputs of the linear classifier (default 10).
        dim: 1 (signals ``(B, C, L)``, default) or 2 (images ``(B, C, H, W)``).
        width: channels of the stem and of every stage's input and output (default 16).
        n_blocks: stages after the stem (default 2).
        kernel_size: odd kernel size, so "same" padding keeps the spatial size (default 3).
        n_unfold: sparse-coding nets: proximal-gradient steps beyond the first, per pursuit (default 0).
        method: sparse-coding nets: ``"ista"`` or ``"fista"`` (default) for the extra steps.
        threshold: sparse-coding nets: initial thresholds :math:`\theta` (biases :math:`-c\theta`; default 0).
        growth: dense nets: channels each dense layer adds (default 8).
        dilations: dense nets: a non-empty tuple, one dense layer per dilation rate (default ``(1, 2)``).
        pool_size: positions per spatial axis kept by the average pooling (default 4).
    """
    in_channels: int = 1          # 1 for MNIST-1D and digits, 3 for CIFAR
    num_classes: int = 10           # outputs of the linear classifier
    dim: int = 1                  # 1: signals (B, C, L); 2: images (B, C, H, W)
    width: int = 16               # channels of the stem and of every stage's input and output
    n_blocks: int = 2             # stages after the stem
    kernel_size: int = 3          # odd, so 'same' padding keeps the spatial size
    n_unfold: int = 0             # sparse-coding nets: proximal-gradient steps beyond the first, per pursuit
    method: str = "fista"         # sparse-coding nets: 'ista' or 'fista' for the extra steps
    threshold: float = 0.0        # sparse-coding nets: initial thresholds θ (biases -cθ)
    growth: int = 8               # dense nets: channels each dense layer adds
    dilations: tuple = (1, 2)     # dense nets: one dense layer per dilation rate
    pool_size: int = 4            # positions per spatial axis kept by the average pooling

    def __post_init__(self):
        for name in ("in_channels", "num_classes", "width", "n_blocks", "kernel_size", "growth", "pool_size"):
            positive_int(getattr(self, name), name)
        check_int(self.dim, "dim", minimum=1, maximum=2, expected="1 (signals) or 2 (images)")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        nonneg_int(self.n_unfold, "n_unfold")
        check_choice(self.method, "method", ("ista", "fista"))
        if not isinstance(self.dilations, tuple):
            raise TypeError(f"dilations must be a non-empty tuple, got {self.dilations!r}")
        if not self.dilations:
            raise ValueError("dilations must be a non-empty tuple, got an empty one")


class _Classifier(nn.Module):
    """Stem → stages → average pooling → linear; subclasses fill ``self.stages``."""

    def __init__(self, config):
        super().__init__()
        config = NetworkConfig() if config is None else config
        if not isinstance(config, NetworkConfig):
            raise TypeError(f"config must be a NetworkConfig, got {type(config).__name__}")
        self.config = config
        conv = nn.Conv1d if config.dim == 1 else nn.Conv2d
        k = config.kernel_size
        self.stem = conv(config.in_channels, config.width, k, padding=k // 2)
        self.stages = nn.ModuleList()
        self.classifier = nn.Linear(config.width * config.pool_size ** config.dim, config.num_classes)

    def _transition(self, in_channels: int) -> nn.Module:
        # a 1×1 thresholding layer back to `width` channels (one ML-CSC layer with a 1-tap dictionary)
        conv = nn.Conv1d if self.config.dim == 1 else nn.Conv2d
        return nn.Sequential(conv(in_channels, self.config.width, 1), nn.ReLU())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's code, shape ``(B, width, *spatial)``."""
        c = self.config
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != c.dim + 2 or x.shape[1] != c.in_channels:
            raise ValueError(f"x must have {c.dim + 2} dimensions and {c.in_channels} channels, got {tuple(x.shape)}")
        x = torch.relu(self.stem(x))
        for stage in self.stages:
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, shape ``(B, num_classes)``."""
        z = self.features(x)
        pool = F.adaptive_avg_pool1d if self.config.dim == 1 else F.adaptive_avg_pool2d
        return self.classifier(pool(z, self.config.pool_size).flatten(1))


class MLCSCNet(_Classifier):
    r"""ML-CSC classifier: every stage is two :class:`~cscnb.nn.blocks.UnfoldedCSCLayer` pursuits
    (chapter 7, ``eq-ch7-pursuit``).

    With ``n_unfold=0`` each layer is ``relu(conv(x, c·W) - c·θ)``: layered thresholding
    :cite:p:`papyan2017convolutional`, i.e. a :class:`PlainCNN` whose biases are constrained to be
    :math:`\le 0` (a subset of its function class).

    Args:
        config: a ``NetworkConfig`` (default ``None``: ``NetworkConfig()``).

    Shape:
        - Input: ``(B, config.in_channels, *spatial)`` with ``config.dim`` spatial axes.
        - Output: logits ``(B, config.num_classes)``.
    """

    def __init__(self, config: NetworkConfig | None = None):
        super().__init__(config)
        c = self.config
        for _ in range(2 * c.n_blocks):
            self.stages.append(UnfoldedCSCLayer(c.width, c.width, c.kernel_size, c.n_unfold, dim=c.dim,
                                                threshold=c.threshold, method=c.method))


class PlainCNN(_Classifier):
    """Plain CNN counterpart of :class:`MLCSCNet`: stages of two ``conv → ReLU`` layers.

    Args:
        config: a ``NetworkConfig`` (default ``None``: ``NetworkConfig()``).

    Shape:
        - Input: ``(B, config.in_channels, *spatial)`` with ``config.dim`` spatial axes.
        - Output: logits ``(B, config.num_classes)``.
    """

    def __init__(self, config: NetworkConfig | None = None):
        super().__init__(config)
        c = self.config
        conv = nn.Conv1d if c.dim == 1 else nn.Conv2d
        for _ in range(2 * c.n_blocks):
            self.stages.append(nn.Sequential(conv(c.width, c.width, c.kernel_size, padding=c.kernel_size // 2),
                                             nn.ReLU()))


class ResCSCNet(_Classifier):
    r"""Res-CSC classifier :cite:p:`zhang2021towards`: stages are :class:`~cscnb.nn.blocks.ResCSCBlock`
    (chapter 7, ``eq-ch7-res-step``).

    Args:
        config: a ``NetworkConfig`` (default ``None``: ``NetworkConfig()``).

    Shape:
        - Input: ``(B, config.in_channels, *spatial)`` with ``config.dim`` spatial axes.
        - Output: logits ``(B, config.num_classes)``.
    """

    def __init__(self, config: NetworkConfig | None = None):
        super().__init__(config)
        c = self.config
        for _ in range(c.n_blocks):
            self.stages.append(ResCSCBlock(c.width, c.kernel_size, c.n_unfold, dim=c.dim, threshold=c.threshold,
                                           method=c.method))


class ResNetCNN(_Classifier):
    """ResNet counterpart of :class:`ResCSCNet` :cite:p:`he2016deep`: stages are
    :class:`~cscnb.nn.blocks.ResidualBlock`.

    Args:
        config: a ``NetworkConfig`` (default ``None``: ``NetworkConfig()``).

    Shape:
        - Input: ``(B, config.in_channels, *spatial)`` with ``config.dim`` spatial axes.
        - Output: logits ``(B, config.num_classes)``.
    """

    def __init__(self, config: NetworkConfig | None = None):
        super().__init__(config)
        c = self.config
        for _ in range(c.n_blocks):
            self.stages.append(ResidualBlock(c.width, c.width, c.kernel_size, dim=c.dim))


class MSDCSCNet(_Classifier):
    r"""Mixed-scale dense CSC classifier (chapter 8, ``eq-ch8-dense-step``): MSD-CSC blocks + 1×1 transitions.

    :class:`~cscnb.nn.blocks.MSDCSCBlock` is our reconstruction of the model of :cite:p:`zhang2021towards`.

    Args:
        config: a ``NetworkConfig`` (default ``None``: ``NetworkConfig()``).

    Shape:
        - Input: ``(B, config.in_channels, *spatial)`` with ``config.dim`` spatial axes.
        - Output: logits ``(B, config.num_classes)``.
    """

    def __init__(self, config: NetworkConfig | None = None):
        super().__init__(config)
        c = self.config
        for _ in range(c.n_blocks):
            block = MSDCSCBlock(c.width, c.growth, c.kernel_size, c.dilations, c.n_unfold, dim=c.dim,
                                threshold=c.threshold, method=c.method)
            self.stages.append(nn.Sequential(block, self._transition(block.out_channels)))


class DenseNetCNN(_Classifier):
    """DenseNet counterpart of :class:`MSDCSCNet` :cite:p:`huang2017densely`: dilated
    :class:`~cscnb.nn.blocks.DenseBlock` + 1×1 transition.

    Args:
        config: a ``NetworkConfig`` (default ``None``: ``NetworkConfig()``).

    Shape:
        - Input: ``(B, config.in_channels, *spatial)`` with ``config.dim`` spatial axes.
        - Output: logits ``(B, config.num_classes)``.
    """

    def __init__(self, config: NetworkConfig | None = None):
        super().__init__(config)
        c = self.config
        for _ in range(c.n_blocks):
            block = DenseBlock(c.width, c.growth, c.kernel_size, c.dilations, dim=c.dim)
            self.stages.append(nn.Sequential(block, self._transition(block.out_channels)))


def with_unfolding(config: NetworkConfig, n_unfold: int) -> NetworkConfig:
    """A copy of ``config`` with another ``n_unfold`` (the sweep of chapters 7 and 8)."""
    return replace(config, n_unfold=n_unfold)
