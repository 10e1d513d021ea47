"""ResNet-18/34 (basic blocks) and the SDNet variants of Dai et al. 2022 (chapter 12).

``sdnet18`` / ``sdnet34`` are ResNet-18/34 with the stem convolution replaced by a
:class:`cscnb.nn.csc_layer.CSCLayer` — a convolutional sparse-coding layer solving

.. math:: \\min_{z \\ge 0} \\tfrac12 \\lVert x - D z \\rVert_2^2 + \\lambda \\lVert z \\rVert_1

by a few FISTA steps, with the same constructor arguments and output shape as ``nn.Conv2d``;
the ``_all`` variants replace every 3×3 convolution. Two stems: ``"cifar"`` (3×3 conv, stride 1,
no max pooling; for 32×32 inputs) and ``"imagenet"`` (7×7 conv, stride 2, then 3×3 max pooling
with stride 2; for 224×224 inputs), as in He et al. 2016.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from ..core.validation import check_choice, positive_int

__all__ = ["ResNet", "BasicBlock", "resnet18", "resnet34", "sdnet18", "sdnet34", "sdnet18_all", "sdnet34_all"]

STAGES = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def _plain_conv(in_channels, out_channels, kernel_size, stride=1, padding=0):
    # ResNet convolutions carry no bias: the batch norm after each one has its own shift
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)


def _csc_conv(in_channels, out_channels, kernel_size, stride=1, padding=0, *, lam=0.1, n_iter=2):
    # imported here so cscnb.models.resnet imports (and plain ResNets build) without the CSC layer
    from ..nn.csc_layer import CSCLayer
    return CSCLayer(in_channels, out_channels, kernel_size, stride=stride, padding=padding, n_iter=n_iter, lam=lam)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with batch norm, added to the (projected) input, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, conv3x3):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels, 3, stride=1, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            # the 1×1 projection stays a plain convolution in every variant (only 3×3 convs become CSC layers)
            self.shortcut = nn.Sequential(_plain_conv(in_channels, out_channels, 1, stride=stride),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stem → four stages of basic blocks (widths w, 2w, 4w, 8w) → global average pooling → linear.

    Args:
        depth: 18 or 34 (basic blocks per stage: 2-2-2-2 or 3-4-6-3).
        num_classes: outputs of the final linear layer (torchvision's name).
        in_channels: channels of the input images.
        width: channels of the first stage (64 in He et al. 2016).
        stem: ``"cifar"`` (3×3 convolution, stride 1) or ``"imagenet"`` (7×7, stride 2, then max pooling).
        stem_conv, conv3x3: factories ``(in_channels, out_channels, kernel_size, stride, padding)`` of the stem
            convolution and of the blocks' 3×3 convolutions (plain ``nn.Conv2d`` without bias, or a CSC layer).

    Shape:
        input ``(B, in_channels, H, W)``, output ``(B, num_classes)``.
    """

    def __init__(self, depth: int = 18, *, num_classes: int = 10, in_channels: int = 3, width: int = 64,
                 stem: str = "cifar", stem_conv=_plain_conv, conv3x3=_plain_conv):
        super().__init__()
        if depth not in STAGES:
            raise ValueError(f"depth must be 18 or 34, got {depth!r}")
        check_choice(stem, "stem", ("cifar", "imagenet"))
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels), ("width", width)):
            positive_int(value, name)
        if stem == "cifar":
            layers = [stem_conv(in_channels, width, 3, stride=1, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        else:
            layers = [stem_conv(in_channels, width, 7, stride=2, padding=3), nn.BatchNorm2d(width), nn.ReLU(),
                      nn.MaxPool2d(3, stride=2, padding=1)]
        self.stem = nn.Sequential(*layers)
        blocks, channels = [], width
        for stage, n_blocks in enumerate(STAGES[depth]):
            out_channels = width * 2 ** stage
            for index in range(n_blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(channels, out_channels, stride, conv3x3))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, num_classes)`` of images ``(B, in_channels, H, W)``."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise ValueError(f"x must be a (B, C, H, W) tensor, got {getattr(x, 'shape', type(x))}")
        z = self.blocks(self.stem(x))
        return self.classifier(z.mean(dim=(2, 3)))


def resnet18(**kwargs) -> ResNet:
    """ResNet-18 (He et al. 2016); keyword arguments as :class:`ResNet`."""
    return ResNet(18, **kwargs)


def resnet34(**kwargs) -> ResNet:
    """ResNet-34 (He et al. 2016); keyword arguments as :class:`ResNet`."""
    return ResNet(34, **kwargs)


def _sdnet(depth: int, every_conv: bool, lam: float, n_iter: int, kwargs) -> ResNet:
    csc = partial(_csc_conv, lam=lam, n_iter=n_iter)
    return ResNet(depth, stem_conv=csc, conv3x3=csc if every_conv else _plain_conv, **kwargs)


def sdnet18(*, lam: float = 0.1, n_iter: int = 2, **kwargs) -> ResNet:
    """SDNet-18 (Dai et al. 2022): ResNet-18 whose stem convolution is a CSC layer (λ, FISTA iterations)."""
    return _sdnet(18, False, lam, n_iter, kwargs)


def sdnet34(*, lam: float = 0.1, n_iter: int = 2, **kwargs) -> ResNet:
    """SDNet-34 (Dai et al. 2022): ResNet-34 whose stem convolution is a CSC layer."""
    return _sdnet(34, False, lam, n_iter, kwargs)


def sdnet18_all(*, lam: float = 0.1, n_iter: int = 2, **kwargs) -> ResNet:
    """SDNet-18-All (Dai et al. 2022): the stem and every 3×3 convolution of ResNet-18 are CSC layers."""
    return _sdnet(18, True, lam, n_iter, kwargs)


def sdnet34_all(*, lam: float = 0.1, n_iter: int = 2, **kwargs) -> ResNet:
    """SDNet-34-All (Dai et al. 2022): the stem and every 3×3 convolution of ResNet-34 are CSC layers."""
    return _sdnet(34, True, lam, n_iter, kwargs)
