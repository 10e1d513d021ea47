"""The model factory of ``python -m cscnb.train``: a :class:`~cscnb.train.config.TrainConfig` to a network.

``build_model`` sizes the network for the data (input channels, classes, 1-D or 2-D): the chapters 7–8
classifiers (``plain-cnn``, ``mlcsc-net``, :mod:`cscnb.models.classifiers`) and the ResNet/SDNet family
(:mod:`cscnb.models.resnet`, chapters 12 and 14). :func:`csc_layer_kwargs` is the one place where the
configuration's ``csc_*`` fields become :class:`~cscnb.nn.csc_layer.CSCLayer` arguments.
"""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from . import resnet
from .classifiers import MLCSCNet, NetworkConfig, PlainCNN

if TYPE_CHECKING:  # type hints only: importing the training system here would load it with every model
    from ..train.config import TrainConfig
    from ..train.data import TrainData

__all__ = ["build_model", "csc_layer_kwargs"]

#: TrainConfig field -> CSCLayer keyword argument (besides lam and n_iter)
CSC_FIELDS = {"csc_mu": "mu", "csc_nonneg": "nonneg", "csc_backward": "backward", "csc_atom_norm": "atom_norm",
              "csc_power_iters": "power_iters", "csc_power_tol": "power_tol", "csc_step_factor": "step_factor",
              "csc_synthesis": "synthesis"}
#: what a layer without one of these arguments does: W/|W| in the graph, 2 warm power iterations, step 1/(1.1 L)
_LAYER_WITHOUT_ARGUMENT = {"atom_norm": "reparametrize", "power_iters": 2, "power_tol": 0.0, "step_factor": 1 / 1.1}


def csc_layer_kwargs(config: TrainConfig) -> tuple:
    """``(kwargs, unsupported)``: the CSC-layer keyword arguments of ``config`` that this :class:`CSCLayer` accepts.

    ``unsupported`` lists ``"field=value"`` for the settings the installed layer has no argument for (an
    older layer) and whose value is not what that layer does anyway; the trainer records both in
    ``provenance.json`` and warns about the unsupported ones.
    """
    from ..nn.csc_layer import CSCLayer
    accepted = inspect.signature(CSCLayer.__init__).parameters
    kwargs, unsupported = {}, []
    for field, argument in CSC_FIELDS.items():
        value = getattr(config, field)
        if argument in accepted:
            kwargs[argument] = value
        elif _LAYER_WITHOUT_ARGUMENT.get(argument, object()) != value:
            unsupported.append(f"{field}={value!r}")
    return kwargs, unsupported


def build_model(config: TrainConfig, data: TrainData) -> nn.Module:
    """The network of ``config`` sized for ``data`` (channels, classes, 1-D or 2-D)."""
    if config.model in ("plain-cnn", "mlcsc-net"):
        net_config = NetworkConfig(in_channels=data.in_channels, num_classes=data.n_classes, dim=data.dim,
                                   width=config.width)
        model = PlainCNN(net_config) if config.model == "plain-cnn" else MLCSCNet(net_config)
    else:
        if data.dim != 2:
            raise ValueError(f"model {config.model!r} needs images; dataset {config.dataset!r} is 1-D")
        kwargs = dict(num_classes=data.n_classes, in_channels=data.in_channels, width=config.width,
                      stem="imagenet" if config.dataset == "imagenet" else "cifar")
        if config.stem_relu != "auto":
            kwargs["stem_relu"] = config.stem_relu == "on"
        if config.model.startswith("sdnet"):
            kwargs.update(lam=config.csc_lam, n_iter=config.csc_n_iter, csc_options=csc_layer_kwargs(config)[0])
        model = getattr(resnet, config.model)(**kwargs)
    return model.to(dtype=getattr(torch, config.dtype))
