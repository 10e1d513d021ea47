"""The model factory of ``python -m cscnb.train``: a :class:`~cscnb.train.config.TrainConfig` to a network.

``build_model`` sizes the network for the data (input channels, classes, 1-D or 2-D): the chapters 7–8
classifiers (``plain-cnn``, ``mlcsc-net``, :mod:`cscnb.models.classifiers`) and the ResNet/SDNet family
(:mod:`cscnb.models.resnet`, chapters 12 and 14).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from . import resnet
from .classifiers import MLCSCNet, NetworkConfig, PlainCNN

if TYPE_CHECKING:  # type hints only: importing the training system here would load it with every model
    from ..train.config import TrainConfig
    from ..train.data import TrainData

__all__ = ["build_model"]


def build_model(config: TrainConfig, data: TrainData) -> nn.Module:
    """The network of ``config`` sized for ``data`` (channels, classes, 1-D or 2-D)."""
    if config.model in ("plain-cnn", "mlcsc-net"):
        net_config = NetworkConfig(in_channels=data.in_channels, n_classes=data.n_classes, dim=data.dim,
                                   width=config.width)
        model = PlainCNN(net_config) if config.model == "plain-cnn" else MLCSCNet(net_config)
    else:
        if data.dim != 2:
            raise ValueError(f"model {config.model!r} needs images; dataset {config.dataset!r} is 1-D")
        kwargs = dict(num_classes=data.n_classes, in_channels=data.in_channels, width=config.width,
                      stem="imagenet" if config.dataset == "imagenet" else "cifar")
        if config.model.startswith("sdnet"):
            kwargs.update(lam=config.csc_lam, n_iter=config.csc_n_iter)
        model = getattr(resnet, config.model)(**kwargs)
    return model.to(dtype=getattr(torch, config.dtype))
