"""ResNet-18/34 (basic blocks) and the SDNet variants of Dai et al. 2022 (chapter 12).

``sdnet18`` / ``sdnet34`` are ResNet-18/34 with the stem convolution replaced by a
:class:`cscnb.nn.csc_layer.CSCLayer` — a convolutional sparse-coding layer solving

.. math:: \\min_{z \\ge 0} \\tfrac12 \\lVert x - D z \\rVert_2^2 + \\lambda \\lVert z \\rVert_1

by a few FISTA steps, with the same constructor arguments and output shape as ``nn.Conv2d``;
the ``_all`` variants replace every 3×3 convolution (the 1×1 shortcut projections stay plain). Two
stems: ``"cifar"`` (3×3 conv, stride 1, no max pooling; for 32×32 inputs — the CIFAR adaptation of
ResNet-18 that the SDNet authors' code uses, not He et al.'s three-stage CIFAR ResNets) and
``"imagenet"`` (7×7 conv, stride 2, then 3×3 max pooling with stride 2; for 224×224 inputs, as in
He et al. 2016). The stem is convolution → batch norm → ReLU for ResNet; for SDNet it is CSC layer →
batch norm with no ReLU (``stem_relu=False``), as in the authors' code (its ReLU is commented out; the
non-negative code needs none).
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from ..core.validation import check_bool, check_choice, positive_int

__all__ = ["ResNet", "BasicBlock", "resnet18", "resnet34", "sdnet18", "sdnet34", "sdnet18_all", "sdnet34_all"]

STAGES = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def _plain_conv(in_channels, out_channels, kernel_size, stride=1, padding=0):
    # ResNet convolutions carry no bias: the batch norm after each one has its own shift
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)


def _csc_conv(in_channels, out_channels, kernel_size, stride=1, padding=0, *, lam=0.1, n_iter=2, options=None):
    # imported here so cscnb.models.resnet imports (and plain ResNets build) without the CSC layer
    from ..nn.csc_layer import CSCLayer
    return CSCLayer(in_channels, out_channels, kernel_size, stride=stride, padding=padding, n_iter=n_iter, lam=lam,
                    **(options or {}))


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
        stem_relu: a ReLU after the stem's batch norm (ResNet: yes; the SDNet builders pass ``False``).
        stem_conv, conv3x3: factories ``(in_channels, out_channels, kernel_size, stride, padding)`` of the stem
            convolution and of the blocks' 3×3 convolutions (plain ``nn.Conv2d`` without bias, or a CSC layer).

    Shape:
        input ``(B, in_channels, H, W)``, output ``(B, num_classes)``.
    """

    def __init__(self, depth: int = 18, *, num_classes: int = 10, in_channels: int = 3, width: int = 64,
                 stem: str = "cifar", stem_relu: bool = True, stem_conv=_plain_conv, conv3x3=_plain_conv):
        super().__init__()
        if depth not in STAGES:
            raise ValueError(f"depth must be 18 or 34, got {depth!r}")
        check_choice(stem, "stem", ("cifar", "imagenet"))
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels), ("width", width)):
            positive_int(value, name)
        self.stem_relu = check_bool(stem_relu, "stem_relu")
        kernel, stride, padding = (3, 1, 1) if stem == "cifar" else (7, 2, 3)
        layers = [stem_conv(in_channels, width, kernel, stride=stride, padding=padding), nn.BatchNorm2d(width)]
        if stem_relu:
            layers.append(nn.ReLU())
        if stem == "imagenet":
            layers.append(nn.MaxPool2d(3, stride=2, padding=1))
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


def _sdnet(depth: int, every_conv: bool, lam: float, n_iter: int, stem_relu: bool, csc_options, kwargs) -> ResNet:
    csc = partial(_csc_conv, lam=lam, n_iter=n_iter, options=dict(csc_options or {}))
    return ResNet(depth, stem_conv=csc, conv3x3=csc if every_conv else _plain_conv, stem_relu=stem_relu, **kwargs)


_SDNET_ARGS = """λ and iterations of the CSC layers; ``stem_relu`` (default ``False``, the
    authors' stem: CSC → batch norm); ``csc_options``: further :class:`~cscnb.nn.csc_layer.CSCLayer` keyword
    arguments (``mu``, ``nonneg``, ``backward``, ...); other keyword arguments as :class:`ResNet`.
    Chapter 12 (``eq-ch12-model``, ``eq-ch12-fista``)."""


def sdnet18(*, lam: float = 0.1, n_iter: int = 2, stem_relu: bool = False, csc_options=None, **kwargs) -> ResNet:
    return _sdnet(18, False, lam, n_iter, stem_relu, csc_options, kwargs)


def sdnet34(*, lam: float = 0.1, n_iter: int = 2, stem_relu: bool = False, csc_options=None, **kwargs) -> ResNet:
    return _sdnet(34, False, lam, n_iter, stem_relu, csc_options, kwargs)


def sdnet18_all(*, lam: float = 0.1, n_iter: int = 2, stem_relu: bool = False, csc_options=None,
                **kwargs) -> ResNet:
    return _sdnet(18, True, lam, n_iter, stem_relu, csc_options, kwargs)


def sdnet34_all(*, lam: float = 0.1, n_iter: int = 2, stem_relu: bool = False, csc_options=None,
                **kwargs) -> ResNet:
    return _sdnet(34, True, lam, n_iter, stem_relu, csc_options, kwargs)


sdnet18.__doc__ = "SDNet-18 (Dai et al. 2022): ResNet-18 whose stem convolution is a CSC layer. " + _SDNET_ARGS
sdnet34.__doc__ = "SDNet-34 (Dai et al. 2022): ResNet-34 whose stem convolution is a CSC layer. " + _SDNET_ARGS
sdnet18_all.__doc__ = ("SDNet-18-All (Dai et al. 2022): the stem and every 3×3 convolution of ResNet-18 are CSC "
                       "layers. " + _SDNET_ARGS)
sdnet34_all.__doc__ = ("SDNet-34-All (Dai et al. 2022): the stem and every 3×3 convolution of ResNet-34 are CSC "
                       "layers. " + _SDNET_ARGS)
