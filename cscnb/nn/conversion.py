r"""Swap the ``nn.Conv2d`` layers of any model for :class:`cscnb.nn.csc_layer.CSCLayer` (chapter 12).

``convert(model)`` turns a CNN into a sparse-coding variant: every selected convolution becomes a layer
that runs a few proximal-gradient steps on ``eq-ch12-model`` with the same in/out channels, kernel,
stride and padding, so output shapes and the rest of the model are unchanged. (SDNet-18 of
:cite:t:`dai2022revisiting` replaces only the stem convolution of ResNet-18, SDNet-18-all also every 3×3
convolution; ``select`` picks such subsets.)
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .csc_layer import CSCLayer

__all__ = ["convert"]


def _selector(select):
    if select is None:
        return lambda name, module: True
    if callable(select):
        return select
    if isinstance(select, str):
        return lambda name, module: name == select
    if isinstance(select, (list, tuple, set, frozenset)) and all(isinstance(s, str) for s in select):
        names = set(select)
        return lambda name, module: name in names
    raise TypeError("select must be None, a module name, a collection of module names, or a callable "
                    f"(name, module) -> bool; got {type(select).__name__}")


def convert(model: nn.Module, *, select=None, copy_weights: bool = True, **csc_kwargs) -> nn.Module:
    r"""Replace selected ``nn.Conv2d`` modules of ``model`` (in place) by ``CSCLayer``; returns ``model``.

    Each replaced convolution :math:`x \mapsto w * x + b` becomes the layer
    :math:`x \mapsto \argmin_{z\ge0} \lambda\|z\|_1 + \tfrac{\mu}{2}\|z\|^2 + \tfrac12\|x - A z\|^2`
    (chapter 12, ``eq-ch12-model``) with dictionary atoms ``w`` (``copy_weights``; the layer normalises
    them) and the same shapes. The convolution's bias is dropped: a CSC layer's bias is
    :math:`-\eta\lambda` (``eq-ch12-one-step``).

    ``select``: ``None`` (every ``nn.Conv2d``), a qualified module name or a collection of names (as in
    ``model.named_modules()``), or a callable ``(name, module) -> bool``. ``csc_kwargs`` go to
    ``CSCLayer`` (``n_iter``, ``lam``, ``mu``, ``backward``, ...). Convolutions with ``groups != 1``,
    ``dilation != 1``, a non-"zeros" ``padding_mode`` or string padding raise ``ValueError``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(model, nn.Conv2d):
        raise TypeError("model is itself an nn.Conv2d; build a CSCLayer directly (convert replaces children)")
    chosen = _selector(select)
    targets = [(name, module) for name, module in model.named_modules()
               if type(module) is nn.Conv2d and chosen(name, module)]
    for name, conv in targets:
        if conv.groups != 1 or conv.dilation != (1, 1):
            raise ValueError(f"cannot convert {name!r}: groups={conv.groups}, dilation={conv.dilation} "
                             "(a CSCLayer supports groups=1, dilation=1)")
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"cannot convert {name!r}: padding={conv.padding!r}, padding_mode={conv.padding_mode!r} "
                             "(a CSCLayer supports integer zero padding)")
    for name, conv in targets:
        layer = CSCLayer(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                         padding=conv.padding, **csc_kwargs)
        layer = layer.to(device=conv.weight.device, dtype=conv.weight.dtype)
        if copy_weights:
            with torch.no_grad():  # a tracked write (not .data), so the layer's step-size cache sees it
                layer.weight.copy_(conv.weight)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer)
    return model
