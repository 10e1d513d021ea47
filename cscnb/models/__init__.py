"""Whole networks: the hierarchical sparse-coding net, the chapters' classifiers, ResNet/SDNet, the factory.

* :mod:`~cscnb.models.hierarchical` — :class:`HierarchicalSparseCodingNet`, layer-wise MAP of a
  non-negative convolutional sparse-coding hierarchy + logistic regression = a CNN (chapter 4, 14);
* :mod:`~cscnb.models.classifiers` — the ML-CSC / Res-CSC / MSD-CSC classifiers and their CNN
  counterparts (chapters 7, 8, 11, 12 and 13; trained with :func:`cscnb.train.fit`);
* :mod:`~cscnb.models.resnet` — ResNet-18/34 and SDNet-18/34 (CSC-layer stem or every 3×3 convolution,
  the layer of chapter 12; chapter 14);
* :mod:`~cscnb.models.factory` — ``build_model``: a training configuration to a network, for
  ``python -m cscnb.train``.
"""
from .classifiers import DenseNetCNN, MLCSCNet, MSDCSCNet, NetworkConfig, PlainCNN, ResCSCNet, ResNetCNN, with_unfolding
from .factory import build_model
from .hierarchical import HierarchicalSparseCodingConfig, HierarchicalSparseCodingNet
from .resnet import BasicBlock, ResNet, resnet18, resnet34, sdnet18, sdnet18_all, sdnet34, sdnet34_all

__all__ = ["HierarchicalSparseCodingConfig", "HierarchicalSparseCodingNet",
           "NetworkConfig", "MLCSCNet", "ResCSCNet", "MSDCSCNet", "PlainCNN", "ResNetCNN", "DenseNetCNN",
           "with_unfolding",
           "ResNet", "BasicBlock", "resnet18", "resnet34", "sdnet18", "sdnet34", "sdnet18_all", "sdnet34_all",
           "build_model"]
